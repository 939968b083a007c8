"""Contrastive terms of the multi-objective clustering loss: SupCon on the
online pseudo-labels (with its low-rank form for many clusters), and the
InfoNCE and VICReg terms of the ablation (Table 1).

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition", Appendix F. Where the paper is silent
the choices follow the reference code of the methods (SupCon: Khosla et al.
/ wangz10/contrastive_loss; VICReg: Bardes et al.). Every public loss is
wrapped in :func:`~speechbrain_ssv.utils.precision.float32_loss`, so it runs
in float32 under autocast, as the other clustering terms
(:mod:`speechbrain_ssv.losses.clustering`).

Authors
 * speechbrain-ssv developers 2026
"""

import torch
import torch.nn.functional as F

from speechbrain_ssv.utils.precision import float32_loss

__all__ = [
    "info_nce_loss",
    "supcon_loss",
    "supcon_loss_low_rank",
    "vicreg_loss",
]


def _as_views(features):
    if features.dim() == 2:
        return features.unsqueeze(1)
    if features.dim() != 3:
        raise ValueError(
            "features must be [N, D] or [N, n_views, D]; got shape "
            f"{tuple(features.shape)}"
        )
    return features


@float32_loss
def supcon_loss(features, labels, temperature=1.0, base_temperature=1.0):
    """Supervised contrastive loss (Khosla et al., ``L^sup_out``), on
    l2-normalised features with the online pseudo-labels as labels
    (Sec. 2, Appendix F).

    For every anchor ``i`` (all views of all samples), with ``A(i)`` all
    other rows and ``P(i)`` the rows of ``A(i)`` sharing ``i``'s label::

        l_i = -(tau / tau_b) / |P(i)| * sum_{p in P(i)}
              log( exp(z_i.z_p / tau) / sum_{a in A(i)} exp(z_i.z_a / tau) )

    and the loss is the mean of ``l_i`` over the anchors that have at least
    one positive. Anchors without positives (frequent with thousands of
    pseudo-classes and one view per sample) have no SupCon term: they are
    left out of the mean rather than counted as zero, so the loss does not
    shrink as clusters get finer. Paper settings: ``tau = tau_b = 1``.

    Arguments
    ---------
    features : torch.Tensor
        ``[N, D]`` or ``[N, n_views, D]`` (the logits, in the paper);
        l2-normalised here.
    labels : torch.Tensor
        ``[N]`` integer (pseudo-)labels, shared by the views of a sample.
    temperature : float
        ``tau``.
    base_temperature : float
        ``tau_b``.

    Returns
    -------
    torch.Tensor
        Scalar (0, still differentiable, when no anchor has a positive).

    Example
    -------
    >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> loss = supcon_loss(z, torch.tensor([0, 0, 1]))
    >>> round(float(loss), 4)  # -log(e / (e + 1)) for the two anchors of class 0
    0.3133
    """
    z = F.normalize(_as_views(features), dim=-1)
    n, v, d = z.shape
    labels = labels.reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(
            f"features hold {n} samples but labels {labels.shape[0]}"
        )
    z = z.transpose(0, 1).reshape(v * n, d)  # view-major, as SupContrast
    lab = labels.to(z.device).repeat(v)
    return _supcon_from_cosine(z @ z.t(), lab, temperature, base_temperature)


def _supcon_from_cosine(cosine, lab, temperature, base_temperature):
    # The loss of supcon_loss from the [M, M] cosine similarities of the
    # anchors and their labels.
    m = cosine.shape[0]
    logits = cosine / temperature
    not_self = ~torch.eye(m, dtype=torch.bool, device=cosine.device)
    logits = logits.masked_fill(~not_self, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (lab[:, None] == lab[None, :]) & not_self
    n_pos = pos.sum(dim=1)
    has_pos = n_pos > 0
    # 0 * (-inf) on the diagonal would be NaN: zero it before weighting.
    log_prob = log_prob.masked_fill(~not_self, 0.0)
    mean_log_pos = (log_prob * pos).sum(dim=1) / n_pos.clamp_min(1)
    per_anchor = -(temperature / base_temperature) * mean_log_pos
    if not bool(has_pos.any()):
        return (cosine * 0).sum()
    return per_anchor[has_pos].mean()


@float32_loss
def supcon_loss_low_rank(
    hidden, weight, bias, labels, temperature=1.0, base_temperature=1.0
):
    """:func:`supcon_loss` (one view per sample) on the l2-normalised logits
    ``z = hidden @ weight.T + bias`` of a linear output layer, computed
    without the ``[N, C]`` by ``[C, N]`` product.

    Why: the cosine similarities only need the Gram matrix
    ``z z^T = h~ (W~^T W~) h~^T`` with ``h~ = [hidden, 1]`` and
    ``W~ = [weight, bias]``, whose middle factor is ``(S+1) x (S+1)``. That
    costs ``C S^2 + N S^2 + N^2 S`` multiply-adds instead of ``N^2 C``: with
    the bench's ``N = 10240``, ``C = 10000``, ``S = 1200`` about 8 times
    fewer, forward and backward. The value and the gradients (to
    ``hidden``, ``weight`` and ``bias``) are those of ``supcon_loss(hidden
    @ weight.T + bias, labels)`` up to rounding; it pays off only when
    ``C > S + 1``.

    Arguments
    ---------
    hidden : torch.Tensor
        ``[N, S]`` inputs of the output layer.
    weight : torch.Tensor
        ``[C, S]`` its weight.
    bias : torch.Tensor | None
        ``[C]`` its bias.
    labels : torch.Tensor
        ``[N]`` integer (pseudo-)labels.
    temperature : float
        ``tau``.
    base_temperature : float
        ``tau_b``.

    Returns
    -------
    torch.Tensor
        Scalar, as :func:`supcon_loss`.

    Example
    -------
    >>> h, w, b = torch.randn(6, 3), torch.randn(50, 3), torch.randn(50)
    >>> y = torch.tensor([0, 0, 1, 1, 2, 2])
    >>> direct = supcon_loss(h @ w.t() + b, y)
    >>> torch.allclose(supcon_loss_low_rank(h, w, b, y), direct, atol=1e-5)
    True
    """
    if hidden.dim() != 2 or weight.dim() != 2:
        raise ValueError(
            f"hidden must be [N, S] and weight [C, S]; got shapes "
            f"{tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden has {hidden.shape[1]} features but weight expects "
            f"{weight.shape[1]}"
        )
    labels = labels.reshape(-1)
    if labels.shape[0] != hidden.shape[0]:
        raise ValueError(
            f"hidden holds {hidden.shape[0]} samples but labels "
            f"{labels.shape[0]}"
        )
    if bias is not None:
        hidden = torch.cat([hidden, hidden.new_ones(hidden.shape[0], 1)], 1)
        weight = torch.cat([weight, bias.reshape(-1, 1)], 1)
    proj = hidden @ (weight.t() @ weight)  # [N, S~]
    gram = proj @ hidden.t()
    # Squared norms from the same factors: diag(gram) without the product.
    sq_norm = (proj * hidden).sum(dim=1)
    # F.normalize's floor (1e-12 on the norm), so a zero row behaves alike.
    inv = sq_norm.clamp_min(1e-24).rsqrt()
    cosine = gram * inv[:, None] * inv[None, :]
    lab = labels.to(hidden.device)
    return _supcon_from_cosine(cosine, lab, temperature, base_temperature)


@float32_loss
def info_nce_loss(z1, z2, temperature=1.0):
    """InfoNCE / NT-Xent (Appendix F): each of the ``2N`` rows is an anchor,
    its other view the positive and the other ``2N - 2`` rows negatives,
    cosine similarity, averaged over both directions (paper ``tau = 1``).

    Arguments
    ---------
    z1 : torch.Tensor
        ``[N, D]`` representations of the first views.
    z2 : torch.Tensor
        ``[N, D]`` of the second views.
    temperature : float
        ``tau``.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> z = torch.eye(3)
    >>> loss = info_nce_loss(z, z, temperature=0.1)
    >>> round(float(loss), 4)  # -log(e^10 / (e^10 + 4)): 4 orthogonal negatives
    0.0002
    """
    if z1.shape != z2.shape:
        raise ValueError(
            f"the two views differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}"
        )
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(
        torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf")
    )
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(
        z.device
    )
    return F.cross_entropy(sim, target)


def _variance_term(z, gamma, eps):
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def _covariance_term(z):
    n, c = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.t() @ zc / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / c


@float32_loss
def vicreg_loss(
    z1,
    z2=None,
    sim_weight=1.0,
    var_weight=1.0,
    cov_weight=0.5,
    gamma=1.0,
    eps=1e-4,
):
    """VICReg (Appendix F): ``lam s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]``.

    ``v(Z) = (1/C) sum_j max(0, gamma - sqrt(Var(Z^j) + eps))``,
    ``c(Z) = (1/C) sum_{i != j} Cov(Z)_ij^2`` (unbiased covariance) and
    ``s(Z, Z') = (1/N) sum_i ||Z_i - Z'_i||^2`` (a sum over dimensions, as
    printed; the VICReg paper averages over them). Paper weights
    ``lam = 1, mu = 1, nu = 0.5``. Without a second view (``z2=None``, the
    augmentation-free rows of Table 1) only ``mu v(Z) + nu c(Z)`` remains.

    Arguments
    ---------
    z1 : torch.Tensor
        ``[N, C]`` logits (``N >= 2``).
    z2 : torch.Tensor | None
        ``[N, C]`` logits of the second view.
    sim_weight : float
        ``lambda``.
    var_weight : float
        ``mu``.
    cov_weight : float
        ``nu``.
    gamma : float
        Target standard deviation.
    eps : float
        Added to the variance.

    Returns
    -------
    dict
        ``loss`` and the detached terms ``invariance``, ``variance``,
        ``covariance``.

    Example
    -------
    >>> z = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # std sqrt(2), cov -2
    >>> out = vicreg_loss(z)
    >>> float(out["variance"]), float(out["covariance"])  # 2 * (-2)^2 / 2
    (0.0, 4.0)
    """
    if z1.dim() != 2 or z1.shape[0] < 2:
        raise ValueError(
            f"VICReg needs [N, C] with N >= 2; got shape {tuple(z1.shape)}"
        )
    views = [z1] if z2 is None else [z1, z2]
    if z2 is not None and z2.shape != z1.shape:
        raise ValueError(
            f"the two views differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}"
        )
    inv = (
        (z1 - z2).pow(2).sum(dim=1).mean()
        if z2 is not None
        else torch.zeros((), device=z1.device, dtype=z1.dtype)
    )
    var = sum(_variance_term(z, gamma, eps) for z in views)
    cov = sum(_covariance_term(z) for z in views)
    loss = sim_weight * inv + var_weight * var + cov_weight * cov
    return {
        "loss": loss,
        "invariance": inv.detach(),
        "variance": var.detach(),
        "covariance": cov.detach(),
    }
