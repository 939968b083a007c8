"""The l-mix VAE recipe end to end on the tiny corpus: train_vae.py trains
one epoch without labels and exports a bare ConvVAE state_dict that the
l-AP recipe (and a SpeechBrain Pretrainer) load; plot_mixing.py draws Figs. 5
and 6 from it; l-AP trains on the frozen VAE."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

RECIPE = os.path.join(REPO, "recipes", "VoxCeleb", "MixAP")
HPARAMS = os.path.join(RECIPE, "hparams", "vae_minivox.yaml")
pytestmark = pytest.mark.slow


def _env():
    return dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=REPO)


@pytest.fixture(scope="module")
def vae_run(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    cmd = [
        sys.executable, os.path.join(RECIPE, "train_vae.py"), HPARAMS,
        "--data_folder", tiny_corpus, "--output_folder", str(out),
        "--batch_size", "8", "--number_of_epochs", "1",
        "--n_reconstructions", "2", "--noprogressbar", "--num_workers", "0",
    ]  # fmt: skip
    done = subprocess.run(
        cmd, check=True, env=_env(), cwd=REPO, timeout=600,
        capture_output=True, text=True,
    )  # fmt: skip
    return out, done.stdout


def test_vae_recipe_outputs(vae_run):
    out, stdout = vae_run
    ckpt = os.path.join(out, "vae.ckpt")
    assert f"VAE exported to {ckpt}" in stdout
    assert os.path.isfile(os.path.join(out, "reconstructions", "epoch_001.png"))
    # Held-out reconstruction R^2, one value per MFCC band.
    r2 = json.load(open(os.path.join(out, "reconstruction_r2.json")))
    assert r2["n_segments"] > 0 and len(r2["r2_per_band"]) > 1
    assert "reconstruction R^2 per band" in stdout
    log = open(os.path.join(out, "train_log.txt")).read()
    assert "epoch: 1" in log and "train kl" in log and "train nll" in log
    saves = [
        d
        for d in os.listdir(os.path.join(out, "save"))
        if d.startswith("CKPT+")
    ]
    assert saves
    files = set(os.listdir(os.path.join(out, "save", saves[0])))
    assert {"vae.ckpt", "optimizer.ckpt", "counter.ckpt", "brain.ckpt"} <= files


def test_export_loads_into_convvae(vae_run, tmp_path):
    from speechbrain.utils.parameter_transfer import Pretrainer

    from speechbrain_ssv.lobes.vae import ConvVAE
    from speechbrain_ssv.utils.hparams import load_hparams

    out, _ = vae_run
    ckpt = os.path.join(out, "vae.ckpt")
    state = torch.load(ckpt, map_location="cpu")
    # The l-AP recipe builds the VAE from the same keys and loads the file
    # through a Pretrainer (non-strict: the keys must match exactly).
    hp = load_hparams(HPARAMS, {"output_folder": str(tmp_path)})
    vae = hp["vae"]
    assert isinstance(vae, ConvVAE) and state.keys() == vae.state_dict().keys()
    pretrainer = Pretrainer(
        collect_in=str(tmp_path / "collect"),
        loadables={"vae": vae},
        paths={"vae": ckpt},
    )
    pretrainer.collect_files()
    pretrainer.load_collected()
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in state.items())
    # The export is the last checkpoint's VAE.
    saves = sorted(
        d
        for d in os.listdir(os.path.join(out, "save"))
        if d.startswith("CKPT+")
    )
    last = torch.load(
        os.path.join(out, "save", saves[-1], "vae.ckpt"), map_location="cpu"
    )
    assert all(torch.equal(v, last[k]) for k, v in state.items())


def test_training_data_holds_no_speaker_label(vae_run):
    from speechbrain_ssv.data.pipelines import make_unlabelled_dataset

    out, _ = vae_run
    ds = make_unlabelled_dataset(os.path.join(out, "save", "train.csv"), 1.79)
    for row in ds.data.values():
        assert not {"spk_id", "gender", "session"} & set(row)
    assert sorted(ds[0]) == ["id", "sig"]
    assert (
        "make_unlabelled_dataset"
        in open(os.path.join(RECIPE, "train_vae.py")).read()
    )


def test_plot_mixing(vae_run, tiny_corpus, tmp_path):
    out, _ = vae_run
    figs = tmp_path / "mixing"
    cmd = [
        sys.executable, os.path.join(RECIPE, "plot_mixing.py"),
        "--vae", os.path.join(out, "vae.ckpt"), "--hparams", HPARAMS,
        "--data_folder", tiny_corpus, "--out", str(figs), "--pairs", "12",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=_env(), cwd=REPO, timeout=300)
    for name in ("fig5_mixtures.png", "fig6_line_distances.png"):
        assert os.path.getsize(figs / name) > 0, name
    res = json.load(open(figs / "mixing_distances.json"))
    assert res["n_pairs"] == 12 and 0.0 <= res["fig5_lambda"] <= 1.0
    # i-mix samples lie on the line (float32 round-off only); l-mix ones not.
    assert res["imix_median"] < 1e-3
    assert res["lmix_median"] > res["imix_median"]


def _lap_cmd(corpus, out, vae_path):
    return [
        sys.executable, os.path.join(RECIPE, "train.py"), os.path.join(RECIPE, "hparams", "l_ap_minivox.yaml"),
        "--data_folder", corpus, "--output_folder", str(out), "--vae_path", str(vae_path),
        "--batch_size", "8", "--steps_per_epoch", "4", "--number_of_epochs", "1", "--verify_every", "1",
        "--noprogressbar", "--num_workers", "0", "--export_folder", "",
    ]  # fmt: skip


def test_lap_trains_on_the_frozen_exported_vae(vae_run, tiny_corpus, tmp_path):
    out, _ = vae_run
    vae_path = os.path.join(out, "vae.ckpt")
    run = tmp_path / "lap"
    subprocess.run(_lap_cmd(tiny_corpus, run, vae_path), check=True, env=_env(), cwd=REPO, timeout=600,
                   capture_output=True)  # fmt: skip
    res = json.load(open(run / "results.json"))
    assert res["optimizer_steps"] > 0 and res["metrics"]["n_trials"] > 0
    # The VAE is frozen: the copy checkpointed with the l-AP run equals the export.
    saves = [d for d in os.listdir(run / "save") if d.startswith("CKPT+")]
    exported = torch.load(vae_path, map_location="cpu")
    trained = torch.load(
        run / "save" / saves[0] / "vae.ckpt", map_location="cpu"
    )
    assert exported.keys() == trained.keys()
    assert all(torch.equal(v, trained[k]) for k, v in exported.items())


def test_lap_without_a_vae_names_the_key(tiny_corpus, tmp_path):
    proc = subprocess.run(_lap_cmd(tiny_corpus, tmp_path / "lap", tmp_path / "missing.ckpt"), env=_env(),
                          cwd=REPO, timeout=600, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0
    # SpeechBrain logs uncaught exceptions to stdout.
    out = proc.stdout + proc.stderr
    assert "vae_path" in out and "train_vae.py" in out
