"""Tests for speechbrain_ssv.data.pipelines."""

import os

import numpy as np
import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataloader import make_dataloader

from speechbrain_ssv.data import pipelines
from speechbrain_ssv.data.pipelines import (
    crop_pipeline,
    full_pipeline,
    load_manifest,
    make_supervised_datasets,
    make_unlabelled_dataset,
)
from speechbrain_ssv.utils.errors import AudioFileError, ManifestError
from speechbrain_ssv.utils.io import write_wav

SR = 16000
N = 16000
# A ramp with a distinct 16-bit value per sample: a crop's values tell
# which samples were read.
STEP = 2.0 / N


def ramp_wav(path, n=N, sr=SR):
    write_wav(path, -1.0 + STEP * np.arange(n), sr)


def indices(sig):
    return np.rint((sig.numpy().astype(np.float64) + 1.0) / STEP).astype(int)


HEADER = "ID,duration,wav,start,stop,spk_id,session,gender"


def write_manifest(path, rows):
    with open(path, "w") as f:
        f.write(HEADER + "\n")
        for row in rows:
            f.write(",".join(str(x) for x in row) + "\n")
    return str(path)


@pytest.fixture
def wav(tmp_path):
    path = str(tmp_path / "ramp.wav")
    ramp_wav(path)
    return path


def test_random_crop_length_and_inside_segment(wav):
    crop = crop_pipeline(0.25, random_crop=True)
    starts = set()
    torch.manual_seed(0)
    for _ in range(30):
        sig = crop.func(wav, "4000", "12000")
        assert sig.shape == (4000,)
        idx = indices(sig)
        assert idx.min() >= 4000 and idx.max() < 12000
        assert np.all(np.diff(idx) == 1)
        starts.add(idx[0])
    assert len(starts) > 10


def test_centre_crop_is_deterministic(wav):
    crop = crop_pipeline(0.25, random_crop=False)
    idx = indices(crop.func(wav, "4000", "12000"))
    assert idx[0] == 4000 + (8000 - 4000) // 2
    assert len(idx) == 4000


def test_crop_reads_only_the_window(wav, monkeypatch):
    seen = []
    real = pipelines.read_audio_checked

    def spy(path, start=0, stop=None, expected_sr=16000):
        seen.append((start, stop))
        return real(path, start, stop, expected_sr)

    monkeypatch.setattr(pipelines, "read_audio_checked", spy)
    crop_pipeline(0.1).func(wav, "0", str(N))
    ((start, stop),) = seen
    assert stop - start == 1600


def test_crop_reproducible_under_torch_seed(wav):
    crop = crop_pipeline(0.1)
    torch.manual_seed(5)
    a = crop.func(wav, "0", str(N))
    torch.manual_seed(5)
    b = crop.func(wav, "0", str(N))
    assert torch.equal(a, b)


def test_short_segment_is_tiled(wav):
    for random_crop in (True, False):
        sig = crop_pipeline(0.25, random_crop=random_crop).func(
            wav, "100", "1100"
        )
        assert sig.shape == (4000,)
        idx = indices(sig)
        assert idx.min() >= 100 and idx.max() < 1100
        assert set(idx) == set(range(100, 1100))


def test_empty_segment_raises(wav):
    with pytest.raises(AudioFileError, match=r"\[500, 500\) is empty"):
        crop_pipeline(0.1).func(wav, "500", "500")


def test_wrong_sample_rate_raises(tmp_path):
    path = str(tmp_path / "8k.wav")
    ramp_wav(path, sr=8000)
    with pytest.raises(AudioFileError, match="8000 Hz"):
        crop_pipeline(0.1).func(path, "0", str(N))


def test_full_pipeline_reads_segment(wav):
    idx = indices(full_pipeline().func(wav, "10", "110"))
    assert list(idx) == list(range(10, 110))


def test_load_manifest_errors(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(str(tmp_path / "nope.csv"))
    empty = write_manifest(tmp_path / "empty.csv", [])
    with pytest.raises(ManifestError, match="has no rows") as err:
        load_manifest(empty)
    assert "empty.csv" in str(err.value)
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    with pytest.raises(ManifestError, match="is empty"):
        load_manifest(str(blank))
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("ID,wav\nu1,a.wav\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(str(nocol))
    assert "['start', 'stop', 'duration']" in str(err.value)
    assert "it has ['ID', 'wav']" in str(err.value)


def test_load_manifest_replacements(tmp_path):
    path = write_manifest(
        tmp_path / "m.csv",
        [("u1", "1.0", "$data_root/a.wav", 0, N, "s", "x", "m")],
    )
    ds = load_manifest(path, data_folder="/corpus")
    assert ds.data["u1"]["wav"] == "/corpus/a.wav"


def make_corpus(tmp_path, spks=("id1", "id2", "id3"), per_spk=3):
    rows = []
    for spk in spks:
        for k in range(per_spk):
            path = tmp_path / "wav" / spk / "s1" / f"{k:05d}.wav"
            ramp_wav(str(path))
            rows.append(
                (
                    f"{spk}/s1/{k:05d}",
                    "1.0",
                    "$data_root/" + os.path.relpath(path, tmp_path),
                    0,
                    N,
                    spk,
                    "s1",
                    "m",
                )
            )
    return rows


def test_supervised_datasets(tmp_path):
    rows = make_corpus(tmp_path)
    train_csv = write_manifest(
        tmp_path / "train.csv", rows[:2] + rows[3:5] + rows[6:8]
    )
    dev_csv = write_manifest(tmp_path / "dev.csv", [rows[2], rows[5], rows[8]])
    enc_path = str(tmp_path / "label_encoder.txt")
    train, dev, enc = make_supervised_datasets(
        train_csv, dev_csv, 0.5, enc_path, data_folder=str(tmp_path)
    )
    assert os.path.isfile(enc_path)
    assert len(enc) == 3
    loader = make_dataloader(train, batch_size=6)
    batch = next(iter(loader))
    assert isinstance(batch, PaddedBatch)
    assert batch.sig.data.shape == (6, 8000)
    labels = batch.spk_id_encoded.data
    assert labels.dtype == torch.long and labels.shape == (6, 1)
    decoded = [enc.decode_ndim(int(x)) for x in labels[:, 0]]
    assert decoded == [i.split("/")[0] for i in batch.id]
    # Dev uses the centre crop: the same tensor every time.
    assert torch.equal(dev[0]["sig"], dev[0]["sig"])
    assert indices(dev[0]["sig"])[0] == 4000

    # Reloading from the saved encoder gives the same mapping.
    _, _, enc2 = make_supervised_datasets(
        train_csv, dev_csv, 0.5, enc_path, str(tmp_path)
    )
    assert enc2.lab2ind == enc.lab2ind


def test_supervised_stale_encoder_and_unknown_dev_speaker(tmp_path):
    rows = make_corpus(tmp_path)
    enc_path = str(tmp_path / "enc.txt")
    small = write_manifest(tmp_path / "small.csv", rows[:3])
    make_supervised_datasets(small, small, 0.5, enc_path, str(tmp_path))
    full = write_manifest(tmp_path / "full.csv", rows)
    with pytest.raises(ManifestError, match="delete it to rebuild"):
        make_supervised_datasets(full, full, 0.5, enc_path, str(tmp_path))
    with pytest.raises(ManifestError, match="absent from") as err:
        make_supervised_datasets(
            small, full, 0.5, str(tmp_path / "e2.txt"), str(tmp_path)
        )
    assert "id2" in str(err.value)


def test_unlabelled_dataset_has_no_speaker_label(tmp_path):
    rows = make_corpus(tmp_path)
    csv_path = write_manifest(tmp_path / "train.csv", rows)
    ds = make_unlabelled_dataset(csv_path, 0.5, data_folder=str(tmp_path))
    batch = next(iter(make_dataloader(ds, batch_size=4)))
    assert not hasattr(batch, "spk_id")
    with pytest.raises(KeyError):
        batch["spk_id"]
    assert len(list(batch)) == 2  # id, sig
    assert batch.sig.data.shape == (4, 8000)
    for row in ds.data.values():
        assert "spk_id" not in row
    # The label is gone from the dataset itself, not just from the outputs.
    ds.set_output_keys(["id", "spk_id"])
    with pytest.raises(KeyError):
        ds[0]


def test_unlabelled_views_are_independent_crops(tmp_path):
    rows = make_corpus(tmp_path, spks=("id1",), per_spk=1)
    csv_path = write_manifest(tmp_path / "train.csv", rows)
    ds = make_unlabelled_dataset(
        csv_path, 0.25, n_views=3, data_folder=str(tmp_path)
    )
    torch.manual_seed(0)
    item = ds[0]
    assert sorted(item) == ["id", "view0", "view1", "view2"]
    firsts = {int(indices(item[f"view{i}"])[0]) for i in range(3)}
    assert all(item[f"view{i}"].shape == (4000,) for i in range(3))
    assert len(firsts) == 3


def test_pipelines_on_prepared_voxceleb(tmp_path):
    """The manifests of prepare_voxceleb feed both dataset builders."""
    from speechbrain_ssv.data.voxceleb import prepare_voxceleb

    rng = np.random.default_rng(0)
    for spk in ("id1", "id2", "id3"):
        for k in range(4):
            write_wav(
                str(tmp_path / "vox" / "wav" / spk / "s" / f"{k:05d}.wav"),
                0.1 * rng.standard_normal(SR),
                SR,
            )
    (tmp_path / "trials.txt").write_text("1 id3/s/00000.wav id3/s/00001.wav\n")
    paths = prepare_voxceleb(
        str(tmp_path / "vox"),
        str(tmp_path / "save"),
        [str(tmp_path / "trials.txt")],
        split_ratio=(75, 25),
        min_duration=0.5,
    )
    train, dev, enc = make_supervised_datasets(
        paths["train"], paths["dev"], 0.5, str(tmp_path / "save" / "enc.txt")
    )
    assert len(enc) == 2 and len(train) == 6 and len(dev) == 2
    assert train[0]["sig"].shape == (8000,)
    ssl = make_unlabelled_dataset(paths["train"], 0.5, n_views=2)
    assert sorted(ssl[0]) == ["id", "view0", "view1"]


def _ramp_file(tmp_path, n_samples):
    """A float WAV whose sample i holds i / 2**20 exactly, so a crop's
    values give back its sample positions (16-bit PCM could not tell
    apart the samples of a file longer than 4 s)."""
    import soundfile as sf

    path = str(tmp_path / "ramp.wav")
    ramp = (np.arange(n_samples) / 2**20).astype(np.float32)
    sf.write(path, ramp, 16000, subtype="FLOAT")
    return path


def _positions(view):
    return set(torch.round(view * 2**20).long().tolist())


@pytest.mark.parametrize("seconds", [4.0, 2.5])
def test_disjoint_views_share_no_sample(tmp_path, seconds):
    from speechbrain_ssv.data.pipelines import disjoint_crops_pipeline

    n = int(seconds * 16000)
    path = _ramp_file(tmp_path, n)
    item = disjoint_crops_pipeline(1.79, 2)
    torch.manual_seed(0)
    first_is_earlier, starts = 0, set()
    for _ in range(100):
        a, b = item.func(path, "0", str(n))
        assert a.shape == b.shape == (int(round(1.79 * 16000)),)
        pa, pb = _positions(a), _positions(b)
        assert pa.isdisjoint(pb)
        first_is_earlier += min(pa) < min(pb)
        starts.add(min(pa))
    # Random window order and positions (4 s leaves 0.42 s of slack).
    assert 30 < first_is_earlier < 70
    if seconds == 4.0:
        assert len(starts) > 50


def test_unlabelled_dataset_disjoint_views_vs_independent_crops(tmp_path):
    from speechbrain_ssv.data.pipelines import make_unlabelled_dataset

    n = 4 * 16000
    path = _ramp_file(tmp_path, n)
    csv = tmp_path / "t.csv"
    csv.write_text(
        f"ID,duration,wav,start,stop,spk_id\nu1,4.0,{path},0,{n},s1\n"
    )
    torch.manual_seed(0)
    overlapping = {True: 0, False: 0}
    for disjoint in (True, False):
        ds = make_unlabelled_dataset(
            str(csv), 1.79, n_views=2, disjoint_views=disjoint
        )
        for _ in range(40):
            item = ds[0]
            shared = _positions(item["view0"]) & _positions(item["view1"])
            overlapping[disjoint] += bool(shared)
    assert overlapping[True] == 0
    # Independent 1.79 s crops of a 4 s file overlap most of the time.
    assert overlapping[False] > 20


def test_multicrop_disjoint_locals_avoid_the_teacher_view(tmp_path):
    """SDPN's local views (student) share no audio with global0 (the
    teacher's view) when the file leaves room, and overlap it least when
    it does not; independent crops of a minivox-length file overlap it
    most of the time."""
    from speechbrain_ssv.data.pipelines import make_multicrop_dataset

    shared = {}
    for seconds in (5.5, 4.0):
        n = int(seconds * 16000)
        path = _ramp_file(tmp_path, n)
        csv = tmp_path / f"t{seconds}.csv"
        csv.write_text(
            f"ID,duration,wav,start,stop,spk_id\nu1,{seconds},{path},0,{n},s1\n"
        )
        for disjoint in (True, False):
            torch.manual_seed(0)
            ds = make_multicrop_dataset(
                str(csv), 3.0, 1.5, n_global=2, n_local=2,
                disjoint_locals=disjoint,
            )  # fmt: skip
            count = 0
            for _ in range(50):
                item = ds[0]
                assert item["global1"].shape == (48000,)
                assert item["local1"].shape == (24000,)
                teacher = _positions(item["global0"])
                for key in ("local0", "local1"):
                    overlap = len(teacher & _positions(item[key]))
                    count += overlap > 0
                    if disjoint and seconds == 4.0:
                        # 1 s beside a 3 s global, the local at the end
                        # with more room: 1 s in common at worst (global0
                        # in the middle), where independent crops can
                        # share all 1.5 s.
                        room = max(min(teacher), n - 1 - max(teacher))
                        assert overlap == 24000 - room
            shared[seconds, disjoint] = count / 100
    # 5.5 s leaves 1.5 s beside global0 for 80 % of its positions.
    assert shared[5.5, True] <= 0.3
    assert shared[5.5, False] >= 0.6
    assert shared[4.0, False] >= 0.9
