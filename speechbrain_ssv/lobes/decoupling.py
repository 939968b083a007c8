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

Authors
 * speechbrain-ssv developers 2026
"""

import torch

__all__ = ["DecouplingBlock", "MLPLayer"]


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
