"""The INSIDE recipe end to end on the tiny corpus with a tiny random
YourTTS checkpoint built here: embed -> pair -> SLERP -> synthesize ->
merge -> train -> verify -> export, resumable stages, and the gender
classification recipe on the merged data."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from tests.conftest import REPO

RECIPE = os.path.join(REPO, "recipes", "VoxCeleb", "INSIDE")
pytestmark = pytest.mark.slow

N_IDS = 4
UTTS = 3


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)


def _common(corpus, out, *extra):
    return [
        "--data_folder", corpus, "--output_folder", str(out), "--batch_size", "8",
        "--steps_per_epoch", "6", "--sentence_len", "1.5", "--number_of_epochs", "1",
        "--warmup_epochs", "0", "--noprogressbar", "--num_workers", "0", *extra,
    ]  # fmt: skip


def _inside(corpus, out, data, tts_dir, *extra):
    return [
        sys.executable, os.path.join(RECIPE, "train.py"),
        os.path.join(RECIPE, "hparams", "inside_minivox.yaml"),
        *_common(corpus, out, "--inside_folder", str(data), "--tts_model_dir", tts_dir,
                 "--n_identities", str(N_IDS), "--utts_per_identity", str(UTTS),
                 "--n_real_speakers", "10", "--verify_every", "0", *extra),
    ]  # fmt: skip


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_tts(tmp_path_factory):
    pytest.importorskip("TTS")
    from speechbrain_ssv.inside.tiny import build_tiny_yourtts

    folder = tmp_path_factory.mktemp("tiny_yourtts")
    torch.set_num_threads(1)
    build_tiny_yourtts(str(folder), seed=0)
    return str(folder)


@pytest.fixture(scope="module")
def inside_run(tiny_corpus, tiny_tts, tmp_path_factory):
    root = tmp_path_factory.mktemp("inside")
    out, data = root / "out", root / "data"
    proc = subprocess.run(
        _inside(tiny_corpus, out, data, tiny_tts),
        env=_env(), cwd=REPO, timeout=1200, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # --noprogressbar silences every stage's bar, the diagnostics' too.
    for bar in ("yourtts embeddings", "speaker embeddings", r"synthesis \d"):
        assert not re.search(bar + r".*\d+%\|", proc.stderr), bar
    return out, data


def test_synthetic_speakers_join_the_training_data(inside_run, tiny_corpus):
    out, data = inside_run
    res = json.load(open(out / "results.json"))
    inside = res["inside"]
    assert inside["pairing"] == "nn"
    # 10 real training speakers of the tiny corpus + the synthetic ones
    assert inside["training_speakers"] == 10 + N_IDS
    assert 0.0 <= res["metrics"]["eer"] <= 1.0
    pairs = _rows(data / "pairs" / "pairs.csv")
    assert len(pairs) == N_IDS
    real = _rows(out / "save" / "train.csv")
    gender = {r["spk_id"]: r["gender"] for r in real}
    for p in pairs:
        # same-gender pairs only, and the identity carries that gender
        assert gender[p["source_a"]] == gender[p["source_b"]] == p["gender"]
        assert p["source_a"] != p["source_b"]
    merged = _rows(data / "merge" / "train.csv")
    syn = [r for r in merged if r["synthetic"] == "1"]
    assert len(syn) == N_IDS * (UTTS - 1)  # one utterance each went to dev
    assert {r["spk_id"] for r in syn} == {p["syn_spk_id"] for p in pairs}
    assert len(merged) - len(syn) == len(real)
    info = sf.info(syn[0]["wav"])
    assert info.samplerate == 16000 and info.channels == 1
    assert inside["synthesis_this_process"]["written"] == N_IDS * UTTS
    for png in ("intra_identity.png", "identity_map.png"):
        assert os.path.getsize(data / "diagnostics" / png) > 0
    stats = inside["diagnostics"]["intra_identity"]
    assert stats["real"]["n"] > 0 and stats["synthetic"]["n"] > 0


def test_export_loads_with_encoder_classifier(inside_run, tiny_corpus):
    from speechbrain.inference.speaker import EncoderClassifier

    out, _ = inside_run
    model = EncoderClassifier.from_hparams(
        source=str(out / "pretrained"), savedir=str(out / "pretrained_load")
    )
    wav = _rows(out / "save" / "test.csv")[0]["wav"]
    emb = model.encode_batch(torch.from_numpy(sf.read(wav)[0]).float()[None])
    assert emb.shape[-1] == 192 and torch.isfinite(emb).all()


def test_rerun_skips_finished_stages_and_other_pairing_is_separate(
    inside_run, tiny_corpus, tiny_tts, tmp_path
):
    out, data = inside_run
    before = {
        s: os.path.getmtime(data / s / "stage.json")
        for s in ("embed", "pairs", "merge")
    }
    # Same data stages, a new training folder: nothing is recomputed
    log = subprocess.run(
        _inside(tiny_corpus, tmp_path / "again", data, tiny_tts, "--diagnostics", "False"),
        check=True, env=_env(), cwd=REPO, timeout=1200, capture_output=True, text=True,
    )  # fmt: skip
    assert "INSIDE embeddings skipped" in log.stdout + log.stderr
    for s, mtime in before.items():
        assert os.path.getmtime(data / s / "stage.json") == mtime, s
    # Another pairing in the same folder (a copy) is refused, not mixed in
    shutil.copytree(data, tmp_path / "data_copy")
    bad = subprocess.run(
        _inside(tiny_corpus, tmp_path / "bad", tmp_path / "data_copy", tiny_tts,
                "--pairing", "random", "--diagnostics", "False"),
        env=_env(), cwd=REPO, timeout=1200, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "holds the synthesis of other pairs" in bad.stdout + bad.stderr


def test_gender_recipe_on_real_plus_synthetic(
    inside_run, tiny_corpus, tmp_path
):
    _, data = inside_run
    out = tmp_path / "gender"
    subprocess.run(
        [sys.executable, os.path.join(RECIPE, "train_gender.py"),
         os.path.join(RECIPE, "hparams", "gender_minivox.yaml"),
         *_common(tiny_corpus, out, "--inside_folder", str(data), "--use_synthetic", "True")],
        check=True, env=_env(), cwd=REPO, timeout=1200,
    )  # fmt: skip
    res = json.load(open(out / "results.json"))
    assert res["use_synthetic"] is True
    assert res["training_manifest"].endswith(os.path.join("merge", "train.csv"))
    labels = {r["spk_id"] for r in _rows(out / "save" / "gender" / "train.csv")}
    assert labels == {"f", "m"}
    test_rows = _rows(out / "save" / "test.csv")
    assert res["test"]["n"] == len(test_rows)
    assert 0.0 <= res["test"]["accuracy"] <= 1.0


def test_inside_torchrun_two_ranks(tiny_corpus, tiny_tts, tmp_path):
    # The README's torchrun command: synthesis is sharded over the ranks,
    # the main process merges the shards only after both finished, and no
    # model crosses run_on_main (SpeechBrain broadcasts its return value).
    out, data = tmp_path / "out", tmp_path / "data"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2", *_inside(tiny_corpus, out, data, tiny_tts)[1:],
        "--distributed_backend", "gloo", "--diagnostics", "False",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=_env(), cwd=REPO, timeout=1200, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    res = json.load(open(out / "results.json"))
    assert res["inside"]["training_speakers"] == 10 + N_IDS
    merged = _rows(data / "merge" / "train.csv")
    syn = [r for r in merged if r["synthetic"] == "1"]
    # Both ranks' shards are in the merge: every identity, every utterance
    # (one each went to dev).
    assert len(syn) == N_IDS * (UTTS - 1)
    assert len({r["spk_id"] for r in syn}) == N_IDS
    assert all(os.path.isfile(r["wav"]) for r in syn)
