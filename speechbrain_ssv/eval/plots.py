"""Verification plots: DET curves, score histograms and t-SNE maps.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so the
user's global backend is left alone and no display is needed) and written
atomically.

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from speechbrain_ssv.eval.metrics import det_curve, eer_mindcf
from speechbrain_ssv.utils.io import atomic_path

__all__ = ["plot_det", "plot_score_histogram", "plot_tsne", "save_figure"]

_DET_TICKS = [
    0.0001, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4,
    0.6,
]  # fmt: skip
# Above this many operating points a DET curve is thinned for drawing.
_MAX_DET_POINTS = 4000


def save_figure(fig, path):
    """Write ``fig`` to ``path`` as a PNG, atomically (a reader never sees a
    half-written plot), without pyplot's global state.

    Arguments
    ---------
    fig : matplotlib.figure.Figure
        The figure.
    path : str
        The ``.png`` file.

    Example
    -------
    >>> import os
    >>> fig = Figure(figsize=(2, 2)); _ = fig.add_subplot().plot([0, 1])
    >>> p = os.path.join(getfixture("tmpdir"), "f.png")
    >>> save_figure(fig, p); open(p, "rb").read(4)
    b'\x89PNG'
    """
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _thin(fpr, fnr):
    if fpr.size <= _MAX_DET_POINTS:
        return fpr, fnr
    # Keep points evenly spaced along the curve on probit axes, so the tails
    # (few points, most visible there) are not thinned away.
    x = norm.ppf(np.clip(fpr, 1e-6, 1 - 1e-6))
    y = norm.ppf(np.clip(fnr, 1e-6, 1 - 1e-6))
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    keep = np.searchsorted(arc, np.linspace(0, arc[-1], _MAX_DET_POINTS))
    keep = np.unique(np.concatenate([keep, [0, fpr.size - 1]]))
    return fpr[keep], fnr[keep]


def plot_det(curves, path, title=None):
    """DET curves on normal-deviate (probit) axes, with EER points marked.

    Arguments
    ---------
    curves : dict
        Name to ``(scores, labels)`` (labels 1 target, 0 non-target).
    path : str
        Output PNG.
    title : str | None
        Figure title.

    Returns
    -------
    dict
        Name to its EER (fraction).

    Example
    -------
    >>> import os
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([1, 0], 200)
    >>> s = rng.normal(size=400) + 2 * y
    >>> p = os.path.join(getfixture("tmpdir"), "det.png")
    >>> eers = plot_det({"sys": (s, y)}, p)
    >>> os.path.getsize(p) > 0, 0.1 < eers["sys"] < 0.25
    (True, True)
    """
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    eers = {}
    lo = 0.5
    for name, (scores, labels) in curves.items():
        fpr, fnr = det_curve(scores, labels)
        m = eer_mindcf(scores, labels, p_targets=())
        eers[name] = m["eer"]
        n_min = min(m["n_targets"], m["n_nontargets"])
        # Below a few errors out of n_min the curve is a staircase of noise.
        lo = min(lo, 5.0 / n_min)
        fpr, fnr = _thin(fpr, fnr)
        # Probabilities of 0 or 1 are at infinity on probit axes; clip them to
        # just outside the visible range so the curve runs off the frame.
        x = norm.ppf(np.clip(fpr, 1e-7, 1 - 1e-7))
        y = norm.ppf(np.clip(fnr, 1e-7, 1 - 1e-7))
        (line,) = ax.plot(x, y, label=f"{name} (EER {100 * m['eer']:.2f}%)")
        e = norm.ppf(np.clip(m["eer"], 1e-7, 1 - 1e-7))
        ax.plot([e], [e], "o", color=line.get_color())
    lo = max(t for t in _DET_TICKS if t <= max(lo, _DET_TICKS[0]))
    ticks = [t for t in _DET_TICKS if t >= lo]
    limits = norm.ppf([lo, 0.6])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(norm.ppf(ticks))
        axis.set_ticklabels([f"{100 * t:g}" for t in ticks])
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.plot(limits, limits, ":", color="0.6", linewidth=0.8)
    ax.set_xlabel("False acceptance rate (%)")
    ax.set_ylabel("False rejection rate (%)")
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    save_figure(fig, path)
    return eers


def plot_score_histogram(scores, labels, path, title=None, bins=100):
    """Histograms of target and non-target scores, with the EER threshold.

    Arguments
    ---------
    scores : array-like
        ``[N]`` trial scores.
    labels : array-like
        ``[N]`` 1 target, 0 non-target.
    path : str
        Output PNG.
    title : str | None
        Figure title.
    bins : int
        Number of bins (shared by both histograms).

    Example
    -------
    >>> import os
    >>> p = os.path.join(getfixture("tmpdir"), "hist.png")
    >>> plot_score_histogram([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], p)
    >>> os.path.getsize(p) > 0
    True
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    m = eer_mindcf(scores, labels, p_targets=())
    edges = np.histogram_bin_edges(scores, bins=bins)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(scores[~labels], bins=edges, density=True, alpha=0.6,
            label=f"non-target ({m['n_nontargets']})")  # fmt: skip
    ax.hist(scores[labels], bins=edges, density=True, alpha=0.6,
            label=f"target ({m['n_targets']})")  # fmt: skip
    ax.axvline(m["eer_threshold"], color="k", linestyle="--", linewidth=1,
               label=f"EER threshold (EER {100 * m['eer']:.2f}%)")  # fmt: skip
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    save_figure(fig, path)


def plot_tsne(
    embeddings, labels, path, max_points=1000, seed=0, title=None, max_iter=500
):
    """2-D t-SNE map of (L2-normalised) embeddings, coloured by label.

    Arguments
    ---------
    embeddings : torch.Tensor | numpy.ndarray
        ``[N, D]`` embeddings.
    labels : sequence
        ``[N]`` class of each embedding (e.g. speaker ids).
    path : str
        Output PNG.
    max_points : int
        Random subsample size above which points are dropped (t-SNE is
        quadratic-ish and a crowded map is unreadable).
    seed : int
        Seed of the subsample and of t-SNE.
    title : str | None
        Figure title.
    max_iter : int
        t-SNE optimisation steps (at least 250); 1000 points take about a
        minute on two busy CPU cores.

    Returns
    -------
    numpy.ndarray
        ``[n, 2]`` coordinates of the plotted points.

    Example
    -------
    >>> import os
    >>> rng = np.random.default_rng(0)
    >>> emb = rng.normal(size=(40, 8)) + np.repeat(np.eye(8)[:2] * 5, 20, 0)
    >>> p = os.path.join(getfixture("tmpdir"), "tsne.png")
    >>> plot_tsne(emb, ["a"] * 20 + ["b"] * 20, p, max_points=30, max_iter=250).shape
    (30, 2)
    """
    # lazy: sklearn.manifold adds ~0.15 s to `import speechbrain_ssv.eval`
    from sklearn.manifold import TSNE

    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().cpu().numpy()
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(list(labels))
    if x.ndim != 2 or x.shape[0] != labels.shape[0]:
        raise ValueError(
            f"embeddings {x.shape} and labels ({labels.shape[0]}) do not match"
        )
    if x.shape[0] < 3:
        raise ValueError("t-SNE needs at least 3 embeddings")
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_points:
        keep = np.sort(rng.choice(x.shape[0], max_points, replace=False))
        x, labels = x[keep], labels[keep]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = min(30.0, (x.shape[0] - 1) / 3.0)
    coords = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        random_state=seed,
        max_iter=max_iter,
        # Barnes-Hut only pays off for larger maps; exact is faster below.
        method="exact" if x.shape[0] <= 300 else "barnes_hut",
    ).fit_transform(x)
    classes, codes = np.unique(labels, return_inverse=True)
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot(1, 1, 1)
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    sc = ax.scatter(coords[:, 0], coords[:, 1], c=codes % 20, cmap=cmap, s=6)
    if len(classes) <= 20:
        handles, _ = sc.legend_elements(num=None)
        ax.legend(handles, [str(c) for c in classes], fontsize=6, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        title or f"t-SNE of {x.shape[0]} embeddings, {len(classes)} classes"
    )
    save_figure(fig, path)
    return coords
