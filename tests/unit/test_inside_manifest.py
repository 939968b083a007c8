"""INSIDE bookkeeping: synthetic speaker ids, the pairs table and merging
synthetic utterances into a real training manifest."""

import csv
import math
import os

import pytest

from speechbrain_ssv.inside.manifest import (
    PAIR_COLUMNS,
    SyntheticIdentity,
    merge_manifests,
    read_pairs,
    synthetic_speaker_id,
    write_pairs,
)
from speechbrain_ssv.inside.pairing import SpeakerPair
from speechbrain_ssv.utils.errors import ManifestError, SSVInputError

HEAD = "ID,duration,wav,start,stop,spk_id,session,gender\n"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def real_csv(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text(
        HEAD + "id00001/s1/00001,3.5,/data/a.wav,0,56000,id00001,s1,m\n"
        "id00001/s1/00002,4.0,/data/b.wav,0,64000,id00001,s1,m\n"
        "id00002/s2/00001,5.0,/data/c.wav,0,80000,id00002,s2,f\n",
        encoding="utf-8",
    )
    return str(p)


@pytest.fixture
def pairs():
    return [
        SpeakerPair("id00001", "id00003", "m", 1, 0.8125),
        SpeakerPair("id00002", "id00004", "f", 2, 0.5),
        SpeakerPair("id00005", "id00006", "f", 0, float("nan")),
    ]


def test_synthetic_ids_are_not_voxceleb_shaped():
    assert synthetic_speaker_id(0) == "syn000000"
    assert synthetic_speaker_id(42, prefix="tts", width=3) == "tts042"
    assert synthetic_speaker_id(1_234_567) == "syn1234567"
    for bad in ("id", "", "a/b", "1x", "sy n"):
        with pytest.raises(SSVInputError, match="prefix"):
            synthetic_speaker_id(1, prefix=bad)
    with pytest.raises(SSVInputError, match="index"):
        synthetic_speaker_id(-1)


def test_pairs_table_round_trip(tmp_path, pairs):
    path = str(tmp_path / "pairs.csv")
    written = write_pairs(path, pairs, alpha=[0.5, 0.25, 0.75], start=7)
    assert [w.syn_spk_id for w in written] == [
        "syn000007",
        "syn000008",
        "syn000009",
    ]
    with open(path, encoding="utf-8") as f:
        assert f.readline().strip() == ",".join(PAIR_COLUMNS)
    back = read_pairs(path)
    assert back[:2] == written[:2]
    assert back[0] == SyntheticIdentity(
        "syn000007", "id00001", "id00003", "m", 0.5, 1, 0.8125
    )
    assert back[2].alpha == 0.75 and math.isnan(back[2].cosine)
    assert back[2].layer == 0
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp.csv")]
    # Re-numbering a table keeps the sources and the alpha given.
    again = write_pairs(str(tmp_path / "b.csv"), back, alpha=0.5, prefix="x")
    assert [(i.syn_spk_id, i.source_b) for i in again][:2] == [
        ("x000000", "id00003"),
        ("x000001", "id00004"),
    ]


def test_write_pairs_checks_collisions_and_inputs(tmp_path, pairs, real_csv):
    path = str(tmp_path / "pairs.csv")
    write_pairs(path, pairs, real_speakers=real_csv)
    clash = tmp_path / "clash.csv"
    clash.write_text(HEAD + "u,1,/w.wav,0,1,syn000001,s,m\n", encoding="utf-8")
    with pytest.raises(SSVInputError, match=r"clash\.csv.*syn000001"):
        write_pairs(path, pairs, real_speakers=str(clash))
    with pytest.raises(SSVInputError, match="real_speakers"):
        write_pairs(path, pairs, real_speakers=["syn000002"])
    with pytest.raises(SSVInputError, match="with itself"):
        write_pairs(path, [SpeakerPair("a", "a", "m", 1, 1.0)])
    with pytest.raises(SSVInputError, match="2 values for 3 pairs"):
        write_pairs(path, pairs, alpha=[0.5, 0.5])
    # The file from the first successful call is untouched.
    assert len(read_pairs(path)) == 3


def test_read_pairs_errors(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("syn_spk_id,source_a\nsyn1,a\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"p\.csv.*lacks column"):
        read_pairs(str(p))
    head = ",".join(PAIR_COLUMNS) + "\n"
    p.write_text(
        head + "syn1,a,b,m,0.5,1,0.9\nsyn1,c,d,m,0.5,1,0.9\n", encoding="utf-8"
    )
    with pytest.raises(ManifestError, match=r"p\.csv:3.*repeated"):
        read_pairs(str(p))
    p.write_text(head + "syn1,a,b,m,half,1,0.9\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"p\.csv:2.*malformed"):
        read_pairs(str(p))


def _synthetic_manifest(
    tmp_path, rows, header="ID,duration,wav,start,stop,spk_id", name="syn.csv"
):
    p = tmp_path / name
    p.write_text(
        header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8"
    )
    return str(p)


def test_merge_with_metadata(tmp_path, real_csv, pairs):
    pairs_csv = str(tmp_path / "pairs.csv")
    write_pairs(pairs_csv, pairs[:2], alpha=0.5)
    syn = _synthetic_manifest(
        tmp_path,
        [
            "syn000000/0,4.2,/syn/0/0.wav,0,67200,syn000000,,tts-1",
            "syn000000/1,3.1,/syn/0/1.wav,0,49600,syn000000,,tts-1",
            "syn000001/0,5.0,/syn/1/0.wav,0,80000,syn000001,f,tts-1",
        ],
        header="ID,duration,wav,start,stop,spk_id,gender,text_id",
    )
    out = str(tmp_path / "merged.csv")
    summary = merge_manifests(real_csv, syn, out, pairs_csv=pairs_csv)
    assert summary == {
        "n_real": 3,
        "n_synthetic": 3,
        "n_real_speakers": 2,
        "n_synthetic_speakers": 2,
        "columns": [
            "ID",
            "duration",
            "wav",
            "start",
            "stop",
            "spk_id",
            "session",
            "gender",
            "text_id",
            "source_a",
            "source_b",
            "alpha",
            "synthetic",
        ],
    }
    rows = _rows(out)
    assert [r["ID"] for r in rows] == [
        "id00001/s1/00001",
        "id00001/s1/00002",
        "id00002/s2/00001",
        "syn000000/0",
        "syn000000/1",
        "syn000001/0",
    ]
    real, syn_rows = rows[:3], rows[3:]
    assert all(r["synthetic"] == "0" and r["source_a"] == "" for r in real)
    assert all(r["text_id"] == "" for r in real)
    assert real[2]["gender"] == "f" and real[0]["session"] == "s1"
    assert all(r["synthetic"] == "1" for r in syn_rows)
    assert syn_rows[0]["source_a"] == "id00001"
    assert syn_rows[0]["source_b"] == "id00003"
    assert syn_rows[0]["gender"] == "m"  # filled from the pairs table
    assert syn_rows[0]["alpha"] == "0.5"
    assert syn_rows[2]["gender"] == "f" and syn_rows[2]["text_id"] == "tts-1"
    assert syn_rows[1]["stop"] == "49600" and syn_rows[1]["session"] == ""


def test_merge_without_metadata_is_a_plain_union(tmp_path, real_csv):
    syn = _synthetic_manifest(
        tmp_path, ["syn000000/0,4,/s.wav,0,64000,syn000000"]
    )
    out = str(tmp_path / "merged.csv")
    summary = merge_manifests(real_csv, syn, out, with_metadata=False)
    assert summary["columns"] == [
        "ID",
        "duration",
        "wav",
        "start",
        "stop",
        "spk_id",
        "session",
        "gender",
    ]
    rows = _rows(out)
    assert len(rows) == 4 and rows[-1]["gender"] == ""
    # Merging the merged file again keeps its synthetic flags.
    again = _synthetic_manifest(
        tmp_path, ["syn000001/0,4,/t.wav,0,64000,syn000001"], name="b.csv"
    )
    merged = str(tmp_path / "merged_with_flags.csv")
    merge_manifests(real_csv, syn, merged)
    twice = str(tmp_path / "twice.csv")
    merge_manifests(merged, again, twice)
    assert [r["synthetic"] for r in _rows(twice)] == ["0", "0", "0", "1", "1"]


def test_merge_errors_name_the_file(tmp_path, real_csv):
    out = str(tmp_path / "merged.csv")
    bad = _synthetic_manifest(
        tmp_path, ["x,4,/s.wav,0,64000"], header="ID,duration,wav,start,stop"
    )
    with pytest.raises(ManifestError, match=r"syn\.csv.*spk_id"):
        merge_manifests(real_csv, bad, out)
    dup = _synthetic_manifest(
        tmp_path, ["id00001/s1/00002,4,/s.wav,0,64000,syn000000"]
    )
    with pytest.raises(ManifestError, match=r"train\.csv:3.*id00001/s1/00002"):
        merge_manifests(real_csv, dup, out)
    clash = _synthetic_manifest(tmp_path, ["syn/0,4,/s.wav,0,64000,id00002"])
    with pytest.raises(ManifestError, match=r"train\.csv:4.*'id00002'"):
        merge_manifests(real_csv, clash, out)
    twice = _synthetic_manifest(
        tmp_path,
        ["syn/0,4,/s.wav,0,64000,syn0", "syn/0,4,/s.wav,0,64000,syn0"],
    )
    with pytest.raises(ManifestError, match=r"syn\.csv:3.*repeats"):
        merge_manifests(real_csv, twice, out)
    assert not os.path.exists(out)
    ok = _synthetic_manifest(tmp_path, ["syn/0,4,/s.wav,0,64000,syn000009"])
    pairs_csv = str(tmp_path / "pairs.csv")
    write_pairs(pairs_csv, [SpeakerPair("a", "b", "m", 1, 0.5)])
    with pytest.raises(ManifestError, match=r"pairs\.csv.*syn000009"):
        merge_manifests(real_csv, ok, out, pairs_csv=pairs_csv)
    wrong_gender = _synthetic_manifest(
        tmp_path,
        ["syn/0,4,/s.wav,0,64000,syn000000,f"],
        header="ID,duration,wav,start,stop,spk_id,gender",
    )
    with pytest.raises(ManifestError, match=r"syn\.csv:2.*contradicts"):
        merge_manifests(real_csv, wrong_gender, out, pairs_csv=pairs_csv)
    with pytest.raises(ManifestError, match="is also an input"):
        merge_manifests(real_csv, ok, real_csv)
    assert not os.path.exists(out)
