"""Disentanglement losses: AP over speaker pairs (Eq. 9), Eq. 21 weighting and
switches, the decoupling block."""

import math

import pytest
import torch

from speechbrain_ssv.lobes.decoupling import DecouplingBlock
from speechbrain_ssv.lobes.heads import AngularScale
from speechbrain_ssv.losses.club import (
    PAPER_WEIGHTS,
    TABLE1_ROWS,
    ap_over_pairs,
    disentangle_total,
    table1_weights,
)
from speechbrain_ssv.utils.errors import SSVInputError


def _hand_ap(a, b, w, bias):
    """Eq. 9 with explicit loops over speakers."""
    n = len(a)
    total = 0.0
    for i in range(n):
        logits = []
        for j in range(n):
            dot = sum(p * q for p, q in zip(a[i], b[j]))
            na = math.sqrt(sum(p * p for p in a[i]))
            nb = math.sqrt(sum(q * q for q in b[j]))
            logits.append(w * dot / (na * nb) + bias)
        log_norm = math.log(sum(math.exp(v) for v in logits))
        total += -(logits[i] - log_norm)
    return total / n


A = [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 1.0, 1.0]]
B = [[0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.9]]


def test_ap_over_pairs_equals_hand_computation():
    a, b = torch.tensor(A), torch.tensor(B)
    expected = _hand_ap(A, B, 10.0, -5.0)
    assert float(ap_over_pairs(a, b, scale=(10.0, -5.0))) == pytest.approx(
        expected, abs=1e-5
    )
    # Bare cosines (Eq. 9 as printed).
    assert float(ap_over_pairs(a, b)) == pytest.approx(
        _hand_ap(A, B, 1.0, 0.0), abs=1e-5
    )


def test_ap_over_pairs_with_learnable_scale_module():
    a, b = torch.tensor(A), torch.tensor(B)
    head = AngularScale(init_scale=7.0, init_bias=-2.0)
    loss = ap_over_pairs(a.unsqueeze(1), b.unsqueeze(1), scale=head)
    assert float(loss.detach()) == pytest.approx(
        _hand_ap(A, B, 7.0, -2.0), abs=1e-5
    )
    loss.backward()
    assert head.scale.grad is not None and head.bias.grad is not None


def test_ap_over_pairs_rows_are_first_utterances():
    # Swapping the roles of the two utterances is a different loss (rows =
    # utterance 1, columns = utterance 2, as in Eq. 9).
    a, b = torch.tensor(A), torch.tensor(B)
    ab = float(ap_over_pairs(a, b, scale=(10.0, -5.0)))
    ba = float(ap_over_pairs(b, a, scale=(10.0, -5.0)))
    assert ba == pytest.approx(_hand_ap(B, A, 10.0, -5.0), abs=1e-5)
    assert ab != pytest.approx(ba, abs=1e-4)


def test_ap_over_pairs_shape_mismatch():
    with pytest.raises(SSVInputError, match="emb_a"):
        ap_over_pairs(torch.randn(3, 4), torch.randn(2, 4))


def _terms():
    return {
        "cls_s": torch.tensor(1.0),
        "cls_d": torch.tensor(2.0),
        "mi_s_d": torch.tensor(3.0),
        "mi_d_ys": torch.tensor(4.0),
        "mi_s_yd": torch.tensor(5.0),
    }


def test_eq21_paper_weights():
    out = disentangle_total(_terms())
    assert PAPER_WEIGHTS == {
        "cls_s": 5.0,
        "cls_d": 10.0,
        "mi_s_d": 0.5,
        "mi_d_ys": 0.1,
        "mi_s_yd": 0.1,
    }
    assert float(out["total"]) == pytest.approx(
        5 * 1 + 10 * 2 + 0.5 * 3 + 0.1 * 4 + 0.1 * 5
    )
    assert float(out["cls_d"]) == 20.0
    assert float(out["mi_s_d"]) == pytest.approx(1.5)


def test_eq21_switch_off_terms():
    terms = _terms()
    terms["mi_s_d"] = None  # off terms need not be computed
    del terms["mi_d_ys"]
    weights = dict(PAPER_WEIGHTS, mi_s_d=0.0)
    weights.pop("mi_d_ys")
    out = disentangle_total(terms, weights)
    assert set(out) == {"cls_s", "cls_d", "mi_s_yd", "total"}
    assert float(out["total"]) == pytest.approx(5 + 20 + 0.5)


def test_eq21_gradients_follow_weights():
    x = torch.tensor(2.0, requires_grad=True)
    out = disentangle_total(
        {"cls_s": x, "mi_s_d": 3 * x}, {"cls_s": 5.0, "mi_s_d": 0.5}
    )
    out["total"].backward()
    assert float(x.grad) == pytest.approx(5.0 + 1.5)


def test_eq21_errors():
    with pytest.raises(SSVInputError, match="mi_s_d"):
        disentangle_total(
            {"cls_s": torch.tensor(1.0)}, {"cls_s": 1, "mi_s_d": 1}
        )
    with pytest.raises(SSVInputError, match=">= 0"):
        disentangle_total(_terms(), {"cls_s": -1.0})
    with pytest.raises(SSVInputError, match="switched off"):
        disentangle_total(_terms(), {"cls_s": 0.0})


def test_table1_rows():
    assert table1_weights(2) == {
        "cls_s": 5.0,
        "cls_d": 0.0,
        "mi_s_d": 0.0,
        "mi_d_ys": 0.0,
        "mi_s_yd": 0.0,
    }
    assert table1_weights(6) == PAPER_WEIGHTS
    row5 = table1_weights(5)
    assert row5["mi_s_d"] == 0.0 and row5["mi_d_ys"] == 0.1
    for row, on in TABLE1_ROWS.items():
        out = disentangle_total(_terms(), table1_weights(row))
        assert set(out) - {"total"} == set(on)
    with pytest.raises(SSVInputError, match="row"):
        table1_weights(1)


def test_decoupling_shapes_and_structure():
    block = DecouplingBlock()  # paper: 192 -> (192, 192), 3 layers
    x_s, x_d = block(torch.randn(5, 192))
    assert x_s.shape == x_d.shape == (5, 192)
    x_s, x_d = block(torch.randn(5, 1, 192))
    assert x_s.shape == x_d.shape == (5, 1, 192)
    assert len(block.shared) == 1  # one shared layer + two heads
    layer = block.speaker_head.net
    assert [type(m).__name__ for m in layer] == [
        "Linear",
        "ReLU",
        "BatchNorm1d",
    ]
    assert len(DecouplingBlock(n_layers=2).shared) == 0
    assert len(DecouplingBlock(16, 8, 4, n_layers=5).shared) == 3
    with pytest.raises(ValueError, match="n_layers"):
        DecouplingBlock(n_layers=1)


def test_decoupling_branches_are_separate():
    torch.manual_seed(0)
    block = DecouplingBlock(16, output_size=8)
    x_s, x_d = block(torch.randn(6, 16))
    x_d.pow(2).sum().backward()
    assert all(p.grad is None for p in block.speaker_head.parameters())
    assert all(p.grad is not None for p in block.device_head.parameters())
    assert all(p.grad is not None for p in block.shared.parameters())
    assert not torch.allclose(x_s, x_d)
