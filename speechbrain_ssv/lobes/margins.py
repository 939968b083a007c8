"""Margin-softmax losses as modules with one interface,
``loss = module(cosine, labels, feature_norms=None)``, for training on
pseudo-labels (Appendix C of Fathan, Zhu and Alam; formulas in
:mod:`speechbrain_ssv.losses.margins`).

``cosine`` is what SpeechBrain's ECAPA ``Classifier`` returns (``[N, 1, C]``
or ``[N, C]``); ``labels`` are ``[N]`` or ``[N, 1]`` class indices.
:class:`AdaFace` also needs the norms of the un-normalised embeddings and
holds their running statistics as buffers, so they are checkpointed.

Authors
 * speechbrain-ssv developers 2026
"""

import torch
import torch.nn.functional as F
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

from speechbrain_ssv.losses.margins import adaface_logits, ocsoftmax_loss

__all__ = ["AAMSoftmax", "AdaFace", "OCSoftmax"]


class AAMSoftmax(torch.nn.Module):
    """AAM-softmax (Eq. 5), SpeechBrain's own
    ``LogSoftmaxWrapper(AdditiveAngularMargin(m, s))`` behind the common
    interface (paper: ``s = 30, m = 0.1``).

    Arguments
    ---------
    margin : float
        ``m``.
    scale : float
        ``s``.
    easy_margin : bool
        ArcFace's easy margin.

    Example
    -------
    >>> loss = AAMSoftmax()
    >>> cos = torch.tensor([[[0.9, 0.1]], [[0.2, 0.8]]])
    >>> float(loss(cos, torch.tensor([[0], [1]]))) < 0.1
    True
    """

    def __init__(self, margin=0.1, scale=30.0, easy_margin=False):
        super().__init__()
        self.loss = LogSoftmaxWrapper(
            AdditiveAngularMargin(margin, scale, easy_margin)
        )

    def forward(self, cosine, labels, feature_norms=None):
        """Mean AAM cross-entropy.

        Arguments
        ---------
        cosine : torch.Tensor
            ``[N, 1, C]`` or ``[N, C]``.
        labels : torch.Tensor
            ``[N]`` or ``[N, 1]``.
        feature_norms : torch.Tensor | None
            Unused (common interface).

        Returns
        -------
        torch.Tensor
            Scalar.
        """
        cosine = cosine.reshape(cosine.shape[0], 1, -1)
        return self.loss(cosine, labels.reshape(-1, 1).long())


class OCSoftmax(torch.nn.Module):
    """One-class softmax over ``C`` speakers; see
    :func:`speechbrain_ssv.losses.margins.ocsoftmax_loss`.

    Arguments
    ---------
    m_pos : float
        Target margin (0.9).
    m_neg : float
        Non-target margin (0.2).
    alpha : float
        Scale (20).
    negatives : str
        ``"sum"`` or ``"mean"`` over the non-target classes.

    Example
    -------
    >>> loss = OCSoftmax()
    >>> round(float(loss(torch.tensor([[0.9, 0.2, 0.2]]), torch.tensor([0]))), 4)
    2.0794
    """

    def __init__(self, m_pos=0.9, m_neg=0.2, alpha=20.0, negatives="sum"):
        super().__init__()
        self.m_pos, self.m_neg, self.alpha = m_pos, m_neg, alpha
        self.negatives = negatives

    def forward(self, cosine, labels, feature_norms=None):
        """Mean OC-softmax loss.

        Arguments
        ---------
        cosine : torch.Tensor
            ``[N, 1, C]`` or ``[N, C]``.
        labels : torch.Tensor
            ``[N]`` or ``[N, 1]``.
        feature_norms : torch.Tensor | None
            Unused (common interface).

        Returns
        -------
        torch.Tensor
            Scalar.
        """
        return ocsoftmax_loss(
            cosine, labels, self.m_pos, self.m_neg, self.alpha, self.negatives
        )


class AdaFace(torch.nn.Module):
    """AdaFace loss with running statistics of the embedding norms; see
    :func:`speechbrain_ssv.losses.margins.adaface_logits`.

    In training mode each call first moves the running mean and standard
    deviation (unbiased, over the batch) of the clipped, detached norms by
    ``momentum`` towards the batch values, then computes the logits with the
    updated statistics, as the AdaFace code does (``t_alpha = 0.01``; initial
    mean 20 and standard deviation 100, which make the first margins those
    of CosFace until the statistics adapt). In eval mode the statistics are
    frozen.

    Arguments
    ---------
    margin : float
        ``m`` (0.4).
    h : float
        ``h`` (0.333).
    scale : float
        ``s`` (64).
    momentum : float
        EMA weight of the new batch (``t_alpha``).
    eps : float
        Numerical guard.
    init_mean : float
        Initial running mean of the norms.
    init_std : float
        Initial running standard deviation.

    Example
    -------
    >>> loss = AdaFace(momentum=0.5)
    >>> cos = torch.tensor([[0.7, 0.1], [0.2, 0.6]])
    >>> _ = loss(cos, torch.tensor([0, 1]), torch.tensor([10.0, 30.0]))
    >>> float(loss.running_mean), round(float(loss.running_std), 3)
    (20.0, 57.071)
    """

    def __init__(
        self,
        margin=0.4,
        h=0.333,
        scale=64.0,
        momentum=0.01,
        eps=1e-3,
        init_mean=20.0,
        init_std=100.0,
    ):
        super().__init__()
        self.margin, self.h, self.scale = margin, h, scale
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.tensor(float(init_mean)))
        self.register_buffer("running_std", torch.tensor(float(init_std)))

    def logits(self, cosine, labels, feature_norms):
        """AdaFace logits with the current statistics (updated first in
        training mode).

        Arguments
        ---------
        cosine : torch.Tensor
            ``[N, 1, C]`` or ``[N, C]``.
        labels : torch.Tensor
            ``[N]`` or ``[N, 1]``.
        feature_norms : torch.Tensor
            ``[N]`` norms of the un-normalised embeddings.

        Returns
        -------
        torch.Tensor
            ``[N, C]``.
        """
        if feature_norms is None:
            raise ValueError(
                "AdaFace needs feature_norms: the l2 norms of the embeddings "
                "before normalisation"
            )
        norms = feature_norms.reshape(-1).detach().clamp(0.001, 100.0)
        if self.training and norms.numel() > 1:
            with torch.no_grad():
                a = self.momentum
                self.running_mean.mul_(1 - a).add_(
                    a * norms.mean().to(self.running_mean)
                )
                self.running_std.mul_(1 - a).add_(
                    a * norms.std().to(self.running_std)
                )
        return adaface_logits(
            cosine,
            labels,
            norms,
            margin=self.margin,
            h=self.h,
            scale=self.scale,
            batch_mean=self.running_mean,
            batch_std=self.running_std,
            eps=self.eps,
        )

    def forward(self, cosine, labels, feature_norms=None):
        """Mean cross-entropy of the AdaFace logits.

        Arguments
        ---------
        cosine : torch.Tensor
            ``[N, 1, C]`` or ``[N, C]``.
        labels : torch.Tensor
            ``[N]`` or ``[N, 1]``.
        feature_norms : torch.Tensor
            ``[N]``.

        Returns
        -------
        torch.Tensor
            Scalar.
        """
        logits = self.logits(cosine, labels, feature_norms)
        return F.cross_entropy(logits, labels.reshape(-1).long())
