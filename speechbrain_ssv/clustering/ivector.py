"""i-vector extractor in batched torch (CPU or GPU): total-variability EM
with an optional minimum-divergence step, and extraction, streaming over a
corpus, on top of the diagonal GMM-UBM and Baum-Welch statistics of
:mod:`speechbrain_ssv.clustering.ubm`.

The clustering paper (Fathan, Zhu and Alam, Sec. 3 / Appendix D.3-D.4)
clusters 400-dim i-vectors (Dehak et al. 2011; Kenny 2012) extracted with
Kaldi from MFCCs. This module is a self-contained replacement (no Kaldi, no
SIDEKIT): the features are whatever ``[T, D]`` frames you pass (e.g.
SpeechBrain MFCCs with deltas and mean normalisation).

Model
-----
UBM and statistics: see :mod:`speechbrain_ssv.clustering.ubm` (``N_c``,
and ``F_c`` centred on the UBM means and whitened by its standard
deviations).

Total variability: ``F_c | w ~ sum_t g_tc N(o_c + T_c w, I)`` per frame,
``w ~ N(0, I)``, ``T_c`` of shape ``[D, R]``. With
``L = I + sum_c N_c T_c^T T_c`` and ``b = sum_c T_c^T (F_c - N_c o_c)`` the
posterior of ``w`` is ``N(L^{-1} b, L^{-1})``; the i-vector is its mean.
EM maximises the log-likelihood of the statistics, which per utterance is
(up to a constant) ``1/2 b^T L^{-1} b - 1/2 log|L| + sum_c o_c^T F_c -
1/2 sum_c N_c ||o_c||^2`` and is returned for every iteration; EM never
decreases it (a unit test checks). M-step:
``T_c = (sum_u F~_uc E[w_u]^T)(sum_u N_uc E[w_u w_u^T])^{-1}``.

Minimum divergence (Kenny 2012; Kaldi, SIDEKIT and hyperion do it too): after
the M-step, the prior is re-estimated as ``N(m, S)`` with ``m`` and ``S`` the
mean and covariance of the posteriors over the data, and absorbed into the
parameters, ``o <- o + T m``, ``T <- T chol(S)``, which leaves the likelihood
unchanged while restoring a standard-normal prior. It speeds up convergence;
``o`` (the supervector offset) starts at the UBM means (zero here).

Scale: nothing holds all frames or all statistics. The UBM streams frames in
batches of ``frames_per_batch``; the T-matrix EM streams utterances in
batches, recomputing their statistics at each pass or reading them from a
cache folder (``cache_dir``, written once). Per batch of ``B`` utterances
the cost is ``B x C x R^2`` (the ``L`` matrices); the accumulators hold
``C x R^2`` floats (655 MB in float64 for ``C = 512, R = 400``).

Authors
 * speechbrain-ssv developers 2026
"""

import math
import os

import torch

from speechbrain_ssv.clustering.ubm import DiagonalUBM, _frames, _reiterable
from speechbrain_ssv.utils.io import save_torch

__all__ = [
    "IVectorExtractor",
    "TotalVariability",
]


def _batched(factory, batch_size):
    batch = []
    for u in factory():
        batch.append(u)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class TotalVariability(torch.nn.Module):
    """Total-variability (T-matrix) model on whitened, centred statistics.

    Buffers ``T [C, D, R]`` and ``offset [C, D]`` (the supervector mean moved
    by minimum divergence), so ``state_dict`` / SpeechBrain's
    ``Checkpointer`` save it. See the module docstring for the model, the
    likelihood and the updates.

    Arguments
    ---------
    n_components : int
        ``C`` (of the UBM).
    feat_dim : int
        ``D``.
    rank : int
        ``R``, the i-vector dimension (the paper: 400).
    init_std : float | None
        Standard deviation of the random initial ``T`` (default
        ``1 / sqrt(R)``: unit variance per supervector dimension).
    seed : int
        Seed of the initialisation.
    dtype : torch.dtype
        Storage / compute dtype; accumulators follow ``accumulate_dtype``.
    accumulate_dtype : torch.dtype
        Dtype of the EM accumulators (float64 by default: they sum over a
        million utterances).

    Example
    -------
    >>> tv = TotalVariability(n_components=4, feat_dim=2, rank=3)
    >>> n, f = torch.rand(5, 4) * 10, torch.randn(5, 4, 2)
    >>> tv.extract(n, f).shape
    torch.Size([5, 3])
    """

    def __init__(
        self,
        n_components=512,
        feat_dim=60,
        rank=400,
        init_std=None,
        seed=0,
        dtype=torch.float32,
        accumulate_dtype=torch.float64,
    ):
        super().__init__()
        self.n_components, self.feat_dim, self.rank = (
            n_components,
            feat_dim,
            rank,
        )
        self.accumulate_dtype = accumulate_dtype
        std = 1.0 / math.sqrt(rank) if init_std is None else init_std
        g = torch.Generator().manual_seed(seed)
        t = torch.randn(
            n_components, feat_dim, rank, generator=g, dtype=torch.float64
        )
        self.register_buffer("T", (t * std).to(dtype))
        self.register_buffer(
            "offset", torch.zeros(n_components, feat_dim, dtype=dtype)
        )

    def _check_stats(self, n, f):
        c, d = self.n_components, self.feat_dim
        dt, dev = self.T.dtype, self.T.device
        n = torch.as_tensor(n).to(device=dev, dtype=dt)
        f = torch.as_tensor(f).to(device=dev, dtype=dt)
        if n.dim() == 1:
            n, f = n[None], f[None]
        if n.dim() != 2 or n.shape[1] != c or f.shape != (n.shape[0], c, d):
            raise ValueError(
                f"expected statistics N [B, {c}] and F [B, {c}, {d}]; got "
                f"{tuple(n.shape)} and {tuple(f.shape)}"
            )
        return n, f

    def _tt(self):
        return torch.einsum("cdr,cds->crs", self.T, self.T).reshape(
            self.n_components, -1
        )

    def _posterior(self, n, f, tt):
        b_size, r = n.shape[0], self.rank
        fc = f - n[:, :, None] * self.offset[None]
        b = fc.reshape(b_size, -1) @ self.T.reshape(-1, r)
        prec = (n @ tt).reshape(b_size, r, r)
        prec = prec + torch.eye(r, dtype=prec.dtype, device=prec.device)
        chol = torch.linalg.cholesky(prec)
        ew = torch.cholesky_solve(b[:, :, None], chol)[:, :, 0]
        return fc, b, chol, ew

    @torch.no_grad()
    def extract(self, n, f):
        """i-vectors: posterior means ``E[w] = L^{-1} b``.

        Arguments
        ---------
        n : torch.Tensor
            ``[B, C]`` (or ``[C]``) zeroth-order statistics.
        f : torch.Tensor
            ``[B, C, D]`` (or ``[C, D]``) whitened, centred first-order
            statistics.

        Returns
        -------
        torch.Tensor
            ``[B, R]``.
        """
        return self._extract(n, f, self._tt())

    def _extract(self, n, f, tt):
        # ``tt`` (the C x R x R products T_c^T T_c) is the costly part of a
        # small batch: callers streaming many batches compute it once.
        n, f = self._check_stats(n, f)
        return self._posterior(n, f, tt)[3]

    @torch.no_grad()
    def em_step(self, stats, min_div=True):
        """One EM iteration over a re-iterable of statistics batches.

        Arguments
        ---------
        stats : iterable | callable
            Re-iterable of ``(N [B, C], F [B, C, D])`` batches.
        min_div : bool
            Apply the minimum-divergence step after the M-step.

        Returns
        -------
        float
            Total log-likelihood of the statistics (up to a constant) under
            the parameters *before* the update.
        """
        factory = _reiterable(stats, "stats")
        c, d, r = self.n_components, self.feat_dim, self.rank
        adt, dev = self.accumulate_dtype, self.T.device
        acc_a = torch.zeros(c, r * r, dtype=adt, device=dev)
        acc_c = torch.zeros(c * d, r, dtype=adt, device=dev)
        acc_h = torch.zeros(r, dtype=adt, device=dev)
        acc_hh = torch.zeros(r, r, dtype=adt, device=dev)
        n_utts, loglik = 0, 0.0
        tt = self._tt()
        for n, f in factory():
            n, f = self._check_stats(n, f)
            fc, b, chol, ew = self._posterior(n, f, tt)
            logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(
                1
            )
            off = (self.offset[None] * f).sum((1, 2)) - 0.5 * (
                n * (self.offset * self.offset).sum(1)[None]
            ).sum(1)
            loglik += float(
                (0.5 * (b * ew).sum(1) - 0.5 * logdet + off).double().sum()
            )
            eww = torch.cholesky_inverse(chol) + ew[:, :, None] * ew[:, None, :]
            acc_a += (n.t() @ eww.reshape(n.shape[0], -1)).to(adt)
            acc_c += (fc.reshape(n.shape[0], -1).t() @ ew).to(adt)
            acc_h += ew.sum(0).to(adt)
            acc_hh += eww.sum(0).to(adt)
            n_utts += n.shape[0]
        if n_utts == 0:
            raise ValueError("no statistics to train on")
        a = acc_a.reshape(c, r, r)
        a = 0.5 * (a + a.transpose(1, 2))
        t_new = torch.linalg.solve(a, acc_c.reshape(c, d, r).transpose(1, 2))
        t_new = t_new.transpose(1, 2)  # [C, D, R] = C_c A_c^{-1}
        offset = self.offset.to(adt)
        if min_div:
            m = acc_h / n_utts
            cov = acc_hh / n_utts - torch.outer(m, m)
            cov = 0.5 * (cov + cov.t())
            g = torch.linalg.cholesky(cov)
            offset = offset + t_new @ m
            t_new = t_new @ g
        self.T.copy_(t_new.to(self.T.dtype))
        self.offset.copy_(offset.to(self.offset.dtype))
        return loglik

    def fit(self, stats, n_iter=10, min_div=True):
        """``n_iter`` EM iterations.

        Arguments
        ---------
        stats : iterable | callable
            Re-iterable of ``(N [B, C], F [B, C, D])`` batches.
        n_iter : int
            Iterations.
        min_div : bool
            Minimum-divergence step after each M-step.

        Returns
        -------
        list
            Log-likelihood of each iteration (before its update).
        """
        return [self.em_step(stats, min_div=min_div) for _ in range(n_iter)]


class _CachedStats:
    """Re-iterable over statistics shards saved by :class:`IVectorExtractor`."""

    def __init__(self, paths):
        self.paths = paths

    def __iter__(self):
        for p in self.paths:
            shard = torch.load(p, map_location="cpu")
            yield shard["n"], shard["f"]


class IVectorExtractor(torch.nn.Module):
    """UBM + total-variability model: training and extraction, streaming
    over a corpus of ``[T, D]`` feature tensors.

    Both models are submodules made of buffers, so the extractor is one
    recoverable for SpeechBrain's ``Checkpointer`` (``state_dict`` /
    ``load_state_dict``; construct with the same sizes before loading).

    Arguments
    ---------
    feat_dim : int
        ``D``.
    n_components : int
        UBM size ``C``.
    rank : int
        i-vector dimension (400, as the paper).
    var_floor : float
        UBM variance floor (fraction of the global variance).
    seed : int
        Seed of the T-matrix initialisation.
    dtype : torch.dtype
        Storage / compute dtype.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> utts = [torch.randn(50, 3, generator=g) for _ in range(8)]
    >>> ext = IVectorExtractor(3, n_components=2, rank=2)
    >>> hist = ext.fit(utts, ubm_iter=2, tv_iter=2)
    >>> ext.extract(utts).shape
    torch.Size([8, 2])
    """

    def __init__(
        self,
        feat_dim=60,
        n_components=512,
        rank=400,
        var_floor=1e-3,
        seed=0,
        dtype=torch.float32,
    ):
        super().__init__()
        self.ubm = DiagonalUBM(n_components, feat_dim, var_floor, dtype=dtype)
        self.tv = TotalVariability(
            n_components, feat_dim, rank, seed=seed, dtype=dtype
        )

    @property
    def rank(self):
        """i-vector dimension ``R``."""
        return self.tv.rank

    @torch.no_grad()
    def utterance_stats(self, utterances):
        """Whitened, centred statistics of a list of utterances (one batch).

        Arguments
        ---------
        utterances : list
            ``[T_u, D]`` feature tensors.

        Returns
        -------
        tuple
            ``(N [B, C], F [B, C, D])``.
        """
        ubm = self.ubm
        xs = [
            _frames(u, ubm.feat_dim, ubm.means.device, ubm.means.dtype)
            for u in utterances
        ]
        lengths = [x.shape[0] for x in xs]
        if min(lengths, default=1) == 0:
            raise ValueError(
                "an utterance has no frames; drop it before extraction"
            )
        gamma, _ = ubm.posteriors(torch.cat(xs))
        inv_std = torch.rsqrt(ubm.variances)
        ns, fs = [], []
        for g, x in zip(torch.split(gamma, lengths), xs):
            n = g.sum(0)
            ns.append(n)
            fs.append((g.t() @ x - n[:, None] * ubm.means) * inv_std)
        return torch.stack(ns), torch.stack(fs)

    def stats_batches(self, utterances, batch_size=256):
        """Generator of statistics batches over a corpus (one pass).

        Arguments
        ---------
        utterances : iterable | callable
            ``[T, D]`` feature tensors (or a callable returning an iterator).
        batch_size : int
            Utterances per batch.

        Yields
        ------
        tuple
            ``(N [B, C], F [B, C, D])``.
        """
        factory = (
            utterances if callable(utterances) else (lambda: iter(utterances))
        )
        for batch in _batched(factory, batch_size):
            yield self.utterance_stats(batch)

    def fit_ubm(
        self, utterances, n_iter=10, split_iter=2, frames_per_batch=100_000
    ):
        """Train the UBM (see
        :meth:`~speechbrain_ssv.clustering.ubm.DiagonalUBM.fit`).

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
            Per-iteration log-likelihoods (see
            :meth:`~speechbrain_ssv.clustering.ubm.DiagonalUBM.fit`).
        """
        return self.ubm.fit(utterances, n_iter, split_iter, frames_per_batch)

    def fit_tv(
        self,
        utterances,
        n_iter=10,
        min_div=True,
        batch_size=256,
        cache_dir=None,
    ):
        """Train the T matrix with the current UBM.

        Arguments
        ---------
        utterances : iterable | callable
            Re-iterable of ``[T, D]`` feature tensors.
        n_iter : int
            EM iterations.
        min_div : bool
            Minimum-divergence step after each M-step.
        batch_size : int
            Utterances per batch.
        cache_dir : str | None
            Write the statistics there once (one file per batch, atomically)
            and read them back at every iteration, instead of recomputing
            the UBM posteriors at each pass.

        Returns
        -------
        list
            Per-iteration log-likelihood of the statistics.
        """
        factory = _reiterable(utterances, "utterances")
        if cache_dir is None:
            stats = lambda: self.stats_batches(factory, batch_size)  # noqa: E731
        else:
            os.makedirs(cache_dir, exist_ok=True)
            paths = []
            for i, (n, f) in enumerate(self.stats_batches(factory, batch_size)):
                path = os.path.join(cache_dir, f"stats_{i:06d}.pt")
                save_torch(path, {"n": n.cpu(), "f": f.cpu()})
                paths.append(path)
            stats = _CachedStats(paths)
        return self.tv.fit(stats, n_iter=n_iter, min_div=min_div)

    def fit(
        self,
        utterances,
        ubm_iter=10,
        split_iter=2,
        tv_iter=10,
        min_div=True,
        batch_size=256,
        frames_per_batch=100_000,
        cache_dir=None,
    ):
        """Train the UBM, then the T matrix.

        Arguments
        ---------
        utterances : iterable | callable
            Re-iterable of ``[T, D]`` feature tensors.
        ubm_iter : int
            UBM EM iterations at full size.
        split_iter : int
            UBM EM iterations after each split.
        tv_iter : int
            T-matrix EM iterations.
        min_div : bool
            Minimum-divergence step.
        batch_size : int
            Utterances per statistics batch.
        frames_per_batch : int
            Frames per UBM batch.
        cache_dir : str | None
            Statistics cache folder (see :meth:`fit_tv`).

        Returns
        -------
        dict
            ``{"ubm": [...], "tv": [...]}`` training histories.
        """
        factory = _reiterable(utterances, "utterances")
        ubm_hist = self.fit_ubm(factory, ubm_iter, split_iter, frames_per_batch)
        tv_hist = self.fit_tv(factory, tv_iter, min_div, batch_size, cache_dir)
        return {"ubm": ubm_hist, "tv": tv_hist}

    @torch.no_grad()
    def extract(self, utterances, batch_size=256):
        """i-vectors of a corpus, in order, streaming.

        Arguments
        ---------
        utterances : iterable | callable
            ``[T, D]`` feature tensors (one pass; a generator is fine).
        batch_size : int
            Utterances per batch.

        Returns
        -------
        torch.Tensor
            ``[U, R]`` float32 on the CPU.
        """
        tt = self.tv._tt()
        out = [
            self.tv._extract(n, f, tt).float().cpu()
            for n, f in self.stats_batches(utterances, batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.rank)

    def forward(self, frames):
        """i-vector of one utterance.

        Arguments
        ---------
        frames : torch.Tensor
            ``[T, D]``.

        Returns
        -------
        torch.Tensor
            ``[R]``.
        """
        n, f = self.utterance_stats([frames])
        return self.tv.extract(n, f)[0]
