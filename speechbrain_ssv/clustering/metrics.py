"""Clustering metrics of Appendix B, a JSON + Markdown report, and the
metrics-over-epochs figure (Fig. 3).

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition". Supervised metrics (against true
speakers): ACC (Hungarian), NMI, AMI, ARI, homogeneity, completeness, FMI,
purity. Unsupervised ones (need the features): silhouette, Calinski-Harabasz
(CHS), Davies-Bouldin (DBS). scikit-learn computes all but ACC and purity,
which come from a sparse contingency table here so that 1M labels in 10k
clusters against 6k speakers stay cheap.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import numpy as np
import scipy.sparse as sp
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from sklearn import metrics as skm
from sklearn.metrics.cluster import contingency_matrix

from speechbrain_ssv.utils.io import atomic_path, write_json, write_text

__all__ = [
    "METRIC_NAMES",
    "cluster_accuracy",
    "clustering_report",
    "contingency",
    "plot_metrics_over_epochs",
    "purity",
    "write_report",
]

# Order of the paper's tables.
METRIC_NAMES = (
    "acc", "ami", "nmi", "clusters_used", "completeness", "homogeneity",
    "fmi", "purity", "ari", "silhouette", "chs", "dbs",
)  # fmt: skip

# Above this many cells the dense Hungarian solver gives way to the sparse one.
_DENSE_CELLS = 4_000_000


def _labels(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    return x


def contingency(y_true, y_pred):
    """Sparse contingency table ``n[class, cluster]``.

    Arguments
    ---------
    y_true : array-like
        ``[N]`` class labels (any hashable values).
    y_pred : array-like
        ``[N]`` cluster labels.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``[n_classes, n_clusters]`` int64 counts (labels sorted).

    Example
    -------
    >>> contingency([0, 0, 1], [5, 7, 7]).toarray()
    array([[1, 1],
           [0, 1]])
    """
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred differ in length ({y_true.size} vs {y_pred.size})"
        )
    # sklearn builds the same sparse table its own metrics use; dtype is
    # pinned because its default has changed across versions.
    table = contingency_matrix(y_true, y_pred, sparse=True, dtype=np.int64)
    return sp.csr_matrix(table)


def _best_matching(table):
    """Total count of the maximum-weight one-to-one class/cluster matching."""
    r, c = table.shape
    if r * c <= _DENSE_CELLS:
        dense = table.toarray()
        rows, cols = linear_sum_assignment(dense, maximize=True)
        return int(dense[rows, cols].sum())
    # Sparse LAPJV needs a matching that covers every row, and non-zero
    # weights. Add one private dummy column per class (weight 1) and add 1 to
    # every real edge: each row is matched exactly once, so the +1 shifts
    # every full matching by the same constant r and the optimum is the
    # maximum matching of the real counts, unmatched classes scoring 0.
    coo = table.tocoo()
    data = np.concatenate([coo.data.astype(np.float64) + 1.0, np.ones(r)])
    ri = np.concatenate([coo.row, np.arange(r)])
    ci = np.concatenate([coo.col, c + np.arange(r)])
    graph = sp.csr_matrix((data, (ri, ci)), shape=(r, c + r))
    rows, cols = min_weight_full_bipartite_matching(graph, maximize=True)
    return int(round(float(np.asarray(graph[rows, cols]).sum()) - r))


def cluster_accuracy(y_true, y_pred):
    """Unsupervised clustering accuracy (Appendix B):
    ``ACC = max_m (1/N) sum_i 1{y_i = m(c_i)}`` over one-to-one maps ``m``
    between clusters and classes, found by the Hungarian algorithm on the
    contingency table.

    With more clusters than classes the extra clusters map to no class (their
    samples count as errors), and vice versa. Small tables use
    ``scipy.optimize.linear_sum_assignment``; larger ones the sparse
    ``min_weight_full_bipartite_matching`` on the non-zero cells only, so a
    10k x 10k problem never builds the dense table.

    Arguments
    ---------
    y_true : array-like
        ``[N]`` true labels.
    y_pred : array-like
        ``[N]`` cluster labels.

    Returns
    -------
    float
        In ``[0, 1]``.

    Example
    -------
    >>> cluster_accuracy([0, 0, 1, 1, 2], [2, 2, 0, 0, 1])  # relabelled, perfect
    1.0
    >>> cluster_accuracy([0, 0, 0, 1], [0, 1, 2, 3])  # 4 clusters, 2 classes
    0.5
    """
    table = contingency(y_true, y_pred)
    return _best_matching(table) / float(table.sum())


def purity(y_true, y_pred):
    """Purity (Appendix B): each cluster votes for its most frequent class;
    the fraction of samples in agreement.

    Arguments
    ---------
    y_true : array-like
        ``[N]`` true labels.
    y_pred : array-like
        ``[N]`` cluster labels.

    Returns
    -------
    float
        In ``(0, 1]``.

    Example
    -------
    >>> purity([0, 0, 1, 1], [0, 0, 0, 1])
    0.75
    """
    table = contingency(y_true, y_pred)
    return float(table.max(axis=0).toarray().sum()) / float(table.sum())


def _finite_or_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def clustering_report(
    y_true,
    y_pred,
    features=None,
    sample_size=10000,
    seed=0,
    ami=True,
):
    """All clustering metrics of Appendix B in one dict.

    The silhouette is quadratic in the number of points: it is computed on a
    random subsample of ``sample_size`` points (scikit-learn's
    ``sample_size``). CHS and DBS are linear in ``N`` and use every point
    (DBS builds a ``K x K`` centroid distance matrix: 800 MB at 10k
    clusters). AMI's expected-MI correction can take minutes with 10k x 10k
    labels; ``ami=False`` skips it.

    Arguments
    ---------
    y_true : array-like
        ``[N]`` true speaker labels.
    y_pred : array-like
        ``[N]`` cluster labels.
    features : array-like | None
        ``[N, D]`` clustered features; the unsupervised metrics are left out
        when ``None``.
    sample_size : int | None
        Silhouette subsample (``None``: all points).
    seed : int
        Seed of that subsample.
    ami : bool
        Compute AMI.

    Returns
    -------
    dict
        ``acc, nmi, ami, ari, homogeneity, completeness, fmi, purity,
        clusters_used, n_classes, n_samples`` and, with features,
        ``silhouette, chs, dbs`` (``None`` where undefined, e.g. a single
        cluster).

    Example
    -------
    >>> y = np.repeat([0, 1, 2], 10)
    >>> r = clustering_report(y, (y + 1) % 3)
    >>> r["acc"], r["nmi"], r["purity"], r["clusters_used"]
    (1.0, 1.0, 1.0, 3)
    """
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    table = contingency(y_true, y_pred)
    n = int(table.sum())
    h, c, v = skm.homogeneity_completeness_v_measure(y_true, y_pred)
    report = {
        "acc": _best_matching(table) / n,
        "nmi": float(skm.normalized_mutual_info_score(y_true, y_pred)),
        "ami": (
            float(skm.adjusted_mutual_info_score(y_true, y_pred))
            if ami
            else None
        ),
        "ari": float(skm.adjusted_rand_score(y_true, y_pred)),
        "homogeneity": float(h),
        "completeness": float(c),
        "fmi": float(skm.fowlkes_mallows_score(y_true, y_pred)),
        "purity": float(table.max(axis=0).toarray().sum()) / n,
        "clusters_used": int(table.shape[1]),
        "n_classes": int(table.shape[0]),
        "n_samples": n,
    }
    if features is not None:
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] != n:
            raise ValueError(
                f"features must be [N, D] with N = {n}; got shape {features.shape}"
            )
        k = report["clusters_used"]
        defined = 2 <= k <= n - 1
        sil = None
        if defined:
            m = None if sample_size is None or sample_size >= n else sample_size
            # The silhouette needs >= 2 clusters within the subsample too.
            try:
                sil = skm.silhouette_score(
                    features, y_pred, sample_size=m, random_state=seed
                )
            except ValueError:
                sil = None
        report["silhouette"] = None if sil is None else _finite_or_none(sil)
        report["chs"] = (
            _finite_or_none(skm.calinski_harabasz_score(features, y_pred))
            if defined
            else None
        )
        report["dbs"] = (
            _finite_or_none(skm.davies_bouldin_score(features, y_pred))
            if defined
            else None
        )
    return report


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.3f}"


def write_report(report, json_path, table_path=None):
    """Write a report (or several) as JSON and as a Markdown table, atomically.

    Arguments
    ---------
    report : dict
        One :func:`clustering_report` dict, or a name -> report dict (one
        table row per system, as Tables 1 and 4).
    json_path : str
        Destination of the JSON.
    table_path : str | None
        Destination of the Markdown table (skipped when ``None``).

    Returns
    -------
    str
        The Markdown table.

    Example
    -------
    >>> import os, json
    >>> tmp = getfixture("tmpdir")
    >>> y = [0, 0, 1, 1]
    >>> table = write_report({"kmeans": clustering_report(y, y)},
    ...                      os.path.join(tmp, "r.json"), os.path.join(tmp, "r.md"))
    >>> json.load(open(os.path.join(tmp, "r.json")))["kmeans"]["acc"]
    1.0
    >>> print(table.splitlines()[0])
    | system | ACC | AMI | NMI | Clusters used | Completeness | Homogeneity | FMI | Purity | ARI |
    """
    systems = (
        report
        if report and all(isinstance(v, dict) for v in report.values())
        else {"": report}
    )
    columns = [
        m
        for m in METRIC_NAMES
        if any(m in r and r[m] is not None for r in systems.values())
    ]
    titles = {
        "acc": "ACC", "ami": "AMI", "nmi": "NMI", "ari": "ARI", "fmi": "FMI",
        "chs": "CHS", "dbs": "DBS", "clusters_used": "Clusters used",
    }  # fmt: skip
    head = ["system"] + [titles.get(m, m.capitalize()) for m in columns]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for name, r in systems.items():
        cells = [name or "-"] + [_fmt(r.get(m)) for m in columns]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    write_json(json_path, report)
    if table_path is not None:
        write_text(table_path, table)
    return table


def plot_metrics_over_epochs(
    history,
    path,
    metrics=("acc", "ami", "nmi", "clusters_used"),
    title=None,
):
    """Clustering metrics against epochs, one panel per metric (Fig. 3).

    Arguments
    ---------
    history : list | dict
        A list of per-epoch report dicts (an ``"epoch"`` key is used as the
        x value when present, else 1, 2, ...), or name -> such list to
        compare systems (one line per system in every panel).
    path : str
        Output PNG (written atomically).
    metrics : sequence of str
        Keys to plot.
    title : str | None
        Figure title.

    Example
    -------
    >>> import os
    >>> hist = [{"epoch": e, "acc": 0.1 * e, "ami": 0.1, "nmi": 0.2, "clusters_used": 9}
    ...         for e in range(1, 4)]
    >>> p = os.path.join(getfixture("tmpdir"), "fig3.png")
    >>> plot_metrics_over_epochs({"IMSAT": hist}, p)
    >>> os.path.getsize(p) > 0
    True
    """
    systems = history if isinstance(history, dict) else {"": history}
    if not systems or not any(len(h) for h in systems.values()):
        raise ValueError(
            "history is empty: expected at least one epoch's report"
        )
    n = len(metrics)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.0 * cols, 3.4 * rows))
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, k + 1)
        for name, hist in systems.items():
            xs = [r.get("epoch", i + 1) for i, r in enumerate(hist)]
            ys = [np.nan if r.get(metric) is None else r[metric] for r in hist]
            ax.plot(xs, ys, marker="o", markersize=2.5, label=name or None)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(True, linewidth=0.3)
        if any(systems):
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
