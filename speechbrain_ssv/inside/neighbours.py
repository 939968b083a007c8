"""Cosine nearest neighbours of speaker embeddings, for INSIDE's pairing.

:func:`nearest_neighbours` is an exact chunked cosine top-k (memory
``O(chunk N)``, never ``N x N``), with an optional inverted-file
approximate mode for a million speakers on CPU, run by torch (also on a
GPU) or by faiss when it is installed. :func:`float_matrix` and
:func:`unit_rows` check and normalise the embeddings it (and
:func:`~speechbrain_ssv.inside.pairing.speaker_means`) is given.

Authors
 * speechbrain-ssv developers 2026
"""

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from speechbrain_ssv.utils.errors import SSVInputError

__all__ = [
    "FAISS_HINT",
    "float_matrix",
    "nearest_neighbours",
    "unit_rows",
]

logger = logging.getLogger(__name__)

# Score-matrix elements per chunk in exact search (64M floats = 256 MB).
_CHUNK_ELEMENTS = 1 << 26


def float_matrix(x, name):
    """``x`` as a 2-D floating-point tensor (detached; integers are cast to
    the default dtype).

    Arguments
    ---------
    x : torch.Tensor | numpy.ndarray | sequence
        ``[N, D]`` embeddings.
    name : str
        Named in the error.

    Returns
    -------
    torch.Tensor
        ``[N, D]`` floating-point tensor.

    Example
    -------
    >>> float_matrix([[1, 0], [0, 2]], "emb").dtype
    torch.float32
    """
    if isinstance(x, torch.Tensor):
        x = x.detach()
    else:
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 2:
        raise SSVInputError(
            name, f"has shape {tuple(x.shape)}; expected [N, D] embeddings"
        )
    if not x.dtype.is_floating_point:
        x = x.to(torch.get_default_dtype())
    return x


def unit_rows(x, name, labels=None):
    """Rows of ``x`` divided by their l2 norms; zero or non-finite rows are
    an error.

    Arguments
    ---------
    x : torch.Tensor
        ``[N, D]`` floating-point rows.
    name : str
        Named in the error.
    labels : sequence | None
        Row labels shown in the error (e.g. speaker ids).

    Returns
    -------
    torch.Tensor
        ``[N, D]`` unit-norm rows.

    Example
    -------
    >>> unit_rows(torch.tensor([[3.0, 4.0]]), "emb")
    tensor([[0.6000, 0.8000]])
    """
    # Not F.normalize: the norms are needed for the check anyway, and its
    # eps would silently rescale (not reject) vectors shorter than 1e-12.
    norm = x.norm(dim=1, keepdim=True)
    bad = ~torch.isfinite(norm.squeeze(1)) | (norm.squeeze(1) == 0)
    if bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)[:5].tolist()
        which = rows if labels is None else [(r, labels[r]) for r in rows]
        raise SSVInputError(
            name,
            f"{int(bad.sum())} rows are zero or non-finite (first: {which}); "
            "expected finite non-zero embeddings (silent clips give NaN "
            "YourTTS embeddings: filter them out)",
        )
    return x / norm


def _sort_rows(vals, idx):
    """Order each row by decreasing value, lower index first on ties."""
    by_idx = idx.argsort(dim=1)
    vals, idx = vals.gather(1, by_idx), idx.gather(1, by_idx)
    order = vals.argsort(dim=1, descending=True, stable=True)
    return vals.gather(1, order), idx.gather(1, order)


def _topk_ties(scores, k):
    """Row-wise top-k with ties at the cut resolved towards lower indices.

    ``torch.topk`` picks arbitrarily among values equal to the k-th one. One
    extra value tells which rows have such a tie (rare: duplicated
    embeddings); only those are redone exactly.
    """
    width = min(k + 1, scores.shape[1])
    vals, idx = scores.topk(width, dim=1)
    if width > k:
        tied = torch.nonzero(vals[:, k] == vals[:, k - 1]).reshape(-1)
        vals, idx = vals[:, :k].clone(), idx[:, :k].clone()
        for r in tied.tolist():
            kth = vals[r, k - 1]
            cand = torch.nonzero(scores[r] >= kth).reshape(-1)
            order = scores[r, cand].argsort(descending=True, stable=True)
            idx[r] = cand[order[:k]]
            vals[r] = scores[r, idx[r]]
    return _sort_rows(vals, idx)


def _exact_search(x, k, queries, chunk_size, exclude_self):
    n = x.shape[0]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // n)
    out_v = torch.empty(len(queries), k)
    out_i = torch.empty(len(queries), k, dtype=torch.long)
    for start in range(0, len(queries), chunk_size):
        q = queries[start : start + chunk_size]
        scores = x[q.to(x.device)] @ x.T
        if exclude_self:
            rows = torch.arange(len(q), device=x.device)
            scores[rows, q.to(x.device)] = -math.inf
        v, i = _topk_ties(scores, k)
        out_v[start : start + len(q)] = v.cpu()
        out_i[start : start + len(q)] = i.cpu()
    return out_i, out_v


def _spherical_kmeans(x, n_clusters, rng, iterations=10):
    """Lloyd iterations on the unit sphere (cosine k-means), from distinct
    random points as initial centroids.

    A coarse partition suffices for the index: probing several lists makes
    up for imperfect centroids. k-means++ seeding was tried and dropped:
    its ``n_clusters`` sequential passes cost more than the whole search.
    """
    n = x.shape[0]
    init = np.sort(rng.choice(n, size=n_clusters, replace=False))
    cent = x[torch.as_tensor(init).to(x.device)].clone()
    step = max(1, _CHUNK_ELEMENTS // n_clusters)
    for _ in range(iterations):
        labels = torch.cat(
            [(x[s : s + step] @ cent.T).argmax(1) for s in range(0, n, step)]
        )
        sums = torch.zeros_like(cent).index_add_(0, labels, x)
        # An emptied list keeps its old centroid.
        filled = (sums != 0).any(dim=1, keepdim=True)
        cent = torch.where(filled, F.normalize(sums, dim=1), cent)
    return cent


def _ivf_search(
    x, k, queries, chunk_size, exclude_self, n_lists, n_probe, train_size, seed
):
    """Inverted-file search: k-means lists; each query scans the
    ``n_probe`` lists whose centroids are closest to it."""
    n, dim = x.shape
    device = x.device
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(n, size=min(n, train_size), replace=False))
    cent = _spherical_kmeans(x[torch.as_tensor(train).to(device)], n_lists, rng)
    # Probes of every point; the first (closest centroid) is its list.
    step = max(1, _CHUNK_ELEMENTS // n_lists)
    probes = torch.cat(
        [
            (x[s : s + step] @ cent.T).topk(n_probe, dim=1)[1].cpu()
            for s in range(0, n, step)
        ]
    )
    assign = probes[:, 0].contiguous()
    probes = probes[queries]
    # Rows sorted by list: each list is a contiguous slice of ``xs``.
    perm = assign.argsort(stable=True)
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(n)
    start = torch.zeros(n_lists + 1, dtype=torch.long)
    start[1:] = torch.bincount(assign, minlength=n_lists).cumsum(0)
    xs = x[perm.to(device)]
    # Work list by list: the queries probing a list are gathered into one
    # block and multiplied by the list's (contiguous) rows, so there is one
    # product per list rather than one per (query, probe) pair.
    flat_list = probes.reshape(-1)
    flat_row = torch.arange(len(queries)).repeat_interleave(n_probe)
    order = flat_list.argsort(stable=True)
    flat_row = flat_row[order]
    q_start = torch.zeros(n_lists + 1, dtype=torch.long)
    q_start[1:] = torch.bincount(flat_list, minlength=n_lists).cumsum(0)
    q_pos = rank[queries]
    q_list = assign[queries]

    best_v = torch.full((len(queries), k), -math.inf)
    best_i = torch.full((len(queries), k), -1, dtype=torch.long)
    budget = chunk_size * n if chunk_size else _CHUNK_ELEMENTS
    sizes = (start[1:] - start[:-1]).clamp_min(1)
    most = int(((q_start[1:] - q_start[:-1]).clamp_max(budget // sizes)).max())
    # Reused buffers: a fresh multi-megabyte tensor per list is page-faulted
    # in every time, which costs as much as the products.
    q_buf = torch.empty(max(most, 1), dim, dtype=x.dtype, device=device)
    score_buf = torch.empty(budget, dtype=x.dtype, device=device)
    for lst in torch.nonzero(q_start[1:] > q_start[:-1]).reshape(-1).tolist():
        a, b = int(start[lst]), int(start[lst + 1])
        if b == a:
            continue
        rows = flat_row[q_start[lst] : q_start[lst + 1]]
        step_q = max(1, min(budget // (b - a), len(q_buf)))
        width = min(k, b - a)
        for s in range(0, len(rows), step_q):
            r = rows[s : s + step_q]
            pos = q_pos[r]
            # index_select, not fancy indexing or torch.cat: on CPU it was
            # ten times faster for this copy.
            xq = torch.index_select(xs, 0, pos.to(device), out=q_buf[: len(r)])
            scores = score_buf[: len(r) * (b - a)].view(len(r), b - a)
            torch.mm(xq, xs[a:b].T, out=scores)
            if exclude_self:
                mine = torch.nonzero(q_list[r] == lst).reshape(-1)
                if len(mine):
                    scores[
                        mine.to(device), (pos[mine] - a).to(device)
                    ] = -math.inf
            v, c = scores.topk(width, dim=1)
            # Merge with the best found in the lists scanned before.
            cv = torch.cat([best_v[r], v.cpu()], dim=1)
            ci = torch.cat([best_i[r], perm[c.cpu() + a]], dim=1)
            top_v, sel = cv.topk(k, dim=1)
            best_v[r] = top_v
            best_i[r] = ci.gather(1, sel)
    # Queries whose probed lists held fewer than k other points (tiny
    # lists) are searched exactly, so every row has k true candidates.
    short = torch.nonzero(~torch.isfinite(best_v).all(dim=1)).reshape(-1)
    if len(short):
        logger.debug("%d queries searched exactly (short lists)", len(short))
        i, v = _exact_search(x, k, queries[short], chunk_size, exclude_self)
        best_i[short], best_v[short] = i, v
    best_v, best_i = _sort_rows(best_v, best_i)
    return best_i, best_v


FAISS_HINT = 'pip install "speechbrain-ssv[faiss]"'
_BACKENDS = ("auto", "faiss", "torch")


def _import_faiss():
    """The faiss module, or ``None`` when it is not installed."""
    try:
        # optional dependency: faiss (speechbrain-ssv[faiss])
        import faiss
    except ImportError:
        return None
    return faiss


def _pick_backend(backend, mode, device):
    """``"faiss"`` or ``"torch"`` for this search."""
    if backend not in _BACKENDS:
        raise SSVInputError(
            "backend", f"is {backend!r}; expected one of {list(_BACKENDS)}"
        )
    if backend == "torch":
        return "torch"
    faiss = _import_faiss()
    if backend == "faiss":
        if faiss is None:
            raise ImportError(
                f"backend='faiss' needs faiss; install it with {FAISS_HINT} "
                "or use backend='torch'"
            )
        return "faiss"
    # auto: faiss only where it pays. Its IVF is much faster than the torch
    # one on CPU; exact search is one BLAS product in both, and the torch
    # path keeps its tie rule and runs on a GPU.
    if faiss is None or mode != "ivf" or torch.device(device).type != "cpu":
        return "torch"
    return "faiss"


def _faiss_search(
    x,
    k,
    queries,
    chunk_size,
    exclude_self,
    mode,
    n_lists,
    n_probe,
    train_size,
    seed,
):
    """The search of :func:`nearest_neighbours` through faiss (CPU): a flat
    inner-product index (exact) or ``IndexIVFFlat`` with spherical k-means
    (ivf). Same contract as the torch paths: ``k`` neighbours per query,
    self left out by index, rows sorted by decreasing cosine then index."""
    faiss = _import_faiss()
    xn = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    n, dim = xn.shape
    if mode == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(
            quantizer, dim, n_lists, faiss.METRIC_INNER_PRODUCT
        )
        # Same training as the torch path: 10 spherical Lloyd iterations on
        # a seeded sample (faiss warns below 39 points per list; a coarse
        # partition is enough here, as there).
        index.cp.niter = 10
        index.cp.seed = int(seed)
        index.cp.min_points_per_centroid = 1
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(n, size=min(n, train_size), replace=False))
        index.train(xn[train])
        index.nprobe = n_probe
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(xn)
    # One more candidate in case the query itself is among them.
    width = min(k + int(exclude_self), n)
    q = queries.numpy()
    step = chunk_size or max(1, _CHUNK_ELEMENTS // n)
    out_v = np.empty((len(q), k), dtype=np.float32)
    out_i = np.empty((len(q), k), dtype=np.int64)
    short = []
    for s in range(0, len(q), step):
        rows = q[s : s + step]
        v, i = index.search(xn[rows], width)
        if exclude_self:
            # Drop the query's own row, else the last (k+1-th) candidate.
            keep = i != rows[:, None]
            keep[keep.sum(1) > k, -1] = False
            v = v[keep].reshape(len(rows), k)
            i = i[keep].reshape(len(rows), k)
        out_v[s : s + len(rows)], out_i[s : s + len(rows)] = v, i
        # faiss pads with -1 when the probed lists hold fewer than k points.
        short.extend(s + np.flatnonzero((i < 0).any(1)))
    best_v, best_i = torch.from_numpy(out_v), torch.from_numpy(out_i)
    if short:
        short = torch.as_tensor(short, dtype=torch.long)
        logger.debug("%d queries searched exactly (short lists)", len(short))
        i, v = _exact_search(x, k, queries[short], chunk_size, exclude_self)
        best_i[short], best_v[short] = i, v
    best_v, best_i = _sort_rows(best_v, best_i)
    return best_i, best_v


@torch.no_grad()
def nearest_neighbours(
    emb,
    k,
    chunk_size=None,
    exclude_self=True,
    device=None,
    mode="exact",
    query_indices=None,
    n_lists=None,
    n_probe=None,
    train_size=None,
    seed=0,
    backend="auto",
):
    """Cosine k-nearest neighbours of every row (or of ``query_indices``).

    ``mode="exact"`` (default) scores ``chunk_size`` queries against all
    ``N`` points at a time (one ``chunk x N`` matrix, never ``N x N``) and
    keeps the top ``k``: cost ``O(N^2 D)``, minutes for 100k 512-d points
    on 2 CPU cores and hours for 1M (``bench/bench_inside_pairing.py``).

    ``mode="ivf"`` is an inverted-file index: spherical k-means (10 Lloyd
    iterations on ``train_size`` sampled points) splits the points into
    ``n_lists`` lists; each query scans only the ``n_probe`` lists whose
    centroids are closest to it, about ``n_probe / n_lists`` of the data.
    It misses a true neighbour that lies in a list that was not scanned
    (near a list boundary), so recall is below 1 and grows with
    ``n_probe``. The defaults, ``n_lists = 2 sqrt(N)`` and ``n_probe =
    16``, scan about 1 % of half a million points (cost ``O(N^1.5 D)``);
    on clustered 512-d data with 500k points per gender they gave 0.94
    recall@1 at 1/56 of the exact time (``bench/README.md``).
    Deterministic for a given ``seed``. Below about 50k points exact search
    is as fast; on a GPU (``device="cuda"``) it is usually fast enough.

    Either mode runs on torch (the reference implementation, also on a
    GPU) or on faiss (CPU; ``pip install "speechbrain-ssv[faiss]"``), whose
    C++ inverted-file index was about twice as fast as the torch one at 50k
    points, same recall (``bench/README.md``). Both return the same kind of result: ``k``
    neighbours per query, self excluded by index, sorted as below; the
    faiss IVF trains its own k-means (same sample, same iterations), so
    its rare misses differ from the torch ones.

    Ties: rows are sorted by decreasing cosine, lower index first on equal
    values; in torch exact mode the set kept at the cut also prefers lower
    indices (in IVF mode and with faiss, the library decides among values
    equal at the cut).

    Arguments
    ---------
    emb : torch.Tensor | numpy.ndarray
        ``[N, D]`` embeddings (l2-normalised here; float32 arithmetic).
    k : int
        Neighbours per query.
    chunk_size : int | None
        Queries per score matrix; ``None`` keeps it at about 64M elements
        (256 MB).
    exclude_self : bool
        Leave each query's own row out (by index: duplicates of it count).
    device : str | torch.device | None
        Where the scores are computed (e.g. ``"cuda"``); results come back on
        the CPU. ``None``: ``emb``'s device.
    mode : str
        ``"exact"`` or ``"ivf"``.
    query_indices : sequence of int | None
        Rows to find neighbours for (all when ``None``).
    n_lists : int | None
        IVF lists (default ``round(2 sqrt(N))``).
    n_probe : int | None
        IVF lists scanned per query (default ``min(16, n_lists)``).
    train_size : int | None
        Points the IVF k-means is fitted on (default ``32 n_lists``).
    seed : int
        Seed of the IVF training sample and k-means initialisation.
    backend : str
        ``"torch"``, ``"faiss"`` (``ImportError`` when it is not
        installed) or ``"auto"``: faiss for IVF on the CPU when it is
        installed, torch otherwise.

    Returns
    -------
    indices : torch.LongTensor
        ``[Q, k]`` neighbour rows, closest first.
    similarities : torch.Tensor
        ``[Q, k]`` float32 cosine similarities.

    Example
    -------
    >>> e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> idx, sim = nearest_neighbours(e, k=2)
    >>> idx.tolist()
    [[1, 3], [0, 3], [3, 1], [2, 1]]
    """
    x = float_matrix(emb, "emb").float()
    if device is not None:
        x = x.to(device)
    x = unit_rows(x, "emb")
    n = x.shape[0]
    k = int(k)
    limit = n - 1 if exclude_self else n
    if not 1 <= k <= limit:
        raise SSVInputError(
            "k",
            f"is {k}; expected 1 <= k <= {limit} for {n} points"
            + (" (self excluded)" if exclude_self else ""),
        )
    if chunk_size is not None and int(chunk_size) < 1:
        raise SSVInputError("chunk_size", f"is {chunk_size}; expected >= 1")
    if query_indices is None:
        queries = torch.arange(n)
    else:
        queries = torch.as_tensor(np.asarray(query_indices), dtype=torch.long)
        queries = queries.reshape(-1)
        if len(queries) and (queries.min() < 0 or queries.max() >= n):
            raise SSVInputError(
                "query_indices", f"out of range; expected 0 <= i < {n}"
            )
    if mode not in ("exact", "ivf"):
        raise SSVInputError("mode", f"is {mode!r}; expected 'exact' or 'ivf'")
    use = _pick_backend(backend, mode, x.device)
    if mode == "exact":
        if use == "faiss":
            return _faiss_search(
                x, k, queries, chunk_size, exclude_self, mode, 0, 0, 0, seed
            )
        return _exact_search(x, k, queries, chunk_size, exclude_self)
    n_lists = (
        max(1, round(2 * math.sqrt(n))) if n_lists is None else int(n_lists)
    )
    n_lists = min(n_lists, n)
    n_probe = min(16, n_lists) if n_probe is None else int(n_probe)
    if not 1 <= n_probe <= n_lists:
        raise SSVInputError(
            "n_probe", f"is {n_probe}; expected 1 <= n_probe <= {n_lists}"
        )
    train_size = 32 * n_lists if train_size is None else int(train_size)
    train_size = max(train_size, n_lists)
    if use == "faiss":
        return _faiss_search(
            x,
            k,
            queries,
            chunk_size,
            exclude_self,
            mode,
            n_lists,
            n_probe,
            train_size,
            seed,
        )
    return _ivf_search(
        x,
        k,
        queries,
        chunk_size,
        exclude_self,
        n_lists,
        n_probe,
        train_size,
        seed,
    )
