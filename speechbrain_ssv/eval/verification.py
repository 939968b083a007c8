"""End-to-end speaker-verification evaluation of an embedding model.

Reads and checks a trial list, extracts each utterance's embedding once
(cached), scores every trial by cosine similarity (optionally normalised
against a cohort), and writes the scores, metrics and plots.

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import os

import torch

from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.eval.metrics import eer_mindcf
from speechbrain_ssv.eval.plots import plot_det, plot_score_histogram
from speechbrain_ssv.eval.report import plot_title
from speechbrain_ssv.eval.scoring import (
    NORM_METHODS,
    cosine_scores,
    normalize_scores,
)
from speechbrain_ssv.eval.trials import (
    check_trial_files,
    index_trials,
    normalize_item,
    read_trials,
)
from speechbrain_ssv.utils.errors import ManifestError, TrialListError
from speechbrain_ssv.utils.io import write_json, write_text

__all__ = ["evaluate_verification", "utt_to_wav_from_csv"]


def utt_to_wav_from_csv(csv_path, replacements=None):
    """Read a SpeechBrain CSV manifest into ``{ID: (wav, start, stop)}``.

    Arguments
    ---------
    csv_path : str
        CSV with columns ``ID`` and ``wav``, optionally ``start`` and ``stop``
        (samples; SpeechBrain's VoxCeleb manifests have them).
    replacements : dict | None
        ``{"data_root": "/x"}`` replaces ``$data_root`` in the ``wav`` column,
        as in ``DynamicItemDataset.from_csv``.

    Returns
    -------
    dict
        Utterance id to ``(wav_path, start, stop)`` (``stop=None``: to the end).

    Raises
    ------
    ManifestError
        Missing or empty file, a missing column, a duplicate ID or a
        non-integer start/stop (naming the line).

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "test.csv")
    >>> _ = open(p, "w").write("ID,duration,wav,start,stop\\na/b/1,1.0,$root/a.wav,0,16000\\n")
    >>> utt_to_wav_from_csv(p, {"root": "/d"})
    {'a/b/1': ('/d/a.wav', 0, 16000)}
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ManifestError(csv_path, "manifest does not exist")
    out = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        columns = reader.fieldnames or []
        for col in ("ID", "wav"):
            if col not in columns:
                raise ManifestError(
                    csv_path,
                    f"has no {col!r} column (columns: {columns}); expected "
                    "at least ID,wav",
                )
        for line_no, row in enumerate(reader, start=2):
            utt, wav = row["ID"], row["wav"]
            if not utt or not wav:
                raise ManifestError(
                    csv_path, f"line {line_no}: empty ID or wav"
                )
            for key, value in (replacements or {}).items():
                wav = wav.replace(f"${key}", str(value))
            try:
                start = int(float(row.get("start") or 0))
                stop = row.get("stop")
                stop = None if stop in (None, "") else int(float(stop))
            except ValueError:
                raise ManifestError(
                    csv_path,
                    f"line {line_no}: start/stop must be sample counts, got "
                    f"{row.get('start')!r}/{row.get('stop')!r}",
                ) from None
            if utt in out:
                raise ManifestError(
                    csv_path, f"line {line_no}: duplicate ID {utt!r}"
                )
            out[utt] = (wav, start, stop)
    if not out:
        raise ManifestError(csv_path, "is empty; expected at least one row")
    return out


def _format_scores(utt_ids, enrol_idx, test_idx, labels, scores):
    lines = [
        f"{utt_ids[e]} {utt_ids[t]} {y} {s:.6f}"
        for e, t, y, s in zip(
            enrol_idx.tolist(),
            test_idx.tolist(),
            labels.tolist(),
            scores.tolist(),
        )
    ]
    return "\n".join(lines) + "\n"


def evaluate_verification(
    encoder_fn,
    utt_to_wav,
    trial_path,
    out_dir,
    model_tag,
    cohort_items=None,
    norm=None,
    topk=None,
    batch_size=16,
    device="cpu",
    title=None,
    max_seconds=None,
    sample_rate=16000,
    progress=True,
    extra_metrics=None,
):
    """Evaluate an embedding model on a trial list.

    Writes into ``out_dir``: ``embeddings/`` (cache of trial and cohort
    embeddings, see :func:`~speechbrain_ssv.eval.embeddings.extract_embeddings`),
    ``scores.txt`` (``enrol test label score`` per trial, as
    SpeechBrain's recipe), ``metrics.json``, ``det.png`` and
    ``score_hist.png``. minDCF values are NORMALISED (see
    :func:`speechbrain_ssv.eval.metrics.eer_mindcf`); EER and minDCF are
    fractions, not percentages.

    Arguments
    ---------
    encoder_fn : callable
        ``encoder_fn(wavs[B, T], lens[B]) -> [B, D]`` or ``[B, 1, D]``; put the
        model in eval mode and on ``device`` first.
    utt_to_wav : dict
        Utterance id (trial path without ``.wav``) to a wav path or
        ``(path, start, stop)``; see :func:`utt_to_wav_from_csv`.
    trial_path : str
        Labelled trial list (``"<label> <enrol> <test>"``).
    out_dir : str
        Output folder (created).
    model_tag : str
        Names the model/checkpoint; the embedding cache is reused only for
        the same tag.
    cohort_items : list | None
        ``(utt_id, wav[, start, stop])`` of the normalisation cohort
        (required when ``norm`` is set).
    norm : str | None
        ``None``, ``"z-norm"``, ``"t-norm"``, ``"s-norm"`` or ``"as-norm"``.
    topk : int | None
        Top-k cohort scores for adaptive normalisation.
    batch_size : int
        Utterances per forward pass.
    device : str
        Device the batches are sent to.
    title : str | None
        Names the model in the plot titles, e.g. ``"SDPN (teacher), epoch
        8"`` (default: ``model_tag``); ``": EER x.xx%"`` is appended.
    max_seconds : float | None
        Crop utterances to their first ``max_seconds``.
    sample_rate : int
        Required sampling rate.
    progress : bool
        Show progress bars.
    extra_metrics : dict | None
        More entries for ``metrics.json`` (e.g. the model's path).

    Returns
    -------
    dict
        The content of ``metrics.json``: ``eer``, ``min_dcf@0.01``,
        ``min_dcf@0.05`` (normalised) and their thresholds, ``n_trials``,
        ``n_targets``, ``n_nontargets``, ``norm``, ``model_tag``.

    Example
    -------
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> tmp = str(getfixture("tmpdir"))
    >>> utt_to_wav = {}
    >>> for spk, f0 in (("s1", 200.0), ("s2", 500.0)):
    ...     for u in range(2):
    ...         p = os.path.join(tmp, f"{spk}_{u}.wav")
    ...         t = torch.arange(8000) / 16000
    ...         write_wav(p, 0.3 * torch.sin(2 * torch.pi * (f0 + 10 * u) * t), 16000)
    ...         utt_to_wav[f"{spk}/{u}"] = p
    >>> trials = os.path.join(tmp, "trials.txt")
    >>> _ = open(trials, "w").write(
    ...     "1 s1/0.wav s1/1.wav\\n0 s1/0.wav s2/1.wav\\n1 s2/0.wav s2/1.wav\\n0 s2/0.wav s1/1.wav\\n")
    >>> def enc(wavs, lens):  # magnitude spectrum: separates the two tones
    ...     return torch.fft.rfft(wavs[:, :4000]).abs()[:, ::25]
    >>> m = evaluate_verification(enc, utt_to_wav, trials, os.path.join(tmp, "out"),
    ...                           "fft", progress=False)
    >>> m["eer"], m["n_trials"], sorted(os.listdir(os.path.join(tmp, "out")))
    (0.0, 4, ['det.png', 'embeddings', 'metrics.json', 'score_hist.png', 'scores.txt'])
    """
    # Cheap argument checks first, before any audio is touched.
    if norm is not None:
        if norm not in NORM_METHODS:
            raise ValueError(
                f"unknown norm {norm!r}; use None or one of {NORM_METHODS}"
            )
        if not cohort_items:
            raise ValueError(
                f"norm={norm!r} needs cohort_items (e.g. training utterances)"
            )
    trials = read_trials(trial_path)
    if trials[0].label is None:
        raise TrialListError(
            trials[0].source,
            "is unlabelled ('<enrol> <test>'); evaluation needs "
            "'<label> <enrol> <test>' lines",
        )
    check_trial_files(trials, utt_to_wav)
    utt_ids, enrol_idx, test_idx, labels = index_trials(trials)
    items = [(u, normalize_item(utt_to_wav[u])) for u in utt_ids]
    cohort_ids = []
    if norm is not None:
        for item in cohort_items:
            cohort_ids.append(item[0])
            items.append(item)
    os.makedirs(out_dir, exist_ok=True)
    emb = extract_embeddings(
        encoder_fn,
        items,
        cache_path=os.path.join(out_dir, "embeddings.pt"),
        batch_size=batch_size,
        sample_rate=sample_rate,
        device=device,
        max_seconds=max_seconds,
        progress=progress,
        model_tag=model_tag,
    )
    matrix = torch.stack([emb[u] for u in utt_ids])
    scores = cosine_scores(matrix, matrix, enrol_idx, test_idx)
    if norm is not None:
        cohort = torch.stack([emb[u] for u in dict.fromkeys(cohort_ids)])
        scores = normalize_scores(
            scores, enrol_idx, test_idx, matrix, cohort, method=norm, topk=topk
        )

    write_text(
        os.path.join(out_dir, "scores.txt"),
        _format_scores(utt_ids, enrol_idx, test_idx, labels, scores),
    )
    m = eer_mindcf(scores, labels, p_targets=(0.01, 0.05))
    metrics = {
        **m,
        "n_trials": len(trials),
        "norm": norm,
        "topk": topk,
        "model_tag": model_tag,
        "trial_list": os.path.abspath(trial_path),
        "min_dcf_normalised": True,
        **(extra_metrics or {}),
    }
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    # A title reads as the model and its result, not as the cache tag.
    name = title or model_tag
    title = plot_title(name, eer=m["eer"])
    # The legend adds the EER to the curve's name itself.
    plot_det(
        {name: (scores, labels)}, os.path.join(out_dir, "det.png"), title=title
    )
    plot_score_histogram(
        scores, labels, os.path.join(out_dir, "score_hist.png"), title=title
    )
    return metrics
