"""The quickstart end to end on the tiny corpus: corpus, training, two
baselines, export loaded with SpeakerRecognition, results table."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_quickstart_tiny(tiny_corpus, tmp_path):
    out = tmp_path / "qs"
    cmd = [
        sys.executable,
        os.path.join(REPO, "recipes", "quickstart.py"),
        "--data_folder",
        tiny_corpus,
        "--output_folder",
        str(out),
        "--size",
        "tiny",
        "--workers",
        "1",
        "--number_of_epochs",
        "1",
        "--warmup_epochs",
        "0",
        "--batch_size",
        "8",
        "--steps_per_epoch",
        "6",
        "--sentence_len",
        "1.5",
        "--verify_every",
        "0",
        "--noprogressbar",
        "--sdpn_overrides",
        "--batch_size 8 --steps_per_epoch 3 --number_of_epochs 1 "
        "--verify_every 0 --num_workers 0",
    ]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "results.md").read_text()
    for row in (
        "MFCC mean + cosine",
        "ECAPA-TDNN untrained",
        "ECAPA-TDNN supervised",
        "ECAPA-TDNN SDPN (no labels)",
    ):
        assert row in table
    assert table in proc.stdout
    res = json.loads((out / "results.json").read_text())
    assert set(res["rows"]) == {
        "MFCC mean + cosine",
        "ECAPA-TDNN untrained",
        "ECAPA-TDNN supervised (AAM)",
        "ECAPA-TDNN SDPN (no labels)",
    }
    for m in res["rows"].values():
        assert 0.0 <= m["eer"] <= 1.0 and m["n_trials"] > 0
    assert -1.0 <= res["verify_files"]["same"] <= 1.0
    # The example decides with the model card's EER threshold, the one
    # calibrated on these held-out trials.
    info = json.loads(
        open(os.path.join(res["export_folder"], "export_info.json")).read()
    )
    assert res["threshold"] == info["thresholds"]["eer"]
    assert info["thresholds"]["calibrated_on"]
    assert "threshold" in (
        open(os.path.join(res["export_folder"], "README.md")).read().lower()
    )
    assert os.path.isfile(
        os.path.join(res["export_folder"], "embedding_model.ckpt")
    )
