"""Margin softmaxes for training a speaker encoder on pseudo-labels: AAM
(ArcFace), OC-softmax and AdaFace.

Fathan, Zhu and Alam ("An efficient clustering algorithm for self-supervised
speaker recognition") train ECAPA-TDNN on their pseudo-labels with AAM-softmax
(Eq. 5, Appendix D.5: ``s = 30, m = 0.1``) and compare margin variants in
Appendix C (Table 3), among them OC-softmax (Zhang, Jiang and Duan, 2021) and
AdaFace (Kim, Jain and Liu, 2022). Appendix C gives no formulas or settings
for these two; the defaults below are those of their own papers and each
function says how it is generalised to many speakers.

Every function takes the cosine matrix ``cos(theta_{j,i})`` between the
l2-normalised embeddings and class weights (what SpeechBrain's ECAPA
``Classifier`` returns, squeezed to ``[N, C]``) and the integer labels.
They are wrapped in :func:`~speechbrain_ssv.utils.precision.float32_loss`:
under autocast (``--precision bf16`` / ``fp16``) the margins (an angle of
0.1 rad on cosines near 1) and the large scales (30, 64) still compute in
float32.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.nnet.losses import AdditiveAngularMargin

from speechbrain_ssv.utils.precision import float32_loss

__all__ = ["aam_logits", "adaface_logits", "ocsoftmax_loss"]


def _check(cosine, labels):
    if cosine.dim() == 3 and cosine.shape[1] == 1:
        cosine = cosine.squeeze(1)
    if cosine.dim() != 2:
        raise ValueError(
            f"cosine must be [N, C] (or [N, 1, C]); got shape {tuple(cosine.shape)}"
        )
    labels = labels.reshape(-1).long()
    if labels.shape[0] != cosine.shape[0]:
        raise ValueError(
            f"cosine has {cosine.shape[0]} rows but labels {labels.shape[0]}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= cosine.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {cosine.shape[1] - 1}]; got "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return cosine, labels


@float32_loss
def aam_logits(cosine, labels, margin=0.1, scale=30.0, easy_margin=False):
    """AAM-softmax (ArcFace) logits, Eq. 5: ``s cos(theta_y + m)`` for the
    target class and ``s cos(theta_j)`` for the others; ``cross_entropy`` of
    these is ``L_AAMSoftmax``.

    Computed by SpeechBrain's ``AdditiveAngularMargin`` (reused as is), so
    it includes its standard guard: where ``theta_y + m > pi`` the target
    logit becomes ``s (cos theta_y - m sin m)`` (or, with ``easy_margin``,
    no margin where ``cos theta_y <= 0``), keeping the logit monotone in
    ``theta``. Computation in float32, as SpeechBrain does.

    Arguments
    ---------
    cosine : torch.Tensor
        ``[N, C]`` cosines.
    labels : torch.Tensor
        ``[N]`` class indices.
    margin : float
        ``m`` (paper: 0.1).
    scale : float
        ``s`` (paper: 30).
    easy_margin : bool
        ArcFace's easy-margin variant.

    Returns
    -------
    torch.Tensor
        ``[N, C]`` logits.

    Example
    -------
    >>> cos = torch.tensor([[0.5, 0.2]])
    >>> z = aam_logits(cos, torch.tensor([0]), margin=0.1, scale=30.0)
    >>> torch.allclose(z, torch.tensor([[30 * math.cos(math.acos(0.5) + 0.1), 6.0]]))
    True
    """
    cosine, labels = _check(cosine, labels)
    one_hot = F.one_hot(labels, cosine.shape[1]).to(torch.float32)
    return AdditiveAngularMargin(margin, scale, easy_margin)(cosine, one_hot)


@float32_loss
def ocsoftmax_loss(
    cosine, labels, m_pos=0.9, m_neg=0.2, alpha=20.0, negatives="sum"
):
    """One-class softmax (Zhang, Jiang and Duan 2021), one class per speaker.

    OC-softmax for one class is
    ``log(1 + exp(alpha (m_y - cos theta_i) (-1)^y))``: target samples are
    pushed above cosine ``m_pos`` and non-targets below ``m_neg``, with no
    competition between classes (so no shared distribution is assumed, the
    property Appendix C credits). With ``C`` speakers each sample is the
    target of its own class and a non-target of every other one::

        l_i = softplus(alpha (m_pos - cos_{i,y_i}))
              + R_{j != y_i} softplus(alpha (cos_{i,j} - m_neg))

    where ``R`` is a sum (``negatives="sum"``: every (sample, class) pair is
    one binary OC-softmax term) or a mean over the ``C - 1`` other classes
    (``"mean"``: the target and non-target parts weigh equally whatever
    ``C``). The loss is the mean of ``l_i``. Defaults are the OC-softmax
    paper's (``m_0 = 0.9``, ``m_1 = 0.2``, ``alpha = 20``).

    Arguments
    ---------
    cosine : torch.Tensor
        ``[N, C]`` cosines (``C >= 2``).
    labels : torch.Tensor
        ``[N]`` class indices.
    m_pos : float
        Target margin ``m_0``.
    m_neg : float
        Non-target margin ``m_1``.
    alpha : float
        Scale.
    negatives : str
        ``"sum"`` or ``"mean"``.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> cos = torch.tensor([[0.9, 0.2, 0.2]])
    >>> round(float(ocsoftmax_loss(cos, torch.tensor([0]))), 4)  # 3 log 2
    2.0794
    """
    cosine, labels = _check(cosine, labels)
    if negatives not in ("sum", "mean"):
        raise ValueError(
            f"negatives must be 'sum' or 'mean', got {negatives!r}"
        )
    if cosine.shape[1] < 2:
        raise ValueError("ocsoftmax_loss needs at least 2 classes")
    target = cosine.gather(1, labels[:, None]).squeeze(1)
    pos = F.softplus(alpha * (m_pos - target))
    neg = F.softplus(alpha * (cosine - m_neg))
    neg = neg.scatter(1, labels[:, None], 0.0).sum(dim=1)
    if negatives == "mean":
        neg = neg / (cosine.shape[1] - 1)
    return (pos + neg).mean()


@float32_loss
def adaface_logits(
    cosine,
    labels,
    feature_norms,
    margin=0.4,
    h=0.333,
    scale=64.0,
    batch_mean=20.0,
    batch_std=100.0,
    eps=1e-3,
):
    """AdaFace logits (Kim, Jain and Liu, CVPR 2022).

    The margin adapts to the embedding norm, a proxy of quality:
    ``z = clip(h (||x|| - mu) / (sigma + eps), -1, 1)`` with ``mu, sigma``
    the (running) mean and standard deviation of the norms, then the target
    logit is ``s (cos(clip(theta_y - m z, eps, pi - eps)) - (m + m z))``
    and the others ``s cos theta_j`` (all cosines clamped to
    ``[-1 + eps, 1 - eps]``, as in the AdaFace code). ``z = -1`` (low norm)
    is ArcFace with margin ``m``; ``z = +1`` is CosFace with margin ``2 m``
    and a negative angular margin; ``z = 0`` is CosFace with ``m``. Defaults
    are the AdaFace paper's (``m = 0.4``, ``h = 0.333``, ``s = 64``); norms
    are clipped to ``[0.001, 100]`` and detached, as in its code.

    Arguments
    ---------
    cosine : torch.Tensor
        ``[N, C]`` cosines.
    labels : torch.Tensor
        ``[N]`` class indices.
    feature_norms : torch.Tensor
        ``[N]`` l2 norms of the un-normalised embeddings.
    margin : float
        ``m``.
    h : float
        Concentration ``h``.
    scale : float
        ``s``.
    batch_mean : float | torch.Tensor
        ``mu``: the running mean of the norms, kept by
        :class:`speechbrain_ssv.lobes.margins.AdaFace` (default: AdaFace's
        initial value).
    batch_std : float | torch.Tensor
        ``sigma``: their running standard deviation (default: AdaFace's
        initial value, which makes ``z`` close to 0).
    eps : float
        Guards the division, the cosine and the angle clipping.

    Returns
    -------
    torch.Tensor
        ``[N, C]`` logits.

    Example
    -------
    >>> cos = torch.tensor([[0.5, 0.1]])
    >>> norms = torch.tensor([20.0])
    >>> z = adaface_logits(cos, torch.tensor([0]), norms, batch_mean=20.0, batch_std=5.0)
    >>> torch.allclose(z, torch.tensor([[64 * (0.5 - 0.4), 6.4]]))  # z = 0: CosFace
    True
    """
    cosine, labels = _check(cosine, labels)
    norms = feature_norms.reshape(-1).detach().clamp(0.001, 100.0)
    if norms.shape[0] != cosine.shape[0]:
        raise ValueError(
            f"cosine has {cosine.shape[0]} rows but feature_norms {norms.shape[0]}"
        )
    z = (norms - batch_mean) / (batch_std + eps)
    z = (z * h).clamp(-1.0, 1.0).to(cosine.dtype)
    cosine = cosine.clamp(-1 + eps, 1 - eps)
    target = cosine.gather(1, labels[:, None]).squeeze(1)
    theta = torch.acos(target)
    theta = (theta - margin * z).clamp(eps, math.pi - eps)
    target_logit = torch.cos(theta) - (margin + margin * z)
    logits = cosine.scatter(1, labels[:, None], target_logit[:, None])
    return scale * logits
