"""Speaker-verification metrics (EER, minDCF, DET) from one sort of the scores.

SpeechBrain's ``EER`` loops over every threshold in Python and its ``minDCF``
builds ``[thresholds x trials]`` matrices, which needs gigabytes at VoxCeleb1-O
size. Here the scores are sorted once; the miss and false-alarm counts of every
operating point then come from a cumulative sum, so a 1M-trial list costs
``O(N log N)`` time and ``O(N)`` memory.

Decision rule and operating points
----------------------------------
A trial is *accepted* when ``score > threshold``. Let ``u_0 < ... < u_{K-1}``
be the distinct score values. The operating points are "accept everything"
plus, for every ``k``, "reject every score ``<= u_k``" (the last one rejects
everything). Tied scores therefore always fall on the same side: a threshold
only ever lies *between* distinct values. The reported threshold of the point
"reject ``<= u_k``" is the midpoint ``(u_k + u_{k+1}) / 2`` (``u_{K-1}`` itself
for "reject everything", and the float just below ``u_0`` for "accept
everything").

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np
import torch

__all__ = ["EER", "det_curve", "eer_mindcf", "minDCF"]


def _as_1d_float(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(
            f"{name} contains a NaN or infinite value (index {bad})"
        )
    return x


def _as_labels(labels, n):
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(
            f"scores and labels differ in length ({n} scores, "
            f"{labels.shape[0]} labels)"
        )
    if labels.dtype != bool:
        ok = (labels == 0) | (labels == 1)
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"labels must be 0 (non-target) or 1 (target); "
                f"found {labels[bad]!r} at index {bad}"
            )
        labels = labels == 1
    return labels


def _operating_points(scores, labels):
    """Miss and false-alarm counts at every operating point (one sort).

    Arguments
    ---------
    scores : array-like
        Trial scores, shape ``[N]``.
    labels : array-like
        1 (target) or 0 (non-target), shape ``[N]``.

    Returns
    -------
    thresholds : numpy.ndarray
        ``[K+1]`` thresholds, ascending (accept iff ``score > threshold``).
    n_miss : numpy.ndarray
        ``[K+1]`` targets rejected at each threshold (non-decreasing).
    n_fa : numpy.ndarray
        ``[K+1]`` non-targets accepted at each threshold (non-increasing).
    n_tgt : int
        Number of targets.
    n_non : int
        Number of non-targets.
    """
    scores = _as_1d_float(scores, "scores")
    labels = _as_labels(labels, scores.shape[0])
    if scores.size == 0:
        raise ValueError("no trials: scores are empty")
    n_tgt = int(labels.sum())
    n_non = int(labels.size - n_tgt)
    if n_tgt == 0:
        raise ValueError("no target trials (label 1); EER/minDCF are undefined")
    if n_non == 0:
        raise ValueError(
            "no non-target trials (label 0); EER/minDCF are undefined"
        )

    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # int32 halves the memory of the cumulative sum; fine below 2^31 trials.
    count_dtype = np.int32 if scores.size < 2**31 else np.int64
    cum_tgt = np.cumsum(labels[order], dtype=count_dtype)
    del order
    # Last index of every run of equal scores: only there may a threshold go.
    last = np.flatnonzero(np.diff(sorted_scores) != 0)
    last = np.append(last, sorted_scores.size - 1)

    n_miss = np.empty(last.size + 1, dtype=np.int64)
    n_miss[0] = 0
    n_miss[1:] = cum_tgt[last]
    n_rej_non = np.empty_like(n_miss)
    n_rej_non[0] = 0
    n_rej_non[1:] = last + 1 - n_miss[1:]
    n_fa = n_non - n_rej_non

    distinct = sorted_scores[last]
    thresholds = np.empty(last.size + 1, dtype=np.float64)
    thresholds[0] = np.nextafter(distinct[0], -np.inf)
    thresholds[1:-1] = (distinct[:-1] + distinct[1:]) / 2
    thresholds[-1] = distinct[-1]
    return thresholds, n_miss, n_fa, n_tgt, n_non


def _eer_index(n_miss, n_fa, n_tgt, n_non):
    # |FAR - FRR| scaled by n_tgt * n_non stays an exact integer, so ties are
    # broken deterministically (lowest threshold first, as SpeechBrain does).
    gap = np.abs(n_fa * n_tgt - n_miss * n_non)
    return int(np.argmin(gap))


def eer_mindcf(scores, labels, p_targets=(0.01, 0.05), c_miss=1.0, c_fa=1.0):
    """EER and normalised minDCF at several target priors, from one sort.

    **EER** is the mean of the false-acceptance rate (FAR) and the
    false-rejection rate (FRR) at the operating point where ``|FAR - FRR|`` is
    smallest (lowest threshold on ties). This is the definition of
    SpeechBrain's ``EER`` and of the common ``roc_curve`` recipe, so numbers
    compare with upstream recipe READMEs; it differs from a linearly
    interpolated crossing by at most half a step of the FAR/FRR staircase.

    **minDCF** is the minimum over operating points of the detection cost
    ``C = c_miss * p * FRR + c_fa * (1 - p) * FAR``, NORMALISED by
    ``min(c_miss * p, c_fa * (1 - p))`` (the cost of the best trivial system),
    as in the NIST SRE and VoxSRC evaluations. SpeechBrain's ``minDCF``
    returns the un-normalised ``C``; at ``p = 0.01`` with unit costs,
    normalised = SpeechBrain's value / 0.01.

    Arguments
    ---------
    scores : array-like
        Trial scores, shape ``[N]`` (numpy array, list or torch tensor);
        higher means "same speaker".
    labels : array-like
        1 (target, same speaker) or 0 (non-target), shape ``[N]``.
    p_targets : sequence of float
        Target priors at which to compute minDCF.
    c_miss : float
        Cost of a miss (false rejection).
    c_fa : float
        Cost of a false alarm (false acceptance).

    Returns
    -------
    dict
        ``eer`` (fraction, not %), ``eer_threshold``, and for every ``p`` in
        ``p_targets`` the keys ``min_dcf@{p:g}`` (normalised) and
        ``min_dcf@{p:g}_threshold``; also ``n_targets`` and ``n_nontargets``.
        Thresholds follow the rule "accept iff score > threshold".

    Raises
    ------
    ValueError
        Empty input, no target or no non-target trial, length mismatch,
        labels other than 0/1, or non-finite scores.

    Example
    -------
    >>> m = eer_mindcf([0.9, 0.8, 0.3, 0.6, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    >>> round(m["eer"], 4), round(m["eer_threshold"], 4)
    (0.3333, 0.45)
    >>> round(m["min_dcf@0.01"], 4), round(m["min_dcf@0.01_threshold"], 4)
    (0.3333, 0.7)
    >>> eer_mindcf([0.5, 0.4], [1, 1])
    Traceback (most recent call last):
    ...
    ValueError: no non-target trials (label 0); EER/minDCF are undefined
    """
    thr, n_miss, n_fa, n_tgt, n_non = _operating_points(scores, labels)
    frr = n_miss / n_tgt
    far = n_fa / n_non
    i = _eer_index(n_miss, n_fa, n_tgt, n_non)
    out = {
        "eer": float((frr[i] + far[i]) / 2),
        "eer_threshold": float(thr[i]),
        "n_targets": n_tgt,
        "n_nontargets": n_non,
    }
    for p in p_targets:
        if not 0.0 < p < 1.0:
            raise ValueError(f"p_target must be in (0, 1), got {p}")
        norm = min(c_miss * p, c_fa * (1.0 - p))
        dcf = (c_miss * p * frr + c_fa * (1.0 - p) * far) / norm
        j = int(np.argmin(dcf))
        out[f"min_dcf@{p:g}"] = float(dcf[j])
        out[f"min_dcf@{p:g}_threshold"] = float(thr[j])
    return out


def det_curve(scores, labels):
    """False-positive and false-negative rates at every operating point.

    Computed from the same single sort as :func:`eer_mindcf`; the points go
    from "accept everything" (``fpr = 1, fnr = 0``) to "reject everything"
    (``fpr = 0, fnr = 1``).

    Arguments
    ---------
    scores : array-like
        Trial scores, shape ``[N]``.
    labels : array-like
        1 (target) or 0 (non-target), shape ``[N]``.

    Returns
    -------
    fpr : numpy.ndarray
        False-acceptance rate per operating point (non-increasing).
    fnr : numpy.ndarray
        False-rejection rate per operating point (non-decreasing).

    Example
    -------
    >>> fpr, fnr = det_curve([0.9, 0.2, 0.4, 0.4], [1, 1, 0, 0])
    >>> fpr.tolist(), fnr.tolist()
    ([1.0, 1.0, 0.0, 0.0], [0.0, 0.5, 0.5, 1.0])
    """
    _, n_miss, n_fa, n_tgt, n_non = _operating_points(scores, labels)
    return n_fa / n_non, n_miss / n_tgt


def _split(positive_scores, negative_scores):
    pos = _as_1d_float(positive_scores, "positive_scores")
    neg = _as_1d_float(negative_scores, "negative_scores")
    scores = np.concatenate([pos, neg])
    labels = np.zeros(scores.shape[0], dtype=bool)
    labels[: pos.shape[0]] = True
    return scores, labels


def EER(positive_scores, negative_scores):
    """Drop-in, sort-based replacement for SpeechBrain's ``EER``.

    Same signature and EER definition as
    ``speechbrain.utils.metric_stats.EER`` (see :func:`eer_mindcf`), in
    ``O(N log N)`` instead of a Python loop over every threshold. The
    threshold is the midpoint between the two distinct scores around the
    operating point; it gives the same decisions (accept iff
    ``score > threshold``) as SpeechBrain's.

    Arguments
    ---------
    positive_scores : torch.Tensor | array-like
        Scores of target (same speaker) trials.
    negative_scores : torch.Tensor | array-like
        Scores of non-target trials.

    Returns
    -------
    eer : float
        The equal error rate (fraction).
    threshold : float
        Its threshold.

    Example
    -------
    >>> eer, thr = EER(torch.tensor([0.6, 0.7, 0.8, 0.5]), torch.tensor([0.4, 0.3, 0.2, 0.1]))
    >>> eer, round(thr, 4)
    (0.0, 0.45)
    """
    m = eer_mindcf(*_split(positive_scores, negative_scores), p_targets=())
    return m["eer"], m["eer_threshold"]


def minDCF(
    positive_scores, negative_scores, c_miss=1.0, c_fa=1.0, p_target=0.01
):
    """Drop-in, sort-based replacement for SpeechBrain's ``minDCF``.

    Returns the **un-normalised** minimum detection cost, like
    ``speechbrain.utils.metric_stats.minDCF``; divide by
    ``min(c_miss * p_target, c_fa * (1 - p_target))`` to normalise (or use
    :func:`eer_mindcf`, which does). Memory is linear in the number of trials
    rather than ``thresholds x trials``.

    Arguments
    ---------
    positive_scores : torch.Tensor | array-like
        Scores of target trials.
    negative_scores : torch.Tensor | array-like
        Scores of non-target trials.
    c_miss : float
        Cost of a miss.
    c_fa : float
        Cost of a false alarm.
    p_target : float
        Prior probability of a target trial.

    Returns
    -------
    min_dcf : float
        Un-normalised minimum detection cost.
    threshold : float
        Its threshold (accept iff ``score > threshold``).

    Example
    -------
    >>> val, thr = minDCF(torch.tensor([0.6, 0.7, 0.8, 0.5]), torch.tensor([0.55, 0.3, 0.2, 0.1]))
    >>> round(val, 6), round(thr, 4)
    (0.0025, 0.575)
    """
    m = eer_mindcf(
        *_split(positive_scores, negative_scores),
        p_targets=(p_target,),
        c_miss=c_miss,
        c_fa=c_fa,
    )
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return (
        m[f"min_dcf@{p_target:g}"] * norm,
        m[f"min_dcf@{p_target:g}_threshold"],
    )
