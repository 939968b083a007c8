"""Tests for speechbrain_ssv.data.voxceleb on small fake VoxCeleb trees."""

import csv
import json
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from speechbrain_ssv.data import voxceleb
from speechbrain_ssv.data.voxceleb import (
    CSV_COLUMNS,
    main,
    prepare_voxceleb,
    read_gender_meta,
)
from speechbrain_ssv.utils.errors import (
    AudioFileError,
    ManifestError,
    TrialListError,
)
from speechbrain_ssv.utils.io import write_wav

SR = 16000
VOX1_SPKS = ("id10001", "id10002", "id10003", "id10004")
VOX2_SPKS = ("id00012", "id00013")
# Trial speakers: id10003 only enrols, id10004 only appears as a test file.
TRIALS = (
    "1 id10003/sessA/00001.wav id10003/sessB/00001.wav\n"
    "0 id10003/sessA/00002.wav id10004/sessA/00001.wav\n"
)


def _wav(path, seconds, seed, sr=SR):
    rng = np.random.default_rng(seed)
    write_wav(path, 0.1 * rng.standard_normal(int(seconds * sr)), sr)


def make_tree(root):
    """Vox1 + Vox2 folders; every speaker has 2 sessions x 3 utterances of
    3.2-4.2 s, and id10001 has one extra 1 s file."""
    vox1, vox2 = os.path.join(root, "vox1"), os.path.join(root, "vox2")
    seed = 0
    for folder, spks in ((vox1, VOX1_SPKS), (vox2, VOX2_SPKS)):
        for spk in spks:
            for sess in ("sessA", "sessB"):
                for k in range(1, 4):
                    seed += 1
                    path = os.path.join(
                        folder, "wav", spk, sess, f"{k:05d}.wav"
                    )
                    _wav(path, 3.2 + 0.1 * (seed % 10), seed)
    _wav(os.path.join(vox1, "wav", "id10001", "sessA", "00009.wav"), 1.0, 99)
    os.makedirs(os.path.join(vox1, "meta"))
    os.makedirs(os.path.join(vox2, "meta"))
    with open(os.path.join(vox1, "meta", "vox1_meta.csv"), "w") as f:
        f.write("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n")
        f.write("id10001\tA.J._Buckley\tm\tIreland\tdev\n")
        f.write("id10002\tA.R._Rahman\tf\tIndia\tdev\n")
        f.write("id10003\tAaron_Tveit\tm\tUSA\ttest\n")
        # id10004 has no metadata -> gender 'u'
    with open(os.path.join(vox2, "meta", "vox2_meta.csv"), "w") as f:
        f.write("VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \n")
        f.write("id00012 ,n000012 ,F ,dev \n")
        f.write("id00013 ,n000013 ,m ,test \n")
    with open(os.path.join(vox1, "meta", "veri_test2.txt"), "w") as f:
        f.write(TRIALS)
    return vox1, vox2


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def tree(tmp_path):
    return make_tree(str(tmp_path))


@pytest.fixture
def prepared(tree, tmp_path):
    save = str(tmp_path / "save")
    paths = prepare_voxceleb(",".join(tree), save, split_ratio=(50, 50))
    return tree, save, paths


def test_outputs_columns_and_rows(prepared):
    (vox1, vox2), save, paths = prepared
    assert paths["trials"] == [os.path.join(save, "veri_test2.txt")]
    for key in ("train", "dev", "test"):
        with open(paths[key]) as f:
            assert f.readline().strip() == ",".join(CSV_COLUMNS)
    train, dev = read_csv(paths["train"]), read_csv(paths["dev"])
    # 4 training speakers x 6 files; the 1 s file is dropped.
    assert len(train) + len(dev) == 24
    ids = [r["ID"] for r in train + dev]
    assert len(set(ids)) == 24
    for row in train + dev:
        spk, sess, utt = row["ID"].split("/")
        assert (row["spk_id"], row["session"]) == (spk, sess)
        assert row["wav"].endswith(f"/wav/{spk}/{sess}/{utt}.wav")
        assert os.path.isabs(row["wav"])
        assert row["start"] == "0"
    test = read_csv(paths["test"])
    assert [r["ID"] for r in test] == [
        "id10003/sessA/00001",
        "id10003/sessB/00001",
        "id10003/sessA/00002",
        "id10004/sessA/00001",
    ]
    with open(paths["trials"][0]) as f:
        assert f.read() == TRIALS


def test_durations_and_stops_equal_headers(prepared):
    _, _, paths = prepared
    rows = read_csv(paths["train"]) + read_csv(paths["test"])
    for row in rows:
        info = sf.info(row["wav"])
        assert int(row["stop"]) == info.frames
        assert float(row["duration"]) == pytest.approx(info.duration, abs=1e-9)


def test_trial_speakers_excluded_from_both_columns(prepared):
    _, _, paths = prepared
    spks = {
        r["spk_id"] for r in read_csv(paths["train"]) + read_csv(paths["dev"])
    }
    assert spks == {"id10001", "id10002", "id00012", "id00013"}
    speakers = {r["spk_id"]: r for r in read_csv(paths["speakers"])}
    assert speakers["id10003"]["split"] == "test"
    assert speakers["id10004"]["split"] == "test"
    assert speakers["id10001"]["split"] == "train"
    assert speakers["id10001"]["n_utts"] == "7"


def test_trial_speakers_kept_when_asked(tree, tmp_path):
    paths = prepare_voxceleb(
        list(tree),
        str(tmp_path / "s"),
        split_ratio=(50, 50),
        exclude_trial_speakers=False,
    )
    rows = read_csv(paths["train"]) + read_csv(paths["dev"])
    assert {"id10003", "id10004"} <= {r["spk_id"] for r in rows}
    speakers = {r["spk_id"]: r["split"] for r in read_csv(paths["speakers"])}
    assert speakers["id10003"] == "train+test"


def test_gender_merged_from_vox1_and_vox2(prepared):
    (vox1, vox2), _, paths = prepared
    assert read_gender_meta([vox1, vox2]) == {
        "id10001": "m",
        "id10002": "f",
        "id10003": "m",
        "id00012": "f",
        "id00013": "m",
    }
    rows = read_csv(paths["train"]) + read_csv(paths["test"])
    gender = {r["spk_id"]: r["gender"] for r in rows}
    assert gender["id00012"] == "f"
    assert gender["id10002"] == "f"
    assert gender["id10004"] == "u"


def test_short_files_dropped_and_reported(tree, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=voxceleb.__name__):
        paths = prepare_voxceleb(
            list(tree), str(tmp_path / "s"), split_ratio=(50, 50)
        )
    ids = {r["ID"] for r in read_csv(paths["train"]) + read_csv(paths["dev"])}
    assert "id10001/sessA/00009" not in ids
    assert "1 files shorter than min_duration=3.00 s" in caplog.text
    # With a lower threshold the short file is kept.
    paths = prepare_voxceleb(
        list(tree), str(tmp_path / "s2"), split_ratio=(50, 50), min_duration=0.5
    )
    ids = {r["ID"] for r in read_csv(paths["train"]) + read_csv(paths["dev"])}
    assert "id10001/sessA/00009" in ids


def test_split_per_speaker_deterministic(tree, tmp_path):
    a = prepare_voxceleb(list(tree), str(tmp_path / "a"), split_ratio=(50, 50))
    b = prepare_voxceleb(list(tree), str(tmp_path / "b"), split_ratio=(50, 50))
    c = prepare_voxceleb(
        list(tree), str(tmp_path / "c"), split_ratio=(50, 50), seed=7
    )
    dev_a = [r["ID"] for r in read_csv(a["dev"])]
    assert dev_a == [r["ID"] for r in read_csv(b["dev"])]
    assert dev_a != [r["ID"] for r in read_csv(c["dev"])]
    train_spks = [r["spk_id"] for r in read_csv(a["train"])]
    dev_spks = [r["spk_id"] for r in read_csv(a["dev"])]
    for spk in set(train_spks):
        # 6 usable files, 50 % -> 3 dev, 3 train each.
        assert train_spks.count(spk) == 3 and dev_spks.count(spk) == 3


def test_max_speakers_subset(tree, tmp_path):
    paths = prepare_voxceleb(
        list(tree), str(tmp_path / "s"), split_ratio=(50, 50), max_speakers=2
    )
    spks = {r["spk_id"] for r in read_csv(paths["train"])}
    assert len(spks) == 2
    assert len(read_csv(paths["test"])) == 4


def test_missing_trial_file_names_list_line_and_path(tree, tmp_path):
    vox1, vox2 = tree
    bad = tmp_path / "bad_trials.txt"
    bad.write_text(
        "1 id10003/sessA/00001.wav id10003/sessB/00001.wav\n"
        "0 id10003/sessA/00001.wav id10099/nope/00001.wav\n"
    )
    with pytest.raises(TrialListError) as err:
        prepare_voxceleb([vox1, vox2], str(tmp_path / "s"), [str(bad)])
    assert f"{bad}:2" in str(err.value)
    assert "id10099/nope/00001.wav" in str(err.value)


def test_missing_trial_list_says_where_it_looked(tree, tmp_path):
    vox1, vox2 = tree
    with pytest.raises(TrialListError) as err:
        prepare_voxceleb(
            [vox1, vox2], str(tmp_path / "s"), ["list_test_all2.txt"]
        )
    assert os.path.join(vox2, "meta", "list_test_all2.txt") in str(err.value)


def test_malformed_trial_line(tree, tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("yes id10003/sessA/00001.wav\n")
    with pytest.raises(TrialListError, match="t.txt:1: malformed"):
        prepare_voxceleb(list(tree), str(tmp_path / "s"), [str(bad)])


def test_wrong_sample_rate_raises(tree, tmp_path):
    vox1, _ = tree
    bad = os.path.join(vox1, "wav", "id10002", "sessA", "00002.wav")
    _wav(bad, 3.5, 1, sr=8000)
    with pytest.raises(AudioFileError, match="sample rate is 8000 Hz"):
        prepare_voxceleb(list(tree), str(tmp_path / "s"))


def test_empty_folder_raises(tmp_path):
    empty = tmp_path / "empty"
    (empty / "wav").mkdir(parents=True)
    with pytest.raises(ManifestError) as err:
        prepare_voxceleb(str(empty), str(tmp_path / "s"))
    assert str(empty) in str(err.value)
    assert "<spk_id>/<session>/<utt>.wav" in str(err.value)


def test_all_speakers_in_trials_raises_and_warns(tree, tmp_path, caplog):
    """A Vox1-E-like list covering every speaker leaves nothing to train."""
    vox1, _ = tree
    lst = tmp_path / "list_test_all2.txt"
    lst.write_text(
        "".join(
            f"1 {s}/sessA/00001.wav {s}/sessB/00001.wav\n" for s in VOX1_SPKS
        )
    )
    with caplog.at_level(logging.WARNING, logger=voxceleb.__name__):
        with pytest.raises(ManifestError, match="no training speaker is left"):
            prepare_voxceleb(vox1, str(tmp_path / "s"), [str(lst)])
    assert "4 of 4 speakers" in caplog.text
    assert "list_test_all2.txt" in caplog.text


def test_skip_when_options_unchanged_and_redo_when_changed(
    tree, tmp_path, monkeypatch
):
    save = str(tmp_path / "s")
    first = prepare_voxceleb(list(tree), save, split_ratio=(50, 50))
    with open(first["opts"]) as f:
        assert json.load(f)["opts"]["seed"] == 1986

    calls = []
    real_info = voxceleb.audio_info

    def counting_info(path, *args, **kwargs):
        calls.append(path)
        return real_info(path, *args, **kwargs)

    monkeypatch.setattr(voxceleb, "audio_info", counting_info)
    again = prepare_voxceleb(list(tree), save, split_ratio=(50, 50))
    assert again == first
    assert calls == []

    prepare_voxceleb(list(tree), save, split_ratio=(50, 50), seed=3)
    assert calls
    with open(first["opts"]) as f:
        assert json.load(f)["opts"]["seed"] == 3

    # A missing output forces a redo even with the same options.
    calls.clear()
    os.remove(first["dev"])
    prepare_voxceleb(list(tree), save, split_ratio=(50, 50), seed=3)
    assert calls and os.path.isfile(first["dev"])


def test_skip_prep(tree, tmp_path):
    save = str(tmp_path / "s")
    with pytest.raises(ManifestError, match="skip_prep=True"):
        prepare_voxceleb(list(tree), save, skip_prep=True)
    paths = prepare_voxceleb(list(tree), save, split_ratio=(50, 50))
    assert prepare_voxceleb("/nonexistent", save, skip_prep=True) == paths


def test_cli(tree, tmp_path, capsys):
    vox1, vox2 = tree
    save = str(tmp_path / "cli")
    paths = main(
        [
            "--data_folder",
            vox1,
            vox2,
            "--save_folder",
            save,
            "--split_ratio",
            "50",
            "50",
        ]
    )
    assert json.loads(capsys.readouterr().out) == paths
    assert len(read_csv(paths["test"])) == 4


def test_new_or_removed_audio_is_noticed(tree, tmp_path):
    # A speaker folder added after preparation used to be silently ignored
    # ("up to date (options unchanged)").
    vox1, vox2 = tree
    save = str(tmp_path / "s")
    first = prepare_voxceleb(list(tree), save, split_ratio=(50, 50))
    speakers = {r["spk_id"] for r in read_csv(first["train"])}
    assert "id00014" not in speakers
    for k in range(1, 4):
        _wav(
            os.path.join(vox2, "wav", "id00014", "sessA", f"{k:05d}.wav"),
            3.5,
            k,
        )
    again = prepare_voxceleb(list(tree), save, split_ratio=(50, 50))
    rows = read_csv(again["train"]) + read_csv(again["dev"])
    assert "id00014" in {r["spk_id"] for r in rows}
    shutil.rmtree(os.path.join(vox2, "wav", "id00014"))
    third = prepare_voxceleb(list(tree), save, split_ratio=(50, 50))
    rows = read_csv(third["train"]) + read_csv(third["dev"])
    assert "id00014" not in {r["spk_id"] for r in rows}


def test_missing_data_folder_is_called_missing(tmp_path):
    with pytest.raises(ManifestError, match="nope: data folder does not exist"):
        prepare_voxceleb(str(tmp_path / "nope"), str(tmp_path / "s"))
