"""Angular prototypical loss and its instance-mixup variants (i-AP, l-AP).

Equation numbers refer to Kang, Alam and Fathan, "Investigation on instance
mixup regularization strategies for self-supervised speaker representation
learning" (AAAI 2022 workshop). The AP loss (Eq. 1) pairs the embedding of one
augmented segment of utterance ``i`` (the *query*) with the embeddings of a
second segment of every utterance of the batch (the *anchors*). i-mix (Eq. 4)
replaces the query by ``lam * x_i + (1 - lam) * x_r`` (``r != i``) and the
one-hot target by ``lam`` on ``i`` and ``1 - lam`` on ``r``; l-mix (Eq. 6-7)
mixes VAE latent means instead of inputs and embeds the decoded features.

Where the paper is silent the choices follow the reference code the paper
builds on (joonson/voxceleb_unsupervised, kibok90/imix); each is an argument.

The AP logits and losses are wrapped in
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


def imix_targets(partner, lam, n_columns=None, offset=0):
    """Soft targets of Eq. 4/7: ``lam`` on the own column, ``1 - lam`` on the partner's.

    Arguments
    ---------
    partner : torch.Tensor
        ``[N]`` long, the partner ``r_i`` of each row (local index).
    lam : torch.Tensor
        ``[N]`` mixing weights (or a scalar tensor).
    n_columns : int | None
        Number of anchor columns (default ``N``).
    offset : int
        Column of local row 0 (the rank's offset when anchors are gathered
        across DDP ranks).

    Returns
    -------
    torch.Tensor
        ``[N, n_columns]`` target rows summing to 1.

    Example
    -------
    >>> imix_targets(torch.tensor([1, 0]), torch.tensor([0.75, 0.5]))
    tensor([[0.7500, 0.2500],
            [0.5000, 0.5000]])
    """
    n = partner.shape[0]
    n_columns = n if n_columns is None else n_columns
    lam = torch.as_tensor(
        lam, dtype=torch.float32, device=partner.device
    ).expand(n)
    rows = torch.arange(n, device=partner.device)
    targets = torch.zeros(n, n_columns, device=partner.device)
    targets.index_put_((rows, rows + offset), lam, accumulate=True)
    targets.index_put_((rows, partner + offset), 1 - lam, accumulate=True)
    return targets


@float32_loss
def imix_loss(logits, partner, lam, offset=0):
    """i-mix angular prototypical loss (Eq. 4; Eq. 7 for l-mix).

    ``lam * CE(S_i, i) + (1 - lam) * CE(S_i, r_i)``, averaged over rows; with
    ``lam = 1`` this is exactly :func:`angular_prototypical_loss`.

    Arguments
    ---------
    logits : torch.Tensor
        ``[N, M]`` logits of the *mixed* queries against the anchors.
    partner : torch.Tensor
        ``[N]`` long, the partner of each row.
    lam : torch.Tensor
        ``[N]`` or scalar mixing weights.
    offset : int
        Column of local row 0 among gathered anchors.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> logits = torch.randn(4, 4)
    >>> partner = torch.tensor([1, 2, 3, 0])
    >>> bool(torch.isclose(imix_loss(logits, partner, torch.ones(4)), angular_prototypical_loss(logits)))
    True
    """
    targets = imix_targets(partner, lam, logits.shape[1], offset).to(
        logits.dtype
    )
    return soft_target_cross_entropy(logits, targets)


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
    import torch.distributed.nn.functional as dist_fn

    parts = dist_fn.all_gather(x)
    return torch.cat(parts), dist.get_rank() * x.shape[0]
