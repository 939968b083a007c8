"""The MixAP recipe end to end on the tiny corpus: AP, i-AP and l-AP (after
train_vae.py) train without labels, evaluate, export an encoder that
EncoderClassifier loads, and resume."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

RECIPE = os.path.join(REPO, "recipes", "VoxCeleb", "MixAP")
pytestmark = pytest.mark.slow
SMALL = ("--batch_size", "8", "--steps_per_epoch", "4", "--number_of_epochs", "1",
         "--verify_every", "1", "--noprogressbar", "--num_workers", "0")  # fmt: skip


def _run(script, config, corpus, out, *extra):
    cmd = [sys.executable, os.path.join(RECIPE, script), os.path.join(RECIPE, "hparams", config),
           "--data_folder", corpus, "--output_folder", str(out), *extra]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=REPO)
    return subprocess.run(
        cmd, env=env, cwd=REPO, timeout=900, capture_output=True, text=True
    )


def _check(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def imix_run(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("imix")
    _check(
        _run(
            "train.py",
            "i_ap_minivox.yaml",
            tiny_corpus,
            out,
            *SMALL,
            "--mix_alpha",
            "0.5",
        )
    )
    return out


def test_imix_outputs_and_export(imix_run, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    log = open(os.path.join(imix_run, "train_log.txt")).read()
    for stat in (
        "epoch: 1",
        "anchor_acc",
        "ap_scale",
        "train EER",
        "final verification",
    ):
        assert stat in log, stat
    res = json.load(open(os.path.join(imix_run, "results.json")))
    assert (
        0.0 <= res["metrics"]["eer"] <= 1.0 and res["metrics"]["n_trials"] > 0
    )
    model = EncoderClassifier.from_hparams(
        source=res["export_folder"], savedir=str(tmp_path)
    )
    ckpt = json.load(
        open(os.path.join(res["export_folder"], "export_info.json"))
    )["checkpoint"]
    trained = torch.load(
        os.path.join(ckpt, "embedding_model.ckpt"), map_location="cpu"
    )
    loaded = model.mods.embedding_model.state_dict()
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(v, loaded[k]) for k, v in trained.items())
    assert type(model.mods.compute_features).__name__ == "MFCC"
    assert model.encode_batch(torch.randn(1, 32000) * 0.1).shape[-1] == 192
    files = set(os.listdir(ckpt))
    for rec in ("embedding_model", "ap_scale", "optimizer", "counter", "brain"):
        assert f"{rec}.ckpt" in files, rec


def test_rerun_resumes_instead_of_retraining(imix_run, tiny_corpus):
    proc = _run("train.py", "i_ap_minivox.yaml", tiny_corpus, imix_run, *SMALL, "--mix_alpha", "0.5",
                "--export_folder", "")  # fmt: skip
    _check(proc)
    assert "Going into epoch" not in proc.stdout + proc.stderr


def test_untrained_baseline_with_zero_epochs(tiny_corpus, tmp_path):
    proc = _run("train.py", "ap_minivox.yaml", tiny_corpus, tmp_path, *SMALL[:4],
                "--number_of_epochs", "0", "--noprogressbar", "--num_workers", "0")  # fmt: skip
    _check(proc)
    res = json.load(open(os.path.join(tmp_path, "results.json")))
    assert res["optimizer_steps"] == 0 and res["metrics"]["n_trials"] > 0
    # The README's command exports the initial encoder, so that the
    # untrained baseline can be scored on other trials too; the card says
    # it is untrained.
    assert res["untrained"] is True
    folder = res["export_folder"]
    card = open(os.path.join(folder, "README.md")).read()
    assert "untrained (0 optimizer steps)" in card
    from speechbrain.inference.speaker import EncoderClassifier

    model = EncoderClassifier.from_hparams(
        source=folder, savedir=os.path.join(tmp_path, "loaded")
    )
    assert model.encode_batch(torch.randn(1, 32000) * 0.1).shape[-1] == 192


def test_training_batches_hold_no_speaker_label(imix_run):
    from speechbrain.dataio.dataloader import make_dataloader

    from speechbrain_ssv.data.pipelines import make_unlabelled_dataset

    train_csv = os.path.join(imix_run, "save", "train.csv")
    ds = make_unlabelled_dataset(train_csv, 1.79, n_views=2)
    for row in ds.data.values():
        assert not {"spk_id", "gender", "session"} & set(row)
    batch = next(iter(make_dataloader(ds, batch_size=4)))
    assert set(batch._PaddedBatch__keys) == {"id", "view0", "view1"}
