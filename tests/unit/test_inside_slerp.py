"""SLERP of INSIDE: endpoints, unit norm, the alpha = 0.5 midpoint, angles
along the arc, and the degenerate (identical / opposite / zero) inputs."""

import math

import numpy as np
import pytest
import torch

from speechbrain_ssv.inside.slerp import slerp, slerp_grid

torch.set_num_threads(1)


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _angle(u, v):
    cos = (_unit(u.double()) * _unit(v.double())).sum(-1)
    return torch.arccos(cos.clamp(-1.0, 1.0)).float()


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    # Different norms on purpose: the result must not depend on them.
    a = torch.randn(64, 32, generator=g) * 3.0
    b = torch.randn(64, 32, generator=g) * 0.2
    return a, b


def test_endpoints_are_the_normalised_inputs(pair):
    a, b = pair
    assert torch.allclose(slerp(a, b, 0.0), _unit(a), atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), _unit(b), atol=1e-6)


def test_unit_norm_for_many_alphas(pair):
    a, b = pair
    for alpha in (0.0, 0.1, 0.37, 0.5, 0.9, 1.0, -0.3, 1.4):
        out = slerp(a, b, alpha)
        assert torch.allclose(out.norm(dim=-1), torch.ones(64), atol=1e-6)


def test_midpoint_is_normalised_sum_and_equidistant(pair):
    a, b = pair
    mid = slerp(a, b, 0.5)
    ref = _unit(_unit(a) + _unit(b))
    assert torch.allclose(mid, ref, atol=1e-6)
    assert torch.allclose(_angle(mid, a), _angle(mid, b), atol=1e-5)


def test_angle_to_a_is_alpha_theta_and_stays_on_the_arc(pair):
    a, b = pair
    theta = _angle(a, b)
    for alpha in (0.2, 0.5, 0.75):
        out = slerp(a, b, alpha)
        assert torch.allclose(_angle(out, a), alpha * theta, atol=1e-5)
        assert torch.allclose(_angle(out, b), (1 - alpha) * theta, atol=1e-5)


def test_scale_invariance(pair):
    a, b = pair
    assert torch.allclose(
        slerp(a, b, 0.3), slerp(7.0 * a, 0.01 * b, 0.3), atol=1e-6
    )


def test_hand_computed_quarter_circle():
    out = slerp(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 5.0]), 1 / 3)
    assert torch.allclose(out, torch.tensor([math.sqrt(3) / 2, 0.5]))


def test_single_vector_and_per_row_alpha(pair):
    a, b = pair
    alphas = torch.linspace(0, 1, 64)
    batched = slerp(a, b, alphas)
    assert batched.shape == (64, 32)
    for i in (0, 17, 63):
        single = slerp(a[i], b[i], float(alphas[i]))
        assert single.shape == (32,)
        assert torch.allclose(batched[i], single, atol=1e-6)
    assert torch.allclose(slerp(a, b, alphas[:, None]), batched)


def test_numpy_in_numpy_out(pair):
    a, b = pair
    out = slerp(a.numpy(), b.numpy(), 0.4)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert np.allclose(out, slerp(a, b, 0.4).numpy(), atol=1e-6)


def test_dtype_is_kept():
    a = torch.randn(4, 8, dtype=torch.float64)
    b = torch.randn(4, 8, dtype=torch.float64)
    assert slerp(a, b).dtype == torch.float64
    assert slerp(a.float(), b.float()).dtype == torch.float32


def test_near_identical_inputs_fall_back_to_nlerp():
    a = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    b = a.clone()
    b[:, 0] += 1e-9  # angle far below eps
    for alpha in (0.0, 0.3, 0.5, 1.0):
        out = slerp(a, b, alpha)
        assert torch.isfinite(out).all()
        assert torch.allclose(out.norm(dim=-1), torch.ones(5), atol=1e-6)
        assert torch.allclose(out, _unit(a), atol=1e-6)
    same = slerp(a, a, 0.5)
    assert torch.allclose(same, _unit(a), atol=1e-6)


def test_near_antipodal_inputs_are_finite_deterministic_and_on_circle():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(6, 16, generator=g, dtype=torch.float64)
    off = -a + 1e-9 * torch.randn(6, 16, generator=g, dtype=torch.float64)
    assert not torch.equal(off, -a)
    for b in (-a, off):
        out = slerp(a, b, 0.5)
        assert torch.isfinite(out).all()
        assert torch.allclose(out.norm(dim=-1).float(), torch.ones(6))
        # Halfway round a great circle from a: perpendicular to it.
        assert torch.allclose(_angle(out, a), torch.full((6,), math.pi / 2))
        assert torch.equal(out, slerp(a, b, 0.5))
        quarter = slerp(a, b, 0.25)
        assert torch.allclose(_angle(quarter, a), torch.full((6,), math.pi / 4))
        assert torch.allclose(slerp(a, b, 1.0), _unit(b), atol=1e-5)
    # The fixed direction: the least-aligned axis, here the last one.
    a = torch.tensor([0.6, 0.8, 0.0])
    assert torch.allclose(slerp(a, -a, 0.5), torch.tensor([0.0, 0.0, 1.0]))


def test_mixed_regular_and_degenerate_rows():
    a = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    out = slerp(a, b, 0.5)
    c = 1 / math.sqrt(2)
    assert torch.allclose(out[0], torch.tensor([c, c, 0.0]))
    assert torch.allclose(out[1], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(out[2], torch.tensor([0.0, 1.0, 0.0]))


def test_zero_or_nan_vector_is_a_clear_error():
    with pytest.raises(ValueError, match="a has zero-norm"):
        slerp(torch.zeros(4), torch.ones(4))
    b = torch.ones(2, 4)
    b[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"b has zero-norm or non-finite"):
        slerp(torch.ones(2, 4), b)


def test_shape_errors():
    with pytest.raises(ValueError, match="incompatible shapes"):
        slerp(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="slerp_grid"):
        slerp(torch.ones(4), torch.ones(4), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="opposite directions in 1-D"):
        slerp(torch.tensor([1.0]), torch.tensor([-2.0]))


def test_grid_rows_match_single_calls(pair):
    a, b = pair
    alphas = [0.0, 0.25, 0.5, 1.0]
    grid = slerp_grid(a[0], b[0], alphas)
    assert grid.shape == (4, 32)
    for m, alpha in enumerate(alphas):
        assert torch.allclose(grid[m], slerp(a[0], b[0], alpha), atol=1e-6)
    batched = slerp_grid(a, b, alphas)
    assert batched.shape == (4, 64, 32)
    assert torch.allclose(batched[2], slerp(a, b, 0.5), atol=1e-6)
    assert isinstance(slerp_grid(a.numpy(), b.numpy(), alphas), np.ndarray)
