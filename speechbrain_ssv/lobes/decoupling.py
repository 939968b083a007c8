"""Decoupling block ``D_theta: x -> (x^s, x^d)`` of Mun, Han et al. (FFSVC
2022, Sec. III-B, Fig. 2).

The paper's two descriptions, and the reading implemented here:

* Sec. IV-C: "there are three MLP layers ... each MLP layer consists of
  FC-ReLU-BN sequentially. From the outputs of the last two MLP layers, the
  192-dimensional speaker and device embeddings are obtained."
* Sec. III-B: the MLP module is "FC, BN, ReLU" (another order) and ``x^s``,
  ``x^d`` are "obtained via MLP modules".

Three layers whose *last two* give the two embeddings reads as one shared
layer followed by two parallel heads (a sequential stack would make ``x^d``
a function of ``x^s``, which contradicts splitting ``x`` into two factors)::

    x --MLP_1--> h --MLP_2--> x^s
                   \\-MLP_3--> x^d

``n_layers`` generalises it: ``n_layers - 2`` shared layers, then one layer
per branch. The layer order follows Sec. IV-C (FC-ReLU-BN, the experimental
setup) and is an argument. The paper gives no width for the shared layer;
it defaults to the input size (``D``, Fig. 2 keeps everything in ``R^D``).

Also here: :func:`build_frontend` (the recipes' choice of front-end
``E_theta``) and :class:`SpeakerBranchEncoder` (front-end + speaker branch:
the single ``embedding_model`` an exported model runs).

Authors
 * speechbrain-ssv developers 2026
"""

import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_ssv.lobes.mfa_conformer import MFAConformer
from speechbrain_ssv.utils.errors import HparamsError

__all__ = [
    "FRONTENDS",
    "DecouplingBlock",
    "MLPLayer",
    "SpeakerBranchEncoder",
    "build_frontend",
]


class MLPLayer(torch.nn.Module):
    """One MLP layer of the decoupling block: FC-ReLU-BN (or FC-BN-ReLU).

    Arguments
    ---------
    input_size : int
        Input features.
    output_size : int
        Output features.
    order : str
        ``"fc-relu-bn"`` (Sec. IV-C) or ``"fc-bn-relu"`` (Sec. III-B).

    Example
    -------
    >>> MLPLayer(4, 3)(torch.randn(5, 4)).shape
    torch.Size([5, 3])
    """

    def __init__(self, input_size, output_size, order="fc-relu-bn"):
        super().__init__()
        fc = torch.nn.Linear(input_size, output_size)
        bn = torch.nn.BatchNorm1d(output_size)
        act = torch.nn.ReLU()
        if order == "fc-relu-bn":
            self.net = torch.nn.Sequential(fc, act, bn)
        elif order == "fc-bn-relu":
            self.net = torch.nn.Sequential(fc, bn, act)
        else:
            raise ValueError(
                f"order={order!r}; expected 'fc-relu-bn' or 'fc-bn-relu'"
            )

    def forward(self, x):
        """Apply the layer.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, input_size]``.

        Returns
        -------
        torch.Tensor
            ``[N, output_size]``.
        """
        return self.net(x)


class DecouplingBlock(torch.nn.Module):
    """Split the initial embedding into speaker and device embeddings.

    Arguments
    ---------
    input_size : int
        Size of the initial embedding ``x`` (192 in the paper).
    hidden : int | None
        Width of the shared layers (default ``input_size``).
    output_size : int
        Size of ``x^s`` and ``x^d`` (192).
    n_layers : int
        Total MLP layers: ``n_layers - 2`` shared, then one per branch
        (3 in the paper: one shared, two heads). Must be >= 2.
    order : str
        Layer order, ``"fc-relu-bn"`` or ``"fc-bn-relu"``.

    Example
    -------
    >>> block = DecouplingBlock(input_size=16, output_size=8)
    >>> x_s, x_d = block(torch.randn(4, 1, 16))
    >>> x_s.shape, x_d.shape
    (torch.Size([4, 1, 8]), torch.Size([4, 1, 8]))
    """

    def __init__(
        self,
        input_size=192,
        hidden=None,
        output_size=192,
        n_layers=3,
        order="fc-relu-bn",
    ):
        super().__init__()
        if n_layers < 2:
            raise ValueError(
                f"n_layers={n_layers}; expected >= 2 (one layer per branch "
                "at least)"
            )
        hidden = input_size if hidden is None else hidden
        layers = []
        size = input_size
        for _ in range(n_layers - 2):
            layers.append(MLPLayer(size, hidden, order))
            size = hidden
        self.shared = torch.nn.Sequential(*layers)
        self.speaker_head = MLPLayer(size, output_size, order)
        self.device_head = MLPLayer(size, output_size, order)

    def forward(self, x):
        """Speaker and device embeddings.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, D]`` or ``[N, 1, D]`` (an encoder's output).

        Returns
        -------
        x_s : torch.Tensor
            Speaker embedding, ``[N, output_size]`` (``[N, 1, output_size]``
            for a 3-D input, like SpeechBrain embeddings).
        x_d : torch.Tensor
            Device embedding, same shape.
        """
        three_d = x.dim() == 3
        h = self.shared(x.reshape(x.shape[0], -1))
        x_s, x_d = self.speaker_head(h), self.device_head(h)
        if three_d:
            x_s, x_d = x_s.unsqueeze(1), x_d.unsqueeze(1)
        return x_s, x_d


#: Front-end encoders :func:`build_frontend` can build, by name.
FRONTENDS = ("mfa_conformer", "ecapa")


def build_frontend(kind, **configs):
    """Build the front-end encoder ``E_theta`` named by ``kind``.

    HyperPyYAML cannot choose a class from an hparam (and ``!new:`` takes
    classes only), so a recipe yaml calls this factory with ``!apply:`` and
    gives the settings of every front-end it offers; ``kind`` (an hparam
    such as ``frontend``) picks one. The result
    is the bare encoder (:class:`~speechbrain_ssv.lobes.mfa_conformer.MFAConformer`
    or SpeechBrain's ``ECAPA_TDNN``), so its state dict is exactly that of a
    pre-training run with the same settings (``forward(x, lengths)`` ->
    ``[B, 1, D]`` for both).

    Arguments
    ---------
    kind : str
        ``"mfa_conformer"`` or ``"ecapa"``.
    **configs : dict
        Keyword arguments of each front-end, by name (e.g.
        ``mfa_conformer={...}, ecapa={...}``); only ``configs[kind]`` is
        used.

    Returns
    -------
    torch.nn.Module
        The encoder.

    Example
    -------
    >>> enc = build_frontend(
    ...     "ecapa",
    ...     ecapa={"input_size": 20, "channels": [16, 16, 16, 16, 48], "lin_neurons": 8},
    ...     mfa_conformer={"input_size": 20},
    ... )
    >>> type(enc).__name__, enc(torch.randn(2, 30, 20)).shape
    ('ECAPA_TDNN', torch.Size([2, 1, 8]))
    """
    if kind not in FRONTENDS:
        raise HparamsError(
            "frontend", f"is {kind!r}; expected one of {list(FRONTENDS)}"
        )
    if configs.get(kind) is None:
        raise HparamsError(
            f"embedding_model: {kind}",
            f"has no settings; give build_frontend a '{kind}:' mapping",
        )
    if kind == "mfa_conformer":
        return MFAConformer(**configs[kind])
    return ECAPA_TDNN(**configs[kind])


class SpeakerBranchEncoder(torch.nn.Module):
    """Front-end followed by the speaker branch of a decoupling block: the
    verification embedding ``x^s`` of Mun, Han et al. (Sec. III-B: "for the
    evaluation, the speaker embeddings x^s are extracted").

    SpeechBrain's ``EncoderClassifier`` runs one ``embedding_model``; this
    wrapper is that model for an exported disentanglement recipe. It holds
    the whole decoupling block, so its state dict is the union of the two
    training modules' (``frontend.*``, ``decoupling.*``), but computes only
    the shared layers and the speaker head.

    Arguments
    ---------
    frontend : torch.nn.Module
        ``forward(x, lengths)`` -> ``[B, 1, D]`` (or ``[B, D]``).
    decoupling : DecouplingBlock
        The decoupling block.

    Example
    -------
    >>> front = build_frontend(
    ...     "ecapa", ecapa={"input_size": 6, "channels": [8, 8, 8, 8, 24], "lin_neurons": 4}
    ... )
    >>> block = DecouplingBlock(4, output_size=3)
    >>> enc = SpeakerBranchEncoder(front, block).eval()
    >>> x = torch.randn(2, 20, 6)
    >>> x_s, _ = block(front(x))
    >>> torch.allclose(enc(x), x_s)
    True
    """

    def __init__(self, frontend, decoupling):
        super().__init__()
        self.frontend = frontend
        self.decoupling = decoupling

    def forward(self, x, lengths=None):
        """Speaker embeddings.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, F]`` features.
        lengths : torch.Tensor | None
            ``[B]`` relative lengths.

        Returns
        -------
        torch.Tensor
            ``[B, 1, output_size]``, like SpeechBrain's encoders.
        """
        emb = self.frontend(x, lengths)
        emb = emb.reshape(emb.shape[0], -1)
        shared = self.decoupling.shared(emb)
        return self.decoupling.speaker_head(shared).unsqueeze(1)
