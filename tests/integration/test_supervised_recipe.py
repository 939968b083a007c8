"""The supervised recipe end to end on the tiny corpus: trains, evaluates,
exports a folder EncoderClassifier loads, and resumes after a kill."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.conftest import REPO

TRAIN = os.path.join(REPO, "recipes", "VoxCeleb", "Supervised", "train.py")
HPARAMS = os.path.join(
    REPO, "recipes", "VoxCeleb", "Supervised", "hparams", "ecapa_minivox.yaml"
)
pytestmark = pytest.mark.slow


def _cmd(corpus, out, *extra):
    return [
        sys.executable,
        TRAIN,
        HPARAMS,
        "--data_folder",
        corpus,
        "--output_folder",
        str(out),
        "--batch_size",
        "8",
        "--steps_per_epoch",
        "6",
        "--sentence_len",
        "1.5",
        "--noprogressbar",
        "--num_workers",
        "0",
        *extra,
    ]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=REPO)
    return env


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("supervised")
    proc = subprocess.run(
        _cmd(
            tiny_corpus, out, "--number_of_epochs", "2", "--verify_every", "1"
        ),
        env=_env(),
        cwd=REPO,
        timeout=900,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # --noprogressbar silences the preparation's and the verification's
    # bars too, not only SpeechBrain's.
    for bar in ("Reading audio headers", "embeddings"):
        assert not re.search(bar + r".*\d+%\|", proc.stderr), bar
    return out


def test_recipe_outputs(trained):
    for name in (
        "train_log.txt",
        "log.txt",
        "hyperparams.yaml",
        "env.log",
        "results.json",
        "save/train.csv",
        "save/label_encoder.txt",
        "save/veri_test2.txt",
        "verification/final/scores.txt",
        "verification/final/det.png",
        "verification/final/metrics.json",
        "verification/epoch1/metrics.json",
    ):
        assert os.path.isfile(os.path.join(trained, name)), name
    # The experiment keeps the recipe script, as a SpeechBrain recipe does,
    # not the glue module that created the folder.
    with open(os.path.join(trained, "train.py")) as f, open(TRAIN) as g:
        assert f.read() == g.read()
    assert not os.path.exists(os.path.join(trained, "recipe_utils.py"))
    log = open(os.path.join(trained, "train_log.txt")).read()
    assert "epoch: 2" in log and "valid EER" in log
    res = json.load(open(os.path.join(trained, "results.json")))
    assert 0.0 <= res["metrics"]["eer"] <= 1.0
    assert res["metrics"]["n_trials"] > 0


def test_export_loads_and_verifies(trained, tmp_path):
    from speechbrain.inference.speaker import SpeakerRecognition

    res = json.load(open(os.path.join(trained, "results.json")))
    model = SpeakerRecognition.from_hparams(
        source=res["export_folder"], savedir=str(tmp_path)
    )
    ckpt = json.load(
        open(os.path.join(res["export_folder"], "export_info.json"))
    )["checkpoint"]
    saved = torch.load(
        os.path.join(ckpt, "embedding_model.ckpt"), map_location="cpu"
    )
    loaded = model.mods.embedding_model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in saved.items())
    test_csv = os.path.join(trained, "save", "test.csv")
    first = open(test_csv).read().splitlines()[1].split(",")[2]
    score, _ = model.verify_files(first, first)
    assert score.item() == pytest.approx(1.0, abs=1e-4)


def test_unknown_hparams_key_fails_clearly(tiny_corpus, tmp_path):
    proc = subprocess.run(
        _cmd(tiny_corpus, tmp_path / "o", "--bacth_size", "4"),
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "error: " in proc.stderr
    assert "unknown hparams key 'bacth_size'" in proc.stderr
    # One line, not a traceback.
    assert "Traceback" not in proc.stderr + proc.stdout


def _intra_epoch_ckpt(save):
    if not os.path.isdir(save):
        return None
    for d in sorted(os.listdir(save)):
        meta = os.path.join(save, d, "CKPT.yaml")
        if d.startswith("CKPT+") and os.path.isfile(meta):
            with open(meta) as f:
                if not yaml.safe_load(f).get("end-of-epoch", True):
                    return d
    return None


def test_kill_mid_epoch_then_resume(tiny_corpus, tmp_path):
    out = tmp_path / "resume"
    cmd = _cmd(
        tiny_corpus,
        out,
        "--number_of_epochs",
        "1",
        "--warmup_epochs",
        "0",
        "--verify_every",
        "0",
        "--ckpt_interval_minutes",
        "0",
        "--ckpt_interval_steps",
        "2",
        "--export_folder",
        "",
    )
    proc = subprocess.Popen(
        cmd,
        env=_env(),
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    try:
        while _intra_epoch_ckpt(out / "save") is None:
            assert proc.poll() is None, (
                "training ended before an intra-epoch checkpoint"
            )
            assert time.time() < deadline
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # The run died mid-epoch; the same command resumes instead of restarting.
    subprocess.run(cmd, check=True, env=_env(), cwd=REPO, timeout=900)
    log = open(out / "log.txt").read()
    assert "Loading a checkpoint from" in log
    res = json.load(open(out / "results.json"))
    n_train = len(open(out / "save" / "train.csv").read().splitlines()) - 1
    # Resumed mid-epoch: the total number of steps is that of one epoch.
    assert res["optimizer_steps"] == n_train // 8
