"""Tests for speechbrain_ssv.data.ffsvc on small fake FFSVC-layout folders."""

import csv
import json
import logging
import os

import numpy as np
import pytest

from speechbrain_ssv.data.ffsvc import (
    CSV_COLUMNS,
    main,
    prepare_ffsvc,
    read_ffsvc_trials,
)
from speechbrain_ssv.data.ffsvc_sources import parse_ffsvc_name
from speechbrain_ssv.utils.errors import (
    AudioFileError,
    ManifestError,
    TrialListError,
)
from speechbrain_ssv.utils.io import write_wav

SR = 16000
TRAIN_SPKS = ("0001", "0002", "0003")
TEST_SPKS = ("0101", "0102")
CONDS = (("I", "1"), ("PAD", "3"), ("PAD", "5"))


def _wav(path, seconds=0.3, seed=0, sr=SR):
    rng = np.random.default_rng(seed)
    write_wav(path, 0.1 * rng.standard_normal(int(seconds * sr)), sr)


def _name(visit, spk, dev, dist, utt, pace="normal"):
    return f"{visit}{spk}_{spk[1:]}{dev}{dist}M_1_{utt:04d}_{pace}"


def make_supplement(root):
    """FFSVC 2020 supplementary-like: F/S/T visit folders of files named
    with original names; 3 speakers x 3 visits x 2 takes x 3 devices."""
    seed = 0
    for spk in TRAIN_SPKS:
        for visit in "FST":
            for utt in (1, 2):
                for dev, dist in CONDS:
                    seed += 1
                    name = _name(visit, spk, dev, dist, utt + 10 * ord(visit))
                    _wav(os.path.join(root, visit, f"{name}.wav"), seed=seed)
    # One take that is too short for min_duration=0.2.
    _wav(
        os.path.join(root, "F", _name("F", "0001", "I", "1", 999) + ".wav"),
        seconds=0.1,
    )


def make_dev2022(root, label_last=True):
    """FFSVC 2022 dev-like: anonymised files + dev_meta_list + trials."""
    lines = ["Original_Name FFSVC2022_Name"]
    k = 0
    names = {}
    for spk in TEST_SPKS:
        for visit in "FS":
            for dev, dist in CONDS[:2]:
                k += 1
                anon = f"ffsvc22_dev_{k:06d}"
                original = _name(visit, spk, dev, dist, k)
                lines.append(f"{original} {anon}")
                _wav(os.path.join(root, "dev", f"{anon}.wav"), seed=100 + k)
                names[(spk, visit, dev)] = anon
    with open(os.path.join(root, "dev_meta_list"), "w") as f:
        f.write("\n".join(lines) + "\n")
    trials = [
        (1, names[("0101", "F", "I")], names[("0101", "S", "PAD")]),
        (0, names[("0101", "F", "I")], names[("0102", "S", "PAD")]),
        (1, names[("0102", "F", "I")], names[("0102", "S", "PAD")]),
    ]
    with open(os.path.join(root, "trials_dev_keys"), "w") as f:
        for lab, a, b in trials:
            if label_last:
                word = "target" if lab else "nontarget"
                f.write(f"{a}.wav {b}.wav {word}\n")
            else:
                f.write(f"{lab} {a}.wav {b}.wav\n")
    return trials


@pytest.fixture
def tree(tmp_path):
    supp, dev = tmp_path / "supplement", tmp_path / "dev2022"
    make_supplement(str(supp))
    trials = make_dev2022(str(dev))
    return str(supp), str(dev), trials


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _prepare(tree, save, **kw):
    supp, dev, _ = tree
    kw.setdefault("min_duration", 0.2)
    kw.setdefault("split_ratio", (67, 33))
    return prepare_ffsvc([supp, dev], save, **kw)


def test_parse_names():
    d = parse_ffsvc_name("F0001_001PAD3M_1_0012_fast")
    assert (d["spk"], d["visit"], d["device"], d["distance"]) == (
        "0001",
        "F",
        "PAD",
        "3.0",
    )
    assert parse_ffsvc_name("S0449_449I0.25M_2_0001_slow")["distance"] == "0.25"
    odd = parse_ffsvc_name("T0007_007XYZ_1_0001_normal")
    assert (odd["device"], odd["distance"]) == ("XYZ", "")
    assert parse_ffsvc_name("ffsvc22_dev_000001") is None


def test_real_layout_csvs(tree, tmp_path):
    out = _prepare(tree, tmp_path / "save")
    train, dev, test = (_rows(out[k]) for k in ("train", "dev", "test"))
    assert list(train[0]) == list(CSV_COLUMNS)
    # Speaker and device labels from the names; trial speakers excluded.
    assert {r["spk_id"] for r in train} == set(TRAIN_SPKS)
    assert {r["spk_id"] for r in dev} <= set(TRAIN_SPKS)
    assert {r["spk_id"] for r in test} == set(TEST_SPKS)
    assert {r["device"] for r in train} == {"I", "PAD"}
    assert {r["distance"] for r in train} == {"1.0", "3.0", "5.0"}
    assert {r["session"] for r in train + dev} == {"F", "S", "T"}
    # The short file is dropped from training only.
    assert not any(r["ID"].endswith("0999_normal") for r in train + dev)
    # Durations and stops from headers; start 0.
    r = train[0]
    assert float(r["duration"]) == pytest.approx(0.3)
    assert (int(r["start"]), int(r["stop"])) == (0, int(0.3 * SR))

    # A take (same speaker/visit/utterance, all devices) is on one side only.
    def take(row):
        p = parse_ffsvc_name(row["ID"])
        return (p["spk"], p["visit"], p["utt"])

    assert not {take(r) for r in train} & {take(r) for r in dev}
    per_take = {}
    for row in dev:
        per_take.setdefault(take(row), set()).add(row["ID"])
    assert per_take and all(len(v) == 3 for v in per_take.values())
    # Test ids are the FFSVC 2022 names; the trial list is normalised.
    _, _, trials = tree
    assert {r["ID"] for r in test} == {x for t in trials for x in t[1:]}
    with open(out["trials"][0]) as f:
        lines = f.read().splitlines()
    assert lines == [f"{lab} {a}.wav {b}.wav" for lab, a, b in trials]
    devices = _rows(out["devices"])
    assert {d["device"] for d in devices} == {"I", "PAD"}
    spk = {r["spk_id"]: r["split"] for r in _rows(out["speakers"])}
    assert spk["0001"] == "train" and spk["0101"] == "test"


def test_rerun_skips_and_option_change_reruns(tree, tmp_path, caplog):
    save = tmp_path / "save"
    out = _prepare(tree, save)
    stamp = os.path.getmtime(out["train"])
    with caplog.at_level(logging.INFO, logger="speechbrain_ssv.data.ffsvc"):
        _prepare(tree, save)
    assert "skipped" in caplog.text
    assert os.path.getmtime(out["train"]) == stamp
    with open(out["opts"]) as f:
        assert json.load(f)["opts"]["min_duration"] == 0.2
    _prepare(tree, save, device_with_distance=True)
    assert {r["device"] for r in _rows(out["train"])} == {
        "I_100",
        "PAD_300",
        "PAD_500",
    }
    # skip_prep returns the paths without preparing.
    supp, dev, _ = tree
    assert prepare_ffsvc([supp, dev], save, skip_prep=True) == out
    with pytest.raises(ManifestError, match="skip_prep"):
        prepare_ffsvc([supp, dev], tmp_path / "empty", skip_prep=True)


def test_trial_formats(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("1 a/b.wav a/c.wav\n0 a/b.wav d/e.wav\n")
    assert read_ffsvc_trials(str(p)) == [(1, "a/b", "a/c"), (0, "a/b", "d/e")]
    p.write_text("x.wav y.wav\n")
    assert read_ffsvc_trials(str(p)) == [(None, "x", "y")]
    p.write_text("x.wav y.wav target\n1 x.wav y.wav\n")
    with pytest.raises(TrialListError, match=r"t\.txt:2"):
        read_ffsvc_trials(str(p))
    p.write_text("x.wav y.wav maybe\n")
    with pytest.raises(TrialListError, match="malformed"):
        read_ffsvc_trials(str(p))


def test_label_first_and_unlabelled_lists(tree, tmp_path):
    supp, dev, trials = tree
    make_dev2022(dev, label_last=False)
    out = _prepare(tree, tmp_path / "a")
    with open(out["trials"][0]) as f:
        assert f.readline().split()[0] == "1"
    unl = tmp_path / "trials_eval"
    unl.write_text(f"{trials[0][1]}.wav {trials[0][2]}.wav\n")
    out = _prepare(tree, tmp_path / "b", trial_lists=[str(unl)])
    with open(out["trials"][0]) as f:
        assert f.read() == f"{trials[0][1]}.wav {trials[0][2]}.wav\n"
    # Only the speaker named in this list is excluded now.
    assert "0102" in {r["spk_id"] for r in _rows(out["train"])}


def test_metadata_csv_layout(tmp_path):
    """Source 1 (the minivox FFSVC variant's format, also for real data whose
    names carry no labels)."""
    root = tmp_path / "corpus"
    lines = ["utt,spk,session,device,distance,gender,split"]
    for spk, split in (("id1", "dev"), ("id2", "dev"), ("id3", "test")):
        for take in ("00001", "00002", "00003"):
            for dev, cm in (("CLS", "000"), ("MIC", "150")):
                rel = f"wav/{spk}/sessA/{take}_{dev}_{cm}.wav"
                _wav(os.path.join(root, rel))
                lines.append(
                    f"{rel},{spk},sessA,{dev},{int(cm) / 100},f,{split}"
                )
    (root / "meta").mkdir()
    (root / "meta" / "ffsvc_meta.csv").write_text("\n".join(lines) + "\n")
    (root / "meta" / "veri_test2.txt").write_text(
        "1 id3/sessA/00001_CLS_000.wav id3/sessA/00002_MIC_150.wav\n"
    )
    out = prepare_ffsvc(
        str(root), tmp_path / "save", split_ratio=(67, 33), min_duration=0.1
    )
    train, dev = _rows(out["train"]), _rows(out["dev"])
    assert {r["spk_id"] for r in train} == {"id1", "id2"}
    assert {r["gender"] for r in train} == {"f"}
    assert {r["device"] for r in train} == {"CLS", "MIC"}
    assert train[0]["ID"].startswith("id1/sessA/")
    # The CLS and MIC renders of a take stay on the same side.
    takes = {}
    for row in dev:
        takes.setdefault(row["ID"].rsplit("_", 2)[0], set()).add(row["device"])
    assert takes and all(v == {"CLS", "MIC"} for v in takes.values())


def test_errors_name_the_file(tree, tmp_path):
    supp, dev, _ = tree
    bad = os.path.join(supp, "F", "not_an_ffsvc_name.wav")
    _wav(bad)
    with pytest.raises(ManifestError, match="not_an_ffsvc_name"):
        _prepare(tree, tmp_path / "s1")
    os.remove(bad)

    trials = tmp_path / "trials.txt"
    trials.write_text("1 ffsvc22_dev_000001.wav ffsvc22_dev_999999.wav\n")
    with pytest.raises(TrialListError, match=r"trials\.txt:1.*999999"):
        _prepare(tree, tmp_path / "s2", trial_lists=[str(trials)])

    meta = tmp_path / "meta.csv"
    meta.write_text("utt,speaker,device\nx.wav,a,b\n")
    with pytest.raises(ManifestError, match=r"meta\.csv.*spk"):
        _prepare(tree, tmp_path / "s3", meta_files=[str(meta), None])

    with pytest.raises(TrialListError, match="no trial list"):
        prepare_ffsvc([supp], tmp_path / "s4")

    _wav(
        os.path.join(supp, "S", _name("S", "0003", "I", "1", 77) + ".wav"),
        sr=48000,
    )
    with pytest.raises(AudioFileError, match="48000"):
        _prepare(tree, tmp_path / "s5")
    out = _prepare(tree, tmp_path / "s6", sample_rate=None)
    assert os.path.isfile(out["train"])


def test_cli(tree, tmp_path):
    supp, dev, _ = tree
    out = main(
        [
            "--data_folder", supp, dev,
            "--save_folder", str(tmp_path / "cli"),
            "--min_duration", "0.2",
            "--split_ratio", "67", "33",
        ]
    )  # fmt: skip
    assert os.path.isfile(out["opts"])
