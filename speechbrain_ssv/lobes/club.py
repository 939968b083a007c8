"""Variational CLUB estimators (the networks ``Q_phi`` of Mun, Han et al.,
FFSVC 2022, Fig. 3) and the plumbing that keeps their two losses apart.

Each estimator has two uses with different gradient destinations
(Algorithm 1):

* **learning loss** (negative log-likelihood, Eq. 14/17/20): trains the
  estimator's own parameters ``phi`` only, with its own optimizer. Use
  :func:`estimator_step`, which detaches the embeddings so nothing reaches
  the main networks.
* **MI upper bound** (Eq. 12/15/18): a term of the main objective (Eq. 21).
  It must move the main networks (encoder, decoupling block) only. Compute it
  inside :func:`frozen`, which switches ``requires_grad`` off for the
  estimator's parameters while the graph is recorded, so the backward pass of
  the main loss leaves their ``.grad`` untouched (``None``), whatever
  optimizer is stepped afterwards.

Algorithm 1 runs the ``M`` estimator steps on the batch's embeddings first,
then the main update::

    x_s, x_d = decoupling(encoder(feats))
    for _ in range(M):
        estimator_step(club_sd, opt_sd, x_s, x_d)  # detached inside
    with frozen(club_sd):
        mi = club_sd.mi_upper_bound(x_s, x_d)      # grads reach x_s, x_d only
    (cls_loss + 0.5 * mi).backward(); main_opt.step()

The likelihood methods (``log_likelihood``, ``learning_loss``,
``mi_upper_bound``) are wrapped in
:func:`~speechbrain_ssv.utils.precision.float32_loss`: under autocast
(``--precision bf16`` / ``fp16``) the whole estimator, a small MLP, runs in
float32, since ``exp(-logvar)`` and the log-softmax gathers are fragile in
low precision (calling the module itself, ``forward``, still follows
autocast).

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import math

import torch
import torch.nn.functional as F

from speechbrain_ssv.losses.club import (
    categorical_club_bound,
    categorical_log_likelihood,
    gaussian_club_bound,
    gaussian_log_likelihood,
)
from speechbrain_ssv.utils.precision import float32_loss

__all__ = ["CategoricalCLUB", "GaussianCLUB", "estimator_step", "frozen"]


def _mlp(in_dim, hidden, out_dim):
    if hidden is None:
        return torch.nn.Linear(in_dim, out_dim)
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, out_dim),
    )


class GaussianCLUB(torch.nn.Module):
    """``q(y | x) = N(mu(x), diag(exp(logvar(x))))`` and its vCLUB bound,
    Eq. 12-14 (``M_1``: ``x = x^s``, ``y = x^d``).

    Two branches, as in the reference ``CLUB`` class (Linear95/CLUB): ``mu``
    = Linear-ReLU-Linear, ``logvar`` = Linear-ReLU-Linear-bound. The paper
    gives 1024 hidden and 192 output units (Sec. IV-C) and takes ``mu`` and
    ``sigma^2`` from "the last two MLP layers"; it does not say whether the
    hidden layer is shared, so each branch gets its own ``hidden`` units (the
    reference splits ``hidden`` in halves; here the paper's 1024 is used per
    branch).

    The log-variance is bounded to ``(-logvar_bound, logvar_bound)`` by
    ``logvar_bound * tanh(.)``; ``logvar_bound = 1`` is exactly the
    reference's Tanh. The bound keeps the NLL from diverging (reference issue
    #27: NaN with an unbounded log-variance) but also caps how confident
    ``q`` can be: with ``sigma^2 >= exp(-logvar_bound)`` a conditional
    variance below that floor is over-estimated, and the bound then
    *under-states* strong dependence (it still grows with it). Raise
    ``logvar_bound`` (e.g. 5) when the embeddings are strongly correlated
    and the estimate saturates.

    Arguments
    ---------
    x_dim : int
        Dimension of the conditioning variable ``x``.
    y_dim : int
        Dimension of ``y``.
    hidden : int
        Hidden units of each branch.
    logvar_bound : float | None
        Bound of the log-variance; ``None`` leaves it unbounded.
    scale_free : bool
        Rescale every ``x`` and ``y`` row to norm ``sqrt(dim)`` (unit mean
        square per dimension) before the likelihood and the bound. On raw
        embeddings (the paper) the bound falls when the main networks
        merely shrink ``y``: halving a device head's output roughly divides
        it by 3, while AAM, AP and cosine scoring, which see only
        directions, are unchanged. On rescaled rows it measures what the
        scoring sees. A deviation from the paper, set in the recipe yaml.

    Example
    -------
    >>> club = GaussianCLUB(8, 4, hidden=16)
    >>> x, y = torch.randn(32, 8), torch.randn(32, 4)
    >>> club.mi_upper_bound(x, y).shape, club.log_likelihood(x, y).shape
    (torch.Size([]), torch.Size([32]))
    """

    def __init__(
        self, x_dim, y_dim, hidden=1024, logvar_bound=1.0, scale_free=False
    ):
        super().__init__()
        self.x_dim = x_dim
        self.y_dim = y_dim
        self.logvar_bound = logvar_bound
        self.scale_free = scale_free
        self.p_mu = _mlp(x_dim, hidden, y_dim)
        self.p_logvar = _mlp(x_dim, hidden, y_dim)

    def _rescale(self, v):
        """``v`` flattened to ``[N, dim]``; with ``scale_free`` each row at
        norm ``sqrt(dim)``."""
        v = v.reshape(v.shape[0], -1)
        if not self.scale_free:
            return v
        return F.normalize(v, dim=-1) * math.sqrt(v.shape[1])

    def forward(self, x):
        """Parameters of ``q(y | x)``.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]`` (a ``[N, 1, x_dim]`` embedding is flattened).

        Returns
        -------
        mu : torch.Tensor
            ``[N, y_dim]``.
        logvar : torch.Tensor
            ``[N, y_dim]``.
        """
        x = self._rescale(x)
        logvar = self.p_logvar(x)
        if self.logvar_bound is not None:
            logvar = self.logvar_bound * torch.tanh(logvar / self.logvar_bound)
        return self.p_mu(x), logvar

    @float32_loss
    def log_likelihood(self, x, y):
        """``log q(y_i | x_i)`` per sample (Eq. 13).

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]``.
        y : torch.Tensor
            ``[N, y_dim]``.

        Returns
        -------
        torch.Tensor
            ``[N]``.
        """
        mu, logvar = self(x)
        return gaussian_log_likelihood(mu, logvar, self._rescale(y))

    @float32_loss
    def learning_loss(self, x, y):
        """Negative log-likelihood that trains ``q`` (Eq. 14).

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]``.
        y : torch.Tensor
            ``[N, y_dim]``.

        Returns
        -------
        torch.Tensor
            Scalar.
        """
        return -self.log_likelihood(x, y).mean()

    @float32_loss
    def mi_upper_bound(self, x, y):
        """vCLUB estimate of ``I(x; y)`` (Eq. 12).

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]``.
        y : torch.Tensor
            ``[N, y_dim]``, paired with ``x`` row by row.

        Returns
        -------
        torch.Tensor
            Scalar (nats).
        """
        mu, logvar = self(x)
        return gaussian_club_bound(mu, logvar, self._rescale(y))


class CategoricalCLUB(torch.nn.Module):
    """``q(y | x) = softmax(f(x))`` for a class label ``y`` and its vCLUB
    bound, Eq. 15-20 (``M_2``: ``x^d`` vs speaker labels; ``M_3``: ``x^s``
    vs device labels).

    ``f`` is a Linear layer, or Linear-ReLU-Linear with ``hidden`` units
    (the reference ``CLUBForCategorical``; the paper gives no size for
    ``Q_phi2``, ``Q_phi3``).

    Arguments
    ---------
    x_dim : int
        Dimension of ``x``.
    n_classes : int
        Number of classes ``C``.
    hidden : int | None
        Hidden units, or ``None`` for a single Linear layer.

    Example
    -------
    >>> club = CategoricalCLUB(8, 5)
    >>> x, y = torch.randn(16, 8), torch.randint(5, (16,))
    >>> club.mi_upper_bound(x, y).shape, club.learning_loss(x, y).shape
    (torch.Size([]), torch.Size([]))
    """

    def __init__(self, x_dim, n_classes, hidden=None):
        super().__init__()
        self.x_dim = x_dim
        self.n_classes = n_classes
        self.net = _mlp(x_dim, hidden, n_classes)

    def forward(self, x):
        """Log-probabilities ``log q(. | x)``.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]`` (or ``[N, 1, x_dim]``).

        Returns
        -------
        torch.Tensor
            ``[N, C]`` log-softmax.
        """
        return torch.log_softmax(self.net(x.reshape(x.shape[0], -1)), dim=-1)

    @float32_loss
    def log_likelihood(self, x, labels):
        """``log q(y_i | x_i) = -CE`` per sample (Eq. 16, 19).

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]``.
        labels : torch.Tensor
            ``[N]`` (or ``[N, 1]``) class indices.

        Returns
        -------
        torch.Tensor
            ``[N]``.
        """
        return categorical_log_likelihood(self(x), labels)

    @float32_loss
    def learning_loss(self, x, labels):
        """Cross-entropy that trains ``q`` (Eq. 17, 20).

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]``.
        labels : torch.Tensor
            ``[N]`` class indices.

        Returns
        -------
        torch.Tensor
            Scalar.
        """
        return -self.log_likelihood(x, labels).mean()

    @float32_loss
    def mi_upper_bound(self, x, labels):
        """vCLUB estimate of ``I(x; y)`` (Eq. 15, 18), ``O(N C + N^2)``.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, x_dim]``.
        labels : torch.Tensor
            ``[N]`` class indices paired with ``x``.

        Returns
        -------
        torch.Tensor
            Scalar (nats).
        """
        return categorical_club_bound(self(x), labels)


@contextlib.contextmanager
def frozen(*estimators):
    """Record MI terms that train the main networks only.

    Inside the block every parameter of the given modules has
    ``requires_grad = False`` and the modules are in eval mode (as the
    reference does while the main model minimises the bound), so a graph
    built there routes gradients to the *inputs* (the embeddings) and never
    to the estimators. Flags and train/eval modes are restored on exit, also
    when the block raises.

    Arguments
    ---------
    *estimators : torch.nn.Module
        Estimators (or any modules) to freeze.

    Yields
    ------
    tuple
        The modules.

    Example
    -------
    >>> club = GaussianCLUB(2, 2, hidden=4)
    >>> x = torch.randn(8, 2, requires_grad=True)
    >>> with frozen(club):
    ...     mi = club.mi_upper_bound(x, x)
    >>> mi.backward()
    >>> x.grad is not None, all(p.grad is None for p in club.parameters())
    (True, True)
    >>> all(p.requires_grad for p in club.parameters()), club.training
    (True, True)
    """
    saved = []
    for est in estimators:
        saved.append(
            (
                est,
                est.training,
                [(p, p.requires_grad) for p in est.parameters()],
            )
        )
    try:
        for est, _, params in saved:
            est.eval()
            for p, _ in params:
                p.requires_grad_(False)
        yield estimators
    finally:
        for est, mode, params in saved:
            est.train(mode)
            for p, flag in params:
                p.requires_grad_(flag)


def estimator_step(estimator, optimizer, x, y, n_steps=1):
    """Train an estimator on its negative log-likelihood, Algorithm 1's
    inner loop.

    ``x`` and ``y`` are detached, so the likelihood loss reaches only the
    estimator's parameters (the main networks' ``.grad`` stays untouched).
    The same batch is used for all ``n_steps`` (``M`` in Algorithm 1; the
    reference notebook uses 5 steps per main step).

    Arguments
    ---------
    estimator : GaussianCLUB | CategoricalCLUB
        Any module with ``learning_loss(x, y)``.
    optimizer : torch.optim.Optimizer
        Optimizer over the estimator's parameters only.
    x : torch.Tensor
        Conditioning embeddings.
    y : torch.Tensor
        Targets (embeddings or class indices).
    n_steps : int
        Number of updates ``M``.

    Returns
    -------
    torch.Tensor
        The last learning loss (detached).

    Example
    -------
    >>> torch.manual_seed(0) is not None
    True
    >>> club = CategoricalCLUB(2, 2)
    >>> opt = torch.optim.SGD(club.parameters(), lr=0.5)
    >>> x = torch.tensor([[2.0, 0.0], [0.0, 2.0]]); y = torch.tensor([0, 1])
    >>> first = estimator_step(club, opt, x, y)
    >>> bool(estimator_step(club, opt, x, y, n_steps=20) < first)
    True
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    x = x.detach()
    y = y.detach()
    was_training = estimator.training
    estimator.train()
    try:
        for _ in range(int(n_steps)):
            optimizer.zero_grad(set_to_none=True)
            loss = estimator.learning_loss(x, y)
            if not loss.requires_grad:
                raise RuntimeError(
                    f"{type(estimator).__name__}.learning_loss has no "
                    "gradient: estimator_step was called inside frozen(), "
                    "or the optimizer's parameters are frozen"
                )
            loss.backward()
            optimizer.step()
    finally:
        estimator.train(was_training)
    return loss.detach()
