"""Margin softmaxes (Appendix C / Eq. 5): AAM, OC-softmax, AdaFace reduce
to their formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_ssv.lobes.margins import AAMSoftmax, AdaFace, OCSoftmax
from speechbrain_ssv.losses.margins import (
    aam_logits,
    adaface_logits,
    ocsoftmax_loss,
)

COS = [[0.8, 0.1, -0.3], [0.2, 0.5, 0.4]]
LABELS = [0, 2]


def _softplus(v):
    return math.log1p(math.exp(v))


def test_aam_reduces_to_its_formula():
    cos = torch.tensor(COS)
    s, m = 30.0, 0.1
    z = aam_logits(cos, torch.tensor(LABELS), margin=m, scale=s)
    for i, row in enumerate(COS):
        for j, c in enumerate(row):
            expect = s * (math.cos(math.acos(c) + m) if j == LABELS[i] else c)
            assert math.isclose(float(z[i, j]), expect, rel_tol=1e-5)
    # Eq. 5: the loss is the cross-entropy of these logits, which is what
    # the SpeechBrain-backed module computes.
    hand = 0.0
    for i in range(len(COS)):
        k1 = sum(math.exp(v) for v in z[i].tolist())
        hand -= math.log(math.exp(float(z[i, LABELS[i]])) / k1) / 2
    loss = AAMSoftmax(margin=m, scale=s)(
        cos.unsqueeze(1), torch.tensor(LABELS)[:, None]
    )
    assert math.isclose(float(loss), hand, rel_tol=1e-5)


def test_aam_zero_margin_is_scaled_cosine_and_guard_beyond_pi():
    cos = torch.tensor(COS)
    z = aam_logits(cos, torch.tensor(LABELS), margin=0.0, scale=2.0)
    assert torch.allclose(z, 2.0 * cos, atol=1e-6)
    # theta + m > pi: the target logit falls back to s (cos - m sin m).
    m = 0.5
    z = aam_logits(
        torch.tensor([[-0.99, 0.0]]), torch.tensor([0]), margin=m, scale=1.0
    )
    assert math.isclose(
        float(z[0, 0]), -0.99 - math.sin(math.pi - m) * m, rel_tol=1e-5
    )


def test_ocsoftmax_reduces_to_its_formula():
    cos = torch.tensor(COS)
    a, mp, mn = 20.0, 0.9, 0.2
    per_sum, per_mean = [], []
    for i, row in enumerate(COS):
        y = LABELS[i]
        pos = _softplus(a * (mp - row[y]))
        negs = [_softplus(a * (c - mn)) for j, c in enumerate(row) if j != y]
        per_sum.append(pos + sum(negs))
        per_mean.append(pos + sum(negs) / len(negs))
    got = ocsoftmax_loss(cos, torch.tensor(LABELS))
    assert math.isclose(float(got), sum(per_sum) / 2, rel_tol=1e-5)
    got = ocsoftmax_loss(cos, torch.tensor(LABELS), negatives="mean")
    assert math.isclose(float(got), sum(per_mean) / 2, rel_tol=1e-5)
    # The module is the same function.
    mod = OCSoftmax()(cos.unsqueeze(1), torch.tensor(LABELS)[:, None])
    assert math.isclose(float(mod), sum(per_sum) / 2, rel_tol=1e-5)


def test_ocsoftmax_is_binary_oc_softmax_for_two_classes():
    # A sample's two terms are OC-softmax's log(1 + exp(alpha (m_y - w.x)
    # (-1)^y)) for its own class (y = 0, bona fide) and for the other
    # class's score (y = 1, spoof).
    cos = torch.tensor([[0.95, -0.1]])
    loss = ocsoftmax_loss(
        cos, torch.tensor([0]), m_pos=0.9, m_neg=0.2, alpha=20.0
    )
    bona = math.log1p(math.exp(20.0 * (0.9 - 0.95)))  # y = 0 term
    spoof = math.log1p(math.exp(-20.0 * (0.2 - (-0.1))))  # y = 1 term
    assert math.isclose(float(loss), bona + spoof, rel_tol=1e-6)
    with pytest.raises(ValueError, match="negatives"):
        ocsoftmax_loss(cos, torch.tensor([0]), negatives="max")


def _adaface_hand(c_target, norm, mu, sigma, m=0.4, h=0.333, s=64.0, eps=1e-3):
    z = max(-1.0, min(1.0, h * (norm - mu) / (sigma + eps)))
    theta = math.acos(max(-1 + eps, min(1 - eps, c_target)))
    theta = max(eps, min(math.pi - eps, theta - m * z))
    return s * (math.cos(theta) - (m + m * z))


def test_adaface_reduces_to_its_formula_and_special_cases():
    cos = torch.tensor(COS)
    labels = torch.tensor(LABELS)
    norms = torch.tensor([12.0, 31.0])
    mu, sigma = 20.0, 6.0
    z = adaface_logits(cos, labels, norms, batch_mean=mu, batch_std=sigma)
    for i, row in enumerate(COS):
        for j, c in enumerate(row):
            if j == LABELS[i]:
                expect = _adaface_hand(c, float(norms[i]), mu, sigma)
            else:
                expect = 64.0 * c
            assert math.isclose(
                float(z[i, j]), expect, rel_tol=1e-5, abs_tol=1e-5
            )
    c = 0.6
    one = torch.tensor([[c, 0.0]])
    lab = torch.tensor([0])
    # Very low norm (z = -1): ArcFace with margin m.
    low = adaface_logits(
        one,
        lab,
        torch.tensor([0.5]),
        0.3,
        scale=1.0,
        batch_mean=50.0,
        batch_std=1.0,
    )
    assert math.isclose(
        float(low[0, 0]), math.cos(math.acos(c) + 0.3), rel_tol=1e-5
    )
    # Very high norm (z = +1): cos(theta - m) - 2m.
    high = adaface_logits(
        one,
        lab,
        torch.tensor([99.0]),
        0.3,
        scale=1.0,
        batch_mean=1.0,
        batch_std=1.0,
    )
    assert math.isclose(
        float(high[0, 0]), math.cos(math.acos(c) - 0.3) - 0.6, rel_tol=1e-5
    )
    # Average norm (z = 0): CosFace with margin m.
    mid = adaface_logits(
        one,
        lab,
        torch.tensor([5.0]),
        0.3,
        scale=1.0,
        batch_mean=5.0,
        batch_std=1.0,
    )
    assert math.isclose(float(mid[0, 0]), c - 0.3, rel_tol=1e-5)


def test_adaface_module_running_statistics_and_loss():
    loss_fn = AdaFace(momentum=0.01)
    cos = torch.tensor(COS)
    labels = torch.tensor(LABELS)
    norms = torch.tensor([12.0, 31.0])
    loss = loss_fn(cos, labels, norms)
    mean = 0.99 * 20.0 + 0.01 * 21.5
    std = 0.99 * 100.0 + 0.01 * float(norms.std())
    assert math.isclose(float(loss_fn.running_mean), mean, rel_tol=1e-6)
    assert math.isclose(float(loss_fn.running_std), std, rel_tol=1e-6)
    logits = adaface_logits(cos, labels, norms, batch_mean=mean, batch_std=std)
    assert math.isclose(
        float(loss), float(F.cross_entropy(logits, labels)), rel_tol=1e-5
    )
    # Eval mode freezes the statistics; they are checkpointed buffers.
    loss_fn.eval()
    loss_fn(cos, labels, norms)
    assert math.isclose(float(loss_fn.running_mean), mean, rel_tol=1e-6)
    restored = AdaFace()
    restored.load_state_dict(loss_fn.state_dict())
    assert torch.equal(restored.running_std, loss_fn.running_std)
    with pytest.raises(ValueError, match="feature_norms"):
        loss_fn(cos, labels)


def test_margin_inputs_are_checked():
    with pytest.raises(ValueError, match="labels must lie"):
        aam_logits(torch.tensor(COS), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="rows"):
        ocsoftmax_loss(torch.tensor(COS), torch.tensor([0]))
