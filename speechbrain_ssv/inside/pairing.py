"""Choosing the pairs of real speakers that INSIDE interpolates.

Paper: Liu et al., "Interpolating Speaker Identities in Embedding Space for
Data Expansion" (INSIDE, arXiv 2508.19210), Sec. III. Speakers are
split by gender; within a gender, a "layered nearest-neighbour traversal"
pairs every speaker with its 1st nearest neighbour (cosine), then its 2nd,
and so on, until ``T`` pairs are collected (INSIDE-NN). The ablation
INSIDE-Syn pairs random speakers of the same gender.

This module holds the TTS-independent parts:

* :func:`speaker_genders` reads genders from VoxCeleb metadata or a
  manifest;
* :func:`speaker_means` turns utterance embeddings into one direction per
  speaker;
* :func:`nearest_neighbours` is an exact chunked cosine top-k (memory
  ``O(chunk N)``, never ``N x N``), with an optional inverted-file
  approximate mode for a million speakers on CPU;
* :func:`layered_nn_pairs` (INSIDE-NN) and :func:`random_pairs`
  (INSIDE-Syn) return :class:`SpeakerPair` records.

Choices where the paper is silent (all documented on the functions):
``T`` is split between genders in proportion to their number of speakers;
within a layer, pairs are taken by decreasing cosine, so the closest pairs
come first when the last layer is cut; an unordered pair counts once.

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import logging
import math
import os
import re
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from speechbrain_ssv.utils.errors import SSVInputError

__all__ = [
    "SpeakerPair",
    "allocate_pairs",
    "layered_nn_pairs",
    "nearest_neighbours",
    "normalize_gender",
    "random_pairs",
    "speaker_genders",
    "speaker_means",
    "summarize_pairs",
]

logger = logging.getLogger(__name__)

_MALE = ("m", "male")
_FEMALE = ("f", "female")
# Score-matrix elements per chunk in exact search (64M floats = 256 MB).
_CHUNK_ELEMENTS = 1 << 26
_SPEAKER_COLUMN = re.compile(r"^(spk_id|voxceleb\s*\d+\s*id)$")


class SpeakerPair(NamedTuple):
    """Two real speakers of the same gender to interpolate.

    ``layer`` is the neighbour rank that produced the pair (1 = nearest
    neighbour) for INSIDE-NN and 0 for random pairs; ``cosine`` is the
    cosine of the two speakers' embeddings (NaN when none were given).
    """

    spk_a: str
    spk_b: str
    gender: str
    layer: int
    cosine: float


# --------------------------------------------------------------------------
# Genders
# --------------------------------------------------------------------------


def normalize_gender(value):
    """Map a metadata gender string to ``"m"``, ``"f"`` or ``None``.

    Arguments
    ---------
    value : str | None
        E.g. ``"M"``, ``"f "``, ``"female"``; anything else (``"u"``, empty,
        ``None``) is unknown.

    Returns
    -------
    str | None
        ``"m"``, ``"f"`` or ``None`` for unknown.

    Example
    -------
    >>> [normalize_gender(v) for v in ("M ", "female", "u", "")]
    ['m', 'f', None, None]
    """
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in _MALE:
        return "m"
    if v in _FEMALE:
        return "f"
    return None


def _read_gender_file(path):
    """``(spk, gender|None, raw, line)`` for every row of one file."""
    with open(path, encoding="utf-8", newline="") as f:
        header = f.readline()
        if not header.strip():
            raise SSVInputError(path, "is empty; expected a header line")
        # VoxCeleb1's metadata is tab-separated, VoxCeleb2's and manifests
        # are comma-separated (VoxCeleb2's with spaces around the fields).
        sep = "\t" if "\t" in header else ","
        names = [
            h.strip().lower() for h in next(csv.reader([header], delimiter=sep))
        ]
        spk_cols = [i for i, n in enumerate(names) if _SPEAKER_COLUMN.match(n)]
        if not spk_cols or "gender" not in names:
            raise SSVInputError(
                path,
                f"header {header.strip()!r} lacks a speaker or gender column; "
                "expected a manifest with 'spk_id' and 'gender' columns or "
                "VoxCeleb metadata ('VoxCeleb1 ID'/'VoxCeleb2 ID' and "
                "'Gender')",
            )
        s_col, g_col = spk_cols[0], names.index("gender")
        for lineno, fields in enumerate(csv.reader(f, delimiter=sep), start=2):
            if not fields or not "".join(fields).strip():
                continue
            spk = fields[s_col].strip() if len(fields) > s_col else ""
            if not spk:
                raise SSVInputError(
                    f"{path}:{lineno}", "has no speaker id; expected one"
                )
            raw = fields[g_col].strip() if len(fields) > g_col else ""
            yield spk, normalize_gender(raw), raw, lineno


def speaker_genders(paths):
    """Gender of every speaker, from VoxCeleb metadata or manifests.

    Reads any mix of: VoxCeleb1 ``vox1_meta.csv`` (tab-separated, columns
    ``VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set``; the minivox
    metadata has the same format), VoxCeleb2 ``vox2_meta.csv`` (``VoxCeleb2
    ID, VGGFace2 ID, Gender, Set``, comma-separated, fields padded with
    spaces) and SpeechBrain manifests with ``spk_id`` and ``gender`` columns
    (one row per utterance). The format is recognised from the header.

    ``M``/``male`` and ``F``/``female`` (any case) are known genders. A
    speaker whose rows only carry other values (``u``, empty, ...) is left
    out and counted in a warning; rows with an unknown value next to known
    ones are ignored. Two different known genders for one speaker, within a
    file or across files, are an error.

    Arguments
    ---------
    paths : str | os.PathLike | sequence
        One file or several.

    Returns
    -------
    dict
        ``spk_id -> "m" | "f"``, sorted by speaker id.

    Raises
    ------
    SSVInputError
        Naming the file (and line) of a conflicting gender, a missing
        column, or when no speaker has a known gender.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "vox1_meta.csv")
    >>> _ = open(p, "w").write(
    ...     "VoxCeleb1 ID\\tVGGFace1 ID\\tGender\\tNationality\\tSet\\n"
    ...     "id10002\\tB\\tf\\tUK\\tdev\\nid10001\\tA\\tm\\tUSA\\ttest\\n"
    ... )
    >>> speaker_genders(p)
    {'id10001': 'm', 'id10002': 'f'}
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise SSVInputError("paths", "is empty; expected a metadata file")
    genders, source = {}, {}
    unknown_values = {}
    seen = set()
    for path in paths:
        if not os.path.isfile(path):
            raise SSVInputError(path, "not found; expected a metadata file")
        for spk, gender, raw, lineno in _read_gender_file(path):
            seen.add(spk)
            if gender is None:
                unknown_values[raw] = unknown_values.get(raw, 0) + 1
                continue
            previous = genders.get(spk)
            if previous is not None and previous != gender:
                raise SSVInputError(
                    f"{path}:{lineno}",
                    f"speaker {spk!r} has gender {gender!r} here but "
                    f"{previous!r} in {source[spk]}; expected one gender per "
                    "speaker",
                )
            genders[spk] = gender
            source[spk] = f"{path}:{lineno}"
    missing = len(seen) - len(genders)
    if missing:
        shown = ", ".join(repr(v) for v in sorted(unknown_values)[:5])
        logger.warning(
            "%d of %d speakers in %s have no known gender (values seen: %s) "
            "and are excluded from gender-wise pairing",
            missing,
            len(seen),
            ", ".join(paths),
            shown,
        )
    if not genders:
        raise SSVInputError(
            ", ".join(paths),
            f"no speaker has a known gender among {len(seen)}; expected "
            "M/F (or male/female) values in the gender column",
        )
    return dict(sorted(genders.items()))


# --------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------


def _as_float_tensor(x, name):
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


def _unit_rows(x, name, labels=None):
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


def speaker_means(utt_embeddings, utt_speakers, normalize_utterances=True):
    """One embedding per speaker: the mean of its utterances' embeddings,
    l2-normalised.

    Each utterance is l2-normalised before averaging (by default), so every
    utterance weighs the same in the direction whatever its norm (YourTTS
    clip embeddings have norms slightly below 1 that vary with the clip).

    Arguments
    ---------
    utt_embeddings : torch.Tensor | numpy.ndarray
        ``[U, D]`` utterance embeddings.
    utt_speakers : sequence of str
        ``[U]`` speaker of each utterance.
    normalize_utterances : bool
        l2-normalise each utterance before the mean.

    Returns
    -------
    speakers : list of str
        The ``S`` distinct speakers, sorted.
    means : torch.Tensor
        ``[S, D]`` unit-norm float32 speaker embeddings, in that order.

    Example
    -------
    >>> e = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    >>> spks, means = speaker_means(e, ["b", "b", "a"])
    >>> spks
    ['a', 'b']
    >>> means
    tensor([[0.0000, 1.0000],
            [0.7071, 0.7071]])
    """
    x = _as_float_tensor(utt_embeddings, "utt_embeddings").to(torch.float64)
    labels = [str(s) for s in utt_speakers]
    if len(labels) != x.shape[0]:
        raise SSVInputError(
            "utt_speakers",
            f"has {len(labels)} entries for {x.shape[0]} embeddings; "
            "expected one speaker per row",
        )
    if x.shape[0] == 0:
        raise SSVInputError("utt_embeddings", "is empty")
    if normalize_utterances:
        x = _unit_rows(x, "utt_embeddings", labels)
    speakers, inverse = np.unique(np.asarray(labels), return_inverse=True)
    sums = torch.zeros(len(speakers), x.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.as_tensor(inverse.reshape(-1)), x)
    means = _unit_rows(sums, "speaker means", list(speakers))
    return [str(s) for s in speakers], means.float()


# --------------------------------------------------------------------------
# Nearest neighbours
# --------------------------------------------------------------------------


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
    x = _as_float_tensor(emb, "emb").float()
    if device is not None:
        x = x.to(device)
    x = _unit_rows(x, "emb")
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


# --------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------


def allocate_pairs(n_pairs, group_sizes):
    """Split ``n_pairs`` between groups in proportion to their sizes,
    respecting each group's capacity ``n (n - 1) / 2``.

    Largest-remainder rounding (ties: group name order); a group whose share
    exceeds its capacity gets its capacity and the rest is shared among the
    others in proportion to their sizes.

    Arguments
    ---------
    n_pairs : int
        Total number of pairs ``T``.
    group_sizes : dict
        ``group -> number of speakers``.

    Returns
    -------
    dict
        ``group -> number of pairs``, summing to ``n_pairs``.

    Raises
    ------
    SSVInputError
        When ``n_pairs`` exceeds the number of within-group pairs.

    Example
    -------
    >>> allocate_pairs(10, {"f": 30, "m": 70})
    {'f': 3, 'm': 7}
    >>> allocate_pairs(12, {"f": 3, "m": 5})  # f holds only 3 pairs
    {'f': 3, 'm': 9}
    """
    n_pairs = int(n_pairs)
    if n_pairs < 0:
        raise SSVInputError("n_pairs", f"is {n_pairs}; expected >= 0")
    groups = sorted(group_sizes)
    cap = {g: group_sizes[g] * (group_sizes[g] - 1) // 2 for g in groups}
    total_cap = sum(cap.values())
    if n_pairs > total_cap:
        detail = ", ".join(f"{g}: {group_sizes[g]}" for g in groups)
        raise SSVInputError(
            "n_pairs",
            f"is {n_pairs} but only {total_cap} distinct within-gender pairs "
            f"exist (speakers per gender: {detail}); expected at most "
            f"{total_cap}",
        )
    fixed = {}
    while True:
        free = [g for g in groups if g not in fixed and cap[g] > 0]
        rest = n_pairs - sum(fixed.values())
        weight = sum(group_sizes[g] for g in free)
        share = (
            {g: rest * group_sizes[g] // weight for g in free} if free else {}
        )
        left = rest - sum(share.values())
        by_remainder = sorted(
            free, key=lambda g: (-(rest * group_sizes[g] % weight), g)
        )
        for g in by_remainder[:left]:
            share[g] += 1
        over = [g for g in free if share[g] > cap[g]]
        if not over:
            out = dict.fromkeys(groups, 0)
            out.update(fixed)
            out.update(share)
            return out
        for g in over:
            fixed[g] = cap[g]


def _gender_groups(speakers, genders):
    speakers = [str(s) for s in speakers]
    if len(set(speakers)) != len(speakers):
        dup = sorted({s for s in speakers if speakers.count(s) > 1})[:5]
        raise SSVInputError(
            "speakers", f"has duplicates {dup}; expected distinct ids"
        )
    if isinstance(genders, dict):
        labels = [normalize_gender(genders.get(s)) for s in speakers]
    else:
        genders = list(genders)
        if len(genders) != len(speakers):
            raise SSVInputError(
                "genders",
                f"has {len(genders)} entries for {len(speakers)} speakers; "
                "expected a dict or one gender per speaker",
            )
        labels = [normalize_gender(g) for g in genders]
    groups = {}
    for row, (spk, g) in enumerate(zip(speakers, labels)):
        if g is not None:
            groups.setdefault(g, []).append((spk, row))
    n_unknown = labels.count(None)
    if n_unknown:
        logger.warning(
            "%d of %d speakers have no known gender and are not paired",
            n_unknown,
            len(speakers),
        )
    # Sorted by id, so the result does not depend on the input order.
    return {g: sorted(groups[g]) for g in sorted(groups)}


def _pair_cosines(x, rows_a, rows_b):
    a = x[torch.as_tensor(rows_a)].double()
    b = x[torch.as_tensor(rows_b)].double()
    return (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1).tolist()


def layered_nn_pairs(
    embeddings,
    speakers,
    genders,
    n_pairs,
    mode="exact",
    chunk_size=None,
    device=None,
    **search_options,
):
    """INSIDE-NN pair selection: layered nearest-neighbour traversal within
    each gender (INSIDE, Sec. III).

    Within a gender group of ``n`` speakers, layer ``L`` pairs every speaker
    with its ``L``-th nearest neighbour by cosine (self excluded). Layers are
    taken in order until the group's quota is reached; an unordered pair is
    kept only the first time it comes up (A-B from A's layer 1 and B-A from
    B's layer 1 count once), so no pair repeats and no pair crosses genders.

    Choices where the paper is silent:

    * ``T = n_pairs`` is split between genders in proportion to their
      number of speakers (:func:`allocate_pairs`), so the synthetic set
      keeps the real gender ratio.
    * Within a layer, pairs are taken by decreasing cosine (then speaker
      id): when the last layer is cut, its closest pairs are kept. The
      record's ``spk_a`` is the speaker whose layer produced the pair and
      ``spk_b`` its neighbour.
    * ``ceil(2 T_g / n)`` layers always suffice (each unordered pair can
      appear at most twice among the ``n L`` directed pairs of ``L``
      layers), so a single search with that ``k`` is run per group.
    * Speakers without a known gender are not paired (a warning counts
      them).

    Arguments
    ---------
    embeddings : torch.Tensor | numpy.ndarray
        ``[S, D]`` speaker embeddings (e.g. :func:`speaker_means`).
    speakers : sequence of str
        ``[S]`` distinct speaker ids.
    genders : dict | sequence
        ``spk_id -> gender`` or one gender per speaker (``m``/``f``/...).
    n_pairs : int
        Total number of pairs ``T``.
    mode : str
        Neighbour search, ``"exact"`` or ``"ivf"``
        (see :func:`nearest_neighbours`).
    chunk_size : int | None
        Passed to :func:`nearest_neighbours`.
    device : str | None
        Passed to :func:`nearest_neighbours`.
    **search_options
        ``n_lists``, ``n_probe``, ``train_size``, ``seed`` for ``"ivf"``;
        ``backend`` (``"auto"``, ``"faiss"``, ``"torch"``).

    Returns
    -------
    list of SpeakerPair
        ``n_pairs`` records ordered by layer, then gender, then decreasing
        cosine; ``cosine`` is recomputed in float64.

    Raises
    ------
    SSVInputError
        When ``n_pairs`` exceeds the within-gender pairs available.

    Example
    -------
    >>> e = torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.2, 1.0]])
    >>> pairs = layered_nn_pairs(e, ["a", "b", "c", "d"], "mmmm", 2)
    >>> [(p.spk_a, p.spk_b, p.layer) for p in pairs]
    [('c', 'd', 1), ('a', 'b', 1)]
    """
    x = _as_float_tensor(embeddings, "embeddings")
    speakers = [str(s) for s in speakers]
    if len(speakers) != x.shape[0]:
        raise SSVInputError(
            "speakers",
            f"has {len(speakers)} ids for {x.shape[0]} embeddings; expected "
            "one per row",
        )
    groups = _gender_groups(speakers, genders)
    quota = allocate_pairs(n_pairs, {g: len(m) for g, m in groups.items()})
    by_layer = []
    for gender, members in groups.items():
        t = quota[gender]
        if t == 0:
            continue
        n = len(members)
        rows = np.asarray([row for _, row in members])
        k = min(n - 1, math.ceil(2 * t / n))
        idx, sim = nearest_neighbours(
            x[torch.as_tensor(rows)],
            k,
            chunk_size=chunk_size,
            device=device,
            mode=mode,
            **search_options,
        )
        idx, sim = idx.numpy(), sim.numpy().astype(np.float64)
        seen = np.empty(0, dtype=np.int64)
        query = np.arange(n)
        for layer in range(1, k + 1):
            if t == 0:
                break
            nb = idx[:, layer - 1]
            keys = np.minimum(query, nb) * n + np.maximum(query, nb)
            order = np.lexsort((query, -sim[:, layer - 1]))
            _, first = np.unique(keys[order], return_index=True)
            order = order[np.sort(first)]
            order = order[~np.isin(keys[order], seen)][:t]
            seen = np.concatenate([seen, keys[order]])
            t -= len(order)
            by_layer.append((layer, gender, rows[order], rows[nb[order]]))
        if t:
            raise RuntimeError(
                f"layered traversal of gender {gender!r} ended {t} pairs "
                f"short after {k} layers"
            )
    by_layer.sort(key=lambda item: item[0])
    pairs = []
    for layer, gender, rows_a, rows_b in by_layer:
        cos = _pair_cosines(x, rows_a, rows_b)
        pairs.extend(
            SpeakerPair(speakers[a], speakers[b], gender, layer, c)
            for a, b, c in zip(rows_a.tolist(), rows_b.tolist(), cos)
        )
    _log_summary("INSIDE-NN", pairs)
    return pairs


def random_pairs(speakers, genders, n_pairs, seed=0, embeddings=None):
    """INSIDE-Syn pair selection: random pairs within each gender.

    ``n_pairs`` is split between genders as in :func:`layered_nn_pairs`.
    Within a group of ``n`` speakers, pairs are drawn uniformly without
    replacement among the ``n (n - 1) / 2`` unordered pairs, with no self
    pair: by rejection of repeats when the quota is at most half of them
    (memory ``O(T)``), otherwise by sampling from the enumerated pairs
    (then fewer than ``2 T`` exist, so memory is ``O(T)`` as well).
    Deterministic for a given ``seed`` and independent of the input order.

    Arguments
    ---------
    speakers : sequence of str
        Distinct speaker ids.
    genders : dict | sequence
        ``spk_id -> gender`` or one gender per speaker.
    n_pairs : int
        Total number of pairs ``T``.
    seed : int
        Random seed.
    embeddings : torch.Tensor | numpy.ndarray | None
        ``[S, D]`` speaker embeddings in ``speakers`` order: fills the
        records' ``cosine`` (NaN otherwise).

    Returns
    -------
    list of SpeakerPair
        ``layer = 0``; ordered by gender, then draw order.

    Example
    -------
    >>> pairs = random_pairs(["a", "b", "c", "d"], "mmff", 2, seed=0)
    >>> sorted((p.gender, {p.spk_a, p.spk_b} == {"a", "b"}) for p in pairs)
    [('f', False), ('m', True)]
    """
    speakers = [str(s) for s in speakers]
    x = None
    if embeddings is not None:
        x = _as_float_tensor(embeddings, "embeddings")
        if x.shape[0] != len(speakers):
            raise SSVInputError(
                "embeddings",
                f"has {x.shape[0]} rows for {len(speakers)} speakers",
            )
    groups = _gender_groups(speakers, genders)
    quota = allocate_pairs(n_pairs, {g: len(m) for g, m in groups.items()})
    rng = np.random.default_rng(seed)
    pairs = []
    for gender, members in groups.items():
        t, n = quota[gender], len(members)
        if t == 0:
            continue
        rows = np.asarray([row for _, row in members])
        n_all = n * (n - 1) // 2
        if 2 * t > n_all:
            i, j = np.triu_indices(n, 1)
            pick = rng.choice(n_all, size=t, replace=False)
            i, j = i[pick], j[pick]
            flip = rng.random(t) < 0.5
            i, j = np.where(flip, j, i), np.where(flip, i, j)
        else:
            i = np.empty(0, dtype=np.int64)
            j = np.empty(0, dtype=np.int64)
            while len(i) < t:
                m = 2 * (t - len(i)) + 16
                a = rng.integers(n, size=m)
                # Drawing from n - 1 and skipping a's own index excludes self
                # pairs without rejection.
                b = rng.integers(n - 1, size=m)
                b += b >= a
                i, j = np.concatenate([i, a]), np.concatenate([j, b])
                keys = np.minimum(i, j) * n + np.maximum(i, j)
                _, first = np.unique(keys, return_index=True)
                keep = np.sort(first)
                i, j = i[keep], j[keep]
            i, j = i[:t], j[:t]
        rows_a, rows_b = rows[i], rows[j]
        if x is None:
            cos = [math.nan] * t
        else:
            cos = _pair_cosines(x, rows_a, rows_b)
        pairs.extend(
            SpeakerPair(speakers[a], speakers[b], gender, 0, c)
            for a, b, c in zip(rows_a.tolist(), rows_b.tolist(), cos)
        )
    _log_summary("INSIDE-Syn", pairs)
    return pairs


def summarize_pairs(pairs):
    """Count and cosine statistics per (gender, layer), for logging.

    Arguments
    ---------
    pairs : sequence of SpeakerPair
        Pair records.

    Returns
    -------
    dict
        ``"<gender>/<layer>" -> {"n", "cos_mean", "cos_min", "cos_max"}``
        (cosine entries are NaN without cosines).

    Example
    -------
    >>> p = [
    ...     SpeakerPair("a", "b", "f", 1, 0.9),
    ...     SpeakerPair("c", "d", "f", 1, 0.7),
    ... ]
    >>> summarize_pairs(p)["f/1"]["cos_mean"]
    0.8
    """
    stats = {}
    for p in pairs:
        stats.setdefault(f"{p.gender}/{p.layer}", []).append(p.cosine)
    out = {}
    for key in sorted(stats):
        c = np.asarray(stats[key], dtype=np.float64)
        finite = c[np.isfinite(c)]
        out[key] = {
            "n": int(c.size),
            "cos_mean": float(round(finite.mean(), 12))
            if finite.size
            else math.nan,
            "cos_min": float(finite.min()) if finite.size else math.nan,
            "cos_max": float(finite.max()) if finite.size else math.nan,
        }
    return out


def _log_summary(name, pairs):
    for key, s in summarize_pairs(pairs).items():
        logger.info(
            "%s %s: %d pairs, cosine mean %.4f [%.4f, %.4f]",
            name,
            key,
            s["n"],
            s["cos_mean"],
            s["cos_min"],
            s["cos_max"],
        )
