"""Trial-list parsing and checking, embedding extraction and its cache, and
the end-to-end verification run on a few tiny wav files."""

import json
import os

import numpy as np
import pytest
import torch

from speechbrain_ssv.eval import embeddings as emb_mod
from speechbrain_ssv.eval.baselines import MFCCMeanEncoder
from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.eval.trials import (
    check_trial_files,
    index_trials,
    read_trials,
)
from speechbrain_ssv.eval.verification import (
    evaluate_verification,
    utt_to_wav_from_csv,
)
from speechbrain_ssv.utils.errors import (
    AudioFileError,
    ManifestError,
    TrialListError,
)
from speechbrain_ssv.utils.io import write_wav

SR = 16000


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


# ---------------------------------------------------------------- trials


def test_read_trials_voxceleb_format(tmp_path):
    p = _write(
        tmp_path / "veri.txt",
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "\n"
        "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n",
    )
    trials = read_trials(p)
    assert [t.label for t in trials] == [1, 0]
    assert trials[0].enrol == "id10270/x6uYqmx31kE/00001"
    assert trials[1].test == "id10300/ize_eiCFEg0/00003"
    assert trials[1].line == 3
    ids, e, t, y = index_trials(trials)
    assert ids[0] == "id10270/x6uYqmx31kE/00001"
    assert (
        e.tolist() == [0, 0] and t.tolist() == [1, 2] and y.tolist() == [1, 0]
    )


def test_read_trials_unlabelled(tmp_path):
    trials = read_trials(
        _write(tmp_path / "t.txt", "a.wav b.wav\nc.wav d.wav\n")
    )
    assert trials[1].label is None and trials[1].enrol == "c"
    assert index_trials(trials)[3] is None


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "is empty"),
        ("1 a.wav\n1 a b c\n", "line 2: expected"),
        (
            "1 a.wav b.wav\nyes a.wav b.wav\n",
            "line 2: label 'yes' is not 0 or 1",
        ),
        ("1 a.wav b.wav\na.wav b.wav\n", "line 2: has 2 fields"),
    ],
)
def test_read_trials_errors(tmp_path, text, match):
    p = _write(tmp_path / "bad.txt", text)
    with pytest.raises(TrialListError, match=match) as err:
        read_trials(p)
    assert "bad.txt" in str(err.value)


def test_read_trials_missing_file(tmp_path):
    with pytest.raises(TrialListError, match="does not exist"):
        read_trials(tmp_path / "nope.txt")


def test_check_trial_files(tmp_path):
    wav = tmp_path / "a.wav"
    write_wav(wav, np.zeros(160), SR)
    p = _write(
        tmp_path / "t.txt",
        "1 s/a.wav s/a.wav\n0 s/a.wav s/b.wav\n0 s/c.wav s/a.wav\n",
    )
    trials = read_trials(p)
    with pytest.raises(TrialListError) as err:
        check_trial_files(
            trials,
            {"s/a": str(wav), "s/b": (str(tmp_path / "gone.wav"), 0, None)},
        )
    msg = str(err.value)
    assert "t.txt: line 2: test utterance 's/b'" in msg
    assert "gone.wav does not exist" in msg
    assert "1 more" in msg  # s/c is not in the manifest either
    check_trial_files(trials[:1], {"s/a": str(wav)})


# ------------------------------------------------------------ embeddings


def _wavs(tmp_path, lengths):
    items = []
    for i, n in enumerate(lengths):
        p = tmp_path / f"u{i}.wav"
        write_wav(p, 0.1 * np.sin(np.arange(n) * (0.01 + 0.01 * i)), SR)
        items.append((f"u{i}", str(p)))
    return items


class _CountingEncoder:
    """Returns [B, 1, 2]: valid length and sum of valid samples."""

    def __init__(self):
        self.seen = 0
        self.batch_lengths = []

    def __call__(self, wavs, lens):
        self.seen += wavs.shape[0]
        n = (lens * wavs.shape[1]).round()
        self.batch_lengths.append(n.tolist())
        return torch.stack([n, wavs.sum(1)], dim=1)[:, None, :]


def test_extract_batches_by_length_and_respects_lengths(tmp_path):
    lengths = [1600, 400, 3200, 800, 2400]
    items = _wavs(tmp_path, lengths)
    enc = _CountingEncoder()
    emb = extract_embeddings(
        enc, items + items[:2], batch_size=2, progress=False
    )
    assert enc.seen == 5  # duplicates encoded once
    # Longest first, neighbours in length batched together.
    assert enc.batch_lengths == [[3200, 2400], [1600, 800], [400]]
    for (utt, _), n in zip(items, lengths):
        assert emb[utt].shape == (2,)
        assert emb[utt][0] == n
    # Padding does not leak into an utterance's embedding.
    alone = extract_embeddings(enc, items[1:2], batch_size=1, progress=False)
    assert torch.allclose(alone["u1"], emb["u1"])


def test_extract_segments_and_max_seconds(tmp_path):
    ((_, path),) = _wavs(tmp_path, [4000])
    enc = _CountingEncoder()
    emb = extract_embeddings(
        enc,
        [("a", path, 1000, 3000), ("b", path)],
        max_seconds=0.1,
        progress=False,
    )
    assert emb["a"][0] == 1600 and emb["b"][0] == 1600
    emb = extract_embeddings(enc, [("a", path, 1000, 3000)], progress=False)
    assert emb["a"][0] == 2000


def test_cache_reuse_and_partial(tmp_path):
    items = _wavs(tmp_path, [800, 1600, 2400])
    cache = str(tmp_path / "cache" / "emb.pt")
    enc = _CountingEncoder()
    first = extract_embeddings(
        enc, items[:2], cache_path=cache, model_tag="m1", progress=False
    )
    folder = str(tmp_path / "cache" / "emb")
    assert enc.seen == 2
    assert sorted(os.listdir(folder)) == ["embeddings.pt", "stage.json"]
    # Same items and tag: nothing recomputed.
    again = extract_embeddings(
        enc, items[:2], cache_path=cache, model_tag="m1", progress=False
    )
    assert enc.seen == 2
    assert all(torch.equal(first[u], again[u]) for u in first)
    # One new item: only it is computed.
    extract_embeddings(
        enc, items, cache_path=cache, model_tag="m1", progress=False
    )
    assert enc.seen == 3
    # Another model: everything recomputed.
    extract_embeddings(
        enc, items, cache_path=cache, model_tag="m2", progress=False
    )
    assert enc.seen == 6
    # A regenerated file invalidates its own entry only.
    write_wav(items[0][1], np.zeros(1200), SR)
    os.utime(items[0][1], ns=(1, 1))
    out = extract_embeddings(
        enc, items, cache_path=cache, model_tag="m2", progress=False
    )
    assert enc.seen == 7 and out["u0"][0] == 1200


def test_cache_requires_model_tag(tmp_path):
    items = _wavs(tmp_path, [800])
    with pytest.raises(ValueError, match="model_tag"):
        extract_embeddings(
            _CountingEncoder(), items, cache_path=str(tmp_path / "c.pt")
        )


def test_extract_errors(tmp_path):
    items = _wavs(tmp_path, [800])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioFileError, match="bad.wav"):
        extract_embeddings(
            _CountingEncoder(), [("x", str(bad))], progress=False
        )
    with pytest.raises(ValueError, match="given twice"):
        extract_embeddings(
            _CountingEncoder(), items + [("u0", str(bad))], progress=False
        )
    with pytest.raises(ValueError, match="NaN/inf embedding for 'u0'"):
        extract_embeddings(
            lambda w, n: torch.full((w.shape[0], 3), float("nan")),
            items,
            progress=False,
        )
    with pytest.raises(ValueError, match="shape"):
        extract_embeddings(lambda w, n: torch.zeros(5), items, progress=False)


def test_checkpoint_during_long_run(tmp_path, monkeypatch):
    items = _wavs(tmp_path, [800, 900, 1000])
    cache = str(tmp_path / "c.pt")
    monkeypatch.setattr(emb_mod, "_CHECKPOINT_SECONDS", -1.0)

    calls = []

    def enc(w, n):
        calls.append(w.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return torch.ones(w.shape[0], 2)

    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(
            enc,
            items,
            cache_path=cache,
            model_tag="m",
            batch_size=1,
            progress=False,
        )
    counter = _CountingEncoder()
    extract_embeddings(
        counter,
        items,
        cache_path=cache,
        model_tag="m",
        batch_size=1,
        progress=False,
    )
    assert counter.seen == 2  # the first batch survived the interruption


# ---------------------------------------------------------- verification


def test_utt_to_wav_from_csv_errors(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        utt_to_wav_from_csv(tmp_path / "none.csv")
    with pytest.raises(ManifestError, match="no 'wav' column"):
        utt_to_wav_from_csv(_write(tmp_path / "a.csv", "ID,path\nx,y\n"))
    with pytest.raises(ManifestError, match="is empty"):
        utt_to_wav_from_csv(_write(tmp_path / "b.csv", "ID,wav\n"))
    with pytest.raises(ManifestError, match="line 3: duplicate ID 'x'"):
        utt_to_wav_from_csv(
            _write(tmp_path / "c.csv", "ID,wav\nx,a.wav\nx,b.wav\n")
        )
    with pytest.raises(ManifestError, match="line 2: start/stop"):
        utt_to_wav_from_csv(
            _write(tmp_path / "d.csv", "ID,wav,start,stop\nx,a.wav,0,end\n")
        )
    assert utt_to_wav_from_csv(
        _write(tmp_path / "e.csv", "ID,wav\nx,a.wav\n")
    ) == {"x": ("a.wav", 0, None)}


def _tone_corpus(tmp_path, n_spk=4, n_utt=3):
    """Speakers = distinct harmonic spectra, so MFCC statistics separate them."""
    rng = np.random.default_rng(0)
    rows = ["ID,duration,wav,start,stop"]
    t = np.arange(SR // 2) / SR
    for s in range(n_spk):
        f0 = 110.0 * (1.5**s)
        for u in range(n_utt):
            sig = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
            sig = 0.2 * sig / np.abs(sig).max() + 0.01 * rng.normal(size=t.size)
            p = tmp_path / "wav" / f"spk{s}" / f"{u}.wav"
            write_wav(p, sig, SR)
            rows.append(f"spk{s}/{u},0.5,{p},0,{t.size}")
    csv_path = _write(tmp_path / "test.csv", "\n".join(rows) + "\n")
    lines = []
    for s in range(n_spk):
        for u in range(1, n_utt):
            lines.append(f"1 spk{s}/0.wav spk{s}/{u}.wav")
            lines.append(f"0 spk{s}/0.wav spk{(s + 1) % n_spk}/{u}.wav")
    trials = _write(tmp_path / "trials.txt", "\n".join(lines) + "\n")
    return csv_path, trials


def test_evaluate_verification_end_to_end(tmp_path):
    csv_path, trials = _tone_corpus(tmp_path)
    utt_to_wav = utt_to_wav_from_csv(csv_path)
    enc = MFCCMeanEncoder(n_mfcc=13).eval()
    out = tmp_path / "out"
    m = evaluate_verification(
        enc, utt_to_wav, trials, str(out), "mfcc", batch_size=4, progress=False
    )
    assert m["n_trials"] == 16 and m["n_targets"] == 8
    assert m["eer"] < 0.2
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["eer"] == m["eer"] and saved["min_dcf_normalised"] is True
    assert {"min_dcf@0.01", "min_dcf@0.05", "norm"} <= set(saved)
    lines = (out / "scores.txt").read_text().splitlines()
    assert len(lines) == 16
    enrol, test, label, score = lines[0].split()
    assert (enrol, test, label) == ("spk0/0", "spk0/1", "1") and -1 <= float(
        score
    ) <= 1
    assert (out / "det.png").stat().st_size > 0 and (
        out / "score_hist.png"
    ).stat().st_size > 0

    # With s-norm against a cohort (the corpus itself here).
    cohort = [(u, *v) for u, v in utt_to_wav.items()]
    m2 = evaluate_verification(
        enc,
        utt_to_wav,
        trials,
        str(out),
        "mfcc",
        cohort_items=cohort,
        norm="s-norm",
        progress=False,
    )
    assert m2["norm"] == "s-norm" and m2["eer"] <= 0.25
    assert json.loads((out / "metrics.json").read_text())["norm"] == "s-norm"


def test_evaluate_verification_missing_file(tmp_path):
    csv_path, trials = _tone_corpus(tmp_path, n_spk=2, n_utt=2)
    utt_to_wav = utt_to_wav_from_csv(csv_path)
    os.remove(utt_to_wav["spk1/1"][0])
    with pytest.raises(
        TrialListError, match=r"trials.txt: line \d+: test utterance 'spk1/1'"
    ):
        evaluate_verification(
            MFCCMeanEncoder(), utt_to_wav, trials, str(tmp_path / "o"), "m"
        )
    with pytest.raises(ValueError, match="cohort_items"):
        evaluate_verification(
            MFCCMeanEncoder(),
            {},
            _write(tmp_path / "t2.txt", "1 a.wav a.wav\n"),
            str(tmp_path / "o"),
            "m",
            norm="s-norm",
        )
