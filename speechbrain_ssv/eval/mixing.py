"""Analysis of i-mix and l-mix samples (paper Figs. 5 and 6) and VAE
reconstruction plots.

Kang, Alam and Fathan (AAAI 2022 workshop) compare, for pairs of training
MFCC segments ``X1, X2`` and one ``lam``, the input mixture ``lam X1 + (1 -
lam) X2`` (i-mix) with the decoded mixture of VAE latent means (l-mix,
Eq. 6), by the Euclidean distance of each sample from the line through
``X1`` and ``X2`` in the "supervector" space of concatenated frames (Fig. 6):
i-mix samples lie on that line by construction, l-mix samples need not.

Figures are drawn on matplotlib's Agg canvas (no pyplot, no display) and
written atomically, as in :mod:`speechbrain_ssv.eval.plots`.

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from speechbrain_ssv.eval.plots import save_figure

__all__ = [
    "distance_from_line",
    "distance_summary",
    "plot_line_distances",
    "plot_mixtures",
    "plot_reconstructions",
]


def _as_image(x):
    """``[time, feats]`` tensor/array -> ``[feats, time]`` numpy for imshow."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"expected one [time, feats] feature matrix, got shape {x.shape}"
        )
    return x.T


def distance_from_line(p, a, b, eps=1e-12):
    """Euclidean distance of ``p`` from the line through ``a`` and ``b``
    (Fig. 6), batched over leading dimensions.

    With ``d = b - a`` and ``t = <p - a, d> / <d, d>`` the distance is
    ``||p - a - t d||``; when ``a == b`` the "line" is the point ``a`` and
    the distance is ``||p - a||``. Computed in float64, so that a point on
    the line (an i-mix sample) gives ~0 rather than float32 round-off.

    Arguments
    ---------
    p, a, b : torch.Tensor
        ``[..., D]`` vectors (flatten an MFCC matrix ``[..., T, F]`` to its
        supervector first: ``x.flatten(-2)``); shapes broadcast.
    eps : float
        ``<d, d>`` below this counts as ``a == b``.

    Returns
    -------
    torch.Tensor
        ``[...]`` float64 distances.

    Example
    -------
    >>> a = torch.tensor([0.0, 0.0]); b = torch.tensor([2.0, 0.0])
    >>> distance_from_line(torch.tensor([[5.0, 3.0], [1.0, 0.0]]), a, b)
    tensor([3., 0.], dtype=torch.float64)
    >>> distance_from_line(torch.tensor([3.0, 4.0]), a, a)
    tensor(5., dtype=torch.float64)
    """
    p, a, b = (torch.as_tensor(t).to(torch.float64) for t in (p, a, b))
    d = b - a
    v = p - a
    dd = (d * d).sum(-1, keepdim=True)
    degenerate = dd <= eps
    t = (v * d).sum(-1, keepdim=True) / torch.where(degenerate, 1.0, dd)
    t = torch.where(degenerate, 0.0, t)
    return torch.linalg.vector_norm(v - t * d, dim=-1)


def distance_summary(d_imix, d_lmix):
    """Mean and median distances of i-mix and l-mix samples (Fig. 6 in
    numbers).

    Arguments
    ---------
    d_imix, d_lmix : array-like
        ``[n_pairs]`` distances from :func:`distance_from_line`.

    Returns
    -------
    dict
        ``n_pairs``, ``imix_mean``, ``imix_median``, ``lmix_mean``,
        ``lmix_median`` (floats) and ``lmix_farther_fraction``: the share of
        pairs whose l-mix sample is farther from the line than its i-mix one.

    Example
    -------
    >>> s = distance_summary([0.0, 0.0, 0.1], [1.0, 3.0, 2.0])
    >>> s["imix_median"], s["lmix_median"], s["lmix_farther_fraction"]
    (0.0, 2.0, 1.0)
    """
    di = np.asarray(_to_numpy(d_imix), dtype=np.float64).ravel()
    dl = np.asarray(_to_numpy(d_lmix), dtype=np.float64).ravel()
    if di.shape != dl.shape or di.size == 0:
        raise ValueError(
            f"expected two equally long non-empty distance lists, got "
            f"{di.size} i-mix and {dl.size} l-mix"
        )
    return {
        "n_pairs": int(di.size),
        "imix_mean": float(di.mean()),
        "imix_median": float(np.median(di)),
        "lmix_mean": float(dl.mean()),
        "lmix_median": float(np.median(dl)),
        "lmix_farther_fraction": float((dl > di).mean()),
    }


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


def plot_mixtures(x1, x2, x_imix, x_lmix, lam, path, title=None):
    """Fig. 5: the MFCCs of two segments and of their i-mix and l-mix
    samples at the same ``lam``, on one colour scale.

    Arguments
    ---------
    x1, x2 : torch.Tensor | numpy.ndarray
        ``[time, feats]`` original (normalised) features.
    x_imix : torch.Tensor | numpy.ndarray
        ``[time, feats]`` ``lam * x1 + (1 - lam) * x2``.
    x_lmix : torch.Tensor | numpy.ndarray
        ``[time, feats]`` decoded mixture of latent means.
    lam : float
        The mixing weight (shown in the titles).
    path : str
        Output PNG.
    title : str | None
        Figure title.

    Example
    -------
    >>> import os
    >>> x = torch.randn(4, 30, 12)
    >>> p = os.path.join(getfixture("tmpdir"), "fig5.png")
    >>> plot_mixtures(x[0], x[1], x[2], x[3], 0.5, p)
    >>> os.path.getsize(p) > 0
    True
    """
    lam = float(lam)
    panels = [
        ("$X_1$", x1),
        ("$X_2$", x2),
        (f"i-mix ($\\lambda$ = {lam:.4f})", x_imix),
        (f"l-mix ($\\lambda$ = {lam:.4f})", x_lmix),
    ]
    images = [_as_image(x) for _, x in panels]
    lim = max(float(np.percentile(np.abs(im), 99)) for im in images) or 1.0
    fig = Figure(figsize=(7, 8))
    axes = fig.subplots(4, 1, sharex=True)
    for ax, (name, _), im in zip(axes, panels, images):
        shown = ax.imshow(
            im, aspect="auto", origin="lower", cmap="viridis",
            vmin=-lim, vmax=lim, interpolation="nearest",
        )  # fmt: skip
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("coefficient")
    axes[-1].set_xlabel("frame")
    fig.colorbar(shown, ax=list(axes), shrink=0.6)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_line_distances(d_imix, d_lmix, path, title=None):
    """Fig. 6: distance of each pair's i-mix and l-mix sample from the line
    through the pair, per pair and as histograms.

    Arguments
    ---------
    d_imix, d_lmix : array-like
        ``[n_pairs]`` distances (same pairs and ``lam`` at each index).
    path : str
        Output PNG.
    title : str | None
        Figure title.

    Returns
    -------
    dict
        :func:`distance_summary` of the distances.

    Example
    -------
    >>> import os
    >>> p = os.path.join(getfixture("tmpdir"), "fig6.png")
    >>> plot_line_distances(np.zeros(20), np.arange(20.0), p)["lmix_median"]
    9.5
    """
    summary = distance_summary(d_imix, d_lmix)
    di = np.asarray(_to_numpy(d_imix), dtype=np.float64).ravel()
    dl = np.asarray(_to_numpy(d_lmix), dtype=np.float64).ravel()
    fig = Figure(figsize=(10, 4))
    ax_pairs, ax_hist = fig.subplots(1, 2, width_ratios=[2, 1])
    idx = np.arange(di.size)
    ax_pairs.plot(idx, di, "o", ms=3, label="i-mix")
    ax_pairs.plot(idx, dl, "s", ms=3, label="l-mix")
    ax_pairs.set_xlabel("pair")
    ax_pairs.set_ylabel("distance from the line $X_1 X_2$")
    ax_pairs.legend(fontsize=8)
    ax_pairs.grid(True, linewidth=0.3)
    edges = np.histogram_bin_edges(np.concatenate([di, dl]), bins=40)
    ax_hist.hist(di, bins=edges, alpha=0.6,
                 label=f"i-mix (median {summary['imix_median']:.3g})")  # fmt: skip
    ax_hist.hist(dl, bins=edges, alpha=0.6,
                 label=f"l-mix (median {summary['lmix_median']:.3g})")  # fmt: skip
    ax_hist.set_xlabel("distance")
    ax_hist.set_ylabel("pairs")
    ax_hist.legend(fontsize=8)
    fig.suptitle(
        title
        or f"Euclidean distance from the line between the originals "
        f"({summary['n_pairs']} pairs, MFCC supervectors)"
    )
    save_figure(fig, path)
    return summary


def plot_reconstructions(originals, reconstructions, path, title=None):
    """Originals beside their VAE reconstructions, one row per segment.

    Arguments
    ---------
    originals : torch.Tensor | numpy.ndarray
        ``[n, time, feats]`` input features.
    reconstructions : torch.Tensor | numpy.ndarray
        ``[n, time, feats]`` decoder outputs.
    path : str
        Output PNG.
    title : str | None
        Figure title.

    Example
    -------
    >>> import os
    >>> x = torch.randn(3, 30, 12)
    >>> p = os.path.join(getfixture("tmpdir"), "rec.png")
    >>> plot_reconstructions(x, 0.5 * x, p)
    >>> os.path.getsize(p) > 0
    True
    """
    originals = _to_numpy(originals)
    reconstructions = _to_numpy(reconstructions)
    if len(originals) != len(reconstructions) or len(originals) == 0:
        raise ValueError(
            f"expected as many reconstructions as originals (> 0), got "
            f"{len(reconstructions)} and {len(originals)}"
        )
    n = len(originals)
    pairs = [
        (_as_image(o), _as_image(r)) for o, r in zip(originals, reconstructions)
    ]
    fig = Figure(figsize=(9, 1.8 * n + 0.6))
    axes = np.asarray(fig.subplots(n, 2, sharex=True, squeeze=False))
    for row, (orig, rec) in enumerate(pairs):
        lim = float(np.percentile(np.abs(orig), 99)) or 1.0
        mse = float(np.mean((orig - rec) ** 2))
        for col, (im, name) in enumerate(
            ((orig, "original"), (rec, f"reconstruction (MSE {mse:.3f})"))
        ):
            ax = axes[row, col]
            ax.imshow(
                im, aspect="auto", origin="lower", cmap="viridis",
                vmin=-lim, vmax=lim, interpolation="nearest",
            )  # fmt: skip
            ax.set_title(name, fontsize=8)
            ax.set_yticks([])
    for ax in axes[-1]:
        ax.set_xlabel("frame")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
