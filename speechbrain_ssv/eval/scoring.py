"""Cosine scoring and cohort score normalisation, vectorised and chunked.

Embeddings are L2-normalised once per utterance; a trial score is then a dot
product of two gathered rows, computed in chunks of trials so that a
million-trial list needs memory linear in the number of trials. Cohort
statistics for z/t/s/adaptive-s norm are computed once per utterance (not per
trial as in SpeechBrain's recipe loop), in chunks of utterances.

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np
import torch

__all__ = ["cohort_stats", "cosine_scores", "l2_normalize", "normalize_scores"]

NORM_METHODS = ("z-norm", "t-norm", "s-norm", "as-norm")


def _as_tensor(x):
    if isinstance(x, torch.Tensor):
        return x.detach().float()
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def l2_normalize(emb, eps=1e-6):
    """Rows scaled to unit L2 norm (rows of norm ``< eps`` divided by ``eps``).

    Arguments
    ---------
    emb : torch.Tensor | numpy.ndarray
        ``[N, D]``.
    eps : float
        Floor of the norm, as in ``torch.nn.CosineSimilarity``.

    Returns
    -------
    torch.Tensor
        ``[N, D]`` float32.

    Example
    -------
    >>> l2_normalize(torch.tensor([[3.0, 4.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    return torch.nn.functional.normalize(_as_tensor(emb), dim=-1, eps=eps)


def cosine_scores(
    emb_enrol, emb_test, enrol_idx=None, test_idx=None, chunk_size=16384
):
    """Cosine similarity of every trial.

    Arguments
    ---------
    emb_enrol : torch.Tensor | numpy.ndarray
        ``[U, D]`` embeddings. Without index arrays, row ``t`` is trial
        ``t``'s enrolment embedding.
    emb_test : torch.Tensor | numpy.ndarray
        ``[V, D]`` embeddings (may be the same matrix as ``emb_enrol``).
    enrol_idx : array-like | None
        ``[T]`` rows of ``emb_enrol`` per trial (``None``: ``arange``).
    test_idx : array-like | None
        ``[T]`` rows of ``emb_test`` per trial (``None``: ``arange``).
    chunk_size : int
        Trials scored per chunk (bounds the temporary ``[chunk, D]`` gathers).

    Returns
    -------
    numpy.ndarray
        ``[T]`` float64 scores in ``[-1, 1]``.

    Example
    -------
    >>> e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> cosine_scores(e, e, [0, 0, 2], [1, 2, 2]).round(4).tolist()
    [0.0, 0.7071, 1.0]
    """
    enrol = l2_normalize(emb_enrol)
    test = enrol if emb_test is emb_enrol else l2_normalize(emb_test)
    if enrol.shape[1] != test.shape[1]:
        raise ValueError(
            f"embedding sizes differ: enrol {enrol.shape[1]}, test {test.shape[1]}"
        )
    if enrol_idx is None:
        enrol_idx = torch.arange(enrol.shape[0])
    if test_idx is None:
        test_idx = torch.arange(test.shape[0])
    enrol_idx = torch.as_tensor(np.asarray(enrol_idx), dtype=torch.long)
    test_idx = torch.as_tensor(np.asarray(test_idx), dtype=torch.long)
    if enrol_idx.shape != test_idx.shape:
        raise ValueError(
            f"enrol and test index arrays differ in length "
            f"({enrol_idx.numel()} vs {test_idx.numel()})"
        )
    out = np.empty(enrol_idx.numel(), dtype=np.float64)
    for s in range(0, enrol_idx.numel(), chunk_size):
        e = enrol.index_select(0, enrol_idx[s : s + chunk_size])
        t = test.index_select(0, test_idx[s : s + chunk_size])
        out[s : s + chunk_size] = torch.linalg.vecdot(e, t).numpy()
    return out


def cohort_stats(emb, cohort, topk=None, chunk_bytes=64 * 2**20):
    """Mean and standard deviation of each utterance's cohort scores.

    Arguments
    ---------
    emb : torch.Tensor | numpy.ndarray
        ``[U, D]`` utterance embeddings.
    cohort : torch.Tensor | numpy.ndarray
        ``[C, D]`` cohort embeddings (e.g. training utterances).
    topk : int | None
        Keep only the ``topk`` highest cohort scores per utterance (adaptive
        normalisation); ``None`` uses the whole cohort.
    chunk_bytes : int
        Budget for one ``[chunk, C]`` score block.

    Returns
    -------
    mean : torch.Tensor
        ``[U]``.
    std : torch.Tensor
        ``[U]`` (unbiased, as ``torch.std``; as in SpeechBrain's recipe).

    Example
    -------
    >>> mu, sd = cohort_stats(torch.eye(2), torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
    >>> mu.tolist(), sd.tolist()
    ([0.0, 0.3333333432674408], [1.0, 0.5773502588272095])
    """
    emb = l2_normalize(emb)
    cohort = l2_normalize(cohort)
    n_cohort = cohort.shape[0]
    if n_cohort < 2:
        raise ValueError(
            f"the cohort needs at least 2 embeddings, got {n_cohort}"
        )
    k = n_cohort if topk is None else int(topk)
    if not 2 <= k <= n_cohort:
        raise ValueError(
            f"topk={topk} must be between 2 and the cohort size {n_cohort}"
        )
    rows = max(1, chunk_bytes // (4 * n_cohort))
    mean = torch.empty(emb.shape[0])
    std = torch.empty(emb.shape[0])
    for s in range(0, emb.shape[0], rows):
        block = emb[s : s + rows] @ cohort.T
        if k < n_cohort:
            block = block.topk(k, dim=1).values
        mean[s : s + rows] = block.mean(dim=1)
        std[s : s + rows] = block.std(dim=1)
    return mean, std


def normalize_scores(
    scores,
    enrol_idx,
    test_idx,
    emb,
    cohort,
    method="s-norm",
    topk=None,
    eps=1e-6,
):
    """Normalise trial scores against a cohort.

    With ``mu_e, sd_e`` the statistics of the enrolment utterance's cohort
    scores and ``mu_t, sd_t`` those of the test utterance:
    z-norm ``(s - mu_e) / sd_e``, t-norm ``(s - mu_t) / sd_t``, s-norm the
    mean of the two (Kenny 2010); adaptive s-norm (``"as-norm"``, Matejka et
    al. 2017) is s-norm with the statistics taken over each
    utterance's ``topk`` highest cohort scores (default 300). ``topk`` also
    makes z/t/s-norm adaptive, like SpeechBrain's ``cohort_size``.

    Arguments
    ---------
    scores : array-like
        ``[T]`` raw cosine scores.
    enrol_idx : array-like
        ``[T]`` rows of ``emb`` for the enrolment side.
    test_idx : array-like
        ``[T]`` rows of ``emb`` for the test side.
    emb : torch.Tensor | numpy.ndarray
        ``[U, D]`` utterance embeddings.
    cohort : torch.Tensor | numpy.ndarray
        ``[C, D]`` cohort embeddings.
    method : str
        One of ``"z-norm"``, ``"t-norm"``, ``"s-norm"``, ``"as-norm"``.
    topk : int | None
        Top-k cohort scores per utterance; ``None`` is the whole cohort
        (300 for ``"as-norm"``, capped at the cohort size).
    eps : float
        Floor of the standard deviations.

    Returns
    -------
    numpy.ndarray
        ``[T]`` float64 normalised scores.

    Example
    -------
    >>> emb = torch.eye(2)
    >>> cohort = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    >>> normalize_scores([0.5], [0], [1], emb, cohort, "z-norm").round(4).tolist()
    [0.5]
    >>> normalize_scores([0.5], [0], [1], emb, cohort, "t-norm").round(4).tolist()
    [0.2887]
    """
    if method not in NORM_METHODS:
        raise ValueError(
            f"unknown score normalisation {method!r}; use one of {NORM_METHODS}"
        )
    if method == "as-norm" and topk is None:
        topk = min(300, len(cohort))
    scores = np.asarray(scores, dtype=np.float64)
    enrol_idx = np.asarray(enrol_idx, dtype=np.int64)
    test_idx = np.asarray(test_idx, dtype=np.int64)
    # Only the utterances that appear in a trial need statistics.
    used = np.union1d(enrol_idx, test_idx)
    mean_u, std_u = cohort_stats(
        _as_tensor(emb)[torch.from_numpy(used)], cohort, topk
    )
    mean = np.zeros(len(emb))
    std = np.ones(len(emb))
    mean[used] = mean_u.double().numpy()
    std[used] = np.maximum(std_u.double().numpy(), eps)
    z = None
    t = None
    if method in ("z-norm", "s-norm", "as-norm"):
        z = (scores - mean[enrol_idx]) / std[enrol_idx]
    if method in ("t-norm", "s-norm", "as-norm"):
        t = (scores - mean[test_idx]) / std[test_idx]
    if z is None:
        return t
    if t is None:
        return z
    return 0.5 * (z + t)
