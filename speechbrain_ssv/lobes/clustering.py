"""Modules of the multi-objective clustering model: the ``d-S-S-C`` MLP and a
running estimate of the cluster marginal ``p(y)``.

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition", Appendix D.5 (architecture) and Eq. 2
(the entropy ``H(Y)`` the running marginal serves).

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import math

import torch
import torch.nn.functional as F

__all__ = ["ClusteringMLP", "RunningMarginal"]


class ClusteringMLP(torch.nn.Module):
    """``d-S-S-C`` MLP of IMSAT / the paper (Appendix D.5): two hidden layers
    Linear -> BatchNorm -> ReLU and a linear output layer; ``forward`` gives
    logits, :meth:`probs` the softmax cluster posteriors.

    Defaults are the paper's (``d = 400``, ``S = 20800``). That is ~640M
    parameters for ``C = 10000`` (2.6 GB in float32, plus optimizer state);
    the IMSAT reference uses ``S = 1200``. The IMSAT reference scales the
    initial output weights by ``1e-4`` (near-uniform initial posteriors),
    which suits its Adam optimizer; under the paper's momentum SGD such a
    small last layer also shrinks the gradients reaching the hidden layers
    by that factor and training barely starts, so the default keeps
    PyTorch's initialisation (``output_init_scale=1``). Inputs are expected
    l2-normalised (the paper normalises
    i-vectors beforehand; done outside the model so VAT perturbations are
    not projected away).

    Arguments
    ---------
    input_dim : int
        ``d``.
    n_clusters : int
        ``C``.
    hidden_size : int
        ``S``.
    n_hidden : int
        Number of hidden layers (the paper: 2).
    output_init_scale : float
        Multiplies the default initial weights of the output layer.

    Example
    -------
    >>> model = ClusteringMLP(8, n_clusters=5, hidden_size=16)
    >>> x = torch.randn(4, 8)
    >>> model(x).shape, torch.allclose(model.probs(x).sum(1), torch.ones(4))
    (torch.Size([4, 5]), True)
    """

    def __init__(
        self,
        input_dim=400,
        n_clusters=10000,
        hidden_size=20800,
        n_hidden=2,
        output_init_scale=1.0,
    ):
        super().__init__()
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
        layers, size = [], input_dim
        for _ in range(n_hidden):
            layers += [
                torch.nn.Linear(size, hidden_size),
                torch.nn.BatchNorm1d(hidden_size),
                torch.nn.ReLU(),
            ]
            size = hidden_size
        self.hidden = torch.nn.Sequential(*layers)
        self.output = torch.nn.Linear(size, n_clusters)
        with torch.no_grad():
            self.output.weight.mul_(output_init_scale)
            self.output.bias.zero_()
        self.input_dim = input_dim
        self.n_clusters = n_clusters

    def forward(self, x, return_hidden=False):
        """Cluster logits.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, input_dim]``.
        return_hidden : bool
            Also return the last hidden layer's output (the input of
            ``output``), e.g. for
            :func:`speechbrain_ssv.losses.contrastive.supcon_loss_low_rank`.

        Returns
        -------
        torch.Tensor
            ``[N, n_clusters]``; with ``return_hidden`` a tuple of it and
            the ``[N, hidden_size]`` hidden output.
        """
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"expected inputs of shape [N, {self.input_dim}], got "
                f"{tuple(x.shape)}"
            )
        hidden = self.hidden(x)
        logits = self.output(hidden)
        return (logits, hidden) if return_hidden else logits

    def probs(self, x):
        """Softmax cluster posteriors ``p(y|x)``.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, input_dim]``.

        Returns
        -------
        torch.Tensor
            ``[N, n_clusters]``, rows summing to 1.
        """
        return F.softmax(self(x), dim=-1)

    @torch.no_grad()
    def predict(self, x, batch_size=65536):
        """Hard pseudo-labels ``argmax_y p(y|x)``, in eval mode and in chunks
        (so a million inputs never build a ``[N, C]`` matrix at once).

        Arguments
        ---------
        x : torch.Tensor
            ``[N, input_dim]`` (may live on the CPU while the model is on a
            GPU; chunks are moved).
        batch_size : int
            Rows per chunk.

        Returns
        -------
        torch.Tensor
            ``[N]`` long, on ``x``'s device.

        Example
        -------
        >>> ClusteringMLP(3, 4, 8).predict(torch.randn(10, 3), batch_size=4).shape
        torch.Size([10])
        """
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            out = [
                self(x[i : i + batch_size].to(device))
                .argmax(dim=1)
                .to(x.device)
                for i in range(0, x.shape[0], batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)

    @contextlib.contextmanager
    def frozen_bn_stats(self):
        """Forwards inside this block normalise with batch statistics (train
        mode) but leave the BatchNorm running statistics untouched, as the
        IMSAT reference does for its VAT forwards.

        Example
        -------
        >>> model = ClusteringMLP(3, 4, 8)
        >>> before = model.hidden[1].running_mean.clone()
        >>> with model.frozen_bn_stats():
        ...     _ = model(torch.randn(6, 3))
        >>> torch.equal(before, model.hidden[1].running_mean)
        True
        """
        # With track_running_stats off, a training-mode BatchNorm normalises
        # with the batch statistics and passes no running buffers to the
        # kernel: nothing is updated, and nothing that autograd saved is
        # modified in place afterwards (restoring copies would be).
        bns = [
            m
            for m in self.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats
        ]
        for m in bns:
            m.track_running_stats = False
        try:
            yield self
        finally:
            for m in bns:
                m.track_running_stats = True


class RunningMarginal(torch.nn.Module):
    """Exponential moving average of the batch cluster marginal
    ``mean_i p(y|x_i)``, the estimate of ``p(y)`` behind ``H(Y)`` (Eq. 2)
    when there are more clusters than a batch can represent.

    Why: the batch estimate of ``H(Y)`` is capped near ``log B`` and its
    gradient spreads each batch over distinct clusters instead of balancing
    cluster sizes over the data set (see
    :mod:`speechbrain_ssv.losses.clustering`). The running estimate averages
    ``B / (1 - momentum)`` samples; pick ``momentum`` so that this is
    several times ``C`` (:meth:`momentum_for`). It starts at zero and is
    bias-corrected like Adam's moments, so early estimates are plain
    weighted averages of the batches seen, with no arbitrary prior. Buffers,
    so it is checkpointed with the model. Under DDP the batch marginal is
    averaged over ranks before the update (all ranks then hold the same
    estimate).

    Arguments
    ---------
    n_clusters : int
        ``C``.
    momentum : float
        EMA decay in ``[0, 1)``.

    Example
    -------
    >>> rm = RunningMarginal(2, momentum=0.5)
    >>> rm.update(torch.tensor([[1.0, 0.0]]))
    tensor([1., 0.])
    >>> rm.update(torch.tensor([[0.0, 1.0]]))  # (0.5 * [1, 0] + [0, 1]) / 1.5
    tensor([0.3333, 0.6667])
    """

    def __init__(self, n_clusters, momentum=0.9):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer(
            "accumulator", torch.zeros(n_clusters, dtype=torch.float64)
        )
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))

    @staticmethod
    def momentum_for(n_clusters, batch_size, samples_per_cluster=10):
        """Momentum whose effective window ``B / (1 - m)`` holds about
        ``samples_per_cluster * C`` samples.

        Arguments
        ---------
        n_clusters : int
            ``C``.
        batch_size : int
            ``B`` (global, over all ranks).
        samples_per_cluster : float
            Samples per cluster the window should hold.

        Returns
        -------
        float
            Momentum in ``[0, 1)``.

        Example
        -------
        >>> round(RunningMarginal.momentum_for(10000, 10240), 4)
        0.8976
        """
        window = samples_per_cluster * n_clusters
        return max(0.0, 1.0 - batch_size / window)

    @property
    def marginal(self):
        """Current bias-corrected estimate ``[C]`` (uniform before any update).

        Returns
        -------
        torch.Tensor
            Float32 probabilities.
        """
        t = int(self.n_updates)
        if t == 0:
            c = self.accumulator.shape[0]
            return torch.full((c,), 1.0 / c, device=self.accumulator.device)
        est = self.accumulator / (1.0 - math.pow(self.momentum, t))
        return (est / est.sum()).float()

    @torch.no_grad()
    def update(self, probs):
        """Fold a batch into the estimate and return the new estimate.

        Arguments
        ---------
        probs : torch.Tensor
            ``[N, C]`` cluster posteriors (used detached).

        Returns
        -------
        torch.Tensor
            ``[C]`` the updated :attr:`marginal`.
        """
        if probs.dim() != 2 or probs.shape[1] != self.accumulator.shape[0]:
            raise ValueError(
                f"expected probs of shape [N, {self.accumulator.shape[0]}], "
                f"got {tuple(probs.shape)}"
            )
        batch = probs.detach().to(self.accumulator).mean(dim=0)
        dist = torch.distributed
        if (
            dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            dist.all_reduce(batch)
            batch /= dist.get_world_size()
        self.accumulator.mul_(self.momentum).add_(
            batch, alpha=1.0 - self.momentum
        )
        self.n_updates += 1
        return self.marginal
