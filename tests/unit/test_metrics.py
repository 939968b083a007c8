"""Cross-checks of the sort-based EER/minDCF against brute force, scikit-learn
and SpeechBrain's reference implementations."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve
from speechbrain.utils import metric_stats as sb_metrics

from speechbrain_ssv.eval.metrics import EER, det_curve, eer_mindcf, minDCF


def _random_trials(seed, n=3000, target_frac=0.2, quantize=None):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < target_frac).astype(int)
    scores = rng.normal(size=n) + 1.5 * labels
    if quantize is not None:
        # Coarse rounding creates many ties, across the two classes too.
        scores = np.round(scores * quantize) / quantize
    return scores, labels


def _brute_force(scores, labels, p, c_miss=1.0, c_fa=1.0):
    """Every candidate threshold, no sorting tricks (quadratic, small N)."""
    distinct = np.unique(scores)
    cands = np.concatenate([[distinct[0] - 1.0], distinct])
    pos, neg = scores[labels == 1], scores[labels == 0]
    frr = np.array([(pos <= t).mean() for t in cands])
    far = np.array([(neg > t).mean() for t in cands])
    gap = np.abs(far - frr)
    i = int(np.flatnonzero(gap <= gap.min() + 1e-12)[0])
    dcf = (c_miss * p * frr + c_fa * (1 - p) * far) / min(
        c_miss * p, c_fa * (1 - p)
    )
    return (frr[i] + far[i]) / 2, dcf.min()


@pytest.mark.parametrize("quantize", [None, 4, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(seed, quantize):
    scores, labels = _random_trials(seed, n=800, quantize=quantize)
    m = eer_mindcf(scores, labels, p_targets=(0.01, 0.05, 0.3))
    for p in (0.01, 0.05, 0.3):
        eer, dcf = _brute_force(scores, labels, p)
        assert m[f"min_dcf@{p:g}"] == pytest.approx(dcf, abs=1e-12)
    assert m["eer"] == pytest.approx(eer, abs=1e-12)


@pytest.mark.parametrize("quantize", [None, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_roc_curve(seed, quantize):
    scores, labels = _random_trials(seed, quantize=quantize)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    # Same operating points as ours (sklearn: accept iff score >= thr).
    ours_fpr, ours_fnr = det_curve(scores, labels)
    np.testing.assert_allclose(np.sort(ours_fpr), np.sort(fpr), atol=1e-12)
    np.testing.assert_allclose(np.sort(ours_fnr), np.sort(fnr), atol=1e-12)
    i = np.argmin(np.abs(fnr - fpr))
    m = eer_mindcf(scores, labels)
    assert m["eer"] == pytest.approx((fnr[i] + fpr[i]) / 2, abs=1e-9)
    for p in (0.01, 0.05):
        dcf = (p * fnr + (1 - p) * fpr).min() / min(p, 1 - p)
        assert m[f"min_dcf@{p:g}"] == pytest.approx(dcf, abs=1e-12)


@pytest.mark.parametrize("quantize", [None, 10])
@pytest.mark.parametrize("seed", [3, 4])
def test_matches_speechbrain(seed, quantize):
    scores, labels = _random_trials(seed, n=2000, quantize=quantize)
    pos = torch.tensor(scores[labels == 1], dtype=torch.float64)
    neg = torch.tensor(scores[labels == 0], dtype=torch.float64)
    sb_eer, sb_thr = sb_metrics.EER(pos, neg)
    eer, thr = EER(pos, neg)
    assert eer == pytest.approx(sb_eer, abs=1e-6)
    # Thresholds differ (SB: a score value, ours: a midpoint) but must give
    # the same decisions.
    assert (pos.numpy() > thr).mean() == pytest.approx(
        (pos.numpy() > sb_thr).mean()
    )
    assert (neg.numpy() > thr).mean() == pytest.approx(
        (neg.numpy() > sb_thr).mean()
    )
    m = eer_mindcf(scores, labels, p_targets=(0.01, 0.05))
    for p in (0.01, 0.05):
        sb_dcf, _ = sb_metrics.minDCF(pos, neg, p_target=p)
        ours, _ = minDCF(pos, neg, p_target=p)
        assert ours == pytest.approx(sb_dcf, abs=1e-6)
        # Normalised = SpeechBrain's un-normalised / min(c_miss p, c_fa (1-p)).
        assert m[f"min_dcf@{p:g}"] == pytest.approx(sb_dcf / p, abs=1e-5)


def test_costs_change_mindcf():
    scores, labels = _random_trials(5, n=1000)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pos_t, neg_t = torch.tensor(pos), torch.tensor(neg)
    sb_dcf, _ = sb_metrics.minDCF(
        pos_t, neg_t, c_miss=10.0, c_fa=1.0, p_target=0.05
    )
    ours, _ = minDCF(pos, neg, c_miss=10.0, c_fa=1.0, p_target=0.05)
    assert ours == pytest.approx(sb_dcf, abs=1e-6)
    m = eer_mindcf(scores, labels, p_targets=(0.05,), c_miss=10.0)
    assert m["min_dcf@0.05"] == pytest.approx(ours / min(10 * 0.05, 0.95))


def test_hand_computed_with_ties():
    # Sorted: 0.1(n) 0.4(t) 0.4(n) 0.4(n) 0.7(t) 0.9(t)
    scores = [0.4, 0.9, 0.1, 0.4, 0.7, 0.4]
    labels = [1, 1, 0, 0, 1, 0]
    fpr, fnr = det_curve(scores, labels)
    np.testing.assert_allclose(fpr, [1, 2 / 3, 0, 0, 0])
    np.testing.assert_allclose(fnr, [0, 0, 1 / 3, 2 / 3, 1])
    m = eer_mindcf(scores, labels)
    # |FAR-FRR| is 2/3 at "reject <= 0.1" and 1/3 at "reject <= 0.4", the
    # closest point: EER = (0 + 1/3) / 2; the tied 0.4s are never split.
    assert m["eer"] == pytest.approx(1 / 6)
    assert m["eer_threshold"] == pytest.approx(0.55)
    # p=0.01: reject <= 0.4 costs FRR = 1/3 (normalised), the best point.
    assert m["min_dcf@0.01"] == pytest.approx(1 / 3)
    assert m["min_dcf@0.01_threshold"] == pytest.approx(0.55)


def test_perfect_and_inverted_systems():
    m = eer_mindcf([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert m["eer"] == 0.0 and m["min_dcf@0.01"] == 0.0
    m = eer_mindcf([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0])
    assert m["eer"] == 1.0
    # A useless system is never worse than the best trivial one.
    assert m["min_dcf@0.01"] == pytest.approx(1.0)


def test_all_scores_equal():
    m = eer_mindcf(np.zeros(10), [1, 0] * 5)
    assert m["eer"] == 0.5
    assert m["min_dcf@0.05"] == pytest.approx(1.0)


def test_inputs_accept_tensors_and_bools():
    scores, labels = _random_trials(6, n=300)
    a = eer_mindcf(scores, labels)
    b = eer_mindcf(torch.tensor(scores), torch.tensor(labels.astype(bool)))
    assert a == b


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([], [], "empty"),
        ([0.1, 0.2], [0, 0], "no target"),
        ([0.1, 0.2], [1, 1], "no non-target"),
        ([0.1, 0.2], [1, 2], "0 .non-target. or 1"),
        ([0.1, 0.2], [1], "differ in length"),
        ([0.1, float("nan")], [1, 0], "NaN"),
    ],
)
def test_bad_input(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        eer_mindcf(scores, labels)


def test_bad_prior():
    with pytest.raises(ValueError, match="p_target"):
        eer_mindcf([0.1, 0.2], [1, 0], p_targets=(1.0,))
