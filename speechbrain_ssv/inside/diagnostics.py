"""Diagnostics of synthetic identities: how tight each identity is (the
paper's Fig. 4: synthetic identities have a higher same-identity cosine
than real speakers) and where the synthetic speakers fall among the real
ones (t-SNE of real, INSIDE-NN and INSIDE-Syn speaker embeddings).

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from speechbrain_ssv.eval.plots import plot_tsne, save_figure

__all__ = [
    "intra_identity_cosines",
    "plot_intra_identity",
    "plot_identity_map",
    "summarize_cosines",
]


def _numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def intra_identity_cosines(
    embeddings, identities, max_per_identity=None, seed=0
):
    """Cosine similarity of every pair of utterances of the same identity.

    Arguments
    ---------
    embeddings : torch.Tensor | numpy.ndarray
        ``[N, D]`` utterance embeddings.
    identities : sequence
        ``[N]`` identity (speaker or synthetic id) of each row.
    max_per_identity : int | None
        Keep at most this many random utterances per identity (the number
        of pairs grows quadratically with it).
    seed : int
        Seed of that subsample.

    Returns
    -------
    numpy.ndarray
        The cosines of all within-identity pairs (identities with one
        utterance contribute none).

    Example
    -------
    >>> emb = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    >>> intra_identity_cosines(emb, ["a", "a", "b", "b"]).round(4).tolist()
    [0.7071, 1.0]
    """
    x = _numpy(embeddings)
    ids = np.asarray(list(identities))
    if x.ndim != 2 or x.shape[0] != ids.shape[0]:
        raise ValueError(
            f"embeddings {x.shape} and identities ({ids.shape[0]}) do not match"
        )
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(x)):
        raise ValueError("embeddings must be finite and non-zero")
    x = x / norms
    rng = np.random.default_rng(seed)
    out = []
    for ident in np.unique(ids):
        rows = np.flatnonzero(ids == ident)
        if max_per_identity is not None and rows.size > max_per_identity:
            rows = np.sort(rng.choice(rows, max_per_identity, replace=False))
        if rows.size < 2:
            continue
        sim = x[rows] @ x[rows].T
        out.append(sim[np.triu_indices(rows.size, k=1)])
    return np.concatenate(out) if out else np.zeros(0)


def summarize_cosines(groups):
    """Mean, standard deviation, median and count of each group's cosines.

    Arguments
    ---------
    groups : dict
        ``name -> 1-D array`` of cosines.

    Returns
    -------
    dict
        ``name -> {"mean", "std", "median", "n"}`` (``None`` statistics
        for an empty group).

    Example
    -------
    >>> summarize_cosines({"real": np.array([0.5, 0.7])})["real"]["mean"]
    0.6
    """
    out = {}
    for name, values in groups.items():
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            out[name] = {"mean": None, "std": None, "median": None, "n": 0}
            continue
        out[name] = {
            "mean": round(float(v.mean()), 6),
            "std": round(float(v.std()), 6),
            "median": round(float(np.median(v)), 6),
            "n": int(v.size),
        }
    return out


def plot_intra_identity(groups, path, title=None, bins=50):
    """Overlaid density histograms of same-identity cosines (Fig. 4-like).

    Arguments
    ---------
    groups : dict
        ``name -> 1-D array`` of cosines (e.g. ``"real"``, ``"INSIDE-NN"``).
    path : str
        Output PNG (written atomically).
    title : str | None
        Figure title.
    bins : int
        Histogram bins over the common range.

    Returns
    -------
    dict
        :func:`summarize_cosines` of the groups.

    Example
    -------
    >>> import os
    >>> rng = np.random.default_rng(0)
    >>> p = os.path.join(getfixture("tmpdir"), "intra.png")
    >>> s = plot_intra_identity({"real": rng.uniform(0.2, 0.8, 50),
    ...                          "synthetic": rng.uniform(0.6, 0.9, 50)}, p)
    >>> os.path.isfile(p), s["real"]["n"]
    (True, 50)
    """
    nonempty = {k: np.asarray(v) for k, v in groups.items() if len(v)}
    if not nonempty:
        raise ValueError("plot_intra_identity: every group is empty")
    lo = min(float(v.min()) for v in nonempty.values())
    hi = max(float(v.max()) for v in nonempty.values())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, bins + 1)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    for name, v in nonempty.items():
        ax.hist(
            v,
            bins=edges,
            density=True,
            histtype="step",
            linewidth=1.5,
            label=f"{name} (mean {v.mean():.3f}, n={v.size})",
        )
    ax.set_xlabel("cosine similarity of two utterances of one identity")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title or "Same-identity cosine similarity")
    save_figure(fig, path)
    return summarize_cosines(groups)


def plot_identity_map(groups, path, max_points=1500, seed=0, title=None):
    """t-SNE of speaker-level embeddings, coloured by group (real speakers,
    INSIDE-NN and INSIDE-Syn identities).

    Arguments
    ---------
    groups : dict
        ``name -> [N_g, D]`` embeddings (speaker means or d-vectors).
    path : str
        Output PNG.
    max_points : int
        Subsample size of the map.
    seed : int
        Seed of the subsample and of t-SNE.
    title : str | None
        Figure title.

    Returns
    -------
    numpy.ndarray
        ``[n, 2]`` coordinates.

    Example
    -------
    >>> import os
    >>> rng = np.random.default_rng(0)
    >>> p = os.path.join(getfixture("tmpdir"), "map.png")
    >>> plot_identity_map({"real": rng.normal(size=(20, 4)),
    ...                    "INSIDE-NN": rng.normal(size=(10, 4))}, p).shape
    (30, 2)
    """
    names, rows = [], []
    for name, emb in groups.items():
        x = _numpy(emb)
        if x.ndim != 2 or x.shape[0] == 0:
            continue
        rows.append(x)
        names += [name] * x.shape[0]
    if not rows:
        raise ValueError("plot_identity_map: no embeddings")
    return plot_tsne(
        np.concatenate(rows),
        names,
        path,
        max_points=max_points,
        seed=seed,
        max_iter=500,
        title=title or "Real and synthetic identities (t-SNE)",
    )
