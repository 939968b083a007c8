"""Multi-objective clustering losses: IMSAT (VAT + information maximisation),
virtual mixup and the augmentation-consistency term of the ablation
(Table 1). The contrastive terms (SupCon on online pseudo-labels, InfoNCE,
VICReg) are in :mod:`speechbrain_ssv.losses.contrastive`.

Equation numbers refer to Fathan, Zhu and Alam, "An efficient clustering
algorithm for self-supervised speaker recognition": the total loss is Eq. 1,
``L_IMSAT`` Eq. 2 (with ``R_SAT``, ``H(Y|X)`` and ``H(Y)`` spelt out in
Appendix E), ``L_Mixup`` Eq. 3, ``L_aug`` Eq. 4, InfoNCE / SupCon / VICReg in
Appendix F. Where the paper is silent the choices follow the reference code of
the methods it builds on (IMSAT: weihua916/imsat, VAT: Miyato et al., VMT:
xudonmao/VMT, SupCon: Khosla et al. / wangz10/contrastive_loss); each choice is
an argument and is named in the docstring.

Every public loss is wrapped in
:func:`~speechbrain_ssv.utils.precision.float32_loss`: under autocast
(``--precision bf16`` / ``fp16``) the entropies, KL divergences and
log-sum-exps, the VAT power iteration and the model calls made inside VAT
and mixup all run in float32. VAT needs it most: autocast would feed the
model ``x + xi d`` in bfloat16, whose resolution (~4e-3 relative) erases the
``xi = 1e-6`` step, and its gradients (~1e-20) underflow in float16.

Estimating ``H(Y)`` with many clusters
--------------------------------------
``H(Y) = h(mean_i p(y|x_i))`` is a property of the whole data set. Its batch
estimate is biased downwards, and badly so once ``C`` approaches the batch
size: a batch of ``B`` confident predictions can populate at most ``B``
clusters, so the gradient of the batch estimate pushes the samples *of each
batch* apart rather than balancing the clusters over the data. Pass
``marginal`` (a running estimate of ``p(y)``, see
:class:`speechbrain_ssv.lobes.clustering.RunningMarginal`) to
:func:`imsat_loss`: the gradient is then that of the data-set entropy at the
running marginal, ``dH/dp_bar_c = -(log p_bar_c + 1)``, applied to the batch
marginal (an unbiased estimate of the data marginal). See
:func:`marginal_entropy_surrogate`.

Authors
 * speechbrain-ssv developers 2026
"""

import torch
import torch.nn.functional as F

from speechbrain_ssv.losses.common import sample_lambda
from speechbrain_ssv.utils.precision import float32_loss

__all__ = [
    "augmentation_consistency_loss",
    "categorical_kl",
    "conditional_entropy",
    "imsat_loss",
    "knn_radius",
    "marginal_entropy",
    "marginal_entropy_surrogate",
    "mixup_inputs",
    "mixup_kl",
    "vat_loss",
    "vat_perturbation",
    "virtual_mixup_loss",
]


def _xlogx(p):
    # p * log p with 0 log 0 = 0 and a finite gradient at p = 0 (softmax
    # outputs underflow to exact zeros with thousands of confident clusters).
    return p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


@float32_loss
def conditional_entropy(probs):
    """``H(Y|X) = (1/N) sum_i h(p(y|x_i))`` (Eq. 2, Appendix E).

    Arguments
    ---------
    probs : torch.Tensor
        ``[N, C]`` cluster posteriors, rows summing to 1.

    Returns
    -------
    torch.Tensor
        Scalar, in nats.

    Example
    -------
    >>> p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    >>> round(float(conditional_entropy(p)), 4)  # (log 2 + 0) / 2
    0.3466
    """
    if probs.dim() != 2:
        raise ValueError(
            f"probs must be [N, C]; got shape {tuple(probs.shape)}"
        )
    return -_xlogx(probs).sum(dim=1).mean()


@float32_loss
def marginal_entropy(marginal):
    """``H(Y) = h(p(y))`` of a marginal distribution (Eq. 2, Appendix E).

    Arguments
    ---------
    marginal : torch.Tensor
        ``[C]`` probabilities summing to 1 (for the batch estimate pass
        ``probs.mean(0)``).

    Returns
    -------
    torch.Tensor
        Scalar, in nats.

    Example
    -------
    >>> round(float(marginal_entropy(torch.full((4,), 0.25))), 4)  # log 4
    1.3863
    """
    if marginal.dim() != 1:
        raise ValueError(
            f"marginal must be [C]; got shape {tuple(marginal.shape)}"
        )
    return -_xlogx(marginal).sum()


@float32_loss
def marginal_entropy_surrogate(batch_marginal, running_marginal):
    """``H(Y)`` valued at the running marginal, with the data-set gradient.

    Returns ``h(q) + sum_c (p_c - sg(p_c)) * (-log q_c)`` where ``p`` is the
    batch marginal (carries the gradient) and ``q`` the running estimate
    (treated as a constant). Its value is ``H(q)``, the entropy of the
    marginal estimated over many batches, and its gradient with respect to
    ``p`` is ``-log q_c``, which equals ``dH(q)/dq_c = -(log q_c + 1)`` up to
    a constant that cancels because ``sum_c dp_c = 0``. Since the batch
    marginal is an unbiased estimate of the data marginal, the expected
    update is the gradient of ``H(Y)`` over the data set, whatever the ratio
    of clusters to batch size (module docstring).

    Arguments
    ---------
    batch_marginal : torch.Tensor
        ``[C]``, ``probs.mean(0)`` of the batch (differentiable).
    running_marginal : torch.Tensor
        ``[C]``, a running estimate of ``p(y)`` (should already include the
        current batch, so no cluster of the batch has zero mass).

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> p = torch.tensor([0.7, 0.3], requires_grad=True)
    >>> q = torch.tensor([0.5, 0.5])
    >>> h = marginal_entropy_surrogate(p, q)
    >>> round(float(h.detach()), 4)  # H(q) = log 2
    0.6931
    >>> h.backward(); p.grad  # -log q
    tensor([0.6931, 0.6931])
    """
    if batch_marginal.shape != running_marginal.shape:
        raise ValueError(
            "batch and running marginals differ in shape: "
            f"{tuple(batch_marginal.shape)} vs {tuple(running_marginal.shape)}"
        )
    q = running_marginal.detach().to(batch_marginal.dtype)
    log_q = torch.log(q.clamp_min(torch.finfo(q.dtype).tiny))
    value = marginal_entropy(q)
    return value - ((batch_marginal - batch_marginal.detach()) * log_q).sum()


@float32_loss
def imsat_loss(probs, marginal=None, lam=0.5, mu=3.5, r_sat=None):
    """``L_IMSAT = R_SAT + lam * (H(Y|X) - mu * H(Y))`` (Eq. 2).

    Arguments
    ---------
    probs : torch.Tensor
        ``[N, C]`` cluster posteriors of the clean inputs.
    marginal : torch.Tensor | None
        ``[C]`` running estimate of ``p(y)`` (module docstring). ``None``
        uses the batch estimate ``h(mean_i p_i)`` of the IMSAT reference
        code, which is only sound when the batch is much larger than ``C``.
    lam : float
        ``lambda`` (paper: 0.5; IMSAT reference: 0.1).
    mu : float
        ``mu`` (paper: 3.5; IMSAT reference: 4).
    r_sat : torch.Tensor | None
        The VAT term from :func:`vat_loss`, added when given.

    Returns
    -------
    dict
        ``loss``, ``cond_entropy`` (``H(Y|X)``), ``marginal_entropy``
        (``H(Y)``; at the running marginal when one is given),
        ``batch_marginal_entropy`` and ``r_sat`` (0 when not given); all
        but ``loss`` detached.

    Example
    -------
    >>> p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    >>> out = imsat_loss(p, lam=1.0, mu=1.0)
    >>> round(float(out["cond_entropy"]), 4), round(float(out["marginal_entropy"]), 4)
    (0.3466, 0.5623)
    >>> round(float(out["loss"]), 4)  # 0.3466 - 0.5623
    -0.2158
    """
    h_cond = conditional_entropy(probs)
    batch_marginal = probs.mean(dim=0)
    if marginal is None:
        h_marg = marginal_entropy(batch_marginal)
    else:
        h_marg = marginal_entropy_surrogate(batch_marginal, marginal)
    loss = lam * (h_cond - mu * h_marg)
    if r_sat is not None:
        loss = loss + r_sat
    return {
        "loss": loss,
        "cond_entropy": h_cond.detach(),
        "marginal_entropy": h_marg.detach(),
        "batch_marginal_entropy": marginal_entropy(batch_marginal.detach()),
        "r_sat": (
            r_sat.detach()
            if r_sat is not None
            else torch.zeros((), device=probs.device)
        ),
    }


@float32_loss
def categorical_kl(target_logits, logits):
    """``(1/N) sum_i KL(softmax(target_i) || softmax(logits_i))``.

    Arguments
    ---------
    target_logits : torch.Tensor
        ``[N, C]`` logits of the target distribution (detach them yourself
        when they must not receive a gradient).
    logits : torch.Tensor
        ``[N, C]`` logits of the model distribution.

    Returns
    -------
    torch.Tensor
        Scalar, summed over classes and averaged over rows.

    Example
    -------
    >>> z = torch.randn(3, 5)
    >>> float(categorical_kl(z, z))
    0.0
    """
    log_p = F.log_softmax(target_logits, dim=-1)
    log_q = F.log_softmax(logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()


def _unit_per_sample(d):
    flat = d.reshape(d.shape[0], -1)
    # Scale first: gradients of the power iteration can be ~1e-20 in float32.
    flat = flat / flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return flat.reshape(d.shape)


def _per_sample(eps, x):
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps.dim() == 0:
        return eps
    if eps.shape != (x.shape[0],):
        raise ValueError(
            f"eps must be a scalar or one radius per sample ([{x.shape[0]}]); "
            f"got shape {tuple(eps.shape)}"
        )
    return eps.reshape(-1, *([1] * (x.dim() - 1)))


@float32_loss
def vat_perturbation(
    model_fn, x, xi=1e-6, eps=1.0, n_power=1, logits=None, generator=None
):
    """Virtual adversarial perturbation ``r_adv`` of ``T_VAT(x) = x + r``
    (Appendix E): the direction that most increases
    ``KL(p(y|x) || p(y|x + r))``, found by power iteration, scaled to
    ``||r_adv_i||_2 = eps_i`` for every sample.

    The iteration starts from a random unit direction ``d``, and repeats
    ``d <- normalise(grad_d KL(p(x) || p(x + xi d)))`` ``n_power`` times
    (Miyato et al.; IMSAT uses one iteration). Only ``d`` receives gradients
    (``torch.autograd.grad``), so no ``.grad`` is left on the parameters.
    ``model_fn`` should not update BatchNorm running statistics (the IMSAT
    reference turns the update off for VAT forwards); wrap the call in
    :meth:`speechbrain_ssv.lobes.clustering.ClusteringMLP.frozen_bn_stats`.

    Arguments
    ---------
    model_fn : callable
        Maps ``[N, ...]`` inputs to ``[N, C]`` logits.
    x : torch.Tensor
        ``[N, ...]`` inputs.
    xi : float
        Finite-difference step of the power iteration. Default 1e-6 as in
        VAT (the IMSAT code uses 10 on raw-scale features, far beyond the
        unit norm of l2-normalised i-vectors). On unit-norm float32 inputs
        1e-6 is a few ulps, and the direction is mostly rounding noise;
        the recipes set 1e-2 (``vat_xi``), which gives the float64
        direction (a unit test checks).
    eps : float | torch.Tensor
        Radius, scalar or ``[N]`` (IMSAT's adaptive radius, see
        :func:`knn_radius`).
    n_power : int
        Power iterations (>= 1).
    logits : torch.Tensor | None
        ``[N, C]`` logits of the clean ``x`` (recomputed when ``None``);
        detached here.
    generator : torch.Generator | None
        Source of the random start.

    Returns
    -------
    torch.Tensor
        ``r_adv``, same shape as ``x``, detached.

    Example
    -------
    >>> model = torch.nn.Linear(4, 3)
    >>> r = vat_perturbation(model, torch.randn(5, 4), eps=0.5)
    >>> torch.allclose(r.norm(dim=1), torch.full((5,), 0.5))
    True
    """
    if n_power < 1:
        raise ValueError(f"n_power must be >= 1, got {n_power}")
    x = x.detach()
    if logits is None:
        with torch.no_grad():
            logits = model_fn(x)
    logits = logits.detach()
    # Drawn in float32 whatever x's dtype (torch's float64 draws differ):
    # runs in either precision start from the same direction.
    d = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    d = _unit_per_sample(d)
    with torch.enable_grad():
        for _ in range(n_power):
            d = d.detach().requires_grad_(True)
            kl = categorical_kl(logits, model_fn(x + xi * d))
            (grad,) = torch.autograd.grad(kl, d)
            new = _unit_per_sample(grad.detach())
            # A saturated softmax can give a sample an exactly zero gradient:
            # keep its previous direction so that ||r_adv_i|| is still eps_i.
            flat = new.reshape(new.shape[0], -1)
            dead = (flat == 0).all(dim=1).reshape(-1, *([1] * (x.dim() - 1)))
            d = torch.where(dead, d.detach(), new)
    return (_per_sample(eps, x) * d).detach()


@float32_loss
def vat_loss(model_fn, x, eps, xi=1e-6, n_power=1, logits=None, generator=None):
    """``R_SAT(theta; T_VAT)`` (Eq. 2, Appendix E): the mean over the batch of
    ``KL(p(y|x) || p(y|x + r_adv))``, with the clean prediction as a fixed
    target.

    The paper prints ``R_SAT`` as a sum over binary ``y_c``; for clustering
    (one categorical ``y``) the IMSAT reference code uses the categorical KL,
    which is what this computes (it differs from the cross-entropy of
    Appendix E by the target's entropy, a constant for the gradient).

    Arguments
    ---------
    model_fn : callable
        Maps inputs to logits. See :func:`vat_perturbation` about BatchNorm.
    x : torch.Tensor
        ``[N, ...]`` inputs.
    eps : float | torch.Tensor
        Perturbation radius (scalar or ``[N]``).
    xi : float
        Power-iteration step.
    n_power : int
        Power iterations.
    logits : torch.Tensor | None
        Clean logits, if already computed (used detached).
    generator : torch.Generator | None
        Source of randomness.

    Returns
    -------
    torch.Tensor
        Scalar, differentiable with respect to the parameters of ``model_fn``.

    Example
    -------
    >>> _ = torch.manual_seed(0); model = torch.nn.Linear(4, 3)
    >>> float(vat_loss(model, torch.randn(5, 4), eps=1.0).detach()) > 0
    True
    """
    if logits is None:
        with torch.no_grad():
            logits = model_fn(x)
    r_adv = vat_perturbation(
        model_fn,
        x,
        xi=xi,
        eps=eps,
        n_power=n_power,
        logits=logits,
        generator=generator,
    )
    return categorical_kl(logits.detach(), model_fn(x.detach() + r_adv))


@torch.no_grad()
def knn_radius(x, k=10, scale=0.25, reference=None, chunk=4096):
    """IMSAT's adaptive VAT radius: ``scale`` times the Euclidean distance of
    each sample to its ``k``-th nearest neighbour in ``reference``.

    Computed in chunks of ``chunk`` queries, so memory is
    ``chunk x len(reference)``. On a million points, pass a random subset
    as ``reference`` (and a proportionally smaller ``k``): the exact
    all-pairs search is quadratic.

    Arguments
    ---------
    x : torch.Tensor
        ``[N, D]`` queries.
    k : int
        Neighbour rank (IMSAT: 10). A query found in ``reference`` is its
        own 0-th neighbour and is skipped.
    scale : float
        Multiplier (IMSAT: 0.25).
    reference : torch.Tensor | None
        ``[M, D]`` points to search (default ``x``).
    chunk : int
        Queries per chunk.

    Returns
    -------
    torch.Tensor
        ``[N]`` radii.

    Example
    -------
    >>> x = torch.tensor([[0.0], [1.0], [3.0]])
    >>> knn_radius(x, k=1, scale=1.0)
    tensor([1., 1., 2.])
    """
    ref = x if reference is None else reference
    self_search = reference is None
    if k + int(self_search) > ref.shape[0]:
        raise ValueError(
            f"k={k} neighbours requested but the reference holds only "
            f"{ref.shape[0]} points"
        )
    out = []
    for start in range(0, x.shape[0], chunk):
        q = x[start : start + chunk]
        dist = torch.cdist(q, ref)
        kth = torch.topk(dist, k + int(self_search), dim=1, largest=False)
        out.append(kth.values[:, -1])
    return scale * torch.cat(out)


@float32_loss
def virtual_mixup_loss(
    logits_fn,
    x,
    alpha=1.0,
    logits=None,
    generator=None,
    mix_logits=True,
    partner=None,
    lam=None,
):
    """``L_Mixup`` (Eq. 3): ``(1/N) sum_i KL(t_i || f(a_i x_i + (1 - a_i) x_r_i))``.

    The target ``t_i`` mixes the model's *detached* predictions for the two
    inputs. As in the VMT reference (``logit_mix_loss``) and as Appendix E
    says, the logits are mixed and then passed through the softmax,
    ``t_i = softmax(a_i z_i + (1 - a_i) z_r_i)``; ``mix_logits=False`` mixes
    the probabilities, Eq. 3 as printed (VMT's ``softmax_mix_loss``). One
    ``a_i ~ Beta(alpha, alpha)`` per sample (paper: ``alpha = 1``, no
    ``max(a, 1 - a)`` folding, as in VMT) and ``r = randperm(N)`` (VMT
    shuffles the batch; a sample may be its own partner, which VMT allows).

    Arguments
    ---------
    logits_fn : callable
        Maps ``[N, ...]`` inputs to ``[N, C]`` logits.
    x : torch.Tensor
        ``[N, ...]`` inputs.
    alpha : float
        Beta parameter.
    logits : torch.Tensor | None
        Clean logits if already computed (used detached).
    generator : torch.Generator | None
        Source of ``a`` and ``r``.
    mix_logits : bool
        Mix logits (VMT, default) or probabilities (Eq. 3 as printed).
    partner : torch.Tensor | None
        ``[N]`` long; overrides the random ``r`` (for tests).
    lam : torch.Tensor | None
        ``[N]``; overrides the random ``a`` (for tests).

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> model = torch.nn.Linear(3, 4, bias=False)  # linear: logit mixing is exact
    >>> x = torch.randn(6, 3)
    >>> loss = virtual_mixup_loss(model, x, generator=torch.Generator().manual_seed(0))
    >>> float(loss.detach()) < 1e-6
    True
    """
    if logits is None:
        with torch.no_grad():
            logits = logits_fn(x)
    x_mix, lam, partner = mixup_inputs(
        x, alpha, generator=generator, partner=partner, lam=lam
    )
    return mixup_kl(logits, logits_fn(x_mix), lam, partner, mix_logits)


def mixup_inputs(x, alpha=1.0, generator=None, partner=None, lam=None):
    """The mixed inputs of ``L_Mixup``: ``x_mix_i = a_i x_i + (1 - a_i)
    x_r_i`` with ``a_i ~ Beta(alpha, alpha)`` and ``r = randperm(N)``.

    Arguments
    ---------
    x : torch.Tensor
        ``[N, ...]`` inputs.
    alpha : float
        Beta parameter.
    generator : torch.Generator | None
        Source of ``a`` and ``r``.
    partner : torch.Tensor | None
        ``[N]`` long; overrides the random ``r``.
    lam : torch.Tensor | None
        ``[N]``; overrides the random ``a``.

    Returns
    -------
    tuple
        ``(x_mix, lam, partner)``: ``x_mix`` like ``x``, ``lam`` ``[N]``
        in ``x``'s dtype, ``partner`` ``[N]`` long, all on ``x``'s device.

    Example
    -------
    >>> x = torch.eye(3)
    >>> x_mix, lam, r = mixup_inputs(x, partner=torch.tensor([1, 2, 0]),
    ...                              lam=torch.full((3,), 0.25))
    >>> x_mix[0]
    tensor([0.2500, 0.7500, 0.0000])
    """
    n = x.shape[0]
    if lam is None:
        lam = sample_lambda(n, alpha, generator=generator)
    lam = torch.as_tensor(lam, dtype=x.dtype).to(x.device).reshape(n)
    if partner is None:
        partner = torch.randperm(n, generator=generator)
    partner = torch.as_tensor(partner).to(x.device)
    shape_x = (-1, *([1] * (x.dim() - 1)))
    x_mix = lam.reshape(shape_x) * x + (1 - lam.reshape(shape_x)) * x[partner]
    return x_mix, lam, partner


@float32_loss
def mixup_kl(logits, mixed_logits, lam, partner, mix_logits=True):
    """``(1/N) sum_i KL(t_i || softmax(mixed_logits_i))`` with the target
    ``t_i`` mixed from the *detached* clean ``logits`` (see
    :func:`virtual_mixup_loss` for ``mix_logits``).

    Pass ``logits`` and ``mixed_logits`` from one forward of
    ``cat([x, x_mix])`` when the model has BatchNorm: both halves are then
    normalised with the same batch statistics, and the target and the
    prediction are outputs of the same function.

    Arguments
    ---------
    logits : torch.Tensor
        ``[N, C]`` logits of the clean inputs (used detached).
    mixed_logits : torch.Tensor
        ``[N, C]`` logits of the mixed inputs (:func:`mixup_inputs`).
    lam : torch.Tensor
        ``[N]`` mixing weights of the clean inputs.
    partner : torch.Tensor
        ``[N]`` partner indices.
    mix_logits : bool
        Mix logits (VMT) or probabilities (Eq. 3 as printed).

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> z = torch.randn(4, 5)
    >>> float(mixup_kl(z, z, torch.ones(4), torch.arange(4)))
    0.0
    """
    logits = logits.detach()
    w = torch.as_tensor(lam).to(logits).reshape(-1, 1)
    if mix_logits:
        target_log = F.log_softmax(
            w * logits + (1 - w) * logits[partner], dim=-1
        )
    else:
        p = F.softmax(logits, dim=-1)
        target = w * p + (1 - w) * p[partner]
        target_log = torch.log(target.clamp_min(torch.finfo(target.dtype).tiny))
    log_q = F.log_softmax(mixed_logits, dim=-1)
    return (target_log.exp() * (target_log - log_q)).sum(dim=-1).mean()


@float32_loss
def augmentation_consistency_loss(aug_logits, logits):
    """``L_aug`` (Eq. 4): ``(1/N) sum_i KL(p_i^aug || p_i)``.

    Written as printed: the augmented prediction is the first argument and
    both sides receive gradients (the paper does not say to stop either).

    Arguments
    ---------
    aug_logits : torch.Tensor
        ``[N, C]`` logits of one random augmentation of each sample.
    logits : torch.Tensor
        ``[N, C]`` logits of the original samples.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> z = torch.randn(4, 3)
    >>> float(augmentation_consistency_loss(z, z))
    0.0
    """
    return categorical_kl(aug_logits, logits)
