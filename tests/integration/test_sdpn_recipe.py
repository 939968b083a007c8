"""The SDPN recipe end to end on the tiny corpus (SDPN and DINO configs):
trains without labels, evaluates with the teacher, exports the teacher
encoder in a folder EncoderClassifier loads bit-identically."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

RECIPE = os.path.join(REPO, "recipes", "VoxCeleb", "SDPN")
TRAIN = os.path.join(RECIPE, "train.py")
pytestmark = pytest.mark.slow


def _run(corpus, out, config, *extra):
    cmd = [
        sys.executable, TRAIN, os.path.join(RECIPE, "hparams", config),
        "--data_folder", corpus, "--output_folder", str(out),
        "--batch_size", "8", "--steps_per_epoch", "6", "--number_of_epochs", "1",
        "--verify_every", "1", "--noprogressbar", "--num_workers", "0", *extra,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=REPO)
    subprocess.run(cmd, check=True, env=env, cwd=REPO, timeout=900)
    return out


@pytest.fixture(scope="module")
def sdpn_run(tiny_corpus, tmp_path_factory):
    return _run(
        tiny_corpus, tmp_path_factory.mktemp("sdpn"), "sdpn_minivox.yaml"
    )


def test_recipe_outputs(sdpn_run):
    for name in ("train_log.txt", "log.txt", "hyperparams.yaml", "results.json",
                 "save/train.csv", "verification/epoch1/metrics.json",
                 "verification/final/metrics.json", "pretrained/hyperparams.yaml",
                 "pretrained/embedding_model.ckpt"):  # fmt: skip
        assert os.path.isfile(os.path.join(sdpn_run, name)), name
    log = open(os.path.join(sdpn_run, "train_log.txt")).read()
    for stat in (
        "epoch: 1",
        "proto_perplexity",
        "teacher_entropy",
        "emb_std",
        "train EER",
        "koleo",
    ):
        assert stat in log, stat
    res = json.load(open(os.path.join(sdpn_run, "results.json")))
    assert (
        0.0 <= res["metrics"]["eer"] <= 1.0 and res["metrics"]["n_trials"] > 0
    )
    ckpts = [
        d
        for d in os.listdir(os.path.join(sdpn_run, "save"))
        if d.startswith("CKPT+")
    ]
    assert ckpts
    files = set(os.listdir(os.path.join(sdpn_run, "save", ckpts[0])))
    for rec in ("embedding_model", "projector", "teacher_embedding_model", "teacher_projector",
                "prototypes", "optimizer", "counter", "brain"):  # fmt: skip
        assert f"{rec}.ckpt" in files, rec


def test_export_is_the_teacher(sdpn_run, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    res = json.load(open(os.path.join(sdpn_run, "results.json")))
    model = EncoderClassifier.from_hparams(
        source=res["export_folder"], savedir=str(tmp_path)
    )
    ckpt = json.load(
        open(os.path.join(res["export_folder"], "export_info.json"))
    )["checkpoint"]
    teacher = torch.load(
        os.path.join(ckpt, "teacher_embedding_model.ckpt"), map_location="cpu"
    )
    student = torch.load(
        os.path.join(ckpt, "embedding_model.ckpt"), map_location="cpu"
    )
    loaded = model.mods.embedding_model.state_dict()
    assert loaded.keys() == teacher.keys()
    assert all(torch.equal(v, loaded[k]) for k, v in teacher.items())
    # The EMA teacher has drifted from the student: the export is not the student.
    assert not all(torch.equal(v, student[k]) for k, v in teacher.items())
    wav = torch.randn(1, 32000) * 0.1
    assert model.encode_batch(wav).shape[-1] == 192


def test_training_batches_hold_no_speaker_label(sdpn_run):
    from speechbrain.dataio.dataloader import make_dataloader

    from speechbrain_ssv.data.pipelines import make_multicrop_dataset

    train_csv = os.path.join(sdpn_run, "save", "train.csv")
    with open(train_csv) as f:
        header = f.readline().strip().split(",")
        speakers = {
            line.strip().split(",")[header.index("spk_id")] for line in f
        }
    ds = make_multicrop_dataset(train_csv, 3.0, 1.5, n_global=1, n_local=2)
    for row in ds.data.values():
        assert not {"spk_id", "gender", "session"} & set(row)
    n = 0
    for batch in make_dataloader(ds, batch_size=8):
        keys = batch._PaddedBatch__keys
        assert set(keys) == {"id", "global0", "local0", "local1"}
        for key in ("global0", "local0", "local1"):
            assert getattr(batch, key).data.dtype == torch.float32
        # Only the utterance ids are strings; none is a bare speaker id.
        assert not set(batch.id) & speakers
        n += 1
    assert n > 0


def test_dino_config_runs(tiny_corpus, tmp_path):
    out = _run(
        tiny_corpus,
        tmp_path / "dino",
        "dino_minivox.yaml",
        "--export_folder",
        "",
    )
    log = open(os.path.join(out, "train_log.txt")).read()
    assert "teacher_temp" in log and "proto_perplexity" in log
    res = json.load(open(os.path.join(out, "results.json")))
    assert "export_folder" not in res and res["optimizer_steps"] > 0
