"""Spherical linear interpolation (SLERP) of speaker embeddings.

Paper: Liu et al., "Interpolating Speaker Identities in Embedding Space for
Data Expansion" (INSIDE, arXiv 2508.19210), Sec. III-B. A synthetic identity
is the point at fraction ``alpha`` of the great-circle arc between the
embeddings of two real speakers::

    theta = arccos(a_hat . b_hat)
    slerp(a, b, alpha) = sin((1 - alpha) theta) / sin(theta) * a_hat
                       + sin(alpha theta) / sin(theta) * b_hat

so ``alpha`` is the weight of ``b``: ``alpha = 0`` gives ``a_hat`` and
``alpha = 1`` gives ``b_hat``; the paper uses ``alpha = 0.5``.

Choices where the paper is silent:

* Both inputs are l2-normalised first (``a_hat``, ``b_hat``). The paper
  writes the sin-weights on the raw vectors; when the norms differ that
  moves the result off the arc's direction. YourTTS (Coqui Vits)
  normalises whatever d-vector it is given, so only directions matter.
* The result is always returned with unit norm.
* ``theta`` is computed as ``2 atan2(|a_hat - b_hat|, |a_hat + b_hat|)``,
  which stays accurate near 0 and pi where ``arccos`` loses precision; all
  arithmetic runs in float64 and the result is cast back.
* ``theta < eps`` (near-identical directions): normalised linear
  interpolation, the limit of SLERP, instead of ``0 / 0``.
* ``pi - theta < eps`` (near-antipodal): the great circle through two
  opposite points is not unique. The arc is then taken through a fixed
  direction ``p`` perpendicular to ``a_hat``: the coordinate axis least
  aligned with ``a_hat`` (smallest ``|a_hat_k|``, lowest ``k`` on ties),
  made orthogonal to ``a_hat`` by one Gram-Schmidt step. The result,
  ``cos(alpha theta) a_hat + sin(alpha theta) p``, depends only on
  ``a_hat`` (not on the tiny, ill-conditioned deviation of ``b_hat`` from
  ``-a_hat``), so it is deterministic. Nearest neighbours never get here.
* ``alpha`` outside ``[0, 1]`` extrapolates along the same great circle.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["slerp", "slerp_grid"]


def _as_tensor(x, name):
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"slerp: {name} must be a tensor or array of numbers ({err})"
        ) from None


def _unit(x, name):
    # The norms serve the check too; F.normalize's eps would rescale, not
    # reject, vectors shorter than 1e-12.
    norm = x.norm(dim=-1, keepdim=True)
    bad = ~torch.isfinite(norm) | (norm == 0)
    if bool(bad.any()):
        rows = torch.nonzero(bad.reshape(-1)).reshape(-1)[:5].tolist()
        raise ValueError(
            f"slerp: {name} has zero-norm or non-finite vectors (flat rows "
            f"{rows}...); expected non-zero finite embeddings"
        )
    return x / norm


def _perpendicular(u):
    # Least-aligned coordinate axis: its component along u is the smallest,
    # so the Gram-Schmidt residual is as large (well conditioned) as it gets.
    k = u.abs().argmin(dim=-1, keepdim=True)
    axis = torch.zeros_like(u).scatter_(-1, k, 1.0)
    p = axis - u.gather(-1, k) * u
    return F.normalize(p, dim=-1)


def _alpha_for(alpha, x):
    alpha = _as_tensor(alpha, "alpha").to(torch.float64)
    if alpha.ndim == x.ndim - 1:
        return alpha.unsqueeze(-1)
    if alpha.ndim == 0 or (alpha.ndim == x.ndim and alpha.shape[-1] == 1):
        return alpha
    raise ValueError(
        f"slerp: alpha of shape {tuple(alpha.shape)} does not match "
        f"embeddings of shape {tuple(x.shape)}; expected a float, one value "
        "per row ([N] or [N, 1]), or use slerp_grid for several alphas"
    )


def slerp(a, b, alpha=0.5, eps=1e-6):
    """Spherical linear interpolation between directions ``a`` and ``b``
    (INSIDE, Sec. III-B; conventions in the module docstring).

    Arguments
    ---------
    a : torch.Tensor | numpy.ndarray
        ``[D]`` or ``[N, D]`` (any leading dimensions) embeddings, the
        ``alpha = 0`` endpoint. Need not be normalised.
    b : torch.Tensor | numpy.ndarray
        Same shape as ``a`` (or broadcastable), the ``alpha = 1`` endpoint.
    alpha : float | torch.Tensor | numpy.ndarray
        Weight of ``b``: a number, or one value per row (``[N]`` or
        ``[N, 1]``).
    eps : float
        Angle tolerance in radians: below it ``a`` and ``b`` count as equal
        (normalised-lerp fallback), within it of pi as opposite.

    Returns
    -------
    torch.Tensor | numpy.ndarray
        Unit-norm interpolated embeddings of the broadcast shape; numpy when
        ``a`` or ``b`` is numpy, else torch, in the inputs' floating dtype.

    Raises
    ------
    ValueError
        On zero-norm or non-finite inputs, a shape mismatch, or opposite
        inputs in one dimension (no perpendicular direction exists).

    Example
    -------
    >>> a = torch.tensor([1.0, 0.0])
    >>> b = torch.tensor([0.0, 3.0])
    >>> slerp(a, b, 0.5)
    tensor([0.7071, 0.7071])
    >>> slerp(a, b, 1.0)
    tensor([0., 1.])
    >>> slerp(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), [1 / 3])
    array([[0.8660254, 0.5      ]])
    """
    return_numpy = isinstance(a, np.ndarray) or isinstance(b, np.ndarray)
    a_t = _as_tensor(a, "a")
    b_t = _as_tensor(b, "b")
    if a_t.ndim == 0 or b_t.ndim == 0:
        raise ValueError("slerp: a and b must be vectors ([D] or [N, D])")
    out_dtype = torch.promote_types(a_t.dtype, b_t.dtype)
    if not out_dtype.is_floating_point:
        out_dtype = torch.get_default_dtype()
    try:
        a_hat, b_hat = torch.broadcast_tensors(
            _unit(a_t.to(torch.float64), "a"),
            _unit(b_t.to(torch.float64), "b"),
        )
    except RuntimeError:
        raise ValueError(
            f"slerp: a {tuple(a_t.shape)} and b {tuple(b_t.shape)} have "
            "incompatible shapes; expected the same [N, D] or [D]"
        ) from None
    alpha = _alpha_for(alpha, a_hat).to(a_hat.device)

    theta = 2.0 * torch.atan2(
        (a_hat - b_hat).norm(dim=-1, keepdim=True),
        (a_hat + b_hat).norm(dim=-1, keepdim=True),
    )
    near_same = theta < eps
    near_opposite = (math.pi - theta) < eps
    regular = ~(near_same | near_opposite)
    # Degenerate rows get a harmless denominator; torch.where then discards
    # their (finite) regular-branch values.
    sin_theta = torch.where(regular, torch.sin(theta), torch.ones_like(theta))
    w_a = torch.sin((1.0 - alpha) * theta) / sin_theta
    w_b = torch.sin(alpha * theta) / sin_theta
    out = w_a * a_hat + w_b * b_hat
    if bool(near_same.any()):
        nlerp = (1.0 - alpha) * a_hat + alpha * b_hat
        out = torch.where(near_same, nlerp, out)
    if bool(near_opposite.any()):
        if a_hat.shape[-1] < 2:
            raise ValueError(
                "slerp: a and b point in opposite directions in 1-D; no "
                "great circle joins them"
            )
        around = torch.cos(alpha * theta) * a_hat + torch.sin(
            alpha * theta
        ) * _perpendicular(a_hat)
        out = torch.where(near_opposite & ~near_same, around, out)
    out = F.normalize(out, dim=-1)
    out = out.to(out_dtype)
    if return_numpy:
        return out.cpu().numpy()
    return out


def slerp_grid(a, b, alphas, eps=1e-6):
    """SLERP at several ``alphas`` at once.

    Arguments
    ---------
    a : torch.Tensor | numpy.ndarray
        ``[D]`` or ``[N, D]`` embeddings (``alpha = 0`` endpoint).
    b : torch.Tensor | numpy.ndarray
        Same shape as ``a`` (``alpha = 1`` endpoint).
    alphas : sequence of float | torch.Tensor | numpy.ndarray
        ``M`` interpolation weights of ``b``.
    eps : float
        As in :func:`slerp`.

    Returns
    -------
    torch.Tensor | numpy.ndarray
        ``[M, D]`` for vector inputs, ``[M, N, D]`` for ``[N, D]`` inputs;
        row ``m`` is ``slerp(a, b, alphas[m])``.

    Example
    -------
    >>> a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    >>> g = slerp_grid(a, b, [0, 0.5, 1])
    >>> g.shape
    torch.Size([3, 2])
    >>> g[1]
    tensor([0.7071, 0.7071])
    """
    return_numpy = isinstance(a, np.ndarray) or isinstance(b, np.ndarray)
    a_t = _as_tensor(a, "a")
    b_t = _as_tensor(b, "b")
    alphas = _as_tensor(alphas, "alphas").to(torch.float64).reshape(-1)
    ndim = max(a_t.ndim, b_t.ndim)
    grid = alphas.reshape(-1, *([1] * ndim))
    out = slerp(a_t.unsqueeze(0), b_t.unsqueeze(0), grid, eps=eps)
    if return_numpy:
        return out.cpu().numpy()
    return out
