"""Choosing the pairs of real speakers that INSIDE interpolates.

Paper: Liu et al., "Interpolating Speaker Identities in Embedding Space for
Data Expansion" (INSIDE, arXiv 2508.19210), Sec. III. Speakers are
split by gender; within a gender, a "layered nearest-neighbour traversal"
pairs every speaker with its 1st nearest neighbour (cosine), then its 2nd,
and so on, until ``T`` pairs are collected (INSIDE-NN). The ablation
INSIDE-Syn pairs random speakers of the same gender.

This module holds the TTS-independent parts:

* :func:`speaker_means` turns utterance embeddings into one direction per
  speaker;
* :func:`layered_nn_pairs` (INSIDE-NN, on
  :func:`~speechbrain_ssv.inside.neighbours.nearest_neighbours`) and
  :func:`random_pairs` (INSIDE-Syn) return :class:`SpeakerPair` records;
* :func:`select_pairs` picks either by name (:data:`PAIRINGS`),
  :func:`interpolate_pairs` SLERPs the pairs' speaker means into the
  synthetic d-vectors, and :func:`identity_sets` does both for the two
  pairings.

Genders come from :func:`~speechbrain_ssv.inside.gender.speaker_genders`.

Choices where the paper is silent (all documented on the functions):
``T`` is split between genders in proportion to their number of speakers;
within a layer, pairs are taken by decreasing cosine, so the closest pairs
come first when the last layer is cut; an unordered pair counts once.

Authors
 * speechbrain-ssv developers 2026
"""

import logging
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from speechbrain_ssv.inside.gender import normalize_gender
from speechbrain_ssv.inside.neighbours import (
    float_matrix,
    nearest_neighbours,
    unit_rows,
)
from speechbrain_ssv.inside.slerp import slerp
from speechbrain_ssv.utils.errors import HparamsError, SSVInputError

__all__ = [
    "PAIRINGS",
    "SpeakerPair",
    "allocate_pairs",
    "identity_sets",
    "interpolate_pairs",
    "layered_nn_pairs",
    "random_pairs",
    "select_pairs",
    "speaker_means",
    "summarize_pairs",
]

logger = logging.getLogger(__name__)

# "nn": INSIDE-NN (layered nearest-neighbour traversal); "random":
# INSIDE-Syn (random within-gender pairs).
PAIRINGS = ("nn", "random")


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
# Speaker means
# --------------------------------------------------------------------------


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
    x = float_matrix(utt_embeddings, "utt_embeddings").to(torch.float64)
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
        x = unit_rows(x, "utt_embeddings", labels)
    speakers, inverse = np.unique(np.asarray(labels), return_inverse=True)
    sums = torch.zeros(len(speakers), x.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.as_tensor(inverse.reshape(-1)), x)
    means = unit_rows(sums, "speaker means", list(speakers))
    return [str(s) for s in speakers], means.float()


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
        (see :func:`~speechbrain_ssv.inside.neighbours.nearest_neighbours`).
    chunk_size : int | None
        Passed to :func:`~speechbrain_ssv.inside.neighbours.nearest_neighbours`.
    device : str | None
        Passed to :func:`~speechbrain_ssv.inside.neighbours.nearest_neighbours`.
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
    x = float_matrix(embeddings, "embeddings")
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
        x = float_matrix(embeddings, "embeddings")
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


# --------------------------------------------------------------------------
# Synthetic d-vectors
# --------------------------------------------------------------------------


def select_pairs(method, embedded, n_identities, seed, search_mode):
    """The ``n_identities`` same-gender speaker pairs of one pairing.

    Arguments
    ---------
    method : str
        ``"nn"`` (INSIDE-NN, :func:`layered_nn_pairs`) or ``"random"``
        (INSIDE-Syn, :func:`random_pairs`); see :data:`PAIRINGS`.
    embedded : dict
        ``speakers`` (ids), ``means`` (``[S, D]`` speaker means in that
        order) and ``genders`` (speaker -> m/f).
    n_identities : int
        ``T``.
    seed : int
        Seed of the random pairing.
    search_mode : str
        ``"exact"`` or ``"ivf"`` neighbour search.

    Returns
    -------
    list of SpeakerPair
        The pairs.

    Example
    -------
    >>> e = {"speakers": ["a", "b", "c"], "genders": {"a": "m", "b": "m", "c": "m"},
    ...      "means": torch.eye(3)}
    >>> [p.layer for p in select_pairs("random", e, 2, 0, "exact")]
    [0, 0]
    """
    speakers, means = embedded["speakers"], embedded["means"]
    genders = embedded["genders"]
    if method == "nn":
        return layered_nn_pairs(
            means, speakers, genders, n_identities, mode=search_mode
        )
    if method == "random":
        return random_pairs(
            speakers, genders, n_identities, seed=seed, embeddings=means
        )
    raise HparamsError(
        "pairing", f"is {method!r}; expected one of {PAIRINGS} (or none)"
    )


def interpolate_pairs(pairs, embedded, alpha):
    """SLERP of each pair's speaker means: the synthetic d-vectors.

    Arguments
    ---------
    pairs : sequence of SpeakerPair
        From :func:`select_pairs`.
    embedded : dict
        ``speakers`` and ``means`` as in :func:`select_pairs`.
    alpha : float
        SLERP weight of the second speaker (the paper: 0.5).

    Returns
    -------
    torch.Tensor
        ``[len(pairs), D]`` d-vectors.

    Example
    -------
    >>> e = {"speakers": ["a", "b"], "means": torch.eye(2)}
    >>> interpolate_pairs([SpeakerPair("a", "b", "m", 1, 0.0)], e, 0.5)
    tensor([[0.7071, 0.7071]])
    """
    index = {s: i for i, s in enumerate(embedded["speakers"])}
    means = embedded["means"]
    a = means[[index[p.spk_a] for p in pairs]]
    b = means[[index[p.spk_b] for p in pairs]]
    return slerp(a, b, alpha)


def identity_sets(embedded, n_identities, alpha=0.5, seed=0, mode="exact"):
    """Synthetic d-vectors of both pairings (for the identity map; cheap,
    no synthesis).

    Arguments
    ---------
    embedded : dict
        ``speakers``, ``means`` and ``genders`` as in :func:`select_pairs`.
    n_identities : int
        ``T``.
    alpha : float
        SLERP weight.
    seed : int
        Seed of the random pairing.
    mode : str
        Neighbour search mode.

    Returns
    -------
    dict
        ``{"INSIDE-NN": [T, D], "INSIDE-Syn": [T, D]}``.
    """
    return {
        name: interpolate_pairs(
            select_pairs(method, embedded, n_identities, seed, mode),
            embedded,
            alpha,
        )
        for name, method in (("INSIDE-NN", "nn"), ("INSIDE-Syn", "random"))
    }
