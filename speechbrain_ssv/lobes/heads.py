"""Projection heads, learnable prototypes, the DINO centre and the AP scale.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_ssv.losses.common import cosine_logits
from speechbrain_ssv.losses.sdpn import dino_center_update, prototype_scores


def _trunc_normal_init(module):
    # DINO/SDPN heads start from small weights (trunc. normal, std 0.02):
    # the default Kaiming init makes the first teacher targets near one-hot.
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)


class WeightNormLinear(torch.nn.Module):
    """Bias-free linear layer with weight normalisation, ``y = g * x W^T /
    ||W||`` row-wise: DINO's last layer. With ``norm_last_layer`` the gain
    ``g`` is fixed to 1 (DINO's default, which stabilises training).

    Arguments
    ---------
    input_size : int
        Input dimension.
    n_neurons : int
        Output dimension.
    norm_last_layer : bool
        Freeze the gain at 1.

    Example
    -------
    >>> layer = WeightNormLinear(4, 3)
    >>> torch.allclose(layer.normalized_weight().norm(dim=1), torch.ones(3))
    True
    >>> layer(torch.randn(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, input_size, n_neurons, norm_last_layer=True):
        super().__init__()
        self.weight_v = torch.nn.Parameter(torch.empty(n_neurons, input_size))
        torch.nn.init.trunc_normal_(self.weight_v, std=0.02)
        self.weight_g = torch.nn.Parameter(
            torch.ones(n_neurons, 1), requires_grad=not norm_last_layer
        )

    def normalized_weight(self):
        """The effective weight ``g * v / ||v||``.

        Returns
        -------
        torch.Tensor
            ``[n_neurons, input_size]``.
        """
        return self.weight_g * F.normalize(self.weight_v, dim=1)

    def forward(self, x):
        """Apply the layer.

        Arguments
        ---------
        x : torch.Tensor
            ``[..., input_size]``.

        Returns
        -------
        torch.Tensor
            ``[..., n_neurons]``.
        """
        return F.linear(x, self.normalized_weight())


class ProjectionHead(torch.nn.Module):
    """MLP ``h`` of SDPN/DINO: ``n_layers`` linear layers, BatchNorm + GELU
    after all but the last, L2-normalised output (paper Sec. 2:
    512 -> 2048 -> 2048 -> 256). With ``n_logits`` a weight-normalised
    last layer (DINO) maps the normalised bottleneck to ``n_logits`` outputs.

    Arguments
    ---------
    input_size : int
        Embedding dimension of the encoder.
    hidden_size : int
        Width of the hidden layers.
    output_size : int
        Bottleneck dimension (that of the prototypes).
    n_layers : int
        Number of linear layers (at least 1).
    use_bn : bool
        BatchNorm after the hidden linear layers.
    n_logits : int | None
        Size of DINO's weight-normalised last layer (``None``: no such layer,
        the SDPN head).
    norm_last_layer : bool
        Fix the gain of that last layer at 1.

    Example
    -------
    >>> head = ProjectionHead(8, 16, 4)
    >>> z = head(torch.randn(5, 8))
    >>> z.shape, torch.allclose(z.norm(dim=-1), torch.ones(5))
    (torch.Size([5, 4]), True)
    >>> ProjectionHead(8, 16, 4, n_logits=32)(torch.randn(5, 8)).shape
    torch.Size([5, 32])
    """

    def __init__(
        self,
        input_size=512,
        hidden_size=2048,
        output_size=256,
        n_layers=3,
        use_bn=True,
        n_logits=None,
        norm_last_layer=True,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers={n_layers}; expected at least 1")
        layers, size = [], input_size
        for _ in range(n_layers - 1):
            layers.append(torch.nn.Linear(size, hidden_size))
            if use_bn:
                layers.append(torch.nn.BatchNorm1d(hidden_size))
            layers.append(torch.nn.GELU())
            size = hidden_size
        layers.append(torch.nn.Linear(size, output_size))
        self.mlp = torch.nn.Sequential(*layers)
        self.mlp.apply(_trunc_normal_init)
        self.last_layer = (
            WeightNormLinear(output_size, n_logits, norm_last_layer)
            if n_logits
            else None
        )

    def forward(self, x):
        """Project embeddings.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, input_size]`` (or ``[B, 1, input_size]`` as ECAPA returns).

        Returns
        -------
        torch.Tensor
            ``[B, output_size]`` unit vectors, or ``[B, n_logits]`` logits.
        """
        z = F.normalize(self.mlp(x.reshape(x.shape[0], -1)), dim=-1)
        return self.last_layer(z) if self.last_layer is not None else z


class Prototypes(torch.nn.Module):
    """The ``K x D`` prototypes ``c`` of Eqs. 2-3, shared by teacher and
    student. Living in a module, they are in the optimizer and the
    checkpoint by construction (the authors' code once left them out of
    both; 3D-Speaker issue #191). Init U(-1/sqrt(D), 1/sqrt(D)) as there.

    With ``learnable=False`` the prototypes are the fixed identity basis
    (``K = D``): the scores are then the head's output coordinates, which is
    the "SDPN w/o prototypes" ablation of Table 1.

    Arguments
    ---------
    n_prototypes : int
        ``K``.
    dim : int
        ``D`` (the head's output size).
    learnable : bool
        Learnable prototypes, or the identity (ablation).

    Example
    -------
    >>> protos = Prototypes(10, 4)
    >>> protos(torch.randn(3, 4)).shape
    torch.Size([3, 10])
    >>> fixed = Prototypes(4, 4, learnable=False)
    >>> z = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    >>> torch.allclose(fixed(z), z)
    True
    """

    def __init__(self, n_prototypes=1024, dim=256, learnable=True):
        super().__init__()
        if learnable:
            bound = 1.0 / math.sqrt(dim)
            self.weight = torch.nn.Parameter(
                torch.empty(n_prototypes, dim).uniform_(-bound, bound)
            )
        else:
            if n_prototypes != dim:
                raise ValueError(
                    f"fixed (identity) prototypes need n_prototypes == dim, got {n_prototypes} and {dim}"
                )
            self.register_buffer("weight", torch.eye(dim))

    def forward(self, z):
        """Cosine scores of embeddings against the prototypes.

        Arguments
        ---------
        z : torch.Tensor
            ``[..., D]``.

        Returns
        -------
        torch.Tensor
            ``[..., K]``.
        """
        return prototype_scores(z, self.weight)


class Center(torch.nn.Module):
    """DINO's centre of the teacher outputs, a buffer so it is checkpointed.

    Arguments
    ---------
    n_logits : int
        Output size of the DINO head.
    momentum : float
        EMA momentum of the centre update.

    Example
    -------
    >>> c = Center(2, momentum=0.5)
    >>> c.update(torch.tensor([[2.0, 4.0]]))
    >>> c.center
    tensor([1., 2.])
    """

    def __init__(self, n_logits, momentum=0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(n_logits))

    @torch.no_grad()
    def update(self, teacher_logits):
        """Move the centre towards this batch's mean teacher output.

        Arguments
        ---------
        teacher_logits : torch.Tensor
            ``[N, n_logits]``.
        """
        self.center.copy_(
            dino_center_update(self.center, teacher_logits, self.momentum)
        )


class AngularScale(torch.nn.Module):
    """Learnable scale ``w`` and bias ``b`` of the angular prototypical logits.

    ``S[i, j] = w * cos(query_i, anchor_j) + b``. Eq. 1 of the i-mix paper
    prints bare cosines (``w = 1, b = 0``: set ``learnable=False``), with which
    the softmax over cosines in [-1, 1] can barely separate positives; the AP
    implementations the paper builds on learn ``w`` (init 10) and ``b``
    (init -5). Those implementations mean to keep ``w`` positive but their
    ``torch.clamp`` result is discarded; here the clamp is applied in the
    forward pass, so ``w`` never flips the sign of the similarity.

    Arguments
    ---------
    init_scale : float
        Initial ``w``.
    init_bias : float
        Initial ``b``.
    learnable : bool
        Learn ``w`` and ``b`` (registered as parameters, so optimizer and
        checkpointer see them) or keep them fixed (buffers).
    min_scale : float
        Lower bound applied to ``w``.

    Example
    -------
    >>> head = AngularScale()
    >>> head(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    tensor([[ 5., -5.]], grad_fn=<AddBackward0>)
    """

    def __init__(
        self, init_scale=10.0, init_bias=-5.0, learnable=True, min_scale=1e-6
    ):
        super().__init__()
        self.min_scale = min_scale
        scale = torch.tensor(float(init_scale))
        bias = torch.tensor(float(init_bias))
        if learnable:
            self.scale = torch.nn.Parameter(scale)
            self.bias = torch.nn.Parameter(bias)
        else:
            self.register_buffer("scale", scale)
            self.register_buffer("bias", bias)

    def forward(self, query, anchor):
        """Logits of every query against every anchor.

        Arguments
        ---------
        query : torch.Tensor
            ``[N, D]``.
        anchor : torch.Tensor
            ``[M, D]``.

        Returns
        -------
        torch.Tensor
            ``[N, M]``.
        """
        return cosine_logits(
            query, anchor, self.scale.clamp(min=self.min_scale), self.bias
        )
