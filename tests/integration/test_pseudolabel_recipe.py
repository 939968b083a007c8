"""The pseudo-label recipe end to end on the tiny corpus: i-vectors ->
multi-objective clustering -> ECAPA on the pseudo-labels, two rounds (the
second re-embeds with the first round's export), an export that
EncoderClassifier loads, and a re-run that skips every finished stage."""

import csv
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO

RECIPE = os.path.join(REPO, "recipes", "VoxCeleb", "PseudoLabel")
pytestmark = pytest.mark.slow
TINY = (
    "--n_clusters", "10", "--rounds", "2",
    "--ivector_options", "{n_components: 8, rank: 20, ubm_iter: 2, split_iter: 1, tv_iter: 2}",
    "--clustering_hparams", "{number_of_epochs: 4, batch_size: 32, vat_xi: 0.01}", "--clustering_lr", "0.05",
    "--batch_size", "4", "--number_of_epochs", "1", "--warmup_epochs", "0",
    "--steps_per_epoch", "2", "--optimizer_step_limit", "2", "--sentence_len", "1.0",
    "--verify_every", "0", "--noprogressbar", "--num_workers", "0",
)  # fmt: skip


def _run(corpus, out, *extra):
    cmd = [sys.executable, os.path.join(RECIPE, "train.py"),
           os.path.join(RECIPE, "hparams", "pseudolabel_minivox.yaml"),
           "--data_folder", corpus, "--output_folder", str(out), *TINY, *extra]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=REPO)
    start = time.time()
    proc = subprocess.run(
        cmd, env=env, cwd=REPO, timeout=900, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, time.time() - start


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pseudolabel")
    _, seconds = _run(tiny_corpus, out)
    return out, seconds


def test_all_stages_and_rounds(run):
    out, _ = run
    res = json.load(open(os.path.join(out, "results.json")))
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    for r in res["rounds"]:
        assert (
            0.0 <= r["clustering"]["acc"] <= 1.0
            and r["clustering"]["clusters_used"] >= 2
        )
        assert (
            0.0 <= r["metrics"]["eer"] <= 1.0 and r["metrics"]["n_trials"] > 0
        )
    assert res["metrics"] == res["rounds"][1]["metrics"]
    root = os.path.join(out, "pseudolabel")
    for name in ("round1/representations/features.npy", "round1/representations/extractor.ckpt",
                 "round1/clustering_ours/report.md", "round1/clustering_ours/history.json",
                 "round1/clustering_ours/metrics_over_epochs.png", "round1/train/pretrained/hyperparams.yaml",
                 "round2/representations/features.npy", "round2/clustering_ours/pseudo_train.csv",
                 "round2/train/verification/final/metrics.json"):  # fmt: skip
        assert os.path.isfile(os.path.join(root, name)), name
    # Round 2 clusters the 192-dim embeddings of round 1's encoder.
    info = json.load(
        open(os.path.join(root, "round2", "representations", "stage.json"))
    )
    assert info["info"]["dim"] == 192 and info["opts"]["kind"] == "encoder"
    log = open(os.path.join(out, "train_log.txt")).read()
    assert "clustering epoch: 4" in log and "round: 2, clustering: ours" in log


def test_stage3_trains_on_pseudo_labels_only(run):
    out, _ = run
    pl = os.path.join(
        out, "pseudolabel", "round1", "clustering_ours", "pseudo_train.csv"
    )
    with open(pl, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {
        "ID",
        "duration",
        "wav",
        "start",
        "stop",
        "spk_id",
    }
    assert all(r["spk_id"].startswith("pl_") for r in rows)
    classes = open(
        os.path.join(out, "pseudolabel", "round1", "train", "label_encoder.txt")
    ).read()
    assert "pl_0000" in classes and "'id0" not in classes


def test_export_loads(run, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    out, _ = run
    res = json.load(open(os.path.join(out, "results.json")))
    model = EncoderClassifier.from_hparams(
        source=res["export_folder"], savedir=str(tmp_path)
    )
    ckpt = json.load(
        open(os.path.join(res["export_folder"], "export_info.json"))
    )["checkpoint"]
    assert "round2" in ckpt
    trained = torch.load(
        os.path.join(ckpt, "embedding_model.ckpt"), map_location="cpu"
    )
    loaded = model.mods.embedding_model.state_dict()
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(v, loaded[k]) for k, v in trained.items())
    assert model.encode_batch(torch.randn(1, 16000) * 0.1).shape[-1] == 192


def test_rerun_skips_finished_stages(run, tiny_corpus):
    out, first = run
    stamp = os.stat(
        os.path.join(
            out, "pseudolabel", "round1", "representations", "features.npy"
        )
    ).st_mtime_ns
    proc, seconds = _run(tiny_corpus, out)
    text = proc.stdout + proc.stderr
    assert "Going into epoch" not in text
    assert text.count("skipped") >= 6  # 3 stages x 2 rounds
    assert os.stat(os.path.join(out, "pseudolabel", "round1", "representations",
                                "features.npy")).st_mtime_ns == stamp  # fmt: skip
    assert seconds < first / 2, (first, seconds)


def test_resume_between_stages_is_reproducible(tiny_corpus, tmp_path):
    # A run that ends after stage 1 (as a kill between the stages leaves
    # it: stage 1 finished, stage 2 never started) and is then resumed
    # must write the same pseudo-labels as an uninterrupted run. Each
    # stage seeds itself from the recipe seed and its name, so what the
    # skipped stage 1 would have drawn does not matter.
    # (--stage 2 stops every run after round 1's stage 2.)
    _run(tiny_corpus, tmp_path / "a", "--stage", "2")
    _run(tiny_corpus, tmp_path / "b", "--stage", "1")
    proc, _ = _run(tiny_corpus, tmp_path / "b", "--stage", "2")
    assert "representations skipped" in proc.stdout + proc.stderr
    folder = os.path.join("pseudolabel", "round1", "clustering_ours")
    for name in ("pseudo_train.csv", "pseudo_dev.csv", "labels.npy"):
        a = open(os.path.join(tmp_path / "a", folder, name), "rb").read()
        b = open(os.path.join(tmp_path / "b", folder, name), "rb").read()
        assert a == b, name
