"""Angular prototypical loss, i-mix / l-mix formulas and the AP scale module."""

import math

import pytest
import torch

from speechbrain_ssv.lobes.heads import AngularScale
from speechbrain_ssv.losses.common import (
    angular_prototypical_loss,
    cosine_logits,
    mix,
    random_partner,
    sample_lambda,
    soft_target_cross_entropy,
)
from speechbrain_ssv.losses.mixap import imix_loss, imix_targets


def test_ap_loss_equals_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    a = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    w, b = 10.0, -5.0
    c = 1 / math.sqrt(2)
    # S[i, j] = w * cos(q_i, a_j) + b
    s = [[w * c + b, w * 0 + b], [w * c + b, w * 1 + b]]
    hand = -0.5 * (
        math.log(math.exp(s[0][0]) / (math.exp(s[0][0]) + math.exp(s[0][1])))
        + math.log(math.exp(s[1][1]) / (math.exp(s[1][0]) + math.exp(s[1][1])))
    )
    logits = cosine_logits(q, a, w, b)
    assert torch.allclose(logits, torch.tensor(s))
    assert math.isclose(
        float(angular_prototypical_loss(logits)), hand, rel_tol=1e-6
    )


def test_ap_loss_with_gathered_anchor_offset():
    logits = torch.randn(3, 9)
    own = torch.arange(3) + 3
    ref = torch.nn.functional.cross_entropy(logits, own)
    assert torch.isclose(angular_prototypical_loss(logits, offset=3), ref)


def test_imix_with_lambda_one_equals_ap():
    torch.manual_seed(0)
    logits = torch.randn(6, 6)
    partner = random_partner(6, torch.Generator().manual_seed(1))
    assert torch.isclose(
        imix_loss(logits, partner, torch.ones(6)),
        angular_prototypical_loss(logits),
    )
    # ... and lambda = 0 is AP towards the partner's anchor.
    ref = torch.nn.functional.cross_entropy(logits, partner)
    assert torch.isclose(imix_loss(logits, partner, torch.zeros(6)), ref)


def test_imix_loss_is_the_lambda_weighted_sum_of_two_cross_entropies():
    torch.manual_seed(0)
    logits = torch.randn(4, 4)
    partner = torch.tensor([2, 3, 0, 1])
    lam = torch.tensor([0.2, 0.5, 0.7, 0.9])
    logp = torch.log_softmax(logits, -1)
    rows = torch.arange(4)
    hand = -(lam * logp[rows, rows] + (1 - lam) * logp[rows, partner]).mean()
    assert torch.isclose(imix_loss(logits, partner, lam), hand)


def test_soft_target_cross_entropy_hand_value():
    logits = torch.tensor(
        [[math.log(1.0), math.log(3.0)]]
    )  # softmax = [0.25, 0.75]
    targets = torch.tensor([[0.4, 0.6]])
    hand = -(0.4 * math.log(0.25) + 0.6 * math.log(0.75))
    assert math.isclose(
        float(soft_target_cross_entropy(logits, targets)), hand, rel_tol=1e-6
    )
    # One-hot targets give the usual cross-entropy.
    onehot = torch.tensor([[0.0, 1.0]])
    assert math.isclose(
        float(soft_target_cross_entropy(logits, onehot)),
        -math.log(0.75),
        rel_tol=1e-6,
    )


def test_imix_targets_rows_sum_to_one_and_offset():
    t = imix_targets(
        torch.tensor([1, 0]), torch.tensor([0.6, 0.3]), n_columns=6, offset=2
    )
    assert torch.allclose(t.sum(-1), torch.ones(2))
    assert torch.allclose(t[0, 2:4], torch.tensor([0.6, 0.4]))
    assert torch.allclose(t[1, 2:4], torch.tensor([0.7, 0.3]))
    assert float(t[:, :2].abs().sum() + t[:, 4:].abs().sum()) == 0.0


def test_mix_is_convex_combination_with_partner():
    x = torch.randn(5, 7, 3)
    partner = torch.tensor([1, 2, 3, 4, 0])
    lam = torch.tensor([0.1, 0.3, 0.5, 0.7, 1.0])
    out = mix(x, partner, lam)
    for i in range(5):
        assert torch.allclose(
            out[i], lam[i] * x[i] + (1 - lam[i]) * x[partner[i]]
        )


def test_latent_mix_of_means():
    mu1, mu2 = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 4.0]])
    mu = torch.cat([mu1, mu2])
    out = mix(mu, torch.tensor([1, 0]), torch.tensor(0.25))
    assert torch.allclose(out[0], 0.25 * mu1[0] + 0.75 * mu2[0])


def test_random_partner_never_self_and_a_permutation():
    for seed in range(20):
        p = random_partner(7, torch.Generator().manual_seed(seed))
        assert (p != torch.arange(7)).all()
        assert sorted(p.tolist()) == list(range(7))
    with pytest.raises(ValueError, match="at least 2"):
        random_partner(1)


def test_sample_lambda_distribution_and_folding():
    g = torch.Generator().manual_seed(0)
    lam = sample_lambda(20000, 0.5, generator=g)
    # Beta(0.5, 0.5): mean 0.5, variance 1/8, U-shaped.
    assert abs(float(lam.mean()) - 0.5) < 0.02
    assert abs(float(lam.var()) - 0.125) < 0.01
    big = sample_lambda(20000, 32.0, generator=g)
    assert float(big.std()) < 0.1
    folded = sample_lambda(1000, 1.0, fold=True, generator=g)
    assert (folded >= 0.5).all()
    shared = sample_lambda(8, 1.0, per_sample=False, generator=g)
    assert torch.all(shared == shared[0])
    with pytest.raises(ValueError, match="alpha"):
        sample_lambda(4, 0.0)


def test_angular_scale_parameters_get_gradients_and_clamp():
    head = AngularScale(init_scale=10.0, init_bias=-5.0)
    assert {n for n, _ in head.named_parameters()} == {"scale", "bias"}
    q = torch.randn(4, 8, requires_grad=True)
    a = torch.randn(4, 8)
    loss = angular_prototypical_loss(head(q, a))
    loss.backward()
    assert (
        head.scale.grad is not None
        and head.bias.grad is not None
        and q.grad is not None
    )
    with torch.no_grad():
        head.scale.fill_(-3.0)
    # A negative learnt scale is clamped, so similarities never change sign.
    logits = head(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    )
    assert float(logits[0, 0]) >= float(logits[0, 1])
    fixed = AngularScale(1.0, 0.0, learnable=False)
    assert not list(fixed.parameters()) and set(fixed.state_dict()) == {
        "scale",
        "bias",
    }
