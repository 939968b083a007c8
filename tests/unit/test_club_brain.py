"""DisentangleBrain (Algorithm 1 of Mun, Han et al.) on random tensors: where
each loss sends its gradients, the Table I rows, and checkpoint/resume."""

import functools
import pathlib
import shutil

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import (
    AdditiveAngularMargin,
    LogSoftmaxWrapper,
    classification_error,
)
from speechbrain.processing.features import InputNormalization
from speechbrain.utils.epoch_loop import EpochCounter
from speechbrain.utils.metric_stats import MetricStats
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_ssv.brains.club import DisentangleBrain
from speechbrain_ssv.brains.club_setup import (
    load_pretrained_frontend,
    resolve_weights,
)
from speechbrain_ssv.data.samplers import SpeakerPairSampler
from speechbrain_ssv.lobes.club import CategoricalCLUB, GaussianCLUB
from speechbrain_ssv.lobes.decoupling import DecouplingBlock
from speechbrain_ssv.lobes.heads import AngularScale
from speechbrain_ssv.lobes.mfa_conformer import MFAConformer
from speechbrain_ssv.losses.club import TABLE1_ROWS, table1_weights
from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer
from speechbrain_ssv.utils.errors import HparamsError, SSVInputError

EMB = 12
N_SPK, N_DEV, UTTS = 4, 3, 2
MAIN = (
    "embedding_model",
    "decoupling",
    "spk_classifier",
    "dev_classifier",
    "ap_scale",
)
ESTIMATORS = ("club_s_d", "club_d_ys", "club_s_yd")


def _classification_error(probabilities, targets, length=None):
    return classification_error(
        probabilities, targets, length, reduction="batch"
    )


def make_dataset():
    g = torch.Generator().manual_seed(123)
    data = {}
    for s in range(N_SPK):
        for u in range(UTTS):
            data[f"s{s}_u{u}"] = {
                "sig": 0.1 * torch.randn(3200, generator=g),
                "spk_id": f"s{s}",
                "spk_id_encoded": torch.tensor([s]),
                "device_encoded": torch.tensor([(s + u) % N_DEV]),
            }
    ds = DynamicItemDataset(data)
    ds.set_output_keys(["id", "sig", "spk_id_encoded", "device_encoded"])
    return ds


def make_brain(tmp_path, row=6, weights=None, seed=0, epochs=1, save="save"):
    torch.manual_seed(seed)
    modules = {
        "compute_features": Fbank(n_mels=20),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": MFAConformer(
            input_size=20,
            d_model=16,
            num_blocks=1,
            nhead=2,
            d_ffn=32,
            kernel_size=3,
            dropout=0.0,
            lin_neurons=EMB,
            attention_channels=8,
        ),
        "decoupling": DecouplingBlock(EMB, output_size=EMB),
        "spk_classifier": Classifier(EMB, out_neurons=N_SPK),
        "dev_classifier": Classifier(EMB, out_neurons=N_DEV),
        "ap_scale": AngularScale(),
        "club_s_d": GaussianCLUB(EMB, EMB, hidden=16),
        "club_d_ys": CategoricalCLUB(EMB, N_SPK, hidden=16),
        "club_s_yd": CategoricalCLUB(EMB, N_DEV, hidden=16),
    }
    counter = EpochCounter(epochs)
    recoverables = {k: modules[k] for k in (*MAIN, *ESTIMATORS)}
    recoverables["counter"] = counter
    checkpointer = AtomicCheckpointer(
        str(tmp_path / save), recoverables=recoverables
    )
    hparams = {
        "compute_cost": LogSoftmaxWrapper(AdditiveAngularMargin(0.2, 30)),
        "table1_row": row,
        "loss_weights": weights,
        "estimator_opt_class": functools.partial(torch.optim.Adam, lr=1e-2),
        "estimator_steps": 3,
        "train_idle_estimators": True,
        "error_stats": functools.partial(
            MetricStats, metric=_classification_error
        ),
        "train_logger": FileTrainLogger(str(tmp_path / f"{save}_log.txt")),
        "epoch_counter": counter,
        "output_folder": str(tmp_path),
        "verify_every": 0,
        "verification_file": None,
        "verify_batch_size": 8,
        "wav_augment": None,
        "lr_annealing": None,  # the optimizer's rate throughout
    }
    brain = DisentangleBrain(
        modules=modules,
        opt_class=functools.partial(torch.optim.Adam, lr=1e-3),
        hparams=hparams,
        run_opts={
            "device": "cpu",
            "noprogressbar": True,
            "ckpt_interval_minutes": 0,
        },
        checkpointer=checkpointer,
    )
    return brain


def make_sampler():
    labels = [f"s{s}" for s in range(N_SPK) for _ in range(UTTS)]
    return SpeakerPairSampler(labels, batch_speakers=2, seed=7)


def first_batch(ds):
    idx = next(iter(make_sampler()))
    return PaddedBatch([ds[i] for i in idx])


def snapshot(brain, keys):
    return {
        k: [p.detach().clone() for p in brain.modules[k].parameters()]
        for k in keys
    }


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_one_step_sends_each_loss_to_its_own_parameters(tmp_path):
    brain = make_brain(tmp_path)
    brain.init_optimizers()
    brain.modules.train()
    brain.zero_grad(set_to_none=True)
    batch = first_batch(make_dataset())
    before = snapshot(brain, MAIN + ESTIMATORS)
    seen = {}
    update, step = brain.update_estimators, brain.optimizers_step

    def spy_update(out):
        nll = update(out)
        seen["nll"] = nll
        seen["after_estimators"] = snapshot(brain, MAIN + ESTIMATORS)
        seen["main_grads"] = [
            p.grad for k in MAIN for p in brain.modules[k].parameters()
        ]
        return nll

    def spy_step():
        seen["est_grads"] = [
            p.grad for k in ESTIMATORS for p in brain.modules[k].parameters()
        ]
        seen["main_grad_keys"] = {
            k
            for k in MAIN
            if any(p.grad is not None for p in brain.modules[k].parameters())
        }
        step()

    brain.update_estimators, brain.optimizers_step = spy_update, spy_step
    loss = brain.fit_batch(batch)
    after = snapshot(brain, MAIN + ESTIMATORS)

    assert torch.isfinite(loss)
    assert set(seen["nll"]) == {f"nll_{k}" for k in ESTIMATORS}
    mid = seen["after_estimators"]
    # Estimator steps: every estimator moved, no main parameter did, and the
    # likelihoods left no gradient on the main networks.
    for k in ESTIMATORS:
        assert not same(before[k], mid[k]), k
    for k in MAIN:
        assert same(before[k], mid[k]), k
    assert all(g is None for g in seen["main_grads"])
    # Main step: the MI terms gave the estimators no gradient, they did not
    # move, and every main module was updated.
    assert all(g is None for g in seen["est_grads"])
    for k in ESTIMATORS:
        assert same(mid[k], after[k]), k
    assert seen["main_grad_keys"] == set(MAIN)
    for k in MAIN:
        assert not same(mid[k], after[k]), k
    assert brain.optimizer_step == 1


def test_mi_terms_alone_train_the_encoder_not_the_estimators(tmp_path):
    weights = {
        "cls_s": 0.0,
        "cls_d": 0.0,
        "mi_s_d": 1.0,
        "mi_d_ys": 1.0,
        "mi_s_yd": 1.0,
    }
    brain = make_brain(tmp_path, row=None, weights=weights)
    brain.init_optimizers()
    brain.modules.train()
    batch = first_batch(make_dataset())
    out = brain.compute_forward(batch, brain_stage())
    brain.update_estimators(out)
    loss = brain.compute_objectives(out, batch, brain_stage())
    loss.backward()
    for k in ("embedding_model", "decoupling"):
        grads = [p.grad for p in brain.modules[k].parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), k
    for k in ("spk_classifier", "dev_classifier", "ap_scale", *ESTIMATORS):
        assert all(p.grad is None for p in brain.modules[k].parameters()), k


def brain_stage():
    return sb.Stage.TRAIN


@pytest.mark.parametrize("row", sorted(TABLE1_ROWS))
def test_table1_rows_switch_terms(tmp_path, row):
    brain = make_brain(tmp_path, row=row)
    assert brain.weights == table1_weights(row)
    brain.init_optimizers()
    brain.modules.train()
    batch = first_batch(make_dataset())
    out = brain.compute_forward(batch, brain_stage())
    terms = brain.loss_terms(out, brain_stage())
    loss = brain.compute_objectives(out, batch, brain_stage())
    expected = sum(brain.weights[k] * terms[k] for k in TABLE1_ROWS[row])
    assert torch.allclose(loss, expected)
    # Terms that are off carry no graph (they are only logged).
    for name, on in brain.weights.items():
        assert (terms[name].requires_grad) == (on > 0), name
    loss.backward()
    dev_grad = any(
        p.grad is not None for p in brain.modules.dev_classifier.parameters()
    )
    head_grad = any(
        p.grad is not None
        for p in brain.modules.decoupling.device_head.parameters()
    )
    assert dev_grad == ("cls_d" in TABLE1_ROWS[row])
    assert head_grad == bool(
        {"cls_d", "mi_s_d", "mi_d_ys"} & set(TABLE1_ROWS[row])
    )


def test_weights_and_batch_checks(tmp_path):
    with pytest.raises(HparamsError, match="table1_row"):
        resolve_weights(1)
    with pytest.raises(HparamsError, match="loss_weights"):
        resolve_weights(None, {"cls_s": 1.0})
    brain = make_brain(tmp_path)
    brain.init_optimizers()
    ds = make_dataset()
    # Four speakers, one utterance each: no pairs.
    unpaired = PaddedBatch([ds[i] for i in (0, 2, 4, 6)])
    with pytest.raises(SSVInputError, match="SpeakerPairSampler"):
        brain.fit_batch(unpaired)
    with pytest.raises(HparamsError, match="grad_accumulation_factor"):
        brain.grad_accumulation_factor = 2
        brain.on_fit_start()


def test_pretrained_frontend_strict(tmp_path):
    src = MFAConformer(
        input_size=20,
        d_model=16,
        num_blocks=1,
        nhead=2,
        d_ffn=32,
        lin_neurons=EMB,
    )
    dst = MFAConformer(
        input_size=20,
        d_model=16,
        num_blocks=1,
        nhead=2,
        d_ffn=32,
        lin_neurons=EMB,
    )
    ckpt = tmp_path / "CKPT+x"
    ckpt.mkdir()
    torch.save(src.state_dict(), ckpt / "embedding_model.ckpt")
    assert load_pretrained_frontend(dst, str(ckpt)).endswith(
        "embedding_model.ckpt"
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(src.state_dict().values(), dst.state_dict().values())
    )
    # An export of the CLUB recipe (front-end inside the wrapper) works too.
    torch.save(
        {f"frontend.{k}": v for k, v in src.state_dict().items()}
        | {"decoupling.x": torch.zeros(1)},
        tmp_path / "wrapped.ckpt",
    )
    load_pretrained_frontend(dst, str(tmp_path / "wrapped.ckpt"))
    other = MFAConformer(
        input_size=20,
        d_model=8,
        num_blocks=1,
        nhead=2,
        d_ffn=32,
        lin_neurons=EMB,
    )
    with pytest.raises(HparamsError, match="pretrained_frontend"):
        load_pretrained_frontend(other, str(ckpt))


def _state(brain, sampler):
    out = {}
    for k in (*MAIN, *ESTIMATORS):
        for name, t in brain.modules[k].state_dict().items():
            out[f"{k}.{name}"] = t.clone()
    opts = {"main": brain.optimizer, **brain.estimator_optimizers}
    for name, opt in opts.items():
        for pid, st in opt.state_dict()["state"].items():
            for key, t in st.items():
                out[f"opt.{name}.{pid}.{key}"] = torch.as_tensor(t).clone()
    out["sampler"] = sampler.state_dict()
    out["steps"] = (brain.optimizer_step, brain.hparams.epoch_counter.current)
    return out


def _fit(brain, ds, sampler):
    brain.train_sampler = sampler
    brain.checkpointer.add_recoverable("train_sampler", sampler)
    brain.fit(
        brain.hparams.epoch_counter,
        ds,
        ds,
        progressbar=False,
        train_loader_kwargs={"batch_sampler": sampler},
        valid_loader_kwargs={"batch_size": 8},
    )


def test_checkpoint_resume_replays_the_run(tmp_path):
    ds = make_dataset()
    # A: two epochs straight (a checkpoint after each).
    a_sampler = make_sampler()
    a = make_brain(tmp_path, epochs=2, save="save_a")
    _fit(a, ds, a_sampler)
    state_a = _state(a, a_sampler)
    ckpts = sorted(
        (
            p
            for p in (tmp_path / "save_a").iterdir()
            if p.name.startswith("CKPT+")
        ),
        key=lambda p: p.stat().st_mtime,
    )
    assert len(ckpts) == 2
    names = {p.name for p in ckpts[0].iterdir()}
    for key in (
        "optimizer",
        *(f"optimizer_{k}" for k in ESTIMATORS),
        "train_sampler",
        "brain",
    ):
        assert f"{key}.ckpt" in names, key

    # B: other initial weights, resumed from A's first checkpoint, trains
    # epoch 2 and must end exactly where A ended.
    (tmp_path / "save_b").mkdir()
    shutil.copytree(ckpts[0], tmp_path / "save_b" / ckpts[0].name)
    b_sampler = make_sampler()
    b = make_brain(tmp_path, epochs=2, seed=99, save="save_b")
    _fit(b, ds, b_sampler)
    state_b = _state(b, b_sampler)
    assert state_a.keys() == state_b.keys()
    for key, value in state_a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, state_b[key]), key
        else:
            assert value == state_b[key], key
    assert state_b["sampler"]["epoch"] == 2
    log = pathlib.Path(tmp_path / "save_a_log.txt").read_text()
    for name in (
        "cls_s_ap",
        "cls_d",
        "mi_s_d_bound_fitted",
        "mi_d_ys_bound_fitted",
        "mi_s_yd_bound_fitted",
        "nll_club_s_d",
        "DeviceErrorRate",
        "bn_w_device_head",
        "bn_w_speaker_head",
    ):
        assert name in log, name
