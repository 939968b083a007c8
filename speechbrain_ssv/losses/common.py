"""Loss pieces shared by several methods: scaled-cosine logits and the
angular prototypical (AP) loss (MixAP, CLUB's speaker loss), soft-target
cross-entropy, instance mixup (MixAP's i-mix and l-mix, the clustering
model's mixup term) and the gradient-keeping all-gather that makes other
ranks' anchors negatives.

Logits and losses are wrapped in
:func:`~speechbrain_ssv.utils.precision.float32_loss`, so under autocast
(``--precision bf16`` / ``fp16``) the scaled cosines and the log-softmax
still compute in float32.

Authors
 * speechbrain-ssv developers 2026
"""

import torch
import torch.nn.functional as F

from speechbrain_ssv.utils.precision import float32_loss


@float32_loss
def cosine_logits(query, anchor, scale=1.0, bias=0.0):
    """Scaled cosine similarities ``S[i, j] = scale * cos(query_i, anchor_j) + bias``.

    With ``scale = 1, bias = 0`` this is the logit matrix of Eq. 1 as printed;
    AP implementations learn ``scale`` (init 10) and ``bias`` (init -5), see
    :class:`speechbrain_ssv.lobes.heads.AngularScale`.

    Arguments
    ---------
    query : torch.Tensor
        ``[N, D]`` query embeddings.
    anchor : torch.Tensor
        ``[M, D]`` anchor (prototype) embeddings.
    scale : float | torch.Tensor
        Multiplies the cosine.
    bias : float | torch.Tensor
        Added after scaling.

    Returns
    -------
    torch.Tensor
        ``[N, M]`` logits.

    Example
    -------
    >>> q = torch.tensor([[1.0, 0.0]]); a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> cosine_logits(q, a, scale=10.0, bias=-5.0)
    tensor([[ 5., -5.]])
    """
    q = F.normalize(query, dim=-1)
    a = F.normalize(anchor, dim=-1)
    return q @ a.t() * scale + bias


@float32_loss
def soft_target_cross_entropy(logits, targets):
    """Cross-entropy against a soft target distribution, averaged over rows.

    Arguments
    ---------
    logits : torch.Tensor
        ``[N, M]`` unnormalised scores.
    targets : torch.Tensor
        ``[N, M]`` rows summing to 1.

    Returns
    -------
    torch.Tensor
        Scalar ``-mean_i sum_j targets[i, j] * log_softmax(logits)[i, j]``.

    Example
    -------
    >>> logits = torch.zeros(1, 2)
    >>> round(float(soft_target_cross_entropy(logits, torch.tensor([[0.3, 0.7]]))), 4)
    0.6931
    """
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


@float32_loss
def angular_prototypical_loss(logits, offset=0):
    """Angular prototypical loss, Eq. 1: cross-entropy with target ``j = i``.

    Arguments
    ---------
    logits : torch.Tensor
        ``[N, M]`` from :func:`cosine_logits` (``M >= N``; the query ``i``'s
        own anchor is column ``i + offset``, other columns are negatives).
    offset : int
        Column of row 0's own anchor (the rank's offset when anchors are
        gathered across DDP ranks).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> angular_prototypical_loss(torch.eye(2) * 100)
    tensor(0.)
    """
    target = torch.arange(logits.shape[0], device=logits.device) + offset
    return F.cross_entropy(logits, target)


def sample_lambda(
    n, alpha, per_sample=True, fold=False, generator=None, device=None
):
    """Mixing weights ``lam ~ Beta(alpha, alpha)``.

    Arguments
    ---------
    n : int
        Batch size.
    alpha : float
        Beta parameter (the paper sweeps 0.5, 1 and 32, Fig. 3).
    per_sample : bool
        One ``lam`` per utterance (the i-mix reference code) or one per
        batch (Eq. 4/7 read literally, with ``lam`` outside the sum).
    fold : bool
        ``lam = max(lam, 1 - lam)`` (the i-mix reference code), so the own
        utterance always dominates. The paper does not fold: off by default.
    generator : torch.Generator | None
        Source of randomness.
    device : torch.device | None
        Device of the result.

    Returns
    -------
    torch.Tensor
        ``[n]`` weights in ``[0, 1]``.

    Example
    -------
    >>> lam = sample_lambda(1000, 0.5, generator=torch.Generator().manual_seed(0))
    >>> lam.shape, bool((lam >= 0).all() and (lam <= 1).all())
    (torch.Size([1000]), True)
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    # Beta draws as a ratio of Gammas, so that a torch.Generator is honoured.
    k = n if per_sample else 1
    a = torch.full((k,), float(alpha))
    g1 = torch._standard_gamma(a, generator=generator)
    g2 = torch._standard_gamma(a, generator=generator)
    lam = g1 / (g1 + g2).clamp_min(1e-12)
    if fold:
        lam = torch.maximum(lam, 1 - lam)
    return lam.expand(n).contiguous().to(device)


def random_partner(n, generator=None, device=None):
    """A partner ``r_i != i`` for every row, uniformly among the others.

    Rows are placed on a random cycle and each row's partner is the next one
    on it: every partner differs from its row (the paper's ``r != i``), and a
    plain ``randperm`` would leave about one fixed point per batch.

    Arguments
    ---------
    n : int
        Batch size (>= 2).
    generator : torch.Generator | None
        Source of randomness.
    device : torch.device | None
        Device of the result.

    Returns
    -------
    torch.Tensor
        ``[n]`` long.

    Example
    -------
    >>> p = random_partner(5, torch.Generator().manual_seed(0))
    >>> bool((p != torch.arange(5)).all()), sorted(p.tolist())
    (True, [0, 1, 2, 3, 4])
    """
    if n < 2:
        raise ValueError(
            f"i-mix needs a batch of at least 2 utterances, got {n}"
        )
    order = torch.randperm(n, generator=generator)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = torch.roll(order, -1)
    return partner.to(device)


def mix(x, partner, lam):
    """``lam * x_i + (1 - lam) * x_{r_i}`` along the first dimension.

    The i-mix input mixture (Eq. 4, on features) and the l-mix latent
    mixture of means (Eq. 6).

    Arguments
    ---------
    x : torch.Tensor
        ``[N, ...]`` inputs or latent means.
    partner : torch.Tensor
        ``[N]`` long.
    lam : torch.Tensor
        ``[N]`` or scalar.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Example
    -------
    >>> mix(torch.tensor([[1.0], [3.0]]), torch.tensor([1, 0]), torch.tensor([0.25, 1.0]))
    tensor([[2.5000],
            [3.0000]])
    """
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device).expand(
        x.shape[0]
    )
    lam = lam.reshape(-1, *([1] * (x.dim() - 1)))
    return lam * x + (1 - lam) * x[partner]


def gather_with_grad(x):
    """All-gather ``x`` over DDP ranks keeping the gradient of the local part.

    Anchors from every rank become negatives (DESIGN: methods that need
    negatives gather them explicitly); identity when not distributed.

    Arguments
    ---------
    x : torch.Tensor
        ``[N, D]`` local tensor (same ``N`` on every rank).

    Returns
    -------
    tuple
        ``(gathered [world * N, D], offset)``: the column of local row 0.

    Example
    -------
    >>> g, off = gather_with_grad(torch.ones(2, 3))
    >>> g.shape, off
    (torch.Size([2, 3]), 0)
    """
    dist = torch.distributed
    if (
        not (dist.is_available() and dist.is_initialized())
        or dist.get_world_size() == 1
    ):
        return x, 0
    # lazy: fails to import on torch builds without distributed support
    import torch.distributed.nn.functional as dist_fn

    parts = dist_fn.all_gather(x)
    return torch.cat(parts), dist.get_rank() * x.shape[0]
