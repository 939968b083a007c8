"""Pseudo-label pipeline: pseudo-labelled manifests, stage skip/resume,
the i-vector options and the clustering method of the yamls, the clustering
Brain (blobs, exact resume, low-memory backward) and the margin loss of the
stage-3 Brain."""

import csv
import functools
import importlib.util
import json
import os
import time

import numpy as np
import pytest
import speechbrain as sb
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_ssv.brains.clustering import (
    REQUIRED_HPARAMS,
    ClusteringBrain,
    clustering_dataset,
    vat_radii,
)
from speechbrain_ssv.brains.pseudolabel import PseudoLabelBrain
from speechbrain_ssv.clustering import representations as reps_module
from speechbrain_ssv.clustering.baselines import cluster
from speechbrain_ssv.clustering.metrics import cluster_accuracy
from speechbrain_ssv.clustering.pseudolabels import (
    oracle_labels,
    write_pseudolabel_csv,
)
from speechbrain_ssv.clustering.representations import extract_representations
from speechbrain_ssv.data.pipelines import make_supervised_datasets
from speechbrain_ssv.lobes.clustering import ClusteringMLP, RunningMarginal
from speechbrain_ssv.lobes.margins import AAMSoftmax, AdaFace, OCSoftmax
from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer
from speechbrain_ssv.utils.errors import (
    HparamsError,
    ManifestError,
)
from speechbrain_ssv.utils.hparams import load_hparams
from speechbrain_ssv.utils.io import write_wav
from speechbrain_ssv.utils.schedulers import EpochDecayScheduler
from speechbrain_ssv.utils.stages import begin_stage, finish_stage

HEADER = "ID,duration,wav,start,stop,spk_id,session,gender\n"
RECIPE = os.path.join(
    os.path.dirname(__file__), "..", "..", "recipes", "VoxCeleb", "PseudoLabel"
)


def _recipe():
    """The pseudo-label recipe's train.py as a module (its stage functions)."""
    spec = importlib.util.spec_from_file_location(
        "pseudolabel_train", os.path.join(RECIPE, "train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE_MODULE = _recipe()
_SCALING = {"l2_normalize": True, "standardize": False, "center": False}


def _method(name):
    """What the yaml's ``clustering_method`` holds for ``name``."""
    if name == "ours":
        return ClusteringBrain
    if name == "oracle":
        return oracle_labels
    return functools.partial(cluster, method=name)


def pseudo_label_stage(method, *args, **kwargs):
    """The recipe's stage 2 with the method ``method`` names."""
    return RECIPE_MODULE.pseudo_label_stage(
        _method(method), *args, seed=0, **_SCALING, **kwargs
    )


def cluster_representations(method, x, n, seed=0, true_labels=None,
                            clustering_hparams=None, **kwargs):  # fmt: skip
    """The recipe's dispatcher with the minivox yaml's clustering settings
    (``clustering_hparams`` changes some) and its optimizer."""
    hp = None
    if method == "ours":
        hp = dict(_minivox_clustering(), **(clustering_hparams or {}))
        kwargs.setdefault("opt_class", functools.partial(
            torch.optim.SGD, lr=hp["lr_annealing"].lr, momentum=0.9))  # fmt: skip
    return RECIPE_MODULE.cluster_representations(
        _method(method), x, n, seed=seed, true=true_labels,
        clustering_hparams=hp, **_SCALING, **kwargs,
    )  # fmt: skip


def _yaml(name="pseudolabel_minivox.yaml"):
    """One of the recipe's yamls, loaded."""
    with open(os.path.join(RECIPE, "hparams", name)) as f:
        return load_hyperpyyaml(f, {"data_folder": "unused"})


def _minivox_clustering():
    """The minivox yaml's clustering_hparams, without its warm start and
    its train log (under the recipe's results folder)."""
    return dict(
        _yaml()["clustering_hparams"], warm_start=None, train_logger=None
    )


def _decay(lr):
    """The yamls' clustering schedule (x0.996 per epoch) from ``lr``."""
    return EpochDecayScheduler(lr, 0.996, steps_per_epoch=None)


def _manifest(folder, name, n, n_spk=3, wav_len=16000):
    rows, ids = [HEADER], []
    for i in range(n):
        wav = os.path.join(folder, f"{name}{i}.wav")
        if not os.path.isfile(wav):
            write_wav(
                wav, 0.1 * np.sin(np.arange(wav_len) * (0.05 + 0.01 * i)), 16000
            )
        utt = f"id{i % n_spk}/s{i}/{name}{i}"
        ids.append(utt)
        rows.append(f"{utt},1.0,{wav},0,{wav_len},id{i % n_spk},s{i},m\n")
    path = os.path.join(folder, f"{name}.csv")
    with open(path, "w") as f:
        f.writelines(rows)
    return path, ids


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------
# Pseudo-labelled manifests: stage 3 sees pseudo-labels, never true ones
# ---------------------------------------------------------------------------


def test_pseudolabel_csv_replaces_labels_and_stage3_reads_them(tmp_path):
    train, ids = _manifest(tmp_path, "t", 6)
    labels = [4, 4, 1, 1, 0, 0]
    out = write_pseudolabel_csv(train, ids, labels, tmp_path / "pl.csv")
    assert out == {"rows": 6, "dropped": 0, "labels": {0, 1, 4}}
    rows = _rows(tmp_path / "pl.csv")
    assert list(rows[0]) == ["ID", "duration", "wav", "start", "stop", "spk_id"]
    assert [r["spk_id"] for r in rows] == [f"pl_{k:05d}" for k in labels]
    text = open(tmp_path / "pl.csv").read()
    assert "id0" not in text.replace("id0/", "")  # no true-label column

    # Stage 3's pipeline reads spk_id: the classes are the pseudo-labels.
    train_ds, _, enc = make_supervised_datasets(
        tmp_path / "pl.csv", tmp_path / "pl.csv", 0.5, str(tmp_path / "enc.txt")
    )
    assert set(enc.lab2ind) == {"pl_00000", "pl_00001", "pl_00004"}
    first = train_ds[0]["spk_id_encoded"]
    assert enc.decode_torch(first) == ["pl_00004"]


def test_pseudolabel_csv_drops_unknown_and_reports_missing(tmp_path):
    train, ids = _manifest(tmp_path, "t", 4)
    out = write_pseudolabel_csv(
        train, ids, [0, 1, 2, 1], tmp_path / "dev.csv", known_labels={1}
    )
    assert out["rows"] == 2 and out["dropped"] == 2
    assert {r["spk_id"] for r in _rows(tmp_path / "dev.csv")} == {"pl_00001"}
    with pytest.raises(ManifestError, match="have no pseudo-label"):
        write_pseudolabel_csv(train, ids[:3], [0, 1, 2], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="one label per id"):
        write_pseudolabel_csv(train, ids, [0, 1], tmp_path / "x.csv")


def _fake_representations(folder, ids, feats):
    opts = {"fake": True, "n": len(ids)}
    begin_stage(folder, opts)
    np.save(os.path.join(folder, "features.npy"), feats.astype(np.float32))
    with open(os.path.join(folder, "ids.txt"), "w") as f:
        f.writelines(f"{i}\n" for i in ids)
    rec = finish_stage(folder, opts, ["features.npy", "ids.txt"])
    return {
        "ids": ids,
        "features": feats,
        "aug_features": None,
        "folder": str(folder),
        "digest": rec["digest"],
    }


def test_pseudo_label_stage_writes_report_and_skips(tmp_path):
    train, train_ids = _manifest(tmp_path, "t", 9)
    dev, dev_ids = _manifest(tmp_path, "d", 3)
    ids = train_ids + dev_ids
    spk = [int(i[2]) for i in ids]
    rng = np.random.default_rng(0)
    feats = np.eye(3)[spk] * 5 + 0.1 * rng.standard_normal((len(ids), 3))
    reps = _fake_representations(tmp_path / "reps", ids, feats)
    out_dir = tmp_path / "clu"
    manifests = {"train": train, "dev": dev}
    out = pseudo_label_stage("kmeans", reps, manifests, out_dir, 3)
    assert out["report"]["acc"] == 1.0 and out["n_labels"] == 3
    assert os.path.isfile(out_dir / "report.md")
    pl = _rows(out["csv"]["train"])
    assert len(pl) == 9 and all(r["spk_id"].startswith("pl_") for r in pl)
    assert len(_rows(out["csv"]["dev"])) == 3
    stamp = os.stat(out_dir / "labels.npy").st_mtime_ns
    time.sleep(0.01)
    again = pseudo_label_stage("kmeans", reps, manifests, out_dir, 3)
    assert os.stat(out_dir / "labels.npy").st_mtime_ns == stamp  # skipped
    assert again["digest"] == out["digest"]
    other = pseudo_label_stage("kmeans", reps, manifests, out_dir, 2)
    assert other["n_labels"] == 2 and other["digest"] != out["digest"]


def test_oracle_stage_uses_the_true_speakers(tmp_path):
    train, train_ids = _manifest(tmp_path, "t", 9)
    dev, dev_ids = _manifest(tmp_path, "d", 3)
    ids = train_ids + dev_ids
    # Features carry no speaker information: the labels must still be exact
    feats = np.random.default_rng(0).standard_normal((len(ids), 3))
    reps = _fake_representations(tmp_path / "reps", ids, feats)
    manifests = {"train": train, "dev": dev}
    out = pseudo_label_stage(
        "oracle", reps, manifests, tmp_path / "clu", 3, metrics=False
    )
    assert out["report"]["acc"] == 1.0 and out["n_labels"] == 3
    true = {r["ID"]: r["spk_id"] for r in _rows(train)}
    pl = {r["ID"]: r["spk_id"] for r in _rows(out["csv"]["train"])}
    pairs = {(true[i], pl[i]) for i in true}
    assert len(pairs) == 3 and all(p.startswith("pl_") for _, p in pairs)
    with pytest.raises(HparamsError, match="spk_id"):
        cluster_representations("oracle", feats, 3)


def test_extract_ivectors_stage(tmp_path):
    train, ids = _manifest(tmp_path, "t", 6, wav_len=8000)
    opts = dict(_yaml()["ivector_options"], n_mfcc=4, n_mels=10,
                n_components=2, rank=3, ubm_iter=1, split_iter=1, tv_iter=1,
                stats_batch_size=4, shard_size=4)  # fmt: skip
    folder = tmp_path / "reps"
    reps = extract_representations(
        "ivector", [train], folder, ivector_options=opts
    )
    assert reps["features"].shape == (6, 3) and reps["ids"] == ids
    assert np.isfinite(reps["features"]).all()
    assert sorted(os.listdir(folder / "shards_clean")) == [
        "shard_00000.pt",
        "shard_00001.pt",
    ]
    stamp = os.stat(folder / "features.npy").st_mtime_ns
    extract_representations("ivector", [train], folder, ivector_options=opts)
    assert os.stat(folder / "features.npy").st_mtime_ns == stamp
    # Another experiment's copy of the same manifest shares the folder.
    (tmp_path / "other").mkdir()
    copy = tmp_path / "other" / "train.csv"
    copy.write_bytes(open(train, "rb").read())
    extract_representations("ivector", [copy], folder, ivector_options=opts)
    assert os.stat(folder / "features.npy").st_mtime_ns == stamp

    # A second view from augmented audio, for the augmentation-based terms.
    def augment(sig, lens):
        return sig + 0.01 * torch.randn_like(sig), lens

    aug = extract_representations(
        "ivector",
        [train],
        tmp_path / "reps_aug",
        ivector_options=opts,
        augment=augment,
    )
    assert aug["aug_features"].shape == (6, 3)
    assert not np.allclose(aug["aug_features"], aug["features"])
    with pytest.raises(HparamsError, match="encoder_source"):
        extract_representations("encoder", [train], folder)


def test_ivector_options_come_from_the_yaml(tmp_path):
    """No code defaults: both yamls list every i-vector option, and a
    missing or unknown one is one error naming it."""
    assert not hasattr(reps_module, "IVECTOR_DEFAULTS")
    for name in ("pseudolabel.yaml", "pseudolabel_minivox.yaml"):
        options = _yaml(name)["ivector_options"]
        assert list(options) == list(reps_module.IVECTOR_OPTIONS), name
    train, _ = _manifest(tmp_path, "t", 2, wav_len=8000)
    folder = tmp_path / "reps"
    full = _yaml()["ivector_options"]
    lacking = {k: v for k, v in full.items() if k != "var_floor"}
    with pytest.raises(HparamsError, match="missing \\['var_floor'\\]"):
        extract_representations(
            "ivector", [train], folder, ivector_options=lacking
        )
    with pytest.raises(
        HparamsError, match="ivector_options: .*unknown \\['rnak'\\]"
    ):
        extract_representations(
            "ivector", [train], folder, ivector_options=dict(full, rnak=3)
        )
    with pytest.raises(HparamsError, match="missing \\['n_mfcc'"):
        extract_representations("ivector", [train], folder)
    assert not os.path.exists(folder / "features.npy")


# ---------------------------------------------------------------------------
# ClusteringBrain
# ---------------------------------------------------------------------------


def _blobs(k=8, dim=16, per=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(k, dim, generator=g)
    y = torch.arange(k).repeat_interleave(per)
    x = centres[y] + torch.randn(k * per, dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1), y


def _brain_settings():
    """ClusteringBrain's own settings as the minivox yaml sets them."""
    hp = _minivox_clustering()
    out = {k: hp[k] for k in REQUIRED_HPARAMS if k in hp}
    return dict(out, seed=0, history_file=None, plot_file=None)


def _brain(x, y, epochs, ckpt_dir=None, k=8, hidden=64, **hp):
    torch.manual_seed(0)
    model = ClusteringMLP(x.shape[1], k, hidden)
    marginal = RunningMarginal(k, RunningMarginal.momentum_for(k, 80))
    counter = EpochCounter(epochs)
    ckpt = None
    if ckpt_dir is not None:
        ckpt = AtomicCheckpointer(
            ckpt_dir, {"model": model, "marginal": marginal, "counter": counter}
        )
    return ClusteringBrain(
        modules={"model": model, "marginal": marginal},
        opt_class=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        hparams={
            **_brain_settings(),
            "epoch_counter": counter,
            "lr_annealing": _decay(0.1),
            "vat_xi": 1e-2,
            **hp,
        },  # fmt: skip
        run_opts={"noprogressbar": True, "device": "cpu"},
        checkpointer=ckpt,
        eval_features=x,
        true_labels=None if y is None else y.numpy(),
    )


def _fit(brain, x):
    brain.fit(
        brain.hparams.epoch_counter,
        clustering_dataset(x, vat_radii(x)),
        train_loader_kwargs={
            "batch_size": 80,
            "shuffle": True,
            "drop_last": True,
        },
    )


def test_clustering_brain_separates_blobs(tmp_path):
    x, y = _blobs()
    start = time.time()
    brain = _brain(x, y, epochs=6, history_file=str(tmp_path / "h.json"),
                   plot_file=str(tmp_path / "fig3.png"))  # fmt: skip
    _fit(brain, x)
    assert time.time() - start < 30
    # Since mixup shares the clean forward's BatchNorm statistics, 3 of 4
    # blob seeds end with 7 of the 8 blobs found (ACC 0.87) from random
    # weights; the k-means warm start finds all (test below).
    assert brain.history[-1]["acc"] > 0.85, brain.history
    hist = json.load(open(tmp_path / "h.json"))
    assert [h["epoch"] for h in hist] == list(range(1, 7))
    assert os.path.getsize(tmp_path / "fig3.png") > 0
    # The lr of the last epoch follows the per-epoch decay: the former
    # lr * lr_decay ** (epoch - 1), exactly.
    assert brain.optimizer.param_groups[0]["lr"] == 0.1 * 0.996 ** (6 - 1)


def _state(brain):
    out = {
        f"model.{k}": v.clone()
        for k, v in brain.modules.model.state_dict().items()
    }
    out.update(
        {
            f"marginal.{k}": v.clone()
            for k, v in brain.modules.marginal.state_dict().items()
        }
    )
    for i, s in enumerate(brain.optimizer.state.values()):
        out[f"opt{i}"] = s["momentum_buffer"].clone()
    return out


def test_clustering_brain_resumes_exactly(tmp_path):
    x, y = _blobs(per=40)
    straight = _brain(x, y, epochs=4)
    _fit(straight, x)

    first = _brain(x, y, epochs=2, ckpt_dir=tmp_path / "ckpt")
    _fit(first, x)
    resumed = _brain(x, y, epochs=4, ckpt_dir=tmp_path / "ckpt")
    resumed.checkpointer.recover_if_possible()
    # The checkpoint restores what was saved, bit for bit.
    for k, v in first.modules.model.state_dict().items():
        assert torch.equal(v, resumed.modules.model.state_dict()[k]), k
    assert torch.equal(
        first.modules.marginal.accumulator, resumed.modules.marginal.accumulator
    )
    assert resumed.hparams.epoch_counter.current == 2
    _fit(resumed, x)
    assert resumed.optimizer_step == straight.optimizer_step
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert [h["acc"] for h in resumed.history] == pytest.approx(
        [h["acc"] for h in straight.history[2:]]
    )


def test_true_labels_never_reach_the_training():
    x, y = _blobs(per=20)
    runs = []
    for labels in (y, None, torch.randint(0, 8, y.shape)):
        brain = _brain(x, labels, epochs=2)
        _fit(brain, x)
        runs.append(brain.modules.model.state_dict())
    for other in runs[1:]:
        assert all(torch.equal(v, other[k]) for k, v in runs[0].items())


def test_marginal_update_makes_no_collective_call_under_torchrun(monkeypatch):
    # Under torchrun the recipe trains the clustering on the main process
    # only: an all-reduce there would wait forever for the other ranks.
    x, _ = _blobs(per=5)
    brain = _brain(x, None, epochs=1)
    probs = torch.softmax(torch.randn(6, 8), dim=1)
    expected = RunningMarginal(8, brain.modules.marginal.momentum).update(probs)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: 2)

    def no_collective(*args, **kwargs):
        raise AssertionError("collective call from the main-process-only Brain")

    monkeypatch.setattr(torch.distributed, "all_reduce", no_collective)
    assert torch.allclose(brain._update_marginal(probs), expected)
    assert brain.distributed_launch is False


def test_separate_backward_gives_the_same_update():
    x, y = _blobs(per=10)
    ds = clustering_dataset(x, vat_radii(x))
    batch = ds[:]
    grads = []
    for separate in (True, False):
        brain = _brain(x, None, epochs=1, separate_backward=separate)
        brain.init_optimizers()
        brain.modules.train()
        loss = brain.compute_objectives(
            brain.compute_forward(batch, sb.Stage.TRAIN), batch, sb.Stage.TRAIN
        )
        loss.backward()
        grads.append(
            (
                float(loss.detach()),
                [p.grad.clone() for p in brain.modules.model.parameters()],
            )
        )
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for g1, g2 in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(g1, g2, atol=1e-6)


def test_mixup_shares_batch_statistics():
    # L_Mixup's target and prediction must see the same BatchNorm
    # statistics: one train-mode forward of cat([x, x_mix]) whose clean
    # half gives the (detached) target. Two forwards (clean, then mixed
    # with frozen statistics) normalise each half with its own batch's
    # statistics, so target and prediction disagree even for a model that
    # is linear in x.
    x, _ = _blobs(per=10)
    batch = clustering_dataset(x, 0.1)[:]
    brain = _brain(x, None, epochs=1, imsat_weight=0.0, supcon_weight=0.0)
    brain.init_optimizers()
    brain.modules.train()
    model = brain.modules.model
    bn = model.hidden[1]
    calls = []
    hook = bn.register_forward_hook(
        lambda m, inp, out: calls.append(
            (inp[0].detach().clone(), m.training, m.track_running_stats)
        )
    )
    ref = ClusteringMLP(x.shape[1], 8, 64)
    ref.load_state_dict(model.state_dict())
    pred = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(pred, batch, sb.Stage.TRAIN)
    hook.remove()
    n = x.shape[0]
    assert [(c[0].shape[0], c[1], c[2]) for c in calls] == [(2 * n, True, True)]
    joint = calls[0][0]
    # The clean rows come first, normalised together with the mixed rows,
    # and the running statistics are those of the joint batch.
    assert torch.allclose(joint[:n], model.hidden[0](x), atol=1e-6)
    assert torch.allclose(bn.running_mean, 0.1 * joint.mean(0), atol=1e-6)
    # The loss is the KL between the mix of the clean half's logits and
    # the mixed half's logits of that one forward.
    out = ref(torch.cat([x, pred["x_mix"]]))
    lam, partner = pred["mix_lam"].reshape(-1, 1), pred["mix_partner"]
    target = F.log_softmax(lam * out[:n] + (1 - lam) * out[:n][partner], 1)
    log_q = F.log_softmax(out[n:], 1)
    expected = (target.exp() * (target - log_q)).sum(1).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss) > 0


def test_final_assignment_is_shared_with_the_last_report(monkeypatch):
    # At a million points each assignment pass costs minutes: the labels
    # the caller asks for after fit() come from the last epoch's report.
    x, _ = _blobs(per=10)
    brain = _brain(x, None, epochs=1)
    model = brain.modules.model
    calls = []
    real = model.predict
    monkeypatch.setattr(
        model, "predict", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    _fit(brain, x)
    assert len(calls) == 1 and brain.history[-1]["clusters_used"] >= 1
    labels = brain.predict()
    assert len(calls) == 1
    assert int(labels.unique().numel()) == brain.history[-1]["clusters_used"]
    labels[:] = -1  # the caller's copy: the cached one is unchanged
    assert int(brain.predict().min()) >= 0 and len(calls) == 1
    # Other features, or weights changed by a step: a new pass.
    brain.predict(x[:5])
    assert len(calls) == 2
    brain.optimizer_step += 1
    assert torch.equal(brain.predict(), real(x))
    assert len(calls) == 3


def test_low_rank_supcon_gives_the_same_update():
    # More clusters than hidden units + 1: SupCon goes through the output
    # layer's Gram; the loss and every gradient must be the direct ones.
    x, _ = _blobs(per=10)
    ds = clustering_dataset(x, vat_radii(x))
    batch = ds[:]
    runs = []
    for low_rank in (True, False):
        brain = _brain(x, None, epochs=1, k=40, hidden=12,
                       supcon_low_rank=low_rank)  # fmt: skip
        brain.init_optimizers()
        brain.modules.train()
        pred = brain.compute_forward(batch, sb.Stage.TRAIN)
        assert (pred["hidden"] is not None) == low_rank
        loss = brain.compute_objectives(pred, batch, sb.Stage.TRAIN)
        loss.backward()
        params = brain.modules.model.parameters()
        runs.append((brain._term_sums["supcon"], [p.grad for p in params]))
    assert runs[0][0] > 0
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    for g1, g2 in zip(runs[0][1], runs[1][1]):
        assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-6)


def test_ablation_terms_run_and_are_logged():
    x, y = _blobs(per=10)
    brain = _brain(x, None, epochs=1, vicreg_weight=1.0, infonce_weight=1.0,
                   aug_weight=1.0, supcon_max_samples=16)  # fmt: skip
    aug = torch.nn.functional.normalize(x + 0.05 * torch.randn_like(x), dim=1)
    brain.fit(
        brain.hparams.epoch_counter,
        clustering_dataset(x, 0.1, aug),
        train_loader_kwargs={"batch_size": 40, "shuffle": True},
    )
    assert {
        "imsat",
        "vat",
        "mixup",
        "supcon",
        "vicreg",
        "infonce",
        "aug",
    } <= set(brain._term_sums)
    # A row of Table 1 with a single term that has its own forward pass.
    alone = _brain(x, None, epochs=1, imsat_weight=0.0, supcon_weight=0.0)
    before = [p.clone() for p in alone.modules.model.parameters()]
    _fit(alone, x)
    assert set(alone._term_sums) == {"mixup", "batch_clusters"}
    assert any(
        not torch.equal(a, b)
        for a, b in zip(before, alone.modules.model.parameters())
    )


def test_vat_radii_subset_estimate():
    x, _ = _blobs(per=100)
    exact = vat_radii(x, k=10)
    approx = vat_radii(x, k=10, reference_size=400)
    assert (approx > 0).all()  # reference points skip themselves
    ratio = float(approx.median() / exact.median())
    assert 0.5 < ratio < 2.0


def test_kmeans_warm_start_starts_from_the_kmeans_clustering():
    x, y = _blobs()
    kmeans = cluster_representations("kmeans", x.numpy(), 8, seed=0)
    acc = {}
    for warm in (None, {"method": "kmeans", "epochs": 10, "lr": 0.1}):
        hp = {"number_of_epochs": 2, "batch_size": 80, "lr_annealing": _decay(0.1),
              "vat_xi": 0.01, "eval_every": 2}  # fmt: skip
        if warm:
            hp["warm_start"] = warm
        torch.manual_seed(0)
        out = cluster_representations(
            "ours", x.numpy(), 8, true_labels=y.numpy(),
            model_factory=functools.partial(ClusteringMLP, hidden_size=64),
            clustering_hparams=hp,
        )  # fmt: skip
        acc[bool(warm)] = out["history"][-1]["acc"]
    kacc = cluster_accuracy(y.numpy(), kmeans["labels"])
    assert acc[True] >= kacc and acc[True] > acc[False], (acc, kacc)


def test_clustering_model_trains_under_bf16_autocast():
    """The recipe's --precision reaches the clustering model: its forwards
    run in bf16 (CPU autocast here), the loss stays float32, and the
    clustering matches the float32 run's quality."""
    x, y = _blobs()
    seen, acc, losses = [], {}, []

    class Logger:
        def log_stats(self, stats_meta, train_stats=None, **kwargs):
            losses.append(train_stats["loss"])

    class Recording(ClusteringMLP):
        def forward(self, inputs, return_hidden=False):
            out = super().forward(inputs, return_hidden)
            seen.append((out[0] if return_hidden else out).dtype)
            return out

    for precision in ("fp32", "bf16"):
        seen.clear()
        torch.manual_seed(0)
        out = cluster_representations(
            "ours", x.numpy(), 8, true_labels=y.numpy(), precision=precision,
            model_factory=functools.partial(Recording, hidden_size=64),
            train_logger=Logger(),
            clustering_hparams={"number_of_epochs": 4, "batch_size": 80,
                                "lr_annealing": _decay(0.1), "vat_xi": 0.01,
                                "eval_every": 4},
        )  # fmt: skip
        assert len(losses) == 4 and np.isfinite(losses[-1]), losses
        losses.clear()
        acc[precision] = out["history"][-1]["acc"]
        dtypes = set(seen)
        expected = torch.bfloat16 if precision == "bf16" else torch.float32
        assert expected in dtypes, (precision, dtypes)
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.1, acc


def test_cluster_representations_ours_and_errors(tmp_path):
    x, y = _blobs(k=4, per=40)
    out = cluster_representations(
        "ours", x.numpy(), 4, work_dir=tmp_path, true_labels=y.numpy(),
        model_factory=functools.partial(ClusteringMLP, hidden_size=32),
        clustering_hparams={"number_of_epochs": 6, "batch_size": 40,
                            "lr_annealing": _decay(0.1),
                            "vat_xi": 0.01},
    )  # fmt: skip
    assert out["labels"].shape == (160,) and len(out["history"]) == 6
    assert os.path.isfile(tmp_path / "history.json")
    with pytest.raises(HparamsError, match="clustering_method"):
        cluster_representations("kmeanz", x.numpy(), 4)
    # A name (the yamls' former string switch) is one error naming the key.
    with pytest.raises(HparamsError, match="clustering_method: is 'kmeans'"):
        RECIPE_MODULE.cluster_representations(
            "kmeans", x.numpy(), 4, seed=0, **_SCALING
        )
    with pytest.raises(HparamsError, match="unknown \\['epochs'\\]"):
        cluster_representations(
            "ours", x.numpy(), 4, clustering_hparams={"epochs": 3}
        )
    # No code defaults: every setting comes from the yaml, vat_xi included.
    hp = _minivox_clustering()
    del hp["vat_xi"]
    with pytest.raises(HparamsError, match="missing \\['vat_xi'\\]"):
        RECIPE_MODULE.cluster_representations(
            ClusteringBrain, x.numpy(), 4, seed=0, clustering_hparams=hp,
            opt_class=torch.optim.SGD,
            model_factory=functools.partial(ClusteringMLP, hidden_size=8),
            **_SCALING,
        )  # fmt: skip


def test_clustering_method_is_a_yaml_object():
    """The yamls name the object that clusters; the recipe derives the
    stage's name (its folder, record and seed) from it."""
    name_of = RECIPE_MODULE.method_name
    for name in ("pseudolabel.yaml", "pseudolabel_minivox.yaml"):
        hp = _yaml(name)
        assert hp["clustering_method"] is ClusteringBrain, name
        assert "baseline_options" not in hp
    assert name_of(ClusteringBrain) == ("ours", {})
    assert name_of(oracle_labels) == ("oracle", {})
    # A baseline with its options, as the command-line overrides give it.
    hp = load_hparams(
        os.path.join(RECIPE, "hparams", "pseudolabel_minivox.yaml"),
        "{clustering_method: !ref <clustering_baseline>, clustering_baseline: "
        "!name:speechbrain_ssv.clustering.baselines.cluster {n_init: 2}}",
    )
    assert name_of(hp["clustering_method"]) == ("kmeans", {"n_init": 2})
    for wrong in ("ours", torch.nn.Linear, functools.partial(cluster)):
        with pytest.raises(HparamsError, match="^clustering_method: is "):
            name_of(wrong)


# ---------------------------------------------------------------------------
# PseudoLabelBrain: the yaml's margin loss
# ---------------------------------------------------------------------------


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, cosine, labels, feature_norms=None):
        self.calls.append((cosine.detach(), labels.detach(), feature_norms))
        return cosine.sum() * 0.0


def _pl_modules(loss):
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.processing.features import InputNormalization

    torch.manual_seed(0)
    modules = {
        "compute_features": Fbank(n_mels=8),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": ECAPA_TDNN(
            8, channels=[8, 8, 8, 8, 24], attention_channels=4, lin_neurons=6
        ),
        "classifier": Classifier(6, out_neurons=3),
    }
    if loss is not None:
        modules["margin_loss"] = loss
    return modules


def _pl_brain(loss):
    return PseudoLabelBrain(
        modules=_pl_modules(loss),
        opt_class=functools.partial(torch.optim.Adam, lr=1e-3),
        hparams={"wav_augment": None},
        run_opts={"noprogressbar": True, "device": "cpu"},
    )


def _batch():
    return PaddedBatch([
        {"id": f"u{i}", "sig": 0.1 * torch.randn(4000), "spk_id_encoded": torch.tensor([i % 3])}
        for i in range(4)
    ])  # fmt: skip


def test_margin_loss_is_one_yaml_object():
    """Each yaml builds, registers and checkpoints the one margin loss it
    trains with; the Brain calls that module."""
    for name in ("pseudolabel.yaml", "pseudolabel_minivox.yaml"):
        hp = _yaml(name)
        loss = hp["margin_loss"]
        assert type(loss) is AAMSoftmax, name
        assert hp["modules"]["margin_loss"] is loss
        assert hp["checkpointer"].recoverables["margin_loss"] is loss
        assert "margin_losses" not in hp
        assert "margin_losses" not in hp["checkpointer"].recoverables
    spy = _Recorder()
    brain = _pl_brain(spy)
    batch = _batch()
    brain.compute_objectives(
        brain.compute_forward(batch, sb.Stage.TRAIN), batch, sb.Stage.TRAIN
    )
    assert len(spy.calls) == 1


@pytest.mark.parametrize("cls", [AAMSoftmax, OCSoftmax, AdaFace])
def test_pseudolabel_brain_trains_with_each_margin_loss(cls):
    brain = _pl_brain(cls())
    brain.modules.train()
    batch = _batch()
    loss = brain.compute_objectives(
        brain.compute_forward(batch, sb.Stage.TRAIN), batch, sb.Stage.TRAIN
    )
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad


def test_adaface_receives_embedding_norms():
    spy = _Recorder()
    brain = _pl_brain(spy)
    brain.modules.train()
    batch = _batch()
    brain.compute_objectives(
        brain.compute_forward(batch, sb.Stage.TRAIN), batch, sb.Stage.TRAIN
    )
    _, labels, got = spy.calls[-1]
    with torch.no_grad():
        emb = brain.encode(batch.sig[0], batch.sig[1])
    assert torch.allclose(got, emb.norm(dim=-1), atol=1e-5)
    assert labels.reshape(-1).tolist() == [0, 1, 2, 0]
    # Not the norms of the normalised embeddings the classifier scores.
    assert not torch.allclose(got, torch.ones_like(got))

    ada = _pl_brain(AdaFace())
    ada.modules.train()
    before = float(ada.modules.margin_loss.running_mean)
    ada.compute_objectives(
        ada.compute_forward(batch, sb.Stage.TRAIN), batch, sb.Stage.TRAIN
    )
    assert float(ada.modules.margin_loss.running_mean) != before


def test_missing_margin_loss_or_wav_augment_names_the_key():
    with pytest.raises(HparamsError, match="modules: margin_loss: missing"):
        _pl_brain(None)
    with pytest.raises(HparamsError, match="^wav_augment: missing"):
        PseudoLabelBrain(modules=_pl_modules(AAMSoftmax()), hparams={})
