"""Classical clustering baselines behind one interface (Table 4), and chunked
nearest-centroid assignment.

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition", Appendix H (Table 4). Every method is
scikit-learn's; :func:`cluster` adds input scaling (l2 per sample, the
paper's "l2Norm" rows, or per-feature standardisation, its default), seeds,
fitting on a random subsample with chunked assignment of all points, and
refuses configurations that cannot run at the requested size instead of
exhausting memory.

Scale
-----
With ``N = 1M`` 400-dim i-vectors and ``K = 10k`` clusters:

* ``kmeans`` / ``minibatch_kmeans``: scikit-learn works in chunks; memory is
  ``O(N D + K D)``. ``minibatch_kmeans`` is the one that finishes in hours
  on CPUs.
* ``gmm_*`` / ``bayesian_gmm``: EM needs an ``N x K`` responsibility matrix
  (80 GB here) and full covariances ``K D^2`` (12.8 GB): fit on a subsample
  (``fit_size``); all points are then assigned in chunks. Refused when the
  estimate exceeds ``max_memory_gb``.
* ``ahc`` (Ward) and ``spectral`` are ``O(N^2)`` in memory: refused above
  :data:`QUADRATIC_MAX_N` points unless ``fit_size`` is given, in which case
  the subsample is clustered and every point goes to the nearest centroid
  of the subsample's clusters (:func:`assign_chunked`).
* ``faiss_kmeans``: faiss' Lloyd k-means (the optional ``faiss`` extra),
  what large-scale users reach for: random initial centres instead of
  k-means++ (whose 10k sequential seeding steps dominate scikit-learn's
  cost at this size), BLAS distance blocks, and at most
  ``max_points_per_centroid`` points per centre sampled for the fit;
  every point is then assigned.
* ``birch`` builds its CF-tree in one pass; its global step clusters the
  subclusters with AHC, so the number of subclusters (set by ``threshold``)
  must stay moderate.

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np
import torch
from sklearn import cluster as skc, mixture as skmix

__all__ = [
    "METHODS", "QUADRATIC_MAX_N", "FaissKMeans", "assign_chunked", "cluster",
]  # fmt: skip

METHODS = (
    "kmeans", "minibatch_kmeans", "faiss_kmeans", "gmm_full", "gmm_diag",
    "bayesian_gmm", "ahc", "birch", "spectral",
)  # fmt: skip

# Above this many points AHC (condensed distance matrix, N^2/2 float64:
# 1.6 GB at 20k) and spectral clustering are refused without ``fit_size``.
QUADRATIC_MAX_N = 20_000

_QUADRATIC = ("ahc", "spectral")
_GMM = ("gmm_full", "gmm_diag", "bayesian_gmm")


def _as_numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@torch.no_grad()
def assign_chunked(features, centroids, chunk=4096, metric="euclidean"):
    """Nearest centroid of every point, ``chunk`` points at a time, so the
    largest temporary is ``chunk x K`` (4096 x 10k floats = 160 MB) instead
    of ``N x K``.

    Arguments
    ---------
    features : numpy.ndarray | torch.Tensor
        ``[N, D]`` points (torch tensors stay on their device, e.g. a GPU).
    centroids : numpy.ndarray | torch.Tensor
        ``[K, D]``.
    chunk : int
        Points per chunk.
    metric : str
        ``"euclidean"`` (argmin of ``||c||^2 - 2 x.c``) or ``"cosine"``
        (argmax of the cosine).

    Returns
    -------
    numpy.ndarray | torch.Tensor
        ``[N]`` int64 labels, numpy when ``features`` is numpy.

    Example
    -------
    >>> x = np.array([[0.0, 0.1], [5.0, 5.0], [0.2, 0.0]])
    >>> assign_chunked(x, np.array([[5.0, 5.0], [0.0, 0.0]]), chunk=2)
    array([1, 0, 1])
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(
            f"metric must be 'euclidean' or 'cosine', got {metric!r}"
        )
    as_numpy = not isinstance(features, torch.Tensor)
    x = torch.as_tensor(_as_numpy(features)) if as_numpy else features
    c = torch.as_tensor(_as_numpy(centroids)).to(device=x.device)
    dtype = torch.promote_types(x.dtype, c.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    c = c.to(dtype)
    if x.dim() != 2 or c.dim() != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(
            f"expected features [N, D] and centroids [K, D]; got "
            f"{tuple(x.shape)} and {tuple(c.shape)}"
        )
    if metric == "cosine":
        c = torch.nn.functional.normalize(c, dim=1)
    c_sq = (c * c).sum(dim=1)
    out = []
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk].to(dtype)
        if metric == "cosine":
            out.append((xb @ c.t()).argmax(dim=1))
        else:
            out.append((c_sq - 2.0 * (xb @ c.t())).argmin(dim=1))
    labels = torch.cat(out) if out else torch.empty(0, dtype=torch.long)
    return labels.cpu().numpy() if as_numpy else labels


def _scale(x, l2_normalize, standardize):
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=True)
    if standardize:
        std = x.std(axis=0)
        x -= x.mean(axis=0)
        x /= np.where(std > 0, std, 1.0)
    if l2_normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x /= np.where(norms > 0, norms, 1.0)
    return x


def _centroids(x, labels):
    k = int(labels.max()) + 1
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k)
    keep = counts > 0
    return sums[keep] / counts[keep, None]


class FaissKMeans:
    """scikit-learn-style wrapper (``fit_predict``, ``predict``) of
    ``faiss.Kmeans``, so :func:`cluster` treats it like the other
    estimators. Written here because faiss has no such interface; the
    clustering itself is faiss'.

    Arguments
    ---------
    n_clusters : int
        ``K``.
    random_state : int
        faiss' seed (initial centres, subsampling).
    niter : int
        Lloyd iterations.
    nredo : int
        Restarts (the best objective is kept).
    max_points_per_centroid : int
        faiss subsamples the fit to ``K *`` this many points (its default
        256).
    gpu : bool
        Run on the GPUs faiss sees (needs a faiss GPU build).
    verbose : bool
        faiss' per-iteration log.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    >>> labels = FaissKMeans(2).fit_predict(x)
    >>> len(set(labels[:20])), len(set(labels[20:]))
    (1, 1)
    """

    def __init__(
        self,
        n_clusters,
        random_state=0,
        niter=20,
        nredo=1,
        max_points_per_centroid=256,
        gpu=False,
        verbose=False,
    ):
        try:
            # optional dependency: faiss (speechbrain-ssv[faiss])
            import faiss
        except ImportError:
            raise ImportError(
                "clustering method 'faiss_kmeans' needs faiss: "
                "pip install 'speechbrain-ssv[faiss]'"
            ) from None
        self._faiss = faiss
        self.n_clusters = int(n_clusters)
        self.opts = {
            "niter": int(niter),
            "nredo": int(nredo),
            "seed": int(random_state),
            "max_points_per_centroid": int(max_points_per_centroid),
            "gpu": bool(gpu),
            "verbose": bool(verbose),
        }
        self.kmeans = None

    def fit(self, x):
        """Train the centres on ``x`` (``[N, D]``); returns ``self``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.kmeans = self._faiss.Kmeans(
            x.shape[1], self.n_clusters, **self.opts
        )
        self.kmeans.train(x)
        return self

    def predict(self, x):
        """Nearest centre of every row of ``x``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        _, idx = self.kmeans.index.search(x, 1)
        return idx.reshape(-1).astype(np.int64)

    def fit_predict(self, x):
        """:meth:`fit`, then :meth:`predict` on the same points."""
        return self.fit(x).predict(x)


def _make_model(method, n_clusters, seed, n_fit, dim, max_memory_gb, kwargs):
    if method == "faiss_kmeans":
        return FaissKMeans(n_clusters, random_state=seed, **kwargs)
    if method == "kmeans":
        opts = {"n_init": 1, "algorithm": "lloyd", **kwargs}
        return skc.KMeans(n_clusters, random_state=seed, **opts)
    if method == "minibatch_kmeans":
        opts = {"batch_size": 4096, "n_init": 3, **kwargs}
        return skc.MiniBatchKMeans(n_clusters, random_state=seed, **opts)
    if method in _GMM:
        cov = kwargs.pop(
            "covariance_type", "diag" if method == "gmm_diag" else "full"
        )
        # Responsibilities and log-probabilities (N x K, a few copies) plus
        # the covariances and their Cholesky factors.
        per_comp = {"full": dim * dim, "diag": dim, "tied": 0, "spherical": 1}
        need = 8.0 * (
            3 * n_fit * n_clusters
            + 2 * n_clusters * per_comp.get(cov, dim * dim)
        )
        if need > max_memory_gb * 2**30:
            raise ValueError(
                f"{method} on {n_fit} points x {n_clusters} components "
                f"({cov} covariances) needs about {need / 2**30:.1f} GB, over "
                f"max_memory_gb={max_memory_gb}: pass fit_size=<a subsample "
                "size> (all points are then assigned in chunks), "
                "covariance_type='diag', or use 'minibatch_kmeans'"
            )
        if method == "bayesian_gmm":
            # Table 4: weight concentration gamma = 1e-5, mean precision 1.
            opts = {
                "weight_concentration_prior": 1e-5,
                "mean_precision_prior": 1.0,
                "max_iter": 200,
                **kwargs,
            }
            return skmix.BayesianGaussianMixture(
                n_components=n_clusters,
                covariance_type=cov,
                random_state=seed,
                **opts,
            )
        return skmix.GaussianMixture(
            n_clusters, covariance_type=cov, random_state=seed, **kwargs
        )
    if method == "ahc":
        opts = {"linkage": "ward", **kwargs}
        return skc.AgglomerativeClustering(n_clusters, **opts)
    if method == "birch":
        opts = {"threshold": 0.5, "branching_factor": 50, **kwargs}
        return skc.Birch(n_clusters=n_clusters, **opts)
    if method == "spectral":
        opts = {
            "affinity": "nearest_neighbors",
            "n_neighbors": 10,
            "assign_labels": "cluster_qr",
            **kwargs,
        }
        return skc.SpectralClustering(n_clusters, random_state=seed, **opts)
    raise AssertionError(method)


def cluster(
    features,
    method,
    n_clusters,
    seed=0,
    l2_normalize=False,
    standardize=False,
    fit_size=None,
    chunk=4096,
    max_memory_gb=16.0,
    **kwargs,
):
    """Cluster ``features`` with a classical baseline and return one label
    per point.

    Arguments
    ---------
    features : array-like
        ``[N, D]`` (numpy or torch).
    method : str
        One of :data:`METHODS`: ``kmeans``, ``minibatch_kmeans``,
        ``faiss_kmeans`` (the ``faiss`` extra), ``gmm_full``, ``gmm_diag``, ``bayesian_gmm`` (Table 4:
        ``gamma = 1e-5, mu = 1``, full covariances), ``ahc`` (Ward),
        ``birch``, ``spectral`` (kNN affinity).
    n_clusters : int
        ``K`` (the paper's baselines: 5000).
    seed : int
        Random state of the method and of the subsample.
    l2_normalize : bool
        Scale each point to unit l2 norm (the paper's "l2Norm" rows); applied
        after ``standardize`` when both are set.
    standardize : bool
        Zero-mean unit-variance features (scikit-learn's ``StandardScaler``,
        the paper's default preprocessing).
    fit_size : int | None
        Fit on this many random points, then assign every point: with the
        model's ``predict`` in chunks when it has one, else to the nearest
        centroid of the fitted clusters (:func:`assign_chunked`).
    chunk : int
        Points per assignment chunk.
    max_memory_gb : float
        Refuse GMM configurations whose estimated memory is larger.
    **kwargs
        Passed to the scikit-learn estimator (overriding the defaults here).

    Returns
    -------
    numpy.ndarray
        ``[N]`` int64 labels in ``[0, K)``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    >>> labels = cluster(x, "kmeans", 2)
    >>> len(set(labels[:20])), len(set(labels[20:])), bool(labels[0] != labels[-1])
    (1, 1, True)
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown clustering method {method!r}; expected one of {', '.join(METHODS)}"
        )
    x = _as_numpy(features)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D]; got shape {x.shape}")
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(
            f"n_clusters={n_clusters} must lie in [1, {n}] (the number of points)"
        )
    x = _scale(x, l2_normalize, standardize)
    fit_idx = None
    if fit_size is not None and fit_size < n:
        if fit_size < n_clusters:
            raise ValueError(
                f"fit_size={fit_size} is smaller than n_clusters={n_clusters}"
            )
        rng = np.random.default_rng(seed)
        fit_idx = np.sort(rng.choice(n, size=fit_size, replace=False))
    x_fit = x if fit_idx is None else x[fit_idx]
    if method in _QUADRATIC and x_fit.shape[0] > QUADRATIC_MAX_N:
        raise ValueError(
            f"{method} is quadratic in the number of points and refuses "
            f"{x_fit.shape[0]} > {QUADRATIC_MAX_N} points: pass "
            f"fit_size<={QUADRATIC_MAX_N} (cluster a subsample, then assign "
            "every point to the nearest cluster centroid), or use "
            "'minibatch_kmeans', 'birch' or 'gmm_diag'"
        )
    model = _make_model(
        method,
        n_clusters,
        seed,
        x_fit.shape[0],
        x.shape[1],
        max_memory_gb,
        dict(kwargs),
    )
    fit_labels = np.asarray(model.fit_predict(x_fit), dtype=np.int64)
    if fit_idx is None:
        labels = fit_labels
    elif hasattr(model, "predict"):
        labels = np.concatenate(
            [
                np.asarray(model.predict(x[i : i + chunk]), dtype=np.int64)
                for i in range(0, n, chunk)
            ]
        )
    else:
        _, fit_labels = np.unique(fit_labels, return_inverse=True)
        labels = assign_chunked(x, _centroids(x_fit, fit_labels), chunk=chunk)
    # Compact to 0..K'-1 (Birch/GMM may leave components empty).
    _, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(-1).astype(np.int64)
