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

The AP loss itself, the cosine logits and the mixing operations are shared
with other methods and live in :mod:`speechbrain_ssv.losses.common`; this
module holds i-mix's soft targets and loss.

Authors
 * speechbrain-ssv developers 2026
"""

import torch

from speechbrain_ssv.losses.common import soft_target_cross_entropy
from speechbrain_ssv.utils.precision import float32_loss


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
    >>> from speechbrain_ssv.losses.common import angular_prototypical_loss
    >>> logits = torch.randn(4, 4)
    >>> partner = torch.tensor([1, 2, 3, 0])
    >>> bool(torch.isclose(imix_loss(logits, partner, torch.ones(4)), angular_prototypical_loss(logits)))
    True
    """
    targets = imix_targets(partner, lam, logits.shape[1], offset).to(
        logits.dtype
    )
    return soft_target_cross_entropy(logits, targets)
