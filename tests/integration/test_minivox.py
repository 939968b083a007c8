"""Integration tests of the minivox corpus generator on tiny corpora."""

import csv
import filecmp
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_ssv.minivox import (
    generate_minivox,
    plan_corpus,
    resolve_options,
)
from speechbrain_ssv.minivox.__main__ import main
from speechbrain_ssv.minivox.voices import get_engine
from speechbrain_ssv.utils.errors import SSVInputError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("minivox") / "tiny"
    summary = generate_minivox(root, size="tiny", workers=1, progress=False)
    return root, summary


def _wavs(root):
    out = []
    for dirpath, _, files in os.walk(os.path.join(root, "wav")):
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in files]
    return sorted(out)


def _meta(root):
    with open(
        os.path.join(root, "meta", "vox1_meta.csv"), encoding="utf-8"
    ) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return rows


def test_layout(corpus):
    root, summary = corpus
    wavs = _wavs(root)
    assert len(wavs) == summary["n_files"] == 16 * 6
    for rel in wavs:
        _, spk, session, utt = rel.split(os.sep)
        assert spk.startswith("id") and len(spk) == 7
        assert len(session) == 11
        assert len(utt) == len("00001.wav") and utt.endswith(".wav")
    sessions = {tuple(r.split(os.sep)[1:3]) for r in wavs}
    per_spk = {}
    for spk, sess in sessions:
        per_spk.setdefault(spk, set()).add(sess)
    assert all(2 <= len(s) <= 3 for s in per_spk.values())
    for rel in wavs[::7]:
        info = sf.info(os.path.join(root, rel))
        assert info.samplerate == 16000 and info.channels == 1
        assert info.subtype == "PCM_16"
        assert info.duration >= 3.2


def test_meta_and_trials(corpus):
    root, summary = corpus
    with open(
        os.path.join(root, "meta", "vox1_meta.csv"), encoding="utf-8"
    ) as f:
        header = f.readline()
    assert header == "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
    rows = _meta(root)
    assert len(rows) == 16
    assert {r["Gender"] for r in rows} <= {"m", "f"}
    split = {r["VoxCeleb1 ID"]: r["Set"] for r in rows}
    assert sum(s == "test" for s in split.values()) == 6
    assert set(split.values()) == {"dev", "test"}
    with open(
        os.path.join(root, "meta", "veri_test2.txt"), encoding="utf-8"
    ) as f:
        trials = [line.split() for line in f]
    assert len(trials) == summary["n_trials"] > 0
    labels = [int(t[0]) for t in trials]
    assert sum(labels) * 2 == len(labels)
    cross_session = 0
    for label, enrol, test in trials:
        assert split[enrol.split("/")[0]] == "test"
        assert split[test.split("/")[0]] == "test"
        assert os.path.isfile(os.path.join(root, "wav", enrol))
        assert os.path.isfile(os.path.join(root, "wav", test))
        assert enrol != test
        same = enrol.split("/")[0] == test.split("/")[0]
        assert same == (label == "1")
        if same:
            cross_session += enrol.split("/")[1] != test.split("/")[1]
    assert cross_session > 0.6 * sum(labels)
    with open(
        os.path.join(root, "meta", "minivox.json"), encoding="utf-8"
    ) as f:
        record = json.load(f)
    assert record["options"]["seed"] == 1234
    assert record["options"]["size"] == "tiny"


def test_gender_matches_pitch(corpus):
    root, _ = corpus
    opts = resolve_options("tiny")
    for spk in plan_corpus(opts):
        base = spk["voice"]["pitch"][0]
        assert (base < 140) == (spk["voice"]["gender"] == "m")


def test_augmentation_csvs_work(corpus):
    from speechbrain.augment.time_domain import AddNoise, AddReverb

    root, _ = corpus
    for name in ("noise", "rir"):
        with open(os.path.join(root, f"{name}.csv"), encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == [
            "ID",
            "duration",
            "wav",
            "wav_format",
            "wav_opts",
        ]
        assert all(os.path.isfile(r["wav"]) for r in rows)
    torch.manual_seed(0)
    clean = 0.1 * torch.randn(3, 3 * 16000)
    lengths = torch.ones(3)
    noisy = AddNoise(
        csv_file=os.path.join(root, "noise.csv"), snr_low=0, snr_high=10
    )(clean, lengths)
    assert noisy.shape == clean.shape and torch.isfinite(noisy).all()
    assert not torch.allclose(noisy, clean)
    reverbed = AddReverb(csv_file=os.path.join(root, "rir.csv"))(clean)
    assert reverbed.shape == clean.shape and torch.isfinite(reverbed).all()
    assert not torch.allclose(reverbed, clean)


def test_voices_differ(corpus):
    engine = get_engine()
    engine.verify()
    plan = plan_corpus(resolve_options("tiny"))
    text = "Nine careful bakers painted the wooden bridge."
    a = engine.synth(plan[0]["voice"], text)
    b = engine.synth(plan[1]["voice"], text)
    assert not (len(a) == len(b) and np.array_equal(a, b))
    # Same voice, same text, same seed: identical whatever came before.
    assert np.array_equal(a, engine.synth(plan[0]["voice"], text))


def test_deterministic_and_worker_independent(corpus, tmp_path):
    root, _ = corpus
    other = tmp_path / "again"
    generate_minivox(other, size="tiny", workers=2, progress=False)
    wavs = _wavs(root)
    assert wavs == _wavs(other)
    match, mismatch, errors = filecmp.cmpfiles(root, other, wavs, shallow=False)
    assert not mismatch and not errors
    for name in (
        "meta/vox1_meta.csv",
        "meta/veri_test2.txt",
        "meta/minivox.json",
    ):
        assert filecmp.cmp(
            os.path.join(root, name), os.path.join(other, name), shallow=False
        )
    noise = sorted(os.listdir(os.path.join(root, "noise")))
    _, mismatch, errors = filecmp.cmpfiles(
        os.path.join(root, "noise"),
        os.path.join(other, "noise"),
        noise,
        shallow=False,
    )
    assert not mismatch and not errors


def test_resume(corpus, tmp_path):
    root, _ = corpus
    copy = tmp_path / "resume"
    shutil.copytree(root, copy)
    wavs = _wavs(copy)
    deleted = wavs[3:40:9]
    for rel in deleted:
        os.remove(os.path.join(copy, rel))
    os.remove(
        os.path.join(
            copy, "noise", sorted(os.listdir(os.path.join(copy, "noise")))[0]
        )
    )
    stray = os.path.join(
        os.path.dirname(os.path.join(copy, wavs[0])), ".00009.abcd.tmp.wav"
    )
    with open(stray, "wb") as f:
        f.write(b"half a file")
    kept = [r for r in wavs if r not in deleted]
    mtimes = {r: os.stat(os.path.join(copy, r)).st_mtime_ns for r in kept}
    summary = generate_minivox(copy, size="tiny", workers=1, progress=False)
    assert summary["written"] == len(deleted) + 1
    assert summary["skipped"] == len(kept)
    assert not os.path.exists(stray)
    assert _wavs(copy) == wavs
    for rel in deleted:
        assert filecmp.cmp(
            os.path.join(root, rel), os.path.join(copy, rel), shallow=False
        )
    for rel in kept:
        assert os.stat(os.path.join(copy, rel)).st_mtime_ns == mtimes[rel]


def test_other_options_refused(corpus):
    root, _ = corpus
    with pytest.raises(SSVInputError, match="other options"):
        generate_minivox(
            root, size="tiny", channel="mild", workers=1, progress=False
        )


def test_bad_options():
    with pytest.raises(SSVInputError, match="channel"):
        resolve_options("tiny", channel="loud")
    with pytest.raises(SSVInputError, match="n_test_speakers"):
        resolve_options("tiny", n_speakers=4, n_test_speakers=4)
    with pytest.raises(SSVInputError, match="n_speaker"):
        resolve_options("tiny", n_speaker=4)


def test_ffsvc_variant(tmp_path):
    root = tmp_path / "ffsvc"
    rc = main(
        [
            "--out", str(root), "--size", "tiny", "--variant", "ffsvc",
            "--workers", "1", "--n_speakers", "5", "--n_test_speakers", "3",
            "--n_utts", "3",
        ]
    )  # fmt: skip
    assert rc == 0
    with open(
        os.path.join(root, "meta", "ffsvc_meta.csv"), encoding="utf-8"
    ) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "utt",
        "spk",
        "session",
        "device",
        "distance",
        "gender",
        "split",
    ]
    devices = {(r["device"], float(r["distance"])) for r in rows}
    assert {"CLS", "IPH", "AND", "IPD", "MIC"} == {d for d, _ in devices}
    assert {1.5, 3.0, 5.0} <= {dist for d, dist in devices if d == "MIC"}
    assert len(rows) == 5 * 3 * len(devices)
    assert all(os.path.isfile(os.path.join(root, r["utt"])) for r in rows)
    by_path = {r["utt"][len("wav/") :]: r for r in rows}
    name = os.path.basename(rows[0]["utt"])
    assert name.split("_")[1] == rows[0]["device"]
    with open(
        os.path.join(root, "meta", "veri_test2.txt"), encoding="utf-8"
    ) as f:
        trials = [line.split() for line in f]
    assert trials and sum(int(t[0]) for t in trials) * 2 == len(trials)
    for _, enrol, test in trials:
        assert by_path[enrol]["device"] == "CLS"
        assert by_path[test]["device"] != "CLS"
        assert by_path[enrol]["split"] == by_path[test]["split"] == "test"
    # The same utterance differs across devices (responses, rooms, codec).
    stem = rows[0]["utt"].rsplit("_", 2)[0]
    renders = [
        sf.read(os.path.join(root, r["utt"]))[0]
        for r in rows
        if r["utt"].startswith(stem + "_")
    ]
    assert len(renders) == len(devices)
    assert not np.allclose(renders[0][:16000], renders[-1][:16000])
