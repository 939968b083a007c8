"""torchrun DDP (2 CPU processes, gloo) runs the recipes end to end: the
cross-rank statistics (SDPN's Sinkhorn sums, DINO centre, i-AP's gathered
negatives, CLUB's hand-reduced estimator gradients), main-process-only
verification and export must not deadlock or diverge between ranks."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

RECIPES = {
    "supervised": (
        "Supervised",
        "ecapa_minivox.yaml",
        ["--sentence_len", "1.5", "--warmup_epochs", "0"],
    ),
    "sdpn": ("SDPN", "sdpn_minivox.yaml", []),
    # i-AP gathers the anchors of both ranks as negatives (with gradient).
    "i_ap": ("MixAP", "i_ap_minivox.yaml", []),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_torchrun_two_cpu_ranks(name, tiny_corpus, tmp_path):
    folder, yaml_name, extra = RECIPES[name]
    recipe = os.path.join(REPO, "recipes", "VoxCeleb", folder)
    out = tmp_path / name
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        os.path.join(recipe, "train.py"),
        os.path.join(recipe, "hparams", yaml_name),
        "--data_folder",
        tiny_corpus,
        "--output_folder",
        str(out),
        "--distributed_backend",
        "gloo",
        "--number_of_epochs",
        "1",
        "--batch_size",
        "4",
        "--steps_per_epoch",
        "6",
        "--verify_every",
        "1",
        "--noprogressbar",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.load(open(out / "results.json"))
    assert res["metrics"]["n_trials"] > 0
    assert os.path.isfile(
        os.path.join(res["export_folder"], "embedding_model.ckpt")
    )
    log = open(out / "train_log.txt").read()
    assert "epoch: 1" in log and "final verification" in log


@pytest.mark.parametrize("row", [6, 2])
def test_torchrun_club_two_cpu_ranks(row, tiny_ffsvc_corpus, tmp_path):
    # Row 6: the vCLUB estimators live outside DDP and their gradients are
    # all-reduced by hand; row 2 has no device branch (unused parameters).
    recipe = os.path.join(REPO, "recipes", "FFSVC", "CLUB")
    out = tmp_path / f"row{row}"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2", os.path.join(recipe, "train.py"),
        os.path.join(recipe, "hparams", "club_minivox.yaml"),
        "--data_folder", tiny_ffsvc_corpus, "--output_folder", str(out),
        "--distributed_backend", "gloo", "--table1_row", str(row),
        "--split_ratio", "[75, 25]", "--batch_speakers", "2",
        "--max_pairs_per_speaker", "2", "--steps_per_epoch", "4",
        "--number_of_epochs", "1", "--sentence_len", "1.0",
        "--probe_max_seconds", "2.0", "--tsne_speakers", "3", "--noprogressbar",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.load(open(out / "results.json"))
    assert res["table1_row"] == row and res["metrics"]["n_trials"] > 0
    # The epoch's 4 steps are shared by the 2 ranks.
    assert res["optimizer_steps"] == 2
    assert os.path.isfile(
        os.path.join(res["export_folder"], "embedding_model.ckpt")
    )
    log = open(out / "train_log.txt").read()
    assert log.count("epoch: 1") == 1 and "final verification" in log
