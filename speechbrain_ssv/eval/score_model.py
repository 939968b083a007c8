"""Score a trial list with any exported model and calibrate its thresholds.

The model is loaded with stock SpeechBrain's ``EncoderClassifier`` (an
export of this package, or any folder ``EncoderClassifier.from_hparams``
loads), so the scores and thresholds are those a user of the model gets.
Scoring, cohort normalisation, metrics and plots are
:func:`~speechbrain_ssv.eval.verification.evaluate_verification`'s.

Authors
 * speechbrain-ssv developers 2026
"""

import json
import os
import tempfile

import torch
from speechbrain.inference.speaker import EncoderClassifier

from speechbrain_ssv.eval.trials import read_trials
from speechbrain_ssv.eval.verification import (
    evaluate_verification,
    utt_to_wav_from_csv,
)
from speechbrain_ssv.export_checks import EXPORT_MARKER, verify_checksums
from speechbrain_ssv.utils.errors import ManifestError, SSVInputError
from speechbrain_ssv.utils.io import file_digest

__all__ = ["load_encoder", "read_cohort", "score_model"]

#: Trial entries with one of these extensions name their file as it is.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def _audio_path(data_folder, entry):
    """Where a trial-list entry's audio is: ``data_folder/entry``, or
    ``data_folder/wav/entry`` (VoxCeleb1's layout, whose trial lists omit
    the ``wav/`` folder); an entry without an audio extension gets
    ``.wav`` (utterance ids drop it), one with another (``.flac``) keeps
    it. The first candidate that exists is returned; if none does, the
    direct one (for the error message).

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> os.makedirs(os.path.join(tmp, "wav", "s1"))
    >>> _ = open(os.path.join(tmp, "wav", "s1", "a.flac"), "w").write("x")
    >>> _audio_path(str(tmp), "s1/a.flac").endswith("wav/s1/a.flac")
    True
    >>> _audio_path(str(tmp), "s1/b").endswith("s1/b.wav")
    True
    """
    names = [entry] if os.path.splitext(entry)[1] in AUDIO_EXTENSIONS else []
    names.append(entry + ".wav")
    candidates = [
        os.path.join(folder, name)
        for name in names
        for folder in (data_folder, os.path.join(data_folder, "wav"))
    ]
    for path in candidates:
        if os.path.isfile(path):
            return path
    return candidates[0]


def load_encoder(model, device="cpu", savedir=None):
    """Load an exported model with stock ``EncoderClassifier``.

    Arguments
    ---------
    model : str
        An export folder (``hyperparams.yaml`` + checkpoints). When it holds
        ``export_info.json``, every file's checksum is verified first.
    device : str
        Where to run the model.
    savedir : str | None
        SpeechBrain's ``savedir`` (default: a temporary folder).

    Returns
    -------
    tuple
        ``(encoder, info)``: the ``EncoderClassifier`` (eval mode) and the
        content of ``export_info.json`` (``{}`` without one).

    Raises
    ------
    SSVInputError
        When the folder does not exist or has no ``hyperparams.yaml``, or a
        recorded checksum does not match.
    """
    model = os.fspath(model)
    if not os.path.isdir(model):
        raise SSVInputError(model, "model folder does not exist")
    if not os.path.isfile(os.path.join(model, "hyperparams.yaml")):
        raise SSVInputError(
            model,
            "has no hyperparams.yaml; expected a model folder that "
            "EncoderClassifier.from_hparams loads (python -m "
            "speechbrain_ssv.export writes one)",
        )
    info = {}
    if os.path.isfile(os.path.join(model, EXPORT_MARKER)):
        # A flipped bit may still load; only the checksum names the cause.
        verify_checksums(model)
        with open(os.path.join(model, EXPORT_MARKER), encoding="utf-8") as f:
            info = json.load(f)
    savedir = savedir or tempfile.mkdtemp(prefix="ssv-score-")
    encoder = EncoderClassifier.from_hparams(
        source=os.path.abspath(model),
        savedir=savedir,
        run_opts={"device": device},
    )
    encoder.eval()
    return encoder, info


def read_cohort(path, data_folder):
    """Read a score-normalisation cohort.

    Arguments
    ---------
    path : str
        A SpeechBrain CSV manifest (``ID,wav[,start,stop]``; ``$data_root``
        is replaced by ``data_folder``), or a text file with one audio path
        per line (relative to ``data_folder`` or absolute).
    data_folder : str
        The corpus folder.

    Returns
    -------
    list
        ``(utt_id, (wav, start, stop))`` items.

    Raises
    ------
    ManifestError
        A missing or empty file, a bad CSV row, or a missing audio file
        (naming the line).

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> _ = open(os.path.join(tmp, "a.wav"), "w").write("x")
    >>> p = os.path.join(tmp, "cohort.txt")
    >>> _ = open(p, "w").write("a.wav\\nb.wav\\n")
    >>> read_cohort(p, str(tmp))
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.ManifestError: ...cohort.txt: line 2: audio file ...b.wav does not exist
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ManifestError(path, "cohort list does not exist")
    if path.endswith(".csv"):
        table = utt_to_wav_from_csv(path, {"data_root": data_folder})
        rows = {
            utt: (2 + i, spec) for i, (utt, spec) in enumerate(table.items())
        }
    else:
        rows = {}
        with open(path, encoding="utf-8") as f:
            for line_no, raw in enumerate(f, start=1):
                entry = raw.strip()
                if not entry or entry.startswith("#"):
                    continue
                wav = (
                    entry
                    if os.path.isabs(entry)
                    else _audio_path(data_folder, entry)
                )
                utt = "cohort:" + entry.removesuffix(".wav")
                rows[utt] = (line_no, (wav, 0, None))
    if not rows:
        raise ManifestError(path, "is empty; expected one audio file a line")
    for line_no, (wav, _, _) in rows.values():
        if not os.path.isfile(wav):
            raise ManifestError(
                path, f"line {line_no}: audio file {wav} does not exist"
            )
    return [(utt, spec) for utt, (_, spec) in rows.items()]


def score_model(
    model,
    trials,
    data_folder,
    out_dir,
    cohort=None,
    norm=None,
    topk=None,
    device="cpu",
    batch_size=16,
    progress=True,
):
    """Score a trial list with an exported model: embeddings, optional
    cohort normalisation, EER/minDCF and their thresholds, DET plot.

    Writes into ``out_dir`` (atomically, file by file): ``scores.txt``
    (``enrol test label score``), ``metrics.json``, ``det.png``,
    ``score_hist.png`` and the embedding cache ``embeddings/``.
    ``metrics.json`` is what ``python -m speechbrain_ssv.export --metrics``
    reads to put the thresholds in a model card.

    Arguments
    ---------
    model : str
        The export folder (see :func:`load_encoder`).
    trials : str
        Labelled trial list (``<label> <enrol> <test>``; paths relative to
        ``data_folder``).
    data_folder : str
        Folder the trial paths are relative to (or its ``wav/`` subfolder,
        as in VoxCeleb1).
    out_dir : str
        Output folder.
    cohort : str | None
        Cohort list or CSV (see :func:`read_cohort`); needed by ``norm``.
    norm : str | None
        ``None``, ``"s-norm"`` or ``"as-norm"`` (also ``"z-norm"``,
        ``"t-norm"``).
    topk : int | None
        Top-k cohort scores for adaptive normalisation (default 300).
    device : str
        Where to run the model.
    batch_size : int
        Utterances per forward pass.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        The metrics (as written to ``metrics.json``), with ``model``.
    """
    if norm is not None and cohort is None:
        raise SSVInputError("--norm", f"{norm} needs a --cohort list")
    if cohort is not None and norm is None:
        # A cohort only serves normalisation; ignoring it would hide a
        # forgotten --norm.
        raise SSVInputError("--cohort", "is only used with --norm; add one")
    if not os.path.isdir(data_folder):
        raise SSVInputError(data_folder, "data folder does not exist")
    encoder, info = load_encoder(model, device=device)
    # A malformed list fails here, before any audio is decoded; missing
    # audio fails in evaluate_verification, naming the trial line.
    utt_to_wav = {}
    for trial in read_trials(trials):
        for utt in (trial.enrol, trial.test):
            if utt not in utt_to_wav:
                utt_to_wav[utt] = _audio_path(data_folder, utt)
    cohort_items = read_cohort(cohort, data_folder) if cohort else None
    # The cache is keyed by the weights, so a re-exported model never reuses
    # another's embeddings.
    weights = os.path.join(model, "embedding_model.ckpt")
    tag = (
        file_digest(weights, "sha256")
        if os.path.isfile(weights)
        else os.path.abspath(model)
    )
    label = info.get("method") or os.path.basename(os.path.abspath(model))

    def encode(wavs, lens):
        """Embeddings of a padded batch, without autograd."""
        with torch.no_grad():
            return encoder.encode_batch(wavs, lens)

    metrics = evaluate_verification(
        encode,
        utt_to_wav,
        trials,
        out_dir,
        model_tag=f"export-{tag}",
        cohort_items=cohort_items,
        norm=norm,
        topk=topk,
        batch_size=batch_size,
        device=device,
        title=label,
        progress=progress,
        extra_metrics={"model": os.path.abspath(model)},
    )
    return metrics
