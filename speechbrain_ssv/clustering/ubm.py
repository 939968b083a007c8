"""Diagonal GMM universal background model (UBM) and Baum-Welch statistics
in batched torch (CPU or GPU), streaming over a corpus: the first half of
the i-vector extractor of :mod:`speechbrain_ssv.clustering.ivector`.

Model
-----
UBM: ``p(x) = sum_c w_c N(x; mu_c, diag(v_c))``, trained by EM with binary
splitting (1 -> 2 -> 4 ... components, the heaviest ones split first).

Statistics of an utterance, with posteriors ``g_tc`` under the UBM:
``N_c = sum_t g_tc`` and ``F_c = v_c^{-1/2} sum_t g_tc (x_t - mu_c)``
(centred and whitened, so the total-variability model has identity
covariances).

Scale: nothing holds all frames. The UBM streams frames in batches of
``frames_per_batch``.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import torch

__all__ = [
    "DiagonalUBM",
    "baum_welch_stats",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _reiterable(items, what):
    """A zero-argument callable returning a fresh iterator over ``items``."""
    if callable(items):
        return items
    if iter(items) is items:
        raise ValueError(
            f"{what} is a one-shot iterator, but EM needs several passes: pass "
            "a list, a Dataset-like object, or a zero-argument callable that "
            "returns a fresh iterator"
        )
    return lambda: iter(items)


def _frames(u, feat_dim, device, dtype):
    x = torch.as_tensor(u).to(device=device, dtype=dtype)
    if x.dim() != 2 or x.shape[1] != feat_dim:
        raise ValueError(
            f"expected utterance features of shape [T, {feat_dim}], got "
            f"{tuple(x.shape)}"
        )
    return x


def _frame_batches(factory, feat_dim, frames_per_batch, device, dtype):
    buf, size = [], 0
    for u in factory():
        x = _frames(u, feat_dim, device, dtype)
        if x.shape[0] == 0:
            continue
        buf.append(x)
        size += x.shape[0]
        if size >= frames_per_batch:
            yield torch.cat(buf)
            buf, size = [], 0
    if buf:
        yield torch.cat(buf)


def _gauss_loglik(x, log_w, means, variances):
    """``[T, C]`` of ``log w_c + log N(x_t; mu_c, diag v_c)``."""
    prec = 1.0 / variances
    const = log_w - 0.5 * (
        torch.log(variances).sum(1)
        + (means * means * prec).sum(1)
        + x.shape[1] * _LOG_2PI
    )
    return const - 0.5 * ((x * x) @ prec.t()) + x @ (means * prec).t()


class DiagonalUBM(torch.nn.Module):
    """Diagonal-covariance GMM universal background model.

    Parameters are buffers (``weights [C]``, ``means [C, D]``,
    ``variances [C, D]``, ``variance_floor [D]``), so the model is saved and
    restored by ``state_dict`` / SpeechBrain's ``Checkpointer``.

    Arguments
    ---------
    n_components : int
        ``C``.
    feat_dim : int
        ``D``.
    var_floor : float
        Variances are floored at this fraction of the global variance of the
        training frames.
    dtype : torch.dtype
        Storage and compute dtype (accumulators are always float64).

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> utts = [torch.randn(200, 3, generator=g) + (4.0 * (i % 2)) for i in range(6)]
    >>> ubm = DiagonalUBM(2, 3)
    >>> hist = ubm.fit(utts, n_iter=3, split_iter=2)
    >>> sorted(round(float(m), 0) for m in ubm.means[:, 0])
    [0.0, 4.0]
    """

    def __init__(
        self, n_components=512, feat_dim=60, var_floor=1e-3, dtype=torch.float32
    ):
        super().__init__()
        if n_components < 1 or feat_dim < 1:
            raise ValueError(
                f"n_components and feat_dim must be >= 1, got {n_components}, {feat_dim}"
            )
        self.n_components, self.feat_dim = n_components, feat_dim
        self.var_floor = var_floor
        self.register_buffer(
            "weights",
            torch.full((n_components,), 1.0 / n_components, dtype=dtype),
        )
        self.register_buffer(
            "means", torch.zeros(n_components, feat_dim, dtype=dtype)
        )
        self.register_buffer(
            "variances", torch.ones(n_components, feat_dim, dtype=dtype)
        )
        self.register_buffer(
            "variance_floor", torch.zeros(feat_dim, dtype=dtype)
        )

    @property
    def _device(self):
        return self.means.device

    def log_likelihoods(self, frames):
        """Per-component joint log-likelihoods ``log w_c + log N(x_t; c)``.

        Arguments
        ---------
        frames : torch.Tensor
            ``[T, D]``.

        Returns
        -------
        torch.Tensor
            ``[T, C]``.
        """
        x = _frames(frames, self.feat_dim, self._device, self.means.dtype)
        return _gauss_loglik(
            x,
            torch.log(self.weights.clamp_min(1e-30)),
            self.means,
            self.variances,
        )

    def posteriors(self, frames):
        """Component posteriors and frame log-likelihoods.

        Arguments
        ---------
        frames : torch.Tensor
            ``[T, D]``.

        Returns
        -------
        tuple
            ``(gamma [T, C], loglik [T])``.
        """
        ll = self.log_likelihoods(frames)
        frame_ll = torch.logsumexp(ll, dim=1)
        return torch.exp(ll - frame_ll[:, None]), frame_ll

    # -- EM on explicit parameters (the splitting stages use fewer
    # components than the buffers hold) --------------------------------

    def _accumulate(self, factory, params, frames_per_batch):
        w, mu, var = params
        k, d = mu.shape
        acc = {
            "n": torch.zeros(k, dtype=torch.float64, device=self._device),
            "f": torch.zeros(k, d, dtype=torch.float64, device=self._device),
            "s": torch.zeros(k, d, dtype=torch.float64, device=self._device),
            "ll": 0.0,
            "frames": 0,
        }
        log_w = torch.log(w.clamp_min(1e-30))
        for x in _frame_batches(
            factory, d, frames_per_batch, self._device, mu.dtype
        ):
            ll = _gauss_loglik(x, log_w, mu, var)
            frame_ll = torch.logsumexp(ll, dim=1)
            gamma = torch.exp(ll - frame_ll[:, None])
            acc["n"] += gamma.sum(0).double()
            acc["f"] += (gamma.t() @ x).double()
            acc["s"] += (gamma.t() @ (x * x)).double()
            acc["ll"] += float(frame_ll.double().sum())
            acc["frames"] += x.shape[0]
        if acc["frames"] == 0:
            raise ValueError("the utterances hold no frames")
        return acc

    def _m_step(self, acc, params, floor):
        w, mu, var = params
        n = acc["n"]
        ok = n > 1e-3
        safe = n.clamp_min(1e-3)[:, None]
        new_mu = acc["f"] / safe
        new_var = acc["s"] / safe - new_mu * new_mu
        new_mu = torch.where(ok[:, None], new_mu, mu.double())
        new_var = torch.where(ok[:, None], new_var, var.double())
        new_var = torch.maximum(new_var, floor.double()[None])
        new_w = (n / n.sum()).clamp_min(1e-10)
        new_w = new_w / new_w.sum()
        dt = mu.dtype
        return new_w.to(dt), new_mu.to(dt), new_var.to(dt)

    @staticmethod
    def _split(params, target):
        w, mu, var = params
        k = w.shape[0]
        n_split = min(k, target - k)
        order = torch.argsort(w, descending=True)[:n_split]
        delta = 0.2 * torch.sqrt(var[order])
        mu = torch.cat([mu, mu[order] + delta])
        mu[order] = mu[order] - delta
        var = torch.cat([var, var[order]])
        w = w.clone()
        w[order] = w[order] / 2
        w = torch.cat([w, w[order]])
        return w, mu, var

    @torch.no_grad()
    def em_step(self, utterances, frames_per_batch=100_000):
        """One EM iteration over the corpus (one streaming pass).

        Arguments
        ---------
        utterances : iterable | callable
            Re-iterable of ``[T, D]`` feature tensors (or a callable
            returning a fresh iterator).
        frames_per_batch : int
            Frames processed at once.

        Returns
        -------
        float
            Average log-likelihood per frame under the parameters *before*
            the update (so successive values never decrease).
        """
        factory = _reiterable(utterances, "utterances")
        params = (self.weights, self.means, self.variances)
        acc = self._accumulate(factory, params, frames_per_batch)
        w, mu, var = self._m_step(acc, params, self.variance_floor)
        self.weights.copy_(w)
        self.means.copy_(mu)
        self.variances.copy_(var)
        return acc["ll"] / acc["frames"]

    @torch.no_grad()
    def fit(
        self, utterances, n_iter=10, split_iter=2, frames_per_batch=100_000
    ):
        """Train from scratch by binary splitting, then ``n_iter`` EM
        iterations with all components.

        Arguments
        ---------
        utterances : iterable | callable
            Re-iterable of ``[T, D]`` feature tensors.
        n_iter : int
            EM iterations at full size.
        split_iter : int
            EM iterations after each split.
        frames_per_batch : int
            Frames processed at once.

        Returns
        -------
        list
            One dict per EM iteration: ``n_components``, ``log_likelihood``
            (average per frame, under the parameters before the update).
        """
        factory = _reiterable(utterances, "utterances")
        dt, dev, d = self.means.dtype, self._device, self.feat_dim
        total = torch.zeros(d, dtype=torch.float64, device=dev)
        total_sq = torch.zeros(d, dtype=torch.float64, device=dev)
        count = 0
        for x in _frame_batches(factory, d, frames_per_batch, dev, dt):
            total += x.double().sum(0)
            total_sq += (x.double() ** 2).sum(0)
            count += x.shape[0]
        if count == 0:
            raise ValueError("the utterances hold no frames")
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(1e-12)
        floor = (self.var_floor * var).to(dt)
        self.variance_floor.copy_(floor)
        params = (
            torch.ones(1, dtype=dt, device=dev),
            mean.to(dt)[None],
            var.to(dt)[None],
        )
        history = []
        while True:
            k = params[0].shape[0]
            iters = n_iter if k == self.n_components else split_iter
            for _ in range(iters):
                acc = self._accumulate(factory, params, frames_per_batch)
                params = self._m_step(acc, params, floor)
                history.append(
                    {
                        "n_components": k,
                        "log_likelihood": acc["ll"] / acc["frames"],
                    }
                )
            if k == self.n_components:
                break
            params = self._split(params, self.n_components)
        self.weights.copy_(params[0])
        self.means.copy_(params[1])
        self.variances.copy_(params[2])
        return history


@torch.no_grad()
def baum_welch_stats(ubm, frames, whiten=False):
    """Zeroth- and centred first-order Baum-Welch statistics of one utterance.

    ``N_c = sum_t g_tc`` and ``F_c = sum_t g_tc (x_t - mu_c)``; with
    ``whiten`` also divided by the UBM standard deviations ``sqrt(v_c)``
    (the form
    :class:`~speechbrain_ssv.clustering.ivector.TotalVariability` uses).

    Arguments
    ---------
    ubm : DiagonalUBM
        The background model.
    frames : torch.Tensor
        ``[T, D]`` features.
    whiten : bool
        Divide ``F`` by the UBM standard deviations.

    Returns
    -------
    tuple
        ``(N [C], F [C, D])``.

    Example
    -------
    >>> ubm = DiagonalUBM(2, 1)
    >>> ubm.means.copy_(torch.tensor([[-5.0], [5.0]]))
    tensor([[-5.],
            [ 5.]])
    >>> n, f = baum_welch_stats(ubm, torch.tensor([[-5.0], [6.0], [4.0]]))
    >>> n.round(decimals=3), f.round(decimals=3)
    (tensor([1., 2.]), tensor([[0.],
            [0.]]))
    """
    gamma, _ = ubm.posteriors(frames)
    x = _frames(frames, ubm.feat_dim, ubm.means.device, ubm.means.dtype)
    n = gamma.sum(0)
    f = gamma.t() @ x - n[:, None] * ubm.means
    if whiten:
        f = f / torch.sqrt(ubm.variances)
    return n, f
