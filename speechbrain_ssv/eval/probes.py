"""Disentanglement probes: how much device information is left in the speaker
embedding ``x^s``, and how much speaker information in the device embedding
``x^d`` (Mun, Han et al., FFSVC 2022; their Fig. 4 shows it qualitatively
with t-SNE, here it is also measured).

A linear probe is a multinomial logistic regression (scikit-learn) trained
on frozen embeddings of part of a labelled set and scored on the rest
(stratified split). Good disentanglement: device accuracy from ``x^s`` near
its chance level, speaker accuracy from ``x^d`` near its chance level, while
speaker accuracy from ``x^s`` and device accuracy from ``x^d`` stay high
(reported as references). Two chance levels are given: ``1 / classes`` and
the test set's majority-class rate (what a constant guess scores).

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import os

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.eval.plots import plot_tsne
from speechbrain_ssv.utils.errors import ManifestError, SSVInputError
from speechbrain_ssv.utils.io import write_json

__all__ = [
    "PROBES",
    "disentanglement_probes",
    "linear_probe",
    "probe_manifest",
    "tsne_maps",
]

#: Probe name -> (embedding, label): the two that measure leakage first.
PROBES = {
    "device_from_x_s": ("x_s", "device"),
    "speaker_from_x_d": ("x_d", "speaker"),
    "speaker_from_x_s": ("x_s", "speaker"),
    "device_from_x_d": ("x_d", "device"),
}


def _numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def linear_probe(features, labels, test_fraction=0.3, seed=0, max_iter=1000):
    """Accuracy of a linear classifier on frozen features, and chance levels.

    Features are standardised (fitted on the training part); classes with
    fewer than two examples are dropped (a stratified split needs two).

    Arguments
    ---------
    features : array-like
        ``[N, D]``.
    labels : sequence
        ``[N]`` class labels (any hashable).
    test_fraction : float
        Fraction of the examples held out for scoring.
    seed : int
        Seed of the split and the solver.
    max_iter : int
        Iterations of the L-BFGS solver.

    Returns
    -------
    dict
        ``accuracy``, ``chance_uniform`` (1 / classes),
        ``chance_majority`` (majority-class rate of the test part),
        ``n_train``, ``n_test``, ``n_classes``, ``stratified``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 40)
    >>> x = rng.normal(size=(120, 4)) + 4 * np.eye(4)[y]
    >>> res = linear_probe(x, y)
    >>> res["accuracy"] > 0.9, round(res["chance_uniform"], 3), res["n_classes"]
    (True, 0.333, 3)
    """
    x = _numpy(features)
    y = np.asarray([str(v) for v in labels])
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise SSVInputError(
            "linear_probe",
            f"features {x.shape} and labels ({y.shape[0]}) do not match",
        )
    classes, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, classes[counts >= 2])
    x, y = x[keep], y[keep]
    classes = np.unique(y)
    if len(classes) < 2:
        raise SSVInputError(
            "linear_probe",
            f"needs two classes with two examples each; got {len(classes)}",
        )
    n_test = max(int(round(test_fraction * len(y))), len(classes))
    stratified = n_test <= len(y) - len(classes)
    if not stratified:
        # Too few examples for one test item per class: plain random split.
        n_test = max(1, int(round(test_fraction * len(y))))
    x_tr, x_te, y_tr, y_te = train_test_split(
        x,
        y,
        test_size=n_test,
        random_state=seed,
        stratify=y if stratified else None,
    )
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(x_tr), y_tr)
    acc = float((clf.predict(scaler.transform(x_te)) == y_te).mean())
    _, test_counts = np.unique(y_te, return_counts=True)
    return {
        "accuracy": acc,
        "chance_uniform": 1.0 / len(classes),
        "chance_majority": float(test_counts.max() / len(y_te)),
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "n_classes": len(classes),
        "stratified": bool(stratified),
    }


def disentanglement_probes(
    x_s, x_d, speakers, devices, test_fraction=0.3, seed=0, max_iter=1000
):
    """The four linear probes of :data:`PROBES`.

    Arguments
    ---------
    x_s : array-like
        ``[N, D]`` speaker embeddings.
    x_d : array-like
        ``[N, D']`` device embeddings (``None`` skips the probes on it).
    speakers : sequence
        ``[N]`` speaker labels.
    devices : sequence
        ``[N]`` device labels.
    test_fraction : float
        Held-out fraction.
    seed : int
        Split seed (the same for every probe).
    max_iter : int
        Solver iterations.

    Returns
    -------
    dict
        Probe name -> :func:`linear_probe` result.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> spk = np.repeat(np.arange(4), 30); dev = np.tile(np.arange(3), 40)
    >>> x_s = rng.normal(size=(120, 6)) + 3 * np.eye(6)[spk]
    >>> x_d = rng.normal(size=(120, 6)) + 3 * np.eye(6)[dev]
    >>> res = disentanglement_probes(x_s, x_d, spk, dev)
    >>> res["speaker_from_x_s"]["accuracy"] > 0.8, res["device_from_x_s"]["accuracy"] < 0.6
    (True, True)
    """
    emb = {"x_s": x_s, "x_d": x_d}
    lab = {"speaker": speakers, "device": devices}
    out = {}
    for name, (e, label) in PROBES.items():
        if emb[e] is None:
            continue
        out[name] = linear_probe(
            emb[e], lab[label], test_fraction, seed, max_iter
        )
    return out


def tsne_maps(
    x_s, speakers, devices, out_dir, n_speakers=10, seed=0, max_iter=500
):
    """t-SNE of ``x^s`` for a few speakers, coloured by speaker and by
    device (the two panels of the paper's Fig. 4: ten speakers, every
    device).

    Arguments
    ---------
    x_s : array-like
        ``[N, D]`` speaker embeddings.
    speakers : sequence
        ``[N]`` speaker labels.
    devices : sequence
        ``[N]`` device labels.
    out_dir : str
        Where ``tsne_x_s_speaker.png`` and ``tsne_x_s_device.png`` go.
    n_speakers : int
        Speakers drawn at random (seeded); all their utterances are shown.
    seed : int
        Seed of the draw and of t-SNE.
    max_iter : int
        t-SNE iterations.

    Returns
    -------
    dict
        ``speaker`` and ``device``: the PNG paths.
    """
    x = _numpy(x_s)
    spk = np.asarray([str(v) for v in speakers])
    dev = np.asarray([str(v) for v in devices])
    rng = np.random.default_rng(seed)
    names = np.unique(spk)
    chosen = rng.choice(names, size=min(n_speakers, len(names)), replace=False)
    keep = np.isin(spk, chosen)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for key, labels in (("speaker", spk), ("device", dev)):
        paths[key] = os.path.join(out_dir, f"tsne_x_s_{key}.png")
        plot_tsne(
            x[keep],
            labels[keep],
            paths[key],
            seed=seed,
            max_iter=max_iter,
            title=f"t-SNE of x_s ({len(chosen)} speakers), colour: {key}",
        )
    return paths


def _read_manifest(csv_path):
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ManifestError(csv_path, "does not exist")
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    need = ("ID", "wav", "spk_id", "device")
    if not rows or any(c not in rows[0] for c in need):
        raise ManifestError(
            csv_path,
            f"needs rows with the columns {list(need)} (prepare_ffsvc writes "
            "them)",
        )
    return rows


def probe_manifest(
    encoder_fn,
    csv_path,
    out_dir,
    model_tag,
    speaker_dim=None,
    max_utts=None,
    max_seconds=None,
    test_fraction=0.3,
    seed=0,
    tsne=True,
    tsne_speakers=10,
    tsne_max_iter=500,
    batch_size=16,
    device="cpu",
    progress=True,
):
    """Embed the utterances of a manifest with both branches and run the
    probes; write ``probes.json`` (and the t-SNE PNGs) to ``out_dir``.

    Arguments
    ---------
    encoder_fn : callable
        ``encoder_fn(wavs, lens) -> [B, speaker_dim + device_dim]``: ``x^s``
        then ``x^d`` concatenated (``DisentangleBrain.inference_encoder("both")``).
    csv_path : str
        Manifest with ``ID, wav, spk_id, device`` (and ``start``, ``stop``).
    out_dir : str
        Output folder.
    model_tag : str
        Names the weights (embedding cache key).
    speaker_dim : int | None
        Width of ``x^s`` in the encoder output (default: half of it, as
        the decoupling block gives both embeddings the same size).
    max_utts : int | None
        Random subset of the manifest (seeded).
    max_seconds : float | None
        Embed at most the first ``max_seconds`` of each utterance.
    test_fraction : float
        Held-out fraction of each probe.
    seed : int
        Seed of the subset, the splits and t-SNE.
    tsne : bool
        Draw the t-SNE maps.
    tsne_speakers : int
        Speakers on the maps.
    tsne_max_iter : int
        t-SNE iterations.
    batch_size : int
        Utterances per forward pass.
    device : str
        Where the batches go.
    progress : bool
        Progress bar.

    Returns
    -------
    dict
        ``probes`` (name -> result), ``n_utterances``, ``tsne`` (PNG paths)
        and ``manifest``.
    """
    rows = _read_manifest(csv_path)
    rng = np.random.default_rng(seed)
    if max_utts is not None and len(rows) > max_utts:
        keep = np.sort(rng.choice(len(rows), size=int(max_utts), replace=False))
        rows = [rows[i] for i in keep]
    items = []
    for r in rows:
        start = int(r["start"]) if r.get("start") not in (None, "") else 0
        stop = int(r["stop"]) if r.get("stop") not in (None, "") else None
        items.append((r["ID"], r["wav"], start, stop))
    os.makedirs(out_dir, exist_ok=True)
    emb = extract_embeddings(
        encoder_fn,
        items,
        cache_path=os.path.join(out_dir, "embeddings.pt"),
        batch_size=batch_size,
        device=device,
        max_seconds=max_seconds,
        progress=progress,
        model_tag=model_tag,
    )
    matrix = torch.stack([emb[r["ID"]] for r in rows])
    if speaker_dim is None:
        speaker_dim = matrix.shape[1] // 2
    if not 0 < speaker_dim < matrix.shape[1]:
        raise SSVInputError(
            "speaker_dim",
            f"is {speaker_dim} but the encoder gives {matrix.shape[1]} "
            "values; expected x_s and x_d concatenated",
        )
    x_s, x_d = matrix[:, :speaker_dim], matrix[:, speaker_dim:]
    speakers = [r["spk_id"] for r in rows]
    devices = [r["device"] for r in rows]
    result = {
        "manifest": os.path.abspath(csv_path),
        "n_utterances": len(rows),
        "probes": disentanglement_probes(
            x_s, x_d, speakers, devices, test_fraction, seed
        ),
    }
    if tsne:
        result["tsne"] = tsne_maps(
            x_s, speakers, devices, out_dir, tsne_speakers, seed, tsne_max_iter
        )
    write_json(os.path.join(out_dir, "probes.json"), result)
    return result
