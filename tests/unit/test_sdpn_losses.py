"""SDPN / DINO objectives against their equations and hand computations."""

import math

import pytest
import torch

from speechbrain_ssv.losses.sdpn import (
    dino_center_update,
    dino_loss,
    dino_teacher_probs,
    koleo,
    mean_entropy_penalty,
    multiview_cross_entropy,
    sdpn_loss,
    sdpn_teacher_targets,
    sharpen,
    sinkhorn_knopp,
    student_log_probs,
)


def test_sinkhorn_marginals():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(12, 5) / 0.1, dim=-1)
    q = sinkhorn_knopp(probs, n_iters=200)
    assert torch.allclose(q.sum(dim=1), torch.ones(12), atol=1e-6)
    # Equal prototype mass B / K once converged.
    assert torch.allclose(q.sum(dim=0), torch.full((5,), 12 / 5), atol=1e-4)
    assert (q >= 0).all()


def test_sinkhorn_evens_out_a_dominant_prototype():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    q = sinkhorn_knopp(probs, n_iters=3)
    assert torch.allclose(q.sum(dim=1), torch.ones(4), atol=1e-6)
    # The raw column masses are 3.0 / 1.0; three rounds move them towards 2 / 2.
    assert abs(q.sum(0)[0] - 2.0) < abs(probs.sum(0)[0] - 2.0) / 2


def test_teacher_targets_sharpening_equals_lower_temperature():
    scores = torch.randn(6, 4)
    coded = sdpn_teacher_targets(
        scores, temperature=0.1, sharpen_temp=0.25, n_iters=0
    )
    direct = torch.softmax(scores / 0.025, dim=-1)
    assert torch.allclose(coded, direct, atol=1e-5)
    assert torch.allclose(sharpen(direct, 1.0), direct)


def test_student_softmax_eq3():
    scores = torch.tensor([[0.5, -0.5]])
    expected = torch.log(
        torch.tensor([math.exp(5) / (math.exp(5) + math.exp(-5))])
    )
    assert torch.allclose(student_log_probs(scores, 0.1)[0, 0], expected[0])


def test_cross_entropy_over_all_pairs_eq1():
    t = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])  # G=2, B=1
    s = torch.log(
        torch.tensor([[[0.5, 0.5]], [[0.2, 0.8]], [[0.9, 0.1]]])
    )  # L=3
    pairs = []
    for g in range(2):
        for v in range(3):
            pairs.append(-(t[g, 0] * s[v, 0]).sum())
    total = torch.stack(pairs).sum()
    assert torch.allclose(multiview_cross_entropy(t, s, "sum"), total)
    assert torch.allclose(multiview_cross_entropy(t, s, "mean"), total / 6)
    skipped = multiview_cross_entropy(t, s, "sum", skip_same_view=True)
    assert torch.allclose(skipped, total - pairs[0] - pairs[4])


def test_koleo_eq4_hand_example():
    # Points at 0, 1, 3 and 7 on a line: nearest-neighbour distances 1, 1, 2, 4.
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    expected = -(0 + 0 + math.log(2) + math.log(4)) / 4
    assert koleo(x, eps=0.0, normalize=False).item() == pytest.approx(
        expected, abs=1e-6
    )
    # Normalised 2-D unit vectors at 0, 90 and 180 degrees: min distance sqrt(2) for all.
    y = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    assert koleo(y, eps=0.0).item() == pytest.approx(
        -math.log(math.sqrt(2)), abs=1e-6
    )


def test_koleo_rewards_spread():
    close = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2]])
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert koleo(close) > koleo(spread)


def test_mean_entropy_penalty():
    uniform = torch.full((3, 4), 0.25)
    assert mean_entropy_penalty(uniform).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.tensor([[1.0, 0, 0, 0]] * 3)
    assert mean_entropy_penalty(collapsed).item() == pytest.approx(
        math.log(4), abs=1e-5
    )


def test_dino_centering_and_center_update():
    logits = torch.tensor([[2.0, 0.0, 1.0], [4.0, 2.0, 1.0]])
    center = torch.tensor([3.0, 1.0, 1.0])
    probs = dino_teacher_probs(logits, center, temperature=0.5)
    expected = torch.softmax((logits - center) / 0.5, dim=-1)
    assert torch.allclose(probs, expected)
    # Centring removes a per-dimension bias: shifting logits and centre together is a no-op.
    shifted = dino_teacher_probs(
        logits + torch.tensor([5.0, -2.0, 1.0]),
        center + torch.tensor([5.0, -2.0, 1.0]),
        0.5,
    )
    assert torch.allclose(probs, shifted)
    new = dino_center_update(center, logits, momentum=0.9)
    assert torch.allclose(new, 0.9 * center + 0.1 * logits.mean(0))


def test_dino_loss_matches_pairs():
    torch.manual_seed(1)
    t, s, c = torch.randn(1, 5, 7), torch.randn(3, 5, 7), torch.randn(7)
    out = dino_loss(t, s, c, teacher_temp=0.04, student_temp=0.1)
    q = torch.softmax((t[0] - c) / 0.04, -1)
    ref = (
        sum(
            -(q * torch.log_softmax(s[v] / 0.1, -1)).sum(-1).mean()
            for v in range(3)
        )
        / 3
    )
    assert torch.allclose(out["loss"], ref, atol=1e-6)


def _random_inputs(seed=0, b=8, k=6):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(1, b, k, generator=g),
        torch.randn(4, b, k, generator=g),
        torch.randn(4, b, 5, generator=g),
    )


def test_sdpn_loss_invariant_to_batch_order():
    t, s, e = _random_inputs()
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    a = sdpn_loss(t, s, e)
    b = sdpn_loss(t[:, perm], s[:, perm], e[:, perm])
    for key in ("loss", "ce", "memax", "koleo"):
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert torch.allclose(a["targets"][:, perm], b["targets"], atol=1e-6)


def test_sdpn_loss_terms_switch_off():
    t, s, e = _random_inputs()
    full = sdpn_loss(t, s, e, memax_weight=1.0, koleo_weight=0.1)
    ce_only = sdpn_loss(t, s, None, memax_weight=0.0, koleo_weight=0.0)
    assert torch.allclose(ce_only["loss"], full["ce"])
    assert torch.allclose(
        full["loss"], full["ce"] + full["memax"] + 0.1 * full["koleo"]
    )
    mean_dr = sdpn_loss(t, s, e, koleo_reduction="mean")
    assert torch.allclose(mean_dr["koleo"] * 4, full["koleo"], atol=1e-6)
    with pytest.raises(ValueError):
        sdpn_loss(t, s, None, koleo_weight=0.1)


def test_sdpn_gradient_reaches_student_scores_not_targets():
    t, s, e = _random_inputs()
    t.requires_grad_(True)
    s.requires_grad_(True)
    e.requires_grad_(True)
    sdpn_loss(t, s, e)["loss"].backward()
    assert t.grad is None
    assert s.grad.abs().sum() > 0 and e.grad.abs().sum() > 0


def _koleo_float64_brute_force(x, eps):
    """KoLeo by explicit differences in float64 (no matrix-product shortcut)."""
    x = torch.nn.functional.normalize(x, dim=-1)
    diff = x.unsqueeze(1) - x.unsqueeze(0)
    self_pair = torch.eye(x.shape[0], dtype=torch.bool)
    # Mask before the square root: its gradient at 0 is infinite.
    dist = diff.pow(2).sum(-1).masked_fill(self_pair, float("inf")).sqrt()
    return -torch.log(dist.min(dim=1).values + eps).mean()


@pytest.mark.parametrize(
    "autocast", [False, True], ids=["fp32", "bf16-autocast"]
)
def test_koleo_exact_for_near_duplicates(autocast):
    # B = 96 is past the 25 rows where torch.cdist switches to its
    # matrix-product formula, which cancels to 0 for rows 1e-4 apart: the
    # regulariser then went silent on exactly the collapsed pair.
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.functional.normalize(
        torch.randn(96, 192, generator=gen), dim=-1
    )
    base[1] = torch.nn.functional.normalize(base[0] + 1e-4 * base[2], dim=-1)
    eps = 1e-8

    ref_x = base.double().requires_grad_(True)
    ref = _koleo_float64_brute_force(ref_x, eps)
    ref.backward()

    x = base.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = koleo(x, eps=eps)
    loss.backward()

    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), abs=1e-3)
    # The near-duplicate pair carries by far the largest gradient (~200 per
    # row here); it must match the float64 one, not vanish.
    for row in (0, 1):
        ref_norm = ref_x.grad[row].norm().item()
        assert ref_norm > 100
        assert x.grad[row].norm().item() == pytest.approx(ref_norm, rel=1e-2)
    assert torch.allclose(x.grad, ref_x.grad.float(), rtol=1e-2, atol=1e-2)
