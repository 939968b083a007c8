"""Hparams loading errors and the LR schedule's formula."""

import math

import pytest

from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.hparams import load_hparams
from speechbrain_ssv.utils.schedulers import WarmupCosineScheduler


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "h.yaml"
    p.write_text("lr: 0.1\nbatch_size: 4\n")
    with pytest.raises(
        HparamsError, match=r"h.yaml: unknown hparams key 'bacth_size'"
    ):
        load_hparams(str(p), {"bacth_size": 8})


def test_placeholder_and_missing_file(tmp_path):
    p = tmp_path / "h.yaml"
    p.write_text("data_folder: !PLACEHOLDER\n")
    with pytest.raises(HparamsError, match="data_folder"):
        load_hparams(str(p))
    with pytest.raises(HparamsError, match="does not exist"):
        load_hparams(str(tmp_path / "none.yaml"))


def test_required_key(tmp_path):
    p = tmp_path / "h.yaml"
    p.write_text("lr: 0.1\n")
    with pytest.raises(HparamsError, match="missing required key.*seed"):
        load_hparams(str(p), required=("seed",))


def test_warmup_cosine_formula():
    s = WarmupCosineScheduler(
        lr=0.2, warmup_steps=10, total_steps=60, final_lr=1e-5
    )
    assert s.lr_at(0) == 0.0
    assert s.lr_at(10) == pytest.approx(0.2)
    mid = 1e-5 + (0.2 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.3))
    assert s.lr_at(25) == pytest.approx(mid)
    assert s.lr_at(60) == pytest.approx(1e-5)
    assert s.lr_at(10_000) == pytest.approx(1e-5)
    with pytest.raises(ValueError):
        WarmupCosineScheduler(0.1, 10, 10)
