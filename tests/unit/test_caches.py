"""The eval embedding cache and the speaker-encoder (TTS) embedding cache
on :mod:`speechbrain_ssv.utils.stages`: reuse, recompute on other weights
or options, interrupted runs, and folders of the older formats.

The speaker encoder is a small stand-in (no coqui-tts needed) inside a real
:class:`~speechbrain_ssv.inside.tts.YourTTS`, so the cache sees the real
``encoder_tag`` (a digest of the weights file).
"""

import csv
import os

import numpy as np
import pytest
import torch

from speechbrain_ssv.eval import embeddings as emb_mod
from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.inside.speaker_encoder import embed_manifest
from speechbrain_ssv.inside.tts import YourTTS
from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import file_digest, write_json, write_wav
from speechbrain_ssv.utils.stages import STAGE_FILE, read_stage

SR = 16000


def _wavs(folder, lengths):
    items = []
    for i, n in enumerate(lengths):
        path = os.path.join(folder, f"u{i}.wav")
        t = np.arange(n) / SR
        write_wav(path, 0.2 * np.sin(2 * np.pi * (150 + 30 * i) * t), SR)
        items.append((f"u{i}", path))
    return items


class _Counting:
    """Encoder of :func:`extract_embeddings` that counts utterances and can
    fail on a given call (a crash mid-way)."""

    def __init__(self, fail_on_call=None):
        self.seen = 0
        self.calls = 0
        self.fail_on_call = fail_on_call

    def __call__(self, wavs, lens):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.seen += wavs.shape[0]
        return torch.stack([(lens * wavs.shape[1]).round(), wavs.sum(1)], 1)


def _set_status(folder, status):
    rec = read_stage(folder)
    rec["status"] = status
    write_json(os.path.join(folder, STAGE_FILE), rec)


def _check_eval_cache(tmp_path, monkeypatch):
    items = _wavs(str(tmp_path), [800, 1600, 2400])
    weights = tmp_path / "model.ckpt"
    weights.write_bytes(b"weights v1")
    cache = str(tmp_path / "eval" / "embeddings.pt")
    folder = str(tmp_path / "eval" / "embeddings")
    enc = _Counting()

    def run(todo=items, encoder=enc, **kw):
        # The recipes' tag: a digest of the weights.
        return extract_embeddings(
            encoder,
            todo,
            cache_path=cache,
            model_tag=file_digest(weights),
            progress=False,
            batch_size=1,
            **kw,
        )

    first = run()
    rec = read_stage(folder)
    assert enc.seen == 3 and rec["status"] == "done"
    assert rec["opts"]["model_tag"] == file_digest(weights)
    assert list(rec["outputs"]) == ["embeddings.pt"]
    assert rec["info"]["utterances"] == 3
    # Unchanged: reused, nothing recomputed, nothing rewritten.
    stamp = os.stat(os.path.join(folder, STAGE_FILE)).st_mtime_ns
    again = run()
    assert enc.seen == 3
    assert all(torch.equal(first[u], again[u]) for u in first)
    assert os.stat(os.path.join(folder, STAGE_FILE)).st_mtime_ns == stamp
    # Other weights: recomputed.
    weights.write_bytes(b"weights v2")
    run()
    assert enc.seen == 6
    # Other options: recomputed.
    run(max_seconds=0.05)
    assert enc.seen == 9
    run()
    assert enc.seen == 12 and read_stage(folder)["status"] == "done"

    # Interrupted: a record left running without its data file ...
    _set_status(folder, "running")
    os.remove(os.path.join(folder, "embeddings.pt"))
    run()
    assert enc.seen == 15 and read_stage(folder)["status"] == "done"
    # ... a finished record whose data file is gone ...
    os.remove(os.path.join(folder, "embeddings.pt"))
    run()
    assert enc.seen == 18
    # ... or a running record with a torn data file: recomputed, no crash.
    _set_status(folder, "running")
    with open(os.path.join(folder, "embeddings.pt"), "wb") as f:
        f.write(b"PK\x03\x04 torn")
    run()
    assert enc.seen == 21 and read_stage(folder)["status"] == "done"

    # A crash while a finished cache grows leaves it running, not done;
    # the next run computes only what is missing (saved after each batch).
    monkeypatch.setattr(emb_mod, "_CHECKPOINT_SECONDS", -1.0)
    more = items + [("u3", items[0][1], 0, 400), ("u4", items[1][1], 0, 500)]
    with pytest.raises(KeyboardInterrupt):
        run(more, _Counting(fail_on_call=2))
    assert read_stage(folder)["status"] == "running"
    resumed = _Counting()
    out = run(more, resumed)
    assert resumed.seen == 1 and out["u3"][0] == 400
    assert read_stage(folder)["status"] == "done"


def test_eval_cache_migrates_the_single_file_format(tmp_path):
    items = _wavs(str(tmp_path), [800, 1600])
    cache = tmp_path / "embeddings.pt"
    enc = _Counting()
    extract_embeddings(
        enc, items, cache_path=str(cache), model_tag="m", progress=False
    )
    folder = tmp_path / "embeddings"
    data = torch.load(folder / "embeddings.pt", weights_only=True)
    # The format written before the stage record: one file, no folder.
    legacy = {
        "version": 1,
        "model_tag": "m",
        "settings": {"sample_rate": SR, "max_samples": None},
        "fingerprint": "x",
        **data,
    }
    for path in os.listdir(folder):
        os.remove(folder / path)
    os.rmdir(folder)
    torch.save(legacy, cache)
    extract_embeddings(
        enc, items, cache_path=str(cache), model_tag="m", progress=False
    )
    assert enc.seen == 2  # moved in, not recomputed
    assert not cache.exists() and read_stage(str(folder))["status"] == "done"
    # One for another model is removed and recomputed.
    torch.save(dict(legacy, model_tag="other"), cache)
    extract_embeddings(
        enc, items, cache_path=str(cache), model_tag="m2", progress=False
    )
    assert enc.seen == 4 and not cache.exists()
    # A foreign file where the cache folder goes is named, not deleted.
    foreign = tmp_path / "cache"
    foreign.write_text("not a cache")
    with pytest.raises(SSVInputError, match="not an embedding cache"):
        extract_embeddings(
            enc, items, cache_path=str(foreign), model_tag="m", progress=False
        )
    assert foreign.read_text() == "not a cache"


# --------------------------------------------------- speaker-encoder cache


class _Audio(dict):
    """An encoder audio config (attribute access, like coqpit's)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class _Encoder(torch.nn.Module):
    """Stand-in for YourTTS's speaker encoder: unit-norm signal statistics
    of each window; counts its batches and can fail on one."""

    def __init__(self, fail_on_call=None):
        super().__init__()
        self.calls = 0
        self.fail_on_call = fail_on_call

    def inference(self, batch, l2_norm=True):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        feats = torch.stack(
            [batch.mean(1), batch.std(1), batch.abs().amax(1)], 1
        )
        return torch.nn.functional.normalize(feats, dim=1)


def _fake_tts(weights, fail_on_call=None):
    """A real YourTTS object around the stand-in encoder."""
    tts = YourTTS.__new__(YourTTS)
    tts.model = torch.nn.Linear(1, 1)  # only its device is used
    tts.encoder = _Encoder(fail_on_call)
    tts.encoder_config = _Audio(audio=_Audio(fft_size=64, sample_rate=SR))
    tts.encoder_file = str(weights)
    tts.encoder_sample_rate = SR
    tts.encoder_hop_length = 16
    tts.encoder_win_length = 64
    tts.encoder_trim_db = None
    tts.encoder_sound_norm = False
    tts.encoder_db_level = -27.0
    tts.d_vector_dim = 3
    return tts


def _manifest(folder, n=3):
    rows = []
    for i, (_, path) in enumerate(
        _wavs(folder, [1600 + 400 * k for k in range(n)])
    ):
        rows.append([f"s{i % 2}/u{i}", "0.1", path, 0, "", f"s{i % 2}"])
    manifest = os.path.join(folder, "train.csv")
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav", "start", "stop", "spk_id"])
        writer.writerows(rows)
    return manifest


def _check_speaker_encoder_cache(tmp_path):
    manifest = _manifest(str(tmp_path))
    weights = tmp_path / "model_se.pth"
    weights.write_bytes(b"encoder v1")
    cache = str(tmp_path / "cache")
    kw = {"num_eval": 1, "chunk_size": 2, "progress": False}

    def run(tts=None, **extra):
        tts = tts or _fake_tts(weights)
        out = embed_manifest(tts, manifest, cache, **dict(kw, **extra))
        return out, (out["computed"], out["cached"])

    first, counts = run()
    rec = read_stage(cache)
    assert counts == (2, 0) and rec["status"] == "done"
    assert rec["opts"]["encoder"].startswith(file_digest(weights))
    assert sorted(rec["outputs"]) == ["chunk-00000.pt", "chunk-00001.pt"]
    # Unchanged: reused without encoding.
    tts = _fake_tts(weights)
    again, counts = run(tts)
    assert counts == (0, 2) and tts.encoder.calls == 0
    np.testing.assert_array_equal(again["embeddings"], first["embeddings"])
    # Other weights (a reloaded model): recomputed.
    weights.write_bytes(b"encoder v2")
    assert run()[1] == (2, 0)
    # Other options: recomputed.
    assert run(num_eval=2)[1] == (2, 0)
    assert run()[1] == (2, 0)
    assert run()[1] == (0, 2)

    # Interrupted: a running record with a shard missing, or a finished
    # one with a shard gone, recomputes that shard only ...
    _set_status(cache, "running")
    os.remove(os.path.join(cache, "chunk-00001.pt"))
    assert run()[1] == (1, 1) and read_stage(cache)["status"] == "done"
    os.remove(os.path.join(cache, "chunk-00000.pt"))
    assert run()[1] == (1, 1)
    # ... a torn shard too, without a crash.
    with open(os.path.join(cache, "chunk-00000.pt"), "wb") as f:
        f.write(b"PK\x03\x04 torn")
    assert run()[1] == (1, 1)
    # A crash while a torn shard of a finished cache is recomputed leaves
    # the record running (the torn shard is chunk 1: call 1 is its).
    with open(os.path.join(cache, "chunk-00001.pt"), "wb") as f:
        f.write(b"PK\x03\x04 torn")
    with pytest.raises(KeyboardInterrupt):
        run(_fake_tts(weights, fail_on_call=1))
    assert read_stage(cache)["status"] == "running"
    assert run()[1] == (1, 1) and read_stage(cache)["status"] == "done"
    # A crash mid-way leaves the record running; the next run resumes.
    with pytest.raises(KeyboardInterrupt):
        # Calls 1-2 encode chunk 0 (one per clip length), 3 chunk 1.
        run(_fake_tts(weights, fail_on_call=3), num_eval=3)
    assert read_stage(cache)["status"] == "running"
    assert sorted(os.listdir(cache)) == ["chunk-00000.pt", STAGE_FILE]
    resumed, counts = run(num_eval=3)
    assert counts == (1, 1) and read_stage(cache)["status"] == "done"

    # A folder of the older format (shards, no stage.json) is recomputed.
    os.remove(os.path.join(cache, STAGE_FILE))
    assert run()[1] == (2, 0) and read_stage(cache)["status"] == "done"
    # A folder with foreign files is refused, not emptied.
    os.remove(os.path.join(cache, STAGE_FILE))
    open(os.path.join(cache, "notes.txt"), "w").close()
    with pytest.raises(SSVInputError, match="holds no stage.json"):
        run()
    assert os.path.isfile(os.path.join(cache, "notes.txt"))


def test_caches_use_stages(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "eval_case")
    os.makedirs(tmp_path / "tts_case")
    _check_eval_cache(tmp_path / "eval_case", monkeypatch)
    _check_speaker_encoder_cache(tmp_path / "tts_case")
