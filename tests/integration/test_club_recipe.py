"""The FFSVC CLUB recipe end to end on a tiny FFSVC-variant minivox corpus:
pre-trained front-end loading and its initial-embedding score, one short
epoch of Algorithm 1, final verification, probes and t-SNE maps, export
loaded by EncoderClassifier."""

import json
import os
import subprocess
import sys

import pytest
import torch

from speechbrain_ssv.utils.hparams import load_hparams
from tests.conftest import REPO

RECIPE = os.path.join(REPO, "recipes", "FFSVC", "CLUB")
TRAIN = os.path.join(RECIPE, "train.py")
HPARAMS = os.path.join(RECIPE, "hparams", "club_minivox.yaml")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_ffsvc_corpus):
    root = tmp_path_factory.mktemp("club")
    corpus = tiny_ffsvc_corpus
    # A "pre-trained" front-end: the yaml's MFA-Conformer with other weights.
    hp = load_hparams(
        HPARAMS,
        {
            "data_folder": str(corpus),
            "output_folder": str(root / "x"),
            "seed": 7,
        },
    )
    frontend = root / "frontend.ckpt"
    torch.save(hp["embedding_model"].state_dict(), frontend)
    out = root / "run"
    cmd = [
        sys.executable, TRAIN, HPARAMS, "--data_folder", str(corpus),
        "--output_folder", str(out), "--pretrained_frontend", str(frontend),
        "--split_ratio", "[75, 25]", "--batch_speakers", "2",
        "--max_pairs_per_speaker", "2", "--steps_per_epoch", "4",
        "--number_of_epochs", "1", "--sentence_len", "1.0",
        "--probe_max_seconds", "2.0", "--tsne_speakers", "3", "--noprogressbar", "--num_workers", "0",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=REPO)
    subprocess.run(cmd, check=True, env=env, cwd=REPO, timeout=600)
    return out, frontend


def test_recipe_outputs(trained):
    out, frontend = trained
    for name in (
        "train_log.txt", "hyperparams.yaml", "results.json", "save/train.csv",
        "save/label_encoder.txt", "save/device_encoder.txt",
        "verification/final/metrics.json",
        "verification/initial_embedding/metrics.json",
        "probes/probes.json", "probes/tsne_x_s_speaker.png",
        "probes/tsne_x_s_device.png",
    ):  # fmt: skip
        assert os.path.isfile(out / name), name
    res = json.loads((out / "results.json").read_text())
    assert (
        0.0 <= res["metrics"]["eer"] <= 1.0 and res["metrics"]["n_trials"] > 0
    )
    assert res["table1_row"] == 6 and res["weights"]["mi_s_d"] == 0.5
    assert res["pretrained_frontend"] == str(frontend)
    assert 0.0 <= res["initial_embedding"]["eer"] <= 1.0
    probes = json.loads((out / "probes" / "probes.json").read_text())
    assert probes["probes"] == res["probes"]
    for name in ("device_from_x_s", "speaker_from_x_d"):
        assert 0.0 <= res["probes"][name]["accuracy"] <= 1.0
        assert res["probes"][name]["chance_uniform"] > 0
    log = (out / "train_log.txt").read_text()
    for term in (
        "cls_s_ap",
        "cls_d",
        "mi_s_d_bound_fitted",
        "mi_d_ys_bound_fitted",
        "mi_s_yd_bound_fitted",
        "nll_club_s_d",
        "bn_w_device_head",
    ):
        assert f"train {term}" in log, term
    # Bounds on held-out (never fitted) dev batches, and the categorical
    # bounds' ceiling log C beside them.
    for term in (
        "mi_s_d_bound_heldout",
        "mi_d_ys_bound_heldout",
        "mi_d_ys_ceiling_log_C",
    ):
        assert f"valid {term}" in log, term


def test_export_loads_with_encoder_classifier(trained, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    out, _ = trained
    res = json.loads((out / "results.json").read_text())
    folder = res["export_folder"]
    model = EncoderClassifier.from_hparams(source=folder, savedir=str(tmp_path))
    # The exported encoder is the trained front-end + speaker branch, bit for bit.
    ckpt = json.loads(open(os.path.join(folder, "export_info.json")).read())[
        "checkpoint"
    ]
    loaded = model.mods.embedding_model.state_dict()
    for part, key in (
        ("frontend", "embedding_model"),
        ("decoupling", "decoupling"),
    ):
        saved = torch.load(
            os.path.join(ckpt, f"{key}.ckpt"), map_location="cpu"
        )
        for name, value in saved.items():
            assert torch.equal(value, loaded[f"{part}.{name}"]), (
                f"{part}.{name}"
            )
    first = (
        (out / "save" / "test.csv").read_text().splitlines()[1].split(",")[2]
    )
    wav = model.load_audio(first)
    emb = model.encode_batch(wav.unsqueeze(0))
    assert emb.shape == (1, 1, 192) and torch.isfinite(emb).all()
