"""Hparams loading errors, the LR schedules' formulas, and the one protocol
by which the Brains apply ``lr_annealing``."""

import math

import pytest
import speechbrain as sb
import torch
from speechbrain.nnet.schedulers import CyclicLRScheduler, NewBobScheduler
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_ssv.brains.base import LRAnnealingMixin
from speechbrain_ssv.brains.clustering import REQUIRED_HPARAMS, ClusteringBrain
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.hparams import load_hparams
from speechbrain_ssv.utils.schedulers import (
    EpochDecayScheduler,
    StepSchedule,
    WarmupCosineScheduler,
)


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


# -------------------------------------------------- one scheduler protocol
class _Toy(LRAnnealingMixin, sb.Brain):
    """One linear layer; records ``(epoch, optimizer_step, lr)`` of every
    step and checkpoints at the end of every epoch."""

    def compute_forward(self, batch, stage):
        return self.modules.lin(batch)

    def compute_objectives(self, out, batch, stage):
        self.seen.append(
            (
                self.hparams.epoch_counter.current,
                self.optimizer_step,
                self.optimizer.param_groups[0]["lr"],
            )
        )
        return out.pow(2).mean()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.checkpointer.save_and_keep_only(num_to_keep=1)


def _toy_run(folder, schedule, limit):
    """Train (or resume) up to epoch ``limit``: 4 steps per epoch, a fresh
    schedule object (as a new process would build it from the yaml)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(1, 1)
    counter = EpochCounter(limit)
    sched = schedule()
    recoverables = {"lin": lin, "counter": counter}
    if not isinstance(sched, StepSchedule):
        recoverables["lr_annealing"] = sched  # as the recipe yamls list it
    brain = _Toy(
        {"lin": lin},
        lambda params: torch.optim.SGD(params, lr=0.01),
        hparams={"lr_annealing": sched, "epoch_counter": counter},
        run_opts={"device": "cpu", "noprogressbar": True},
        checkpointer=Checkpointer(str(folder), recoverables),
    )
    brain.seen = []
    brain.fit(
        counter, [torch.ones(1)] * 4, train_loader_kwargs={"batch_size": 1}
    )
    return brain.seen


def _cyclic_by_hand(n_steps):
    """SpeechBrain's CyclicLRScheduler stepped after every optimizer step,
    as VerificationBrain did: the rate each step trains with."""
    sched = CyclicLRScheduler(base_lr=0.01, max_lr=0.1, step_size=3)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    rates = []
    for _ in range(n_steps):
        rates.append(opt.param_groups[0]["lr"])
        sched.on_batch_end(opt)
    return rates


@pytest.mark.parametrize("clock", ["step", "epoch", "speechbrain"])
def test_one_scheduler_protocol(clock, tmp_path):
    """Each kind of lr_annealing gives the rates of the mechanism it
    replaces, step by step, and a run resumed after epoch 2 continues them
    exactly."""
    schedule, expected = {
        # VerificationBrain: set before each step from optimizer_step
        # (a decay every 3 steps, across the 4-step epochs).
        "step": (
            lambda: EpochDecayScheduler(0.1, 0.5, steps_per_epoch=3),
            [0.1 * 0.5 ** (s // 3) for s in range(12)],
        ),
        # ClusteringBrain and VAEBrain: lr * lr_decay ** (epoch - 1).
        "epoch": (
            lambda: EpochDecayScheduler(0.01, 0.996, steps_per_epoch=None),
            [0.01 * 0.996 ** (s // 4) for s in range(12)],
        ),
        # The full-scale yamls' CyclicLRScheduler, stepped after each step.
        "speechbrain": (
            lambda: CyclicLRScheduler(base_lr=0.01, max_lr=0.1, step_size=3),
            _cyclic_by_hand(12),
        ),
    }[clock]
    whole = _toy_run(tmp_path / "whole", schedule, limit=3)
    assert [(e, s) for e, s, _ in whole] == [(1 + s // 4, s) for s in range(12)]
    assert [lr for _, _, lr in whole] == expected
    first = _toy_run(tmp_path / "resumed", schedule, limit=2)
    resumed = _toy_run(tmp_path / "resumed", schedule, limit=3)
    assert first + resumed == whole


def test_lr_annealing_is_required_and_checked(tmp_path):
    counter = EpochCounter(1)
    brain = _Toy(
        {"lin": torch.nn.Linear(1, 1)},
        lambda params: torch.optim.SGD(params, lr=0.01),
        hparams={"epoch_counter": counter},
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    with pytest.raises(HparamsError, match="^lr_annealing: missing"):
        brain.fit(counter, [torch.ones(1)])
    # An epoch-end scheduler of SpeechBrain (called with a metric) is not
    # one the Brains apply: named, with the replacement.
    brain.hparams.lr_annealing = NewBobScheduler(initial_value=0.01)
    with pytest.raises(HparamsError, match="lr_annealing: is a NewBob.*null"):
        brain.fit(counter, [torch.ones(1)])
    # ClusteringBrain lists it among the settings it requires.
    settings = {k: None for k in REQUIRED_HPARAMS if k != "lr_annealing"}
    with pytest.raises(HparamsError, match=r"lacks \['lr_annealing'\]"):
        ClusteringBrain(modules={}, hparams=settings)
