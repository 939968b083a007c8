"""Disentanglement objective of Mun, Han et al., "Disentangled speaker
representation learning via mutual information minimization" (FFSVC 2022),
as pure functions.

Equation numbers refer to that paper. The mutual-information (MI) terms are
the variational CLUB estimates of Cheng et al. (ICML 2020, Eq. 3 here): for
pairs ``(x_i, y_i)``, ``i = 1..N``, and a variational network
``q(y | x)``::

    I_vCLUB = 1/N^2 sum_i sum_j [log q(y_i | x_i) - log q(y_j | x_i)]

Three instances are used (Eq. 12, 15, 18): ``I(x^s; x^d)`` with a Gaussian
``q(x^d | x^s)`` (Eq. 13) and ``I(x^d; y^s)``, ``I(x^s; y^d)`` with a
categorical ``q(y | x)`` given by a softmax (Eq. 16, 19). The networks that
produce ``q`` live in :mod:`speechbrain_ssv.lobes.club`; this module holds
only the formulas, so each is testable against a hand computation.

Neither bound builds an ``N x N x D`` (or ``N x N x C``) tensor: the Gaussian
one expands the square, which makes it ``O(N D)``; the categorical one is a
gather of an ``N x N`` matrix out of the ``N x C`` log-probabilities.

The public functions are wrapped in
:func:`~speechbrain_ssv.utils.precision.float32_loss`, so under autocast
(``--precision bf16`` / ``fp16``) ``exp(-logvar)``, the squared errors and
the bounds, which subtract nearly equal log-likelihoods, stay in float32.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import torch

from speechbrain_ssv.losses.common import (
    angular_prototypical_loss,
    cosine_logits,
)
from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.precision import float32_loss

__all__ = [
    "PAPER_WEIGHTS",
    "TABLE1_ROWS",
    "ap_over_pairs",
    "categorical_club_bound",
    "categorical_log_likelihood",
    "disentangle_total",
    "gaussian_club_bound",
    "gaussian_log_likelihood",
    "table1_weights",
]

#: Weights of Eq. 21 (Sec. IV-D): ``lambda_cs = 5``, ``lambda_cd = 10``,
#: ``lambda_m1 = 0.5``, ``lambda_m2 = 0.1``, ``lambda_m3 = 0.1``.
PAPER_WEIGHTS = {
    "cls_s": 5.0,  # L^s_cls = L^s_AAM + L^s_AP (Eq. 10)
    "cls_d": 10.0,  # L^d_cls, device AAM (Eq. 11)
    "mi_s_d": 0.5,  # I(x^s; x^d), Eq. 12
    "mi_d_ys": 0.1,  # I(x^d; y^s), Eq. 15
    "mi_s_yd": 0.1,  # I(x^s; y^d), Eq. 18
}

#: The fine-tuned rows of Table I: which terms of Eq. 21 each row trains with
#: (row 1, the pre-trained front-end without fine-tuning, has no objective).
TABLE1_ROWS = {
    2: ("cls_s",),
    3: ("cls_s", "cls_d"),
    4: ("cls_s", "cls_d", "mi_s_d"),
    5: ("cls_s", "cls_d", "mi_d_ys", "mi_s_yd"),
    6: ("cls_s", "cls_d", "mi_s_d", "mi_d_ys", "mi_s_yd"),
}

_LOG_2PI = math.log(2.0 * math.pi)


@float32_loss
def gaussian_log_likelihood(mu, logvar, y):
    """Per-sample ``log N(y; mu, diag(exp(logvar)))`` (Eq. 13), summed over
    dimensions.

    Arguments
    ---------
    mu : torch.Tensor
        ``[N, D]`` means ``mu(x_i)``.
    logvar : torch.Tensor
        ``[N, D]`` log-variances ``log sigma^2(x_i)``.
    y : torch.Tensor
        ``[N, D]`` targets ``y_i``.

    Returns
    -------
    torch.Tensor
        ``[N]`` log-densities, with the ``-1/2 log 2 pi`` constant (the
        reference code drops it and doubles the rest; neither changes the
        optimum or the bound).

    Example
    -------
    >>> z = torch.zeros(1, 2)
    >>> round(float(gaussian_log_likelihood(z, z, z)[0]), 4)  # -log(2 pi)
    -1.8379
    """
    return -0.5 * (
        _LOG_2PI + logvar + (y - mu).pow(2) * torch.exp(-logvar)
    ).sum(-1)


@float32_loss
def gaussian_club_bound(mu, logvar, y):
    """vCLUB estimate of ``I(x; y)`` with a Gaussian ``q(y | x)``, Eq. 12-13.

    ``1/N sum_i [log q(y_i | x_i) - 1/N sum_j log q(y_j | x_i)]``. The
    normalisers ``-1/2 (log 2 pi + logvar_i)`` are the same in both terms of
    row ``i`` and cancel. The mean over ``j`` of the squared error is
    expanded instead of materialised::

        1/N sum_j (y_jd - mu_id)^2 = var_d(y) + (mean_d(y) - mu_id)^2

    (population variance and mean over the batch), which is exact, ``O(N D)``
    and better conditioned than ``E[y^2] - 2 mu E[y] + mu^2``. Gradients reach
    ``mu``, ``logvar`` and ``y``; the caller decides which of them may move
    (see :func:`speechbrain_ssv.lobes.club.frozen`).

    Arguments
    ---------
    mu : torch.Tensor
        ``[N, D]`` means of ``q(y | x_i)``.
    logvar : torch.Tensor
        ``[N, D]`` log-variances of ``q(y | x_i)``.
    y : torch.Tensor
        ``[N, D]`` samples ``y_i`` paired with ``x_i``.

    Returns
    -------
    torch.Tensor
        Scalar estimate (nats).

    Example
    -------
    >>> mu = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[0.0], [1.0]])
    >>> # positive terms 0; each row's negative is -(0^2 + 1^2) / 2 / 2
    >>> float(gaussian_club_bound(mu, torch.zeros(2, 1), y))
    0.25
    """
    inv_var = torch.exp(-logvar)
    positive = -0.5 * ((y - mu).pow(2) * inv_var).sum(-1)
    y_mean = y.mean(0, keepdim=True)
    y_var = (y - y_mean).pow(2).mean(0, keepdim=True)
    negative = -0.5 * ((y_var + (y_mean - mu).pow(2)) * inv_var).sum(-1)
    return (positive - negative).mean()


@float32_loss
def categorical_log_likelihood(log_probs, labels):
    """``log q(y_i | x_i)`` of a categorical ``q`` (Eq. 16, 19: ``-CE``).

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[N, C]`` log-softmax outputs.
    labels : torch.Tensor
        ``[N]`` class indices.

    Returns
    -------
    torch.Tensor
        ``[N]``.

    Example
    -------
    >>> lp = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    >>> categorical_log_likelihood(lp, torch.tensor([0, 1])).exp()
    tensor([0.5000, 0.7500])
    """
    return log_probs.gather(1, labels.reshape(-1, 1).long()).squeeze(1)


@float32_loss
def categorical_club_bound(log_probs, labels):
    """vCLUB estimate of ``I(x; y)`` for a discrete label ``y``, Eq. 15/18.

    ``log q(y_j | x_i) = log_probs[i, y_j]``, so the ``N x N`` matrix of
    Eq. 15 is a column gather of the ``N x C`` log-probabilities: no
    ``N x N x C`` tensor (the reference ``CLUBForCategorical`` repeats the
    logits ``N`` times, 390 MB at ``N = 128, C = 5994``).

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[N, C]`` log-softmax of the variational network's logits for
        ``x_i``.
    labels : torch.Tensor
        ``[N]`` class indices ``y_i``.

    Returns
    -------
    torch.Tensor
        Scalar ``mean_i log_probs[i, y_i] - mean_{i,j} log_probs[i, y_j]``.

    Example
    -------
    >>> lp = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    >>> expected = (lp[0, 0] + lp[1, 1]) / 2 - lp.mean()
    >>> bool(torch.isclose(categorical_club_bound(lp, torch.tensor([0, 1])), expected))
    True
    """
    labels = labels.reshape(-1).long()
    pairwise = log_probs.index_select(1, labels)  # [N, N]: log q(y_j | x_i)
    return pairwise.diagonal().mean() - pairwise.mean()


@float32_loss
def ap_over_pairs(emb_a, emb_b, scale=None):
    """Angular prototypical loss over two utterances per speaker, Eq. 9.

    Row ``i`` is speaker ``i``'s first utterance, column ``j`` speaker
    ``j``'s second one (the prototype is one utterance, Sec. IV-D)::

        L_AP = -1/N sum_i log softmax_j(sim(x_{i,1}, x_{j,2}))[i]

    with ``sim = w cos + b``. The speakers of a batch must be distinct
    (:class:`speechbrain_ssv.data.samplers.SpeakerPairSampler`), otherwise a
    same-speaker column would count as a negative.

    Arguments
    ---------
    emb_a : torch.Tensor
        ``[N, D]`` (or ``[N, 1, D]``) first utterance of each speaker.
    emb_b : torch.Tensor
        Same shape, second utterance of the same speakers, same order.
    scale : torch.nn.Module | tuple | None
        A module called as ``scale(emb_a, emb_b)`` returning ``[N, N]``
        logits (:class:`speechbrain_ssv.lobes.heads.AngularScale`, learnable
        ``w`` and ``b``), a fixed ``(w, b)`` pair, or ``None`` for bare
        cosines as Eq. 9 prints them.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> loss = ap_over_pairs(a, a, scale=(10.0, -5.0))
    >>> round(float(loss), 6) == round(-math.log(1 / (1 + math.exp(-10))), 6)
    True
    """
    emb_a = emb_a.reshape(emb_a.shape[0], -1)
    emb_b = emb_b.reshape(emb_b.shape[0], -1)
    if emb_a.shape != emb_b.shape:
        raise SSVInputError(
            "ap_over_pairs",
            f"emb_a {tuple(emb_a.shape)} and emb_b {tuple(emb_b.shape)} "
            "differ; expected one row per speaker in both",
        )
    if scale is None:
        logits = cosine_logits(emb_a, emb_b)
    elif isinstance(scale, torch.nn.Module):
        logits = scale(emb_a, emb_b)
    else:
        w, b = scale
        logits = cosine_logits(emb_a, emb_b, w, b)
    return angular_prototypical_loss(logits)


@float32_loss
def disentangle_total(terms, weights=None):
    """Weighted sum of Eq. 21 with switchable terms.

    ``L = lambda_cs L^s_cls + lambda_cd L^d_cls + lambda_m1 I(x^s; x^d)
    + lambda_m2 I(x^d; y^s) + lambda_m3 I(x^s; y^d)``. A term is *off* when
    its weight is 0 or absent from ``weights``; an off term may be missing
    from ``terms`` or ``None`` (so the caller need not compute it). The
    Table I rows are :data:`TABLE1_ROWS` (see :func:`table1_weights`).

    Arguments
    ---------
    terms : dict
        Name -> scalar tensor (unweighted), e.g. ``cls_s``, ``cls_d``,
        ``mi_s_d``, ``mi_d_ys``, ``mi_s_yd``; other names work too.
    weights : dict | None
        Name -> weight; ``None`` uses :data:`PAPER_WEIGHTS`.

    Returns
    -------
    dict
        Each *on* term weighted (``name -> weight * term``) and ``total``,
        their sum.

    Example
    -------
    >>> t = {"cls_s": torch.tensor(1.0), "cls_d": torch.tensor(2.0), "mi_s_d": None}
    >>> out = disentangle_total(t, {"cls_s": 5.0, "cls_d": 10.0, "mi_s_d": 0.0})
    >>> sorted(out), float(out["total"])
    (['cls_d', 'cls_s', 'total'], 25.0)
    """
    weights = PAPER_WEIGHTS if weights is None else weights
    out = {}
    for name, weight in weights.items():
        if name == "total":
            raise SSVInputError(
                "weights", "'total' is reserved for the sum; rename the term"
            )
        weight = float(weight)
        if weight < 0:
            raise SSVInputError(
                f"weights[{name!r}]",
                f"is {weight}; expected >= 0 (0 switches the term off)",
            )
        if weight == 0.0:
            continue
        term = terms.get(name)
        if term is None:
            raise SSVInputError(
                f"terms[{name!r}]",
                f"is missing but its weight is {weight}; compute it or set "
                "its weight to 0",
            )
        out[name] = weight * term
    if not out:
        raise SSVInputError(
            "weights", f"every term is switched off ({dict(weights)})"
        )
    out["total"] = sum(out.values())
    return out


def table1_weights(row, weights=None):
    """Weights of Eq. 21 for one fine-tuned row of Table I.

    Arguments
    ---------
    row : int
        2 to 6 (see :data:`TABLE1_ROWS`).
    weights : dict | None
        Weights of the terms that are on (default :data:`PAPER_WEIGHTS`).

    Returns
    -------
    dict
        All five terms, the ones the row does not use set to 0.

    Example
    -------
    >>> table1_weights(4)
    {'cls_s': 5.0, 'cls_d': 10.0, 'mi_s_d': 0.5, 'mi_d_ys': 0.0, 'mi_s_yd': 0.0}
    """
    if row not in TABLE1_ROWS:
        raise SSVInputError(
            "row", f"is {row!r}; expected one of {sorted(TABLE1_ROWS)}"
        )
    weights = PAPER_WEIGHTS if weights is None else weights
    on = TABLE1_ROWS[row]
    return {k: (float(weights[k]) if k in on else 0.0) for k in PAPER_WEIGHTS}
