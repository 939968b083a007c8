"""Speaker-encoder embeddings of clips and manifests with YourTTS's own
encoder, batched and cached.

INSIDE places real utterances in the d-vector space the TTS model is
conditioned on with the model's speaker encoder
(:class:`~speechbrain_ssv.inside.tts.YourTTS`, ``tts.encoder``).

Embeddings follow the encoder's own feature path (the path of Coqui's
``SpeakerManager.compute_embedding_from_clip``): mono audio resampled with
soxr's high-quality mode to the encoder rate (:func:`resample`),
silence-trimmed and peak-normalised when the encoder config asks for it
(``do_trim_silence``, ``do_sound_norm``), RMS-normalised to the configured
level (-27 dB), then ``num_eval`` evenly spaced windows of 250 hops (2.5 s
at 16 kHz; the whole clip when shorter), each L2-normalised, and their
mean. Windows of equal length are batched across clips, which is where the
speed-up over Coqui's one-clip-at-a-time loop comes from. Because each
window is unit-norm, an embedding's norm is at most 1.

:func:`embed_manifest` embeds a SpeechBrain manifest in cached chunks, in a
stage folder of :mod:`speechbrain_ssv.utils.stages`: an unchanged cache is
reused, an interrupted run recomputes only the unfinished chunks, another
encoder, other settings or another manifest start it over.

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import hashlib
import logging
import os
import re
from math import gcd
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from tqdm import tqdm

from speechbrain_ssv.data.audio import read_audio_checked
from speechbrain_ssv.utils.errors import (
    AudioFileError,
    ManifestError,
    SSVInputError,
)
from speechbrain_ssv.utils.io import save_torch
from speechbrain_ssv.utils.stages import (
    begin_stage,
    finish_stage,
    read_stage,
    reopen_stage,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EmbeddingResult",
    "embed_manifest",
    "embed_wavs",
    "resample",
]

# Window length of one encoder pass, in hops (2.5 s at 16 kHz, hop 160);
# the value Coqui's ``compute_embedding`` uses.
_WINDOW_HOPS = 250
# Version 2: shards of a stage folder (utils.stages); version 1 shards each
# carried their own fingerprint.
_CACHE_VERSION = 2
# Shard names of the cache, and the temporary files of their atomic writes.
_SHARD_NAME = re.compile(r"\.?chunk-\d{5}(\..*)?\.pt")


def resample(signal, orig_sr, target_sr):
    """Resample a 1-D float signal.

    Uses soxr's high-quality mode, which is what ``librosa.load`` (and so
    Coqui's ``AudioProcessor.load_wav``) applies; soxr comes with coqui-tts.
    Without it (coqui-tts not installed) a polyphase filter from scipy is
    used instead.

    Arguments
    ---------
    signal : numpy.ndarray
        Samples.
    orig_sr : int
        Its rate in Hz.
    target_sr : int
        Wanted rate in Hz.

    Returns
    -------
    numpy.ndarray
        float32 samples at ``target_sr``.

    Example
    -------
    >>> resample(np.zeros(22050, dtype=np.float32), 22050, 16000).shape
    (16000,)
    """
    signal = np.asarray(signal, dtype=np.float32)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return signal
    try:
        # scipy's filter below stands in when soxr is absent.
        # optional dependency: soxr, installed with the tts extra (coqui-tts)
        import soxr
    except ImportError:
        g = gcd(orig_sr, target_sr)
        out = resample_poly(signal, target_sr // g, orig_sr // g)
        return out.astype(np.float32)
    return soxr.resample(signal, orig_sr, target_sr, quality="HQ")


class EmbeddingResult(NamedTuple):
    """Output of :func:`embed_wavs`.

    Attributes
    ----------
    embeddings : numpy.ndarray
        ``[n_kept, 512]`` float32, finite, norm <= 1, in input order.
    kept : list of int
        Input index of each row of ``embeddings``.
    skipped : dict
        Input index of every skipped item to the reason (``"silent"``,
        ``"too short"``, ``"non-finite"``).
    """

    embeddings: np.ndarray
    kept: list
    skipped: dict


def _read_clip(path, start=0, stop=None):
    """``(float32 signal, rate)`` of a file segment. An empty file or
    segment gives an empty signal (skipped later as too short); a missing
    or corrupt file raises :class:`AudioFileError` naming it."""
    path = os.fspath(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError):
        info = None
    if info is not None:
        end = info.frames if stop is None else min(int(stop), info.frames)
        if int(start) >= end:
            return np.zeros(0, dtype=np.float32), info.samplerate
    sig = read_audio_checked(path, start, stop, expected_sr=None).numpy()
    return sig, info.samplerate


def _as_signal(item, sample_rate, index):
    """``(float32 numpy signal, rate)`` of one embed_wavs item."""
    if isinstance(item, (str, os.PathLike)):
        return _read_clip(item)
    if isinstance(item, tuple) and len(item) == 2:
        sig, sr = item
    else:
        sig, sr = item, sample_rate
    if isinstance(sig, torch.Tensor):
        sig = sig.detach().cpu().numpy()
    sig = np.asarray(sig, dtype=np.float32)
    if sig.ndim == 2 and 1 in sig.shape:
        sig = sig.reshape(-1)
    if sig.ndim != 1:
        raise SSVInputError(
            f"items[{index}]",
            f"signal has shape {sig.shape}; expected a 1-D mono signal",
        )
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise SSVInputError(
            f"items[{index}]", f"sample rate {sr!r} is not a positive integer"
        )
    return sig, int(sr)


def _trim_silence(tts, sig):
    """Coqui's ``trim_silence``: drop 10 ms at each end, then the leading
    and trailing frames more than ``trim_db`` below the peak."""
    # Only encoder configs with do_trim_silence get here.
    # optional dependency: librosa, installed with the tts extra (coqui-tts)
    import librosa

    margin = int(tts.encoder_sample_rate * 0.01)
    if margin:
        sig = sig[margin:-margin]
    try:
        return librosa.effects.trim(
            sig,
            top_db=tts.encoder_trim_db,
            frame_length=tts.encoder_win_length,
            hop_length=tts.encoder_hop_length,
        )[0]
    except ValueError:
        # Coqui logs and keeps the clip untrimmed in this case too.
        logger.warning("clip of %d samples cannot be trimmed", len(sig))
        return sig


def _prepare_clip(tts, sig, sr, min_samples, min_rms):
    """Encoder-ready float32 signal, or the reason to skip the clip.

    The steps of Coqui's ``AudioProcessor.load_wav`` for the encoder config,
    in its order: resampling, silence trimming (``do_trim_silence``), peak
    normalisation (``do_sound_norm``), RMS normalisation (``do_rms_norm``).
    """
    if not np.isfinite(sig).all():
        return None, "non-finite"
    sig = resample(sig, sr, tts.encoder_sample_rate)
    if len(sig) < min_samples:
        return None, "too short"
    rms = float(np.sqrt(np.mean(np.square(sig, dtype=np.float64))))
    # RMS normalisation divides by this; silence would become NaN (or
    # amplified dither), so such clips carry no speaker and are skipped.
    if rms < min_rms:
        return None, "silent"
    if tts.encoder_trim_db is not None:
        sig = _trim_silence(tts, sig)
        if len(sig) < min_samples:
            return None, "too short"
    if tts.encoder_sound_norm:
        sig = sig / np.abs(sig).max() * 0.95
    if tts.encoder_db_level is not None:
        rms = float(np.sqrt(np.mean(np.square(sig, dtype=np.float64))))
        sig = sig * (10 ** (tts.encoder_db_level / 20) / rms)
    return np.ascontiguousarray(sig, dtype=np.float32), None


@torch.inference_mode()
def _encode_clips(tts, clips, num_eval):
    """Mean of ``num_eval`` L2-normalised window embeddings per clip."""
    window = _WINDOW_HOPS * tts.encoder_hop_length
    groups = {}
    for c, sig in enumerate(clips):
        width = min(window, len(sig))
        offsets = np.linspace(0, len(sig) - width, num=num_eval)
        for off in offsets:
            start = int(off)
            groups.setdefault(width, []).append((c, sig[start : start + width]))
    device = tts.device
    sums = torch.zeros(len(clips), tts.d_vector_dim, dtype=torch.float64)
    for members in groups.values():
        batch = torch.from_numpy(np.stack([w for _, w in members])).to(device)
        out = tts.encoder.inference(batch, l2_norm=True).double().cpu()
        index = torch.tensor([c for c, _ in members])
        sums.index_add_(0, index, out)
    return (sums / num_eval).float().numpy()


def embed_wavs(
    tts,
    items,
    num_eval=10,
    batch_size=16,
    sample_rate=None,
    min_seconds=0.1,
    min_rms=1e-5,
    progress=False,
):
    """Speaker-encoder embeddings of audio files or signals, batched.

    Arguments
    ---------
    tts : speechbrain_ssv.inside.tts.YourTTS
        From :func:`~speechbrain_ssv.inside.tts.load_yourtts`.
    items : list
        Each a path to an audio file (any rate; multi-channel is averaged),
        a ``(signal, sample_rate)`` pair, or a bare 1-D signal at
        ``sample_rate``.
    num_eval : int
        Windows per clip (Coqui uses 10; fewer is faster and noisier).
    batch_size : int
        Clips encoded together (``batch_size * num_eval`` windows).
    sample_rate : int | None
        Rate of bare signals; ``None``: the encoder's rate (16 kHz).
    min_seconds : float
        Shorter clips (after resampling) are skipped.
    min_rms : float
        Clips whose RMS is below this (silence, digital zero) are skipped:
        RMS normalisation would divide by ~0 and yield NaN.
    progress : bool
        Show a tqdm bar over clips.

    Returns
    -------
    EmbeddingResult
        ``embeddings`` ``[n_kept, 512]`` (never NaN), ``kept`` indices,
        ``skipped`` ``{index: reason}``; the skip count is logged.

    Example
    -------
    >>> tts = load_yourtts("models/your_tts")  # doctest: +SKIP
    >>> res = embed_wavs(tts, ["a.wav", (np.zeros(16000), 16000)])  # doctest: +SKIP
    >>> res.embeddings.shape, res.skipped  # doctest: +SKIP
    ((1, 512), {1: 'silent'})
    """
    if not isinstance(num_eval, int) or num_eval < 1:
        raise SSVInputError("num_eval", f"got {num_eval!r}; expected >= 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SSVInputError("batch_size", f"got {batch_size!r}; expected >= 1")
    if isinstance(items, (str, os.PathLike, np.ndarray, torch.Tensor)):
        raise SSVInputError(
            "items", "expected a list of files or signals, not a single one"
        )
    items = list(items)
    sample_rate = sample_rate or tts.encoder_sample_rate
    min_samples = max(1, int(round(min_seconds * tts.encoder_sample_rate)))
    # The encoder's reflect-padded STFT needs more than half an FFT.
    min_samples = max(min_samples, tts.encoder_config.audio.fft_size // 2 + 1)
    vectors = np.zeros((len(items), tts.d_vector_dim), dtype=np.float32)
    ok = np.zeros(len(items), dtype=bool)
    skipped = {}
    bar = tqdm(
        total=len(items), desc="speaker embeddings", disable=not progress
    )
    try:
        for first in range(0, len(items), batch_size):
            index, clips = [], []
            for i in range(first, min(first + batch_size, len(items))):
                sig, sr = _as_signal(items[i], sample_rate, i)
                clip, reason = _prepare_clip(tts, sig, sr, min_samples, min_rms)
                if reason:
                    skipped[i] = reason
                else:
                    index.append(i)
                    clips.append(clip)
            if clips:
                out = _encode_clips(tts, clips, num_eval)
                for i, vec in zip(index, out):
                    if np.isfinite(vec).all():
                        vectors[i], ok[i] = vec, True
                    else:
                        skipped[i] = "non-finite"
            bar.update(min(batch_size, len(items) - first))
    finally:
        bar.close()
    if skipped:
        reasons = {}
        for reason in skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        logger.warning(
            "skipped %d of %d clips with no usable speech (%s)",
            len(skipped),
            len(items),
            ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())),
        )
    kept = [int(i) for i in np.flatnonzero(ok)]
    return EmbeddingResult(vectors[ok], kept, dict(sorted(skipped.items())))


def _read_manifest(path):
    """Rows of a SpeechBrain CSV manifest with ID, wav and spk_id."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ManifestError(path, "does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in ("ID", "wav", "spk_id") if c not in columns]
    if missing:
        raise ManifestError(
            path,
            f"lacks column(s) {', '.join(missing)}; expected SpeechBrain's "
            "ID,duration,wav,start,stop,spk_id[,gender,...]",
        )
    if not rows:
        raise ManifestError(path, "is empty; expected at least one row")
    seen = set()
    for n, row in enumerate(rows, start=2):
        if row["ID"] in seen:
            raise ManifestError(path, f"line {n}: ID {row['ID']!r} repeats")
        seen.add(row["ID"])
    return rows, "gender" in columns


def _segment(row):
    def as_int(key):
        """Column ``key`` as an int, or ``None`` when empty."""
        value = (row.get(key) or "").strip()
        return int(float(value)) if value else None

    start = as_int("start") or 0
    return start, as_int("stop")


def _manifest_fingerprint(rows):
    """Hash of the rows' ids, audio paths, segments and audio file sizes
    and times (a file regenerated in place changes it)."""
    h = hashlib.sha1()
    for row in rows:
        wav = row["wav"]
        try:
            st = os.stat(wav)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        h.update(repr((row["ID"], wav, _segment(row), stamp)).encode())
    return h.hexdigest()


def _load_chunk(path, n_rows):
    """A cache shard of ``n_rows`` rows, or ``None`` when absent, damaged
    or of another format (then it is recomputed)."""
    if not os.path.isfile(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any damage means recompute, never a crash
        logger.warning("ignoring unreadable cache shard %s (%s)", path, err)
        return None
    if (
        not isinstance(data, dict)
        or data.get("version") != _CACHE_VERSION
        or data.get("rows") != n_rows
    ):
        logger.warning("ignoring cache shard %s of another format", path)
        return None
    return data


def _drop_legacy_shards(cache_dir):
    """Remove the shards of a cache written before the stage record.

    Such a folder holds only ``chunk-NNNNN.pt`` files (each with its own
    fingerprint) and no ``stage.json``; its shards are recomputed. Any
    other file makes :func:`begin_stage` refuse the folder instead.
    """
    if read_stage(cache_dir) is not None or not os.path.isdir(cache_dir):
        return
    names = os.listdir(cache_dir)
    if names and all(_SHARD_NAME.fullmatch(n) for n in names):
        logger.info(
            "recomputing the old-format speaker-encoder cache %s", cache_dir
        )
        for name in names:
            os.remove(os.path.join(cache_dir, name))


def _embed_chunk(
    tts, manifest_csv, chunk, num_eval, batch_size, min_seconds, min_rms
):
    """The cache shard of one chunk of manifest rows."""
    items = []
    for row in chunk:
        try:
            items.append(_read_clip(row["wav"], *_segment(row)))
        except AudioFileError as err:
            raise ManifestError(
                manifest_csv, f"row {row['ID']!r}: {err}"
            ) from None
    res = embed_wavs(
        tts,
        items,
        num_eval=num_eval,
        batch_size=batch_size,
        min_seconds=min_seconds,
        min_rms=min_rms,
    )
    return {
        "version": _CACHE_VERSION,
        "rows": len(chunk),
        "kept": res.kept,
        "embeddings": torch.from_numpy(res.embeddings),
        "skipped": {chunk[i]["ID"]: r for i, r in res.skipped.items()},
    }


def embed_manifest(
    tts,
    manifest_csv,
    cache_dir,
    num_eval=10,
    batch_size=16,
    chunk_size=256,
    min_seconds=0.1,
    min_rms=1e-5,
    progress=True,
):
    """Embed every utterance of a SpeechBrain manifest, cached and resumable.

    Audio is read with soundfile (``start``/``stop`` columns, in samples,
    select a segment; empty or absent means the whole file). The manifest
    is cut into chunks of ``chunk_size`` rows; each finished chunk is saved
    atomically to ``cache_dir/chunk-NNNNN.pt``. ``cache_dir`` is a stage
    folder (:mod:`speechbrain_ssv.utils.stages`): its ``stage.json``
    records the encoder (weights digest and audio config,
    ``tts.encoder_tag``), the settings and a fingerprint of the rows (ids,
    paths, segments, audio file sizes and times), and, once every chunk is
    saved, the shards' digests. A finished cache with the same record is
    reused without encoding; an interrupted run (record ``running``, or a
    shard missing) recomputes only the chunks not saved; another encoder,
    other settings or changed rows start the cache over. A folder of the
    older format (shards only, no ``stage.json``) is recomputed.

    Arguments
    ---------
    tts : speechbrain_ssv.inside.tts.YourTTS
        From :func:`~speechbrain_ssv.inside.tts.load_yourtts`.
    manifest_csv : str
        CSV with at least ``ID``, ``wav``, ``spk_id`` (``gender`` is
        returned when present).
    cache_dir : str
        Folder for the cache (created; its own: it is emptied when the
        record changes).
    num_eval, batch_size, min_seconds, min_rms
        As in :func:`embed_wavs`.
    chunk_size : int
        Rows per cache shard.
    progress : bool
        Show a tqdm bar over utterances.

    Returns
    -------
    dict
        ``ids``, ``speakers``, ``genders`` (``None`` without a gender
        column): lists in manifest order; ``embeddings``: ``[n, 512]``
        float32 for those ids; ``skipped``: ``{id: reason}`` of the
        utterances left out (silent, too short); ``computed``/``cached``:
        chunk counts.

    Example
    -------
    >>> out = embed_manifest(tts, "save/train.csv", "save/yourtts_emb")  # doctest: +SKIP
    >>> out["embeddings"].shape  # doctest: +SKIP
    (5000, 512)
    """
    rows, has_gender = _read_manifest(manifest_csv)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise SSVInputError("chunk_size", f"got {chunk_size!r}; expected >= 1")
    opts = {
        "cache": "speaker-encoder embeddings",
        "version": _CACHE_VERSION,
        "encoder": tts.encoder_tag,
        "num_eval": num_eval,
        "min_seconds": min_seconds,
        "min_rms": min_rms,
        "chunk_size": chunk_size,
        "manifest": _manifest_fingerprint(rows),
    }
    cache_dir = os.fspath(cache_dir)
    _drop_legacy_shards(cache_dir)
    done = begin_stage(cache_dir, opts, "speaker-encoder embedding cache")
    ids, speakers, genders, vectors, skipped = [], [], [], [], {}
    counts = {"computed": 0, "cached": 0}
    shards = []
    bar = tqdm(total=len(rows), desc="yourtts embeddings", disable=not progress)
    try:
        for c, first in enumerate(range(0, len(rows), chunk_size)):
            chunk = rows[first : first + chunk_size]
            shards.append(f"chunk-{c:05d}.pt")
            path = os.path.join(cache_dir, shards[-1])
            data = _load_chunk(path, len(chunk))
            if data is None:
                if done:
                    # A damaged shard of a finished cache: recomputed under
                    # a running record, so a crash leaves it resumable.
                    reopen_stage(cache_dir, "speaker-encoder embedding cache")
                    done = False
                data = _embed_chunk(
                    tts,
                    manifest_csv,
                    chunk,
                    num_eval=num_eval,
                    batch_size=batch_size,
                    min_seconds=min_seconds,
                    min_rms=min_rms,
                )
                save_torch(path, data)
                counts["computed"] += 1
            else:
                counts["cached"] += 1
            for i in data["kept"]:
                row = chunk[i]
                ids.append(row["ID"])
                speakers.append(row["spk_id"])
                genders.append(row.get("gender", ""))
            vectors.append(data["embeddings"].numpy())
            skipped.update(data["skipped"])
            bar.update(len(chunk))
    finally:
        bar.close()
    if not done:
        finish_stage(
            cache_dir,
            opts,
            shards,
            info={"utterances": len(rows), "embedded": len(ids)},
        )
    embeddings = (
        np.concatenate(vectors)
        if vectors
        else np.zeros((0, tts.d_vector_dim), dtype=np.float32)
    )
    return {
        "ids": ids,
        "speakers": speakers,
        "genders": genders if has_gender else None,
        "embeddings": embeddings.astype(np.float32, copy=False),
        "skipped": skipped,
        **counts,
    }
