"""SDPN and DINO objectives as pure functions.

Equation numbers refer to Chen et al., "Self-Distillation Prototypes
Network: learning robust speaker representations without supervision"
(arXiv 2308.02774v6, ICASSP 2025). Where the paper and the authors' code
(modelscope/3D-Speaker, ``speakerlab/loss/sdpn_loss.py``) differ, each
variant is an argument, and the docstring says which default follows which.

Tensors of several views are stacked view-major: ``[V, B, ...]`` where view
``v`` of utterance ``b`` is ``x[v, b]``.

Under ``torch.distributed`` the batch-level statistics (Sinkhorn sums, the
mean prediction of the mean-entropy term, the DINO centre) are all-reduced,
so they are those of the global batch, as in the authors' 4-GPU runs.

Every public function is wrapped in
:func:`~speechbrain_ssv.utils.precision.float32_loss`: under
``--precision bf16`` / ``fp16`` (autocast) the prototype cosines, the
temperature softmaxes (``1 / 0.04`` amplifies a bfloat16 rounding error
25-fold), Sinkhorn, KoLeo's log-distances and the entropies still compute
in float32 (float64 inside Sinkhorn) and return float32.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_ssv.utils.precision import float32_loss


def _distributed():
    return (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    )


def all_reduce_sum(tensor):
    """Sum ``tensor`` over all ranks (identity when not distributed).

    Arguments
    ---------
    tensor : torch.Tensor
        Reduced in place when distributed.

    Returns
    -------
    torch.Tensor
        The summed tensor.

    Example
    -------
    >>> all_reduce_sum(torch.ones(2))
    tensor([1., 1.])
    """
    if _distributed() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def world_size():
    """Number of ranks (1 when not distributed).

    Returns
    -------
    int
        The world size.

    Example
    -------
    >>> world_size()
    1
    """
    return torch.distributed.get_world_size() if _distributed() else 1


@float32_loss
@torch.no_grad()
def sinkhorn_knopp(probs, n_iters=3):
    """Sinkhorn-Knopp batch normalisation ``Sknorm`` of Eq. 2.

    Alternately rescales the prototypes (columns) to equal mass ``1/K`` and
    the samples (rows) to equal mass ``1/B`` of the global batch, so the
    teacher's targets use all prototypes equally across the batch. The order
    (prototypes first, ``n_iters`` rounds, final rows rescaled to sum to 1)
    is that of the authors' code (MSN's ``distributed_sinkhorn``; the paper
    gives no iteration count). Prototype sums and the total mass are
    all-reduced when distributed; row sums are per sample and stay local.

    Arguments
    ---------
    probs : torch.Tensor
        ``[B, K]`` non-negative teacher scores (e.g. softmax outputs).
    n_iters : int
        Number of row/column rescaling rounds.

    Returns
    -------
    torch.Tensor
        ``[B, K]`` targets: each row sums to 1 and, as ``n_iters`` grows, each
        column sums to ``B_global / K``.

    Example
    -------
    >>> q = sinkhorn_knopp(torch.rand(8, 4), n_iters=50)
    >>> torch.allclose(q.sum(1), torch.ones(8))
    True
    >>> torch.allclose(q.sum(0), torch.full((4,), 2.0), atol=1e-3)
    True
    """
    q = probs.t().double()  # [K, B]
    n_protos = q.shape[0]
    batch = q.shape[1] * world_size()
    q = q / all_reduce_sum(q.sum())
    for _ in range(n_iters):
        q = q / all_reduce_sum(q.sum(dim=1, keepdim=True)) / n_protos
        q = q / q.sum(dim=0, keepdim=True) / batch
    q = q * batch
    return q.t().to(probs.dtype)


@float32_loss
def prototype_scores(z, prototypes):
    """Cosine similarities between embeddings and prototypes, ``h(f(x)) . c``
    of Eqs. 2-3 (both sides L2-normalised, as in the authors' code).

    Arguments
    ---------
    z : torch.Tensor
        ``[..., D]`` head outputs.
    prototypes : torch.Tensor
        ``[K, D]`` prototype vectors (normalised here).

    Returns
    -------
    torch.Tensor
        ``[..., K]`` scores in ``[-1, 1]``.

    Example
    -------
    >>> prototype_scores(torch.tensor([[2.0, 0.0]]), torch.eye(2))
    tensor([[1., 0.]])
    """
    return F.normalize(z, dim=-1) @ F.normalize(prototypes, dim=-1).t()


@float32_loss
def sharpen(probs, temperature):
    """Sharpening ``p^(1/T) / sum p^(1/T)`` (authors' code; ``T = 1`` is
    the identity). Sharpening a softmax at temperature ``tau`` by ``T`` is a
    softmax at ``tau * T``.

    Arguments
    ---------
    probs : torch.Tensor
        ``[..., K]`` probabilities.
    temperature : float
        ``T``.

    Returns
    -------
    torch.Tensor
        ``[..., K]`` sharpened probabilities.

    Example
    -------
    >>> sharpen(torch.tensor([0.25, 0.75]), 0.5)
    tensor([0.1000, 0.9000])
    """
    if temperature == 1.0:
        return probs
    sharp = probs ** (1.0 / temperature)
    return sharp / sharp.sum(dim=-1, keepdim=True)


@float32_loss
@torch.no_grad()
def sdpn_teacher_targets(scores, temperature=0.04, sharpen_temp=1.0, n_iters=3):
    """Teacher targets ``P^tea`` of Eq. 2: softmax at ``tau_t``, optional
    sharpening, then Sinkhorn-Knopp over the batch.

    The paper states ``tau_t = 0.04`` and no sharpening (the defaults). The
    authors' code uses a softmax at 0.1 sharpened with ``T = 0.25``
    (``temperature=0.1, sharpen_temp=0.25``, i.e. an effective 0.025).

    Arguments
    ---------
    scores : torch.Tensor
        ``[N, K]`` teacher-prototype scores (no gradient is kept).
    temperature : float
        ``tau_t``.
    sharpen_temp : float
        Sharpening temperature ``T`` (1 disables it).
    n_iters : int
        Sinkhorn iterations (0 disables Sinkhorn).

    Returns
    -------
    torch.Tensor
        ``[N, K]`` targets, rows summing to 1.

    Example
    -------
    >>> t = sdpn_teacher_targets(torch.randn(6, 3))
    >>> torch.allclose(t.sum(1), torch.ones(6))
    True
    """
    probs = sharpen(
        torch.softmax(scores.float() / temperature, dim=-1), sharpen_temp
    )
    if n_iters > 0:
        probs = sinkhorn_knopp(probs, n_iters)
    return probs


@float32_loss
def student_log_probs(scores, temperature=0.1):
    """Log of the student distribution ``P^stu`` of Eq. 3 (softmax at
    ``tau_s``; the paper and the code agree on 0.1).

    Arguments
    ---------
    scores : torch.Tensor
        ``[..., K]`` student-prototype scores.
    temperature : float
        ``tau_s``.

    Returns
    -------
    torch.Tensor
        ``[..., K]`` log-probabilities.

    Example
    -------
    >>> student_log_probs(torch.zeros(1, 4)).exp()
    tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """
    return torch.log_softmax(scores / temperature, dim=-1)


@float32_loss
def multiview_cross_entropy(
    teacher_probs, student_log_probs, reduction="mean", skip_same_view=False
):
    """Cross-entropy over all (global, local) view pairs, Eq. 1:
    ``sum_{x in X_g} sum_{x' in X_l} H(P^tea(x) | P^stu(x'))`` with
    ``H(a | b) = -sum_k a_k log b_k`` averaged over the batch.

    Eq. 1 sums over pairs (``reduction="sum"``); the authors' code averages
    over pairs (``"mean"``, the default, which the published learning rate was
    tuned with; the two differ by the constant factor ``G * L``).

    Arguments
    ---------
    teacher_probs : torch.Tensor
        ``[G, B, K]`` targets of the ``G`` global views.
    student_log_probs : torch.Tensor
        ``[L, B, K]`` student log-probabilities of the ``L`` local views.
    reduction : str
        ``"mean"`` or ``"sum"`` over pairs.
    skip_same_view : bool
        Skip pairs ``g == l`` (DINO, when the student also sees the global
        views, which are then its first ``G`` views).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> t = torch.tensor([[[1.0, 0.0]]])
    >>> s = torch.log(torch.tensor([[[0.5, 0.5]], [[0.25, 0.75]]]))
    >>> multiview_cross_entropy(t, s, reduction="sum")  # ln 2 + ln 4
    tensor(2.0794)
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r}; expected 'mean' or 'sum'")
    total, n_pairs = 0.0, 0
    for g in range(teacher_probs.shape[0]):
        for v in range(student_log_probs.shape[0]):
            if skip_same_view and g == v:
                continue
            total = (
                total
                + (-(teacher_probs[g] * student_log_probs[v]).sum(-1)).mean()
            )
            n_pairs += 1
    if n_pairs == 0:
        raise ValueError("no (teacher, student) view pair to compare")
    return total / n_pairs if reduction == "mean" else total


@float32_loss
def koleo(x, eps=1e-8, normalize=True):
    """Kozachenko-Leonenko diversity regulariser ``L_DR`` of Eq. 4:
    ``-(1/n) sum_i log(min_{j != i} ||x_i - x_j||)``.

    Eq. 4 as printed carries a spurious inner sum over ``j``; the maintainers
    confirmed ``L_DR`` is KoLeo (DINOv2), which is what this computes. As in
    the authors' code, the embeddings are L2-normalised first and ``eps`` is
    added inside the log.

    Arguments
    ---------
    x : torch.Tensor
        ``[n, D]`` embeddings of one batch (one view per utterance).
    eps : float
        Added to the nearest-neighbour distance.
    normalize : bool
        L2-normalise ``x`` first.

    Returns
    -------
    torch.Tensor
        Scalar loss (lower when embeddings are spread out).

    Example
    -------
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    >>> koleo(x, eps=0.0, normalize=False)  # -(ln 1 + ln 1 + ln 2) / 3
    tensor(-0.2310)
    """
    if x.shape[0] < 2:
        raise ValueError("KoLeo needs at least two embeddings")
    if normalize:
        x = F.normalize(x, dim=-1)
    # Exact differences, not cdist's default ||a||^2 + ||b||^2 - 2ab formula
    # (taken past 25 rows): that one cancels to 0 for near-duplicate rows,
    # silencing the regulariser on exactly the collapsed pairs it exists
    # to push apart. n^2 D work is negligible next to the encoder.
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    self_mask = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    nearest = dist.masked_fill(self_mask, float("inf")).min(dim=1).values
    return -torch.log(nearest + eps).mean()


@float32_loss
def mean_entropy_penalty(probs):
    """Mean-entropy maximisation term of the authors' code (MSN's
    "me-max"; absent from the paper's Eq. 5): ``log K - H(mean_i p_i)``,
    zero when the average student prediction uses all prototypes equally.
    The average is over the global batch when distributed.

    Arguments
    ---------
    probs : torch.Tensor
        ``[N, K]`` student probabilities.

    Returns
    -------
    torch.Tensor
        Scalar, ``>= 0``.

    Example
    -------
    >>> mean_entropy_penalty(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    tensor(0.)
    """
    avg = probs.mean(dim=0)
    if _distributed() and world_size() > 1:
        avg = AllReduceMean.apply(avg)
    entropy = -(avg * torch.log(avg.clamp_min(1e-12))).sum()
    return math.log(probs.shape[-1]) - entropy


class AllReduceMean(torch.autograd.Function):
    """All-reduce mean whose backward passes the gradient through unchanged,
    so every rank's average gets the gradient of its own contribution."""

    @staticmethod
    def forward(ctx, x):
        """Average over ranks."""
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x / world_size()

    @staticmethod
    def backward(ctx, grad):
        """Identity gradient."""
        return grad


@float32_loss
def sdpn_loss(
    teacher_scores,
    student_scores,
    student_embeddings=None,
    teacher_temp=0.04,
    sharpen_temp=1.0,
    student_temp=0.1,
    sinkhorn_iters=3,
    memax_weight=1.0,
    koleo_weight=0.1,
    koleo_reduction="sum",
    pair_reduction="mean",
    skip_same_view=False,
):
    """Total SDPN objective, Eq. 5 plus the mean-entropy term of the code:
    ``L = L_CE + mu * L_DR + memax_weight * L_me``.

    Every term can be switched off for the paper's ablations: ``koleo_weight
    = 0`` is "w/o DR" (Table 1; ``mu`` in Table 3); ``sinkhorn_iters = 0``
    replaces Sknorm with a plain softmax; ``memax_weight = 0`` gives the
    paper's Eq. 5 exactly. "w/o prototypes" is a matter of the scores passed
    in (see :class:`speechbrain_ssv.lobes.heads.Prototypes`).

    KoLeo is computed on the student's backbone embeddings, separately for
    each local view (a batch of distinct utterances), then summed over views
    (``koleo_reduction="sum"``, the code) or averaged (``"mean"``).

    Arguments
    ---------
    teacher_scores : torch.Tensor
        ``[G, B, K]`` teacher-prototype scores of the global views.
    student_scores : torch.Tensor
        ``[L, B, K]`` student-prototype scores of the local views.
    student_embeddings : torch.Tensor | None
        ``[L, B, D]`` student backbone embeddings (for KoLeo).
    teacher_temp, sharpen_temp, student_temp : float
        See :func:`sdpn_teacher_targets` and :func:`student_log_probs`.
    sinkhorn_iters : int
        Sinkhorn iterations (0: off).
    memax_weight : float
        Weight of :func:`mean_entropy_penalty` (code: 1; paper: absent).
    koleo_weight : float
        ``mu`` of Eq. 5 (paper and code: 0.1).
    koleo_reduction : str
        ``"sum"`` or ``"mean"`` over local views.
    pair_reduction : str
        See :func:`multiview_cross_entropy`.
    skip_same_view : bool
        See :func:`multiview_cross_entropy` (the student also embeds the
        global views, passed first).

    Returns
    -------
    dict
        ``loss`` (scalar with gradient), the terms ``ce``, ``memax``,
        ``koleo`` and the (detached) ``targets`` ``[G, B, K]``.

    Example
    -------
    >>> out = sdpn_loss(torch.randn(1, 6, 5), torch.randn(4, 6, 5), torch.randn(4, 6, 3))
    >>> sorted(out)
    ['ce', 'koleo', 'loss', 'memax', 'targets']
    """
    g, b, k = teacher_scores.shape
    targets = sdpn_teacher_targets(
        teacher_scores.reshape(g * b, k),
        teacher_temp,
        sharpen_temp,
        sinkhorn_iters,
    ).reshape(g, b, k)
    log_p = student_log_probs(student_scores, student_temp)
    ce = multiview_cross_entropy(targets, log_p, pair_reduction, skip_same_view)
    zero = ce.new_zeros(())
    memax = (
        mean_entropy_penalty(log_p.exp().reshape(-1, k))
        if memax_weight
        else zero
    )
    dr = zero
    if koleo_weight:
        if student_embeddings is None:
            raise ValueError("koleo_weight > 0 needs student_embeddings")
        terms = torch.stack([koleo(e) for e in student_embeddings])
        if koleo_reduction not in ("sum", "mean"):
            raise ValueError(f"koleo_reduction={koleo_reduction!r}")
        dr = terms.sum() if koleo_reduction == "sum" else terms.mean()
    loss = ce + memax_weight * memax + koleo_weight * dr
    return {
        "loss": loss,
        "ce": ce.detach(),
        "memax": memax.detach(),
        "koleo": dr.detach(),
        "targets": targets,
    }


# --------------------------------------------------------------------------
# DINO baseline (Caron et al. 2021, as in the speaker recipes of WeSpeaker
# and 3D-Speaker's RDINO): centring + sharpening instead of Sinkhorn.
# --------------------------------------------------------------------------


@float32_loss
@torch.no_grad()
def dino_teacher_probs(teacher_logits, center, temperature=0.04):
    """DINO teacher targets: centre, then sharpen with a low temperature,
    ``softmax((t - c) / tau_t)``.

    Arguments
    ---------
    teacher_logits : torch.Tensor
        ``[..., K]`` teacher outputs.
    center : torch.Tensor
        ``[K]`` running mean of the teacher outputs.
    temperature : float
        ``tau_t``.

    Returns
    -------
    torch.Tensor
        ``[..., K]`` probabilities.

    Example
    -------
    >>> dino_teacher_probs(torch.tensor([[1.0, 1.0]]), torch.tensor([1.0, 0.0]), 1.0)
    tensor([[0.2689, 0.7311]])
    """
    return torch.softmax(
        (teacher_logits.float() - center) / temperature, dim=-1
    )


@float32_loss
@torch.no_grad()
def dino_center_update(center, teacher_logits, momentum=0.9):
    """EMA of the batch-mean teacher output (global batch when distributed):
    ``c <- m c + (1 - m) mean_i t_i``.

    Arguments
    ---------
    center : torch.Tensor
        ``[K]`` current centre.
    teacher_logits : torch.Tensor
        ``[N, K]`` teacher outputs of this step.
    momentum : float
        ``m``.

    Returns
    -------
    torch.Tensor
        ``[K]`` new centre.

    Example
    -------
    >>> dino_center_update(torch.zeros(2), torch.tensor([[1.0, 3.0], [3.0, 1.0]]), 0.5)
    tensor([1., 1.])
    """
    batch_sum = all_reduce_sum(teacher_logits.detach().float().sum(dim=0))
    batch_mean = batch_sum / (teacher_logits.shape[0] * world_size())
    return center * momentum + batch_mean * (1.0 - momentum)


@float32_loss
def dino_loss(
    teacher_logits,
    student_logits,
    center,
    teacher_temp=0.04,
    student_temp=0.1,
    skip_same_view=False,
):
    """DINO cross-entropy over view pairs with centred, sharpened targets.

    Arguments
    ---------
    teacher_logits : torch.Tensor
        ``[G, B, K]`` teacher outputs of the global views.
    student_logits : torch.Tensor
        ``[V, B, K]`` student outputs.
    center : torch.Tensor
        ``[K]`` centre.
    teacher_temp, student_temp : float
        Temperatures.
    skip_same_view : bool
        See :func:`multiview_cross_entropy`.

    Returns
    -------
    dict
        ``loss`` and the detached ``targets``.

    Example
    -------
    >>> out = dino_loss(torch.randn(1, 4, 8), torch.randn(2, 4, 8), torch.zeros(8))
    >>> out["loss"].shape
    torch.Size([])
    """
    targets = dino_teacher_probs(teacher_logits, center, teacher_temp)
    log_p = student_log_probs(student_logits, student_temp)
    loss = multiview_cross_entropy(targets, log_p, "mean", skip_same_view)
    return {"loss": loss, "ce": loss.detach(), "targets": targets}


def linear_warmup(step, start, end, warmup_steps):
    """Value rising linearly from ``start`` to ``end`` over ``warmup_steps``,
    then constant (DINO's teacher-temperature warm-up, step-indexed so a
    resumed run continues it exactly).

    Arguments
    ---------
    step : int
        Optimizer steps done.
    start, end : float
        Values at step 0 and from ``warmup_steps`` on.
    warmup_steps : int
        Length of the ramp (0: always ``end``).

    Returns
    -------
    float
        The value.

    Example
    -------
    >>> round(linear_warmup(5, 0.04, 0.07, 10), 6)
    0.055
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps
