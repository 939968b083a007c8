"""YourTTS adapter and synthesis on a tiny random checkpoint (offline, CPU).

The checkpoint is built once per session in the release layout, with the
foreign training-machine paths the real config.json has, so loading goes
through the same path patching a real checkpoint needs. Random weights say
nothing about voice quality: these tests check mechanics only.
"""

import csv
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_ssv.utils.errors import (
    AudioFileError,
    ManifestError,
    SSVInputError,
)
from speechbrain_ssv.utils.io import write_wav

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SHORT_TEXTS = ["Hi there.", "Good morning to you.", "See you soon."]


@pytest.fixture(autouse=True)
def one_thread():
    # On small shared machines one thread was ~3x faster than two.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny YourTTS checkpoint, built through the CLI."""
    pytest.importorskip("TTS")
    from speechbrain_ssv.inside import tiny

    folder = tmp_path_factory.mktemp("tiny_yourtts")
    torch.set_num_threads(1)
    assert tiny.main(["--out", str(folder), "--seed", "0"]) == 0
    digests = {
        name: _digest(os.path.join(folder, name)) for name in os.listdir(folder)
    }
    return str(folder), digests


@pytest.fixture(scope="session")
def tts(tiny_dir):
    from speechbrain_ssv.inside.tts import load_yourtts

    torch.set_num_threads(1)
    return load_yourtts(tiny_dir[0])


def _identities(n=3, dim=512, seed=0, genders=True):
    rng = np.random.default_rng(seed)
    out = {
        "ids": [f"syn{i:06d}" for i in range(n)],
        "embeddings": rng.standard_normal((n, dim)).astype(np.float32),
    }
    if genders:
        out["genders"] = ["f" if i % 2 else "m" for i in range(n)]
    return out


def _wavs(folder):
    return sorted(
        os.path.relpath(p, folder)
        for p in glob.glob(
            os.path.join(folder, "wav", "**", "*.wav"), recursive=True
        )
    )


def _read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------- import guard


def test_package_imports_without_coqui_and_guard_names_the_extra():
    code = (
        "import sys; sys.modules['TTS'] = None\n"
        "import speechbrain_ssv.inside.release as t\n"
        "import speechbrain_ssv.inside.tts, speechbrain_ssv.inside.synthesize\n"
        "import speechbrain_ssv.inside.tiny\n"
        "try:\n"
        "    t.require_tts()\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert 'pip install "speechbrain-ssv[tts]"' in out.stdout
    assert "missing: TTS" in out.stdout


def test_require_tts_in_process(monkeypatch):
    from speechbrain_ssv.inside.release import require_tts

    monkeypatch.setitem(sys.modules, "six", None)
    with pytest.raises(
        ImportError, match=r"missing: (TTS, )?six.*speechbrain-ssv\[tts\]"
    ):
        require_tts()


# ------------------------------------------------------------------ loading


def test_tiny_checkpoint_has_release_layout_and_foreign_paths(tiny_dir):
    from speechbrain_ssv.inside.release import RELEASE_FILES
    from speechbrain_ssv.inside.tiny import FOREIGN_ROOT

    folder, _ = tiny_dir
    assert sorted(os.listdir(folder)) == sorted(RELEASE_FILES)
    config = json.load(open(os.path.join(folder, "config.json")))
    args = config["model_args"]
    assert args["d_vector_file"] == [f"{FOREIGN_ROOT}/speakers.json"]
    assert args["speaker_encoder_model_path"].startswith(FOREIGN_ROOT)
    assert config["language_ids_file"].startswith(FOREIGN_ROOT)
    assert args["resblock_type_decoder"] == "2"
    assert args["use_speaker_encoder_as_loss"] is True
    languages = json.load(open(os.path.join(folder, "language_ids.json")))
    assert sorted(languages) == ["en", "fr-fr", "pt-br"]
    # Small enough for a tmp dir; the encoder is always the full network.
    assert os.path.getsize(os.path.join(folder, "model_file.pth")) < 20e6


def test_unpatched_config_fails_like_the_release(tiny_dir):
    from TTS.config import load_config
    from TTS.tts.models import setup_model

    config = load_config(os.path.join(tiny_dir[0], "config.json"))
    with pytest.raises(FileNotFoundError, match="/raid/"):
        setup_model(config)


def test_loaded_model_structure_and_user_files_untouched(tts, tiny_dir):
    from TTS.encoder.models.resnet import ResNetSpeakerEncoder
    from TTS.tts.models.vits import Vits

    folder, digests = tiny_dir
    assert isinstance(tts.model, Vits)
    assert isinstance(tts.encoder, ResNetSpeakerEncoder)
    assert not tts.model.training and not tts.encoder.training
    assert tts.sample_rate == 16000 and tts.encoder_sample_rate == 16000
    assert tts.d_vector_dim == 512
    assert tts.languages == ["en", "fr-fr", "pt-br"]
    assert tts.model.tokenizer.phonemizer is None
    assert tts.encoder_db_level == -27.0
    assert tts.language_id("pt-br") == 2
    with pytest.raises(SSVInputError, match="fr-fr"):
        tts.language_id("fr")
    for name, digest in digests.items():
        assert _digest(os.path.join(folder, name)) == digest, name


def test_load_by_name_from_tts_home_and_keep_patched_config(
    tiny_dir, tmp_path, monkeypatch
):
    from speechbrain_ssv.inside.release import model_dir_from_name
    from speechbrain_ssv.inside.tts import load_yourtts

    monkeypatch.setenv("TTS_HOME", str(tmp_path / "home"))
    cache = model_dir_from_name()
    os.makedirs(os.path.dirname(cache))
    os.symlink(tiny_dir[0], cache)
    patched = tmp_path / "patched.json"
    tts = load_yourtts(
        "tts_models/multilingual/multi-dataset/your_tts",
        patched_config=str(patched),
    )
    assert tts.model_dir == cache
    config = json.load(open(patched))
    assert config["model_args"]["d_vector_file"] == [
        os.path.join(cache, "speakers.json")
    ]
    assert config["speaker_encoder_config_path"] == os.path.join(
        cache, "config_se.json"
    )
    for name, digest in tiny_dir[1].items():
        assert _digest(os.path.join(tiny_dir[0], name)) == digest


def _variant(tiny_dir, dest, rename=None, skip=(), replace=None):
    """A copy of the tiny release (symlinks) with files renamed, left out or
    replaced by new content (a callable writing the given path)."""
    rename, replace = rename or {}, replace or {}
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(tiny_dir[0]):
        if name in skip:
            continue
        target = os.path.join(dest, rename.get(name, name))
        if name in replace:
            replace[name](os.path.join(tiny_dir[0], name), target)
        else:
            os.symlink(os.path.join(tiny_dir[0], name), target)
    return str(dest)


def test_missing_files_are_named(tiny_dir, tmp_path):
    from speechbrain_ssv.inside.tts import load_yourtts

    no_encoder = _variant(tiny_dir, tmp_path / "a", skip=["model_se.pth"])
    with pytest.raises(
        SSVInputError, match=r"missing the speaker encoder \(model_se.pth or"
    ):
        load_yourtts(no_encoder)
    # An auxiliary file is only needed when the config uses it.
    no_langs = _variant(tiny_dir, tmp_path / "b", skip=["language_ids.json"])
    with pytest.raises(
        SSVInputError, match=r"config.json: names a file .*language_ids.json"
    ):
        load_yourtts(no_langs)
    with pytest.raises(SSVInputError, match="is not a folder"):
        load_yourtts(str(tmp_path / "nowhere"))
    with pytest.raises(SSVInputError, match="not in the Coqui cache"):
        load_yourtts("tts_models/xx/none/nothing")


def _json_to_pth(src, dest):
    torch.save(json.load(open(src)), dest)


def test_legacy_v050_release_names_load(tts, tiny_dir, tmp_path):
    from speechbrain_ssv.inside.speaker_encoder import embed_wavs
    from speechbrain_ssv.inside.tts import load_yourtts

    folder = _variant(
        tiny_dir,
        tmp_path / "v050",
        rename={
            "model_file.pth": "model_file.pth.tar",
            "model_se.pth": "model_se.pth.tar",
            "speakers.json": "speakers.pth",
        },
        replace={"speakers.json": _json_to_pth},
    )
    legacy = load_yourtts(folder)
    assert legacy.encoder_file == os.path.join(folder, "model_se.pth.tar")
    # Same weights and audio config under another name: the same tag.
    assert legacy.encoder_tag == tts.encoder_tag
    assert legacy.model.speaker_manager.num_speakers == 4
    for (name, a), b in zip(
        tts.model.state_dict().items(), legacy.model.state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    sig = _voice(16000, 0.5, 150)
    np.testing.assert_allclose(
        embed_wavs(legacy, [sig], num_eval=1).embeddings,
        embed_wavs(tts, [sig], num_eval=1).embeddings,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "names, model",
    [
        (["model_file.pth.tar"], "model_file.pth.tar"),
        (["model.pth"], "model.pth"),
        (["checkpoint.pth"], "checkpoint.pth"),
        (["best_model_1000.pth", "speakers.pth"], "best_model_1000.pth"),
        (["sub/config.json", "model.pth"], "model.pth"),
    ],
)
def test_release_folder_accepts_coquis_file_names(tmp_path, names, model):
    from speechbrain_ssv.inside.release import check_release_folder

    for name in names + ["model_se.pth.tar", "config_se.json"]:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("")
    if "sub/config.json" not in names:
        (tmp_path / "config.json").write_text("{}")
    files = check_release_folder(str(tmp_path))
    assert files["model"] == str(tmp_path / model)
    assert files["encoder"] == str(tmp_path / "model_se.pth.tar")
    assert os.path.basename(files["config"]) == "config.json"
    # Two candidate checkpoints and none with a known name: ambiguous.
    (tmp_path / "other.pth").write_text("")
    if model.startswith("best"):
        with pytest.raises(SSVInputError, match="missing the TTS checkpoint"):
            check_release_folder(str(tmp_path))


def test_config_patching_matches_coquis_model_manager(tiny_dir, tmp_path):

    from TTS.utils.manage import ModelManager

    from speechbrain_ssv.inside.release import PATH_KEYS, patch_yourtts_config
    from speechbrain_ssv.inside.tiny import FOREIGN_ROOT

    folder = tmp_path / "release"
    folder.mkdir()
    for name in ("speakers.pth", "speaker_ids.json", "scale_stats.npy"):
        (folder / name).write_text("")
    for name in ("language_ids.json", "config_se.json", "model_se.pth.tar"):
        (folder / name).write_text("")
    config = json.load(open(os.path.join(tiny_dir[0], "config.json")))
    config["speakers_file"] = f"{FOREIGN_ROOT}/speaker_ids.json"
    config["model_args"]["speakers_file"] = None
    config["audio"]["stats_path"] = "C:\\train\\scale_stats.npy"
    source = folder / "config.json"
    source.write_text(json.dumps(config))

    ours = patch_yourtts_config(str(source), str(folder), tmp_path / "p.json")
    ModelManager(progress_bar=False)._update_paths(folder, source)
    theirs, patched = (
        json.load(open(source)),
        json.load(open(tmp_path / "p.json")),
    )
    for field in PATH_KEYS:
        for section in ("audio",) if "." in field else ("", "model_args"):
            key = field.split(".")[-1]
            a = (patched.get(section) if section else patched).get(key)
            b = (theirs.get(section) if section else theirs).get(key)
            # Coqui's config class drops some top-level copies on saving;
            # every value it keeps must match.
            if section or b is not None:
                assert a == b, (section, key)
    assert patched["d_vector_file"] == [str(folder / "speakers.pth")]
    assert patched["model_args"]["speakers_file"] == str(
        folder / "speaker_ids.json"
    )
    assert patched["audio"]["stats_path"] == str(folder / "scale_stats.npy")
    assert ours["model_args.speaker_encoder_model_path"][1] == str(
        folder / "model_se.pth.tar"
    )


class _Pickled:
    """Not on torch's weights-only allow-list, like the config objects old
    training scripts pickled into their checkpoints."""


def test_pickled_checkpoint_needs_trust_checkpoint(tiny_dir, tmp_path):
    from speechbrain_ssv.inside.tts import load_yourtts

    def pickled(src, dest):
        state = torch.load(src, weights_only=True)
        state["args"] = _Pickled()
        torch.save(state, dest)

    folder = _variant(
        tiny_dir, tmp_path / "old", replace={"model_file.pth": pickled}
    )
    with pytest.raises(
        SSVInputError,
        match=r"model_file.pth: holds pickled .*trust_checkpoint=True",
    ):
        load_yourtts(folder)
    assert (
        torch.load is not None
        and torch.load.__module__ == "torch.serialization"
    )
    loaded = load_yourtts(folder, trust_checkpoint=True)
    assert loaded.d_vector_dim == 512
    with pytest.raises(SSVInputError, match="trust_checkpoint"):
        load_yourtts(folder, trust_checkpoint="yes")


def test_encoder_audio_flags_follow_coqui(tiny_dir, tmp_path):
    from TTS.tts.utils.speakers import SpeakerManager

    from speechbrain_ssv.inside.speaker_encoder import embed_wavs
    from speechbrain_ssv.inside.tts import load_yourtts

    def flags(src, dest):
        config = json.load(open(src))
        config["audio"].update(
            do_trim_silence=True,
            trim_db=30,
            do_sound_norm=True,
            do_rms_norm=False,
        )
        json.dump(config, open(dest, "w"))

    folder = _variant(
        tiny_dir, tmp_path / "flags", replace={"config_se.json": flags}
    )
    tts = load_yourtts(folder)
    assert tts.encoder_trim_db == 30.0 and tts.encoder_sound_norm
    assert tts.encoder_db_level is None
    # Half a second of silence either side of 2 s of speech.
    pad = np.zeros(8000, dtype=np.float32)
    sig = np.concatenate([pad, 0.3 * _voice(16000, 2.0, 130), pad])
    wav = str(tmp_path / "padded.wav")
    sf.write(wav, sig, 16000, subtype="FLOAT")
    manager = SpeakerManager(
        encoder_model_path=os.path.join(folder, "model_se.pth"),
        encoder_config_path=os.path.join(folder, "config_se.json"),
    )
    ref = np.array(manager.compute_embedding_from_clip(wav))
    ours = embed_wavs(tts, [wav], num_eval=10).embeddings[0]
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    # Ignoring the flags gives another embedding.
    tts.encoder_trim_db, tts.encoder_sound_norm = None, False
    plain = embed_wavs(tts, [wav], num_eval=10).embeddings[0]
    assert np.abs(plain - ref).max() > 1e-3


# --------------------------------------------------------------- embeddings


def _voice(sr, seconds, f0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * x + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def test_embeddings_follow_the_encoders_feature_path(tts):
    from speechbrain_ssv.inside.speaker_encoder import embed_wavs

    sig = _voice(16000, 0.6, 140)
    res = embed_wavs(tts, [sig], num_eval=2)
    assert res.embeddings.shape == (1, 512) and res.kept == [0]
    # Coqui's own path: RMS normalisation to -27 dB, then compute_embedding.
    ref_sig = sig * (
        10 ** (-27 / 20) / np.sqrt(np.mean(sig.astype(float) ** 2))
    )
    ref = tts.encoder.compute_embedding(
        torch.from_numpy(ref_sig.astype(np.float32))[None], num_eval=2
    )
    np.testing.assert_allclose(res.embeddings[0], ref[0].numpy(), atol=1e-5)


def test_embeddings_resample_and_skip_unusable_clips(tts, tmp_path, caplog):
    import soxr

    from speechbrain_ssv.inside.speaker_encoder import embed_wavs

    sig22 = _voice(22050, 0.5, 200)
    write_wav(str(tmp_path / "a22k.wav"), sig22, 22050)
    sig16 = soxr.resample(sig22, 22050, 16000, quality="HQ")
    write_wav(str(tmp_path / "zero.wav"), np.zeros(0), 16000)
    items = [
        str(tmp_path / "a22k.wav"),
        (sig16, 16000),
        np.zeros(16000, dtype=np.float32),
        (np.full(50, 0.1), 16000),
        torch.full((8000,), float("nan")),
        str(tmp_path / "zero.wav"),
    ]
    with caplog.at_level("WARNING"):
        res = embed_wavs(tts, items, num_eval=1, batch_size=4)
    assert res.kept == [0, 1]
    assert res.skipped == {
        2: "silent",
        3: "too short",
        4: "non-finite",
        5: "too short",
    }
    assert "skipped 4 of 6" in caplog.text
    emb = res.embeddings
    assert emb.shape == (2, 512) and np.isfinite(emb).all()
    assert (np.linalg.norm(emb, axis=1) <= 1 + 1e-5).all()
    # The 22.05 kHz file was resampled the same way as the given signal
    # (16-bit storage of the file explains the tolerance).
    np.testing.assert_allclose(emb[0], emb[1], atol=2e-3)
    with pytest.raises(SSVInputError, match="1-D"):
        embed_wavs(tts, [np.zeros((2, 100))])
    with pytest.raises(AudioFileError, match="does not exist"):
        embed_wavs(tts, [str(tmp_path / "nope.wav")])


def test_embed_manifest_caches_in_shards_and_resumes(tts, tmp_path):
    from speechbrain_ssv.inside.speaker_encoder import embed_manifest

    rows = []
    for i, (spk, gender) in enumerate([("a", "m"), ("a", "m"), ("b", "f")]):
        path = tmp_path / f"u{i}.wav"
        write_wav(str(path), _voice(16000, 0.4, 120 + 40 * i, seed=i), 16000)
        rows.append([f"{spk}/s/{i}", "0.4", str(path), 0, 6400, spk, gender])
    silent = tmp_path / "silent.wav"
    write_wav(str(silent), np.zeros(6400), 16000)
    rows.append(["b/s/9", "0.4", str(silent), 0, "", "b", "f"])
    manifest = tmp_path / "train.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["ID", "duration", "wav", "start", "stop", "spk_id", "gender"]
        )
        writer.writerows(rows)
    cache = tmp_path / "cache"
    kw = {"num_eval": 1, "chunk_size": 2, "progress": False}
    first = embed_manifest(tts, str(manifest), str(cache), **kw)
    assert first["ids"] == ["a/s/0", "a/s/1", "b/s/2"]
    assert first["speakers"] == ["a", "a", "b"]
    assert first["genders"] == ["m", "m", "f"]
    assert first["skipped"] == {"b/s/9": "silent"}
    assert first["embeddings"].shape == (3, 512)
    assert (first["computed"], first["cached"]) == (2, 0)
    assert sorted(os.listdir(cache)) == [
        "chunk-00000.pt",
        "chunk-00001.pt",
        "stage.json",
    ]

    again = embed_manifest(tts, str(manifest), str(cache), **kw)
    assert (again["computed"], again["cached"]) == (0, 2)
    np.testing.assert_array_equal(again["embeddings"], first["embeddings"])

    os.remove(cache / "chunk-00001.pt")
    resumed = embed_manifest(tts, str(manifest), str(cache), **kw)
    assert (resumed["computed"], resumed["cached"]) == (1, 1)
    np.testing.assert_allclose(resumed["embeddings"], first["embeddings"])

    bad = tmp_path / "bad.csv"
    bad.write_text("ID,wav\nx,/a.wav\n")
    with pytest.raises(ManifestError, match="spk_id"):
        embed_manifest(tts, str(bad), str(cache))


# ---------------------------------------------------------------- synthesis


@pytest.fixture(scope="session")
def reference_run(tts, tmp_path_factory):
    """Three identities x two utterances, one shard."""
    from speechbrain_ssv.inside.synthesize import synthesize_identities

    out = str(tmp_path_factory.mktemp("synth_ref"))
    rng_before = torch.get_rng_state()
    summary = synthesize_identities(
        tts,
        _identities(),
        out,
        n_utts=2,
        texts=SHORT_TEXTS,
        seed=7,
        progress=False,
    )
    assert torch.equal(torch.get_rng_state(), rng_before)
    return out, summary


def test_synthesis_writes_16k_wavs_and_manifest(reference_run):
    out, summary = reference_run
    assert summary["written"] == 6 and summary["skipped"] == 0
    assert summary["identities"] == 3
    assert summary["realtime_factor"] > 0
    rows = _read_rows(summary["manifest"])
    assert list(rows[0]) == [
        "ID",
        "duration",
        "wav",
        "start",
        "stop",
        "spk_id",
        "session",
        "gender",
    ]
    assert len(rows) == 6
    genders = dict(zip(_identities()["ids"], _identities()["genders"]))
    for row in rows:
        spk, session, utt = row["ID"].split("/")
        assert row["wav"] == os.path.join(
            out, "wav", spk, session, utt + ".wav"
        )
        info = sf.info(row["wav"])
        assert info.samplerate == 16000 and info.channels == 1
        assert int(row["stop"]) == info.frames and row["start"] == "0"
        assert float(row["duration"]) == pytest.approx(info.frames / 16000)
        assert row["spk_id"] == spk and row["session"] == session
        assert row["gender"] == genders[spk]
        assert len(session) == 11 and utt in ("00001", "00002")


def test_synthesis_is_identical_across_shardings(tts, reference_run, tmp_path):
    from speechbrain_ssv.inside.synthesize import (
        gather_manifests,
        synthesize_identities,
    )

    ref_out, ref_summary = reference_run
    out = str(tmp_path / "sharded")
    seen = []
    for shard in ("1/2", "0/2"):
        s = synthesize_identities(
            tts,
            _identities(),
            out,
            n_utts=2,
            texts=SHORT_TEXTS,
            seed=7,
            shard=shard,
            progress=False,
        )
        seen.append({r["spk_id"] for r in _read_rows(s["manifest"])})
    assert seen[0].isdisjoint(seen[1]) and len(seen[0] | seen[1]) == 3
    assert _wavs(out) == _wavs(ref_out)
    for rel in _wavs(out):
        a, _ = sf.read(os.path.join(out, rel), dtype="int16")
        b, _ = sf.read(os.path.join(ref_out, rel), dtype="int16")
        np.testing.assert_array_equal(a, b)
    merged = _read_rows(gather_manifests(out))
    ref_rows = _read_rows(ref_summary["manifest"])
    assert [r["ID"] for r in merged] == sorted(r["ID"] for r in ref_rows)
    assert [r["stop"] for r in merged] == [
        r["stop"] for r in sorted(ref_rows, key=lambda r: r["ID"])
    ]


def test_synthesis_resumes_and_refuses_other_options(tts, tmp_path):
    from speechbrain_ssv.inside.synthesize import synthesize_identities

    out = str(tmp_path / "resume")
    ids = _identities(n=2, genders=False)
    kw = {"n_utts": 2, "texts": SHORT_TEXTS, "seed": 3, "progress": False}
    first = synthesize_identities(tts, ids, out, **kw)
    files = _wavs(out)
    before = {f: _digest(os.path.join(out, f)) for f in files}
    mtimes = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in files}
    victim = os.path.join(out, files[1])
    os.remove(victim)
    stray = os.path.join(os.path.dirname(victim), ".00002.abc123.tmp.wav")
    open(stray, "wb").close()

    again = synthesize_identities(tts, ids, out, **kw)
    assert (again["written"], again["skipped"]) == (1, 3)
    assert not os.path.exists(stray)
    assert {f: _digest(os.path.join(out, f)) for f in files} == before
    for f in files:
        if f != files[1]:
            assert os.stat(os.path.join(out, f)).st_mtime_ns == mtimes[f]
    assert "gender" not in _read_rows(first["manifest"])[0]
    assert _read_rows(again["manifest"]) == _read_rows(first["manifest"])
    with pytest.raises(SSVInputError, match="differing: seed"):
        synthesize_identities(tts, ids, out, **{**kw, "seed": 4})


def test_d_vector_scale_does_not_change_the_voice(tts):
    from speechbrain_ssv.inside.synthesize import _synthesize_batch

    d = np.random.default_rng(1).standard_normal(512).astype(np.float32)
    lid = tts.language_id("en")
    a = _synthesize_batch(tts, ["Hello."], [d], [11], lid, "en")[0]
    b = _synthesize_batch(tts, ["Hello."], [7 * d], [11], lid, "en")[0]
    c = _synthesize_batch(tts, ["Hello."], [d], [12], lid, "en")[0]
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape != c.shape or not np.allclose(a, c)


def test_batching_only_touches_utterance_tails(tts):
    from speechbrain_ssv.inside.synthesize import _synthesize_batch

    d = np.random.default_rng(2).standard_normal(512).astype(np.float32)
    lid = tts.language_id("en")
    texts = ["Hello there.", "A somewhat longer sentence for padding."]
    together = _synthesize_batch(tts, texts, [d, d], [5, 6], lid, "en")
    alone = [
        _synthesize_batch(tts, [t], [d], [s], lid, "en")[0]
        for t, s in zip(texts, [5, 6])
    ]
    for x, y in zip(together, alone):
        assert x.shape == y.shape
        # HiFi-GAN's receptive field reaches the batch padding only at the
        # very end of the shorter item.
        np.testing.assert_allclose(x[:-2048], y[:-2048], atol=1e-5)


def test_output_is_resampled_when_the_model_rate_differs(
    tts, tmp_path, monkeypatch
):
    import soxr

    from speechbrain_ssv.inside.synthesis_plan import utterance_plan
    from speechbrain_ssv.inside.synthesize import (
        _synthesize_batch,
        synthesize_identities,
    )

    ident = _identities(n=1, genders=False)
    (u,) = utterance_plan(ident["ids"][0], 1, 5, SHORT_TEXTS)
    lid = tts.language_id("en")
    raw = _synthesize_batch(
        tts, [u["text"]], [ident["embeddings"][0]], [u["seed"]], lid, "en"
    )[0]
    # Pretend the model speaks at 22.05 kHz: the files must still be 16 kHz.
    monkeypatch.setattr(tts, "sample_rate", 22050)
    out = synthesize_identities(
        tts, ident, str(tmp_path), 1, SHORT_TEXTS, seed=5, progress=False
    )
    (row,) = _read_rows(out["manifest"])
    info = sf.info(row["wav"])
    assert info.samplerate == 16000
    assert info.frames == len(soxr.resample(raw, 22050, 16000, quality="HQ"))


def test_cli_with_corpus_file_and_gather(tiny_dir, tmp_path):
    from speechbrain_ssv.inside.synthesis_plan import read_text_corpus
    from speechbrain_ssv.inside.synthesize import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Route 66 is long.\n\nI paid 3.5 euros.\n")
    ids = tmp_path / "ids.pt"
    data = _identities(n=2)
    torch.save(
        {
            "ids": data["ids"],
            "embeddings": torch.from_numpy(data["embeddings"]),
            "genders": data["genders"],
        },
        ids,
    )
    out = tmp_path / "cli"
    args = [
        "--model_dir",
        tiny_dir[0],
        "--identities",
        str(ids),
        "--out",
        str(out),
    ]
    args += ["--n_utts", "1", "--texts", str(corpus), "--device", "cpu"]
    assert main(args + ["--shard", "0/2"]) == 0
    assert main(["--out", str(out), "--gather"]) == 2  # shard 1 not done
    assert main(args + ["--shard", "1/2"]) == 0
    assert main(["--out", str(out), "--gather"]) == 0
    rows = _read_rows(out / "synth.csv")
    assert [r["spk_id"] for r in rows] == data["ids"]
    assert [r["gender"] for r in rows] == data["genders"]
    assert read_text_corpus(str(corpus)) == [
        "Route sixty six is long.",
        "I paid three point five euros.",
    ]


def test_identity_and_shard_validation(tts, tmp_path, monkeypatch):
    from speechbrain_ssv.inside.synthesis_plan import (
        load_identities,
        resolve_shard,
    )
    from speechbrain_ssv.inside.synthesize import synthesize_identities

    with pytest.raises(SSVInputError, match="has 4 values; expected 512"):
        synthesize_identities(
            tts, _identities(dim=4), str(tmp_path), n_utts=1, progress=False
        )
    with pytest.raises(SSVInputError, match="appears twice"):
        synthesize_identities(
            tts,
            [("a", np.ones(512)), ("a", np.ones(512))],
            str(tmp_path),
            n_utts=1,
        )
    with pytest.raises(SSVInputError, match="zero or not finite"):
        synthesize_identities(
            tts, {"a": np.zeros(512)}, str(tmp_path), n_utts=1
        )
    with pytest.raises(SSVInputError, match="n_utts"):
        synthesize_identities(tts, _identities(), str(tmp_path / "b"), 0)
    assert not os.path.exists(tmp_path / "b" / "meta")
    with pytest.raises(SSVInputError, match="0 <= i < N"):
        resolve_shard("2/2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_shard() == (1, 3)
    p = tmp_path / "ids.npz"
    np.savez(p, ids=np.array(["x1", "x2"]), d_vectors=np.ones((2, 512)))
    assert [i["gender"] for i in load_identities(str(p))] == [None, None]
    with pytest.raises(SSVInputError, match="unknown extension"):
        (tmp_path / "ids.txt").write_text("x")
        load_identities(str(tmp_path / "ids.txt"))
