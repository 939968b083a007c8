"""Batched, cached extraction of one embedding per utterance.

Utterances are sorted by duration (read from the file headers, without
decoding) and batched with others of similar length, so padding stays small;
each utterance is encoded once, whole (or cropped to ``max_seconds``). The
result can be cached to disk with a fingerprint of the items and a
caller-given model tag; a later call with the same model tag reuses every
cached utterance whose audio entry is unchanged and computes only the others.

Authors
 * speechbrain-ssv developers 2026
"""

import hashlib
import logging
import os
import time

import torch
from tqdm import tqdm

from speechbrain_ssv.data.audio import audio_info, read_audio_checked
from speechbrain_ssv.eval.trials import normalize_item
from speechbrain_ssv.utils.io import save_torch

logger = logging.getLogger(__name__)

__all__ = ["extract_embeddings", "items_fingerprint"]

_CACHE_VERSION = 1
# Save a partial cache this often during a long extraction, so an
# interrupted run resumes instead of starting over.
_CHECKPOINT_SECONDS = 600.0


def _normalize_items(items):
    """``[(utt_id, path, start, stop)]`` with duplicates removed."""
    out = {}
    for item in items:
        if len(item) == 2:
            utt, spec = item
            path, start, stop = normalize_item(spec)
        elif len(item) == 4:
            utt, path, start, stop = item
            path, start, stop = normalize_item((path, start, stop))
        else:
            raise ValueError(
                f"item {item!r}: expected (utt_id, wav_path) or "
                "(utt_id, wav_path, start, stop)"
            )
        key = (path, start, stop)
        if out.setdefault(utt, key) != key:
            raise ValueError(
                f"utterance {utt!r} is given twice with different audio: "
                f"{out[utt]} and {key}"
            )
    return out


def _item_key(path, start, stop):
    # Size and mtime make the key change when a file is regenerated in place.
    st = os.stat(path)
    return (os.path.abspath(path), start, stop, st.st_size, st.st_mtime_ns)


def items_fingerprint(keys, model_tag, settings):
    """Hash of the item keys, model tag and extraction settings.

    Arguments
    ---------
    keys : dict
        Utterance id to its item key.
    model_tag : str
        Caller-given name of the model/checkpoint.
    settings : dict
        Extraction settings that change the embeddings.

    Returns
    -------
    str
        Hex SHA-1 digest.

    Example
    -------
    >>> a = items_fingerprint({"u": ("a.wav", 0, None)}, "m", {})
    >>> a == items_fingerprint({"u": ("a.wav", 0, None)}, "m2", {})
    False
    """
    h = hashlib.sha1()
    h.update(repr((model_tag, sorted(settings.items()))).encode())
    for utt in sorted(keys):
        h.update(repr((utt, keys[utt])).encode())
    return h.hexdigest()


def _load_cache(cache_path, model_tag, settings):
    if cache_path is None or not os.path.isfile(cache_path):
        return {}, {}
    try:
        cache = torch.load(cache_path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt cache is recomputed, not fatal
        logger.warning(
            "ignoring unreadable embedding cache %s (%s)", cache_path, err
        )
        return {}, {}
    if (
        not isinstance(cache, dict)
        or cache.get("version") != _CACHE_VERSION
        or cache.get("model_tag") != model_tag
        or cache.get("settings") != settings
    ):
        logger.info(
            "embedding cache %s is for another model/settings; recomputing",
            cache_path,
        )
        return {}, {}
    return cache["keys"], cache["embeddings"]


def _save_cache(cache_path, model_tag, settings, keys, embeddings):
    save_torch(
        cache_path,
        {
            "version": _CACHE_VERSION,
            "model_tag": model_tag,
            "settings": settings,
            "fingerprint": items_fingerprint(keys, model_tag, settings),
            "keys": keys,
            "embeddings": embeddings,
        },
    )


def _n_samples(path, start, stop, sample_rate, max_samples):
    frames = audio_info(path, sample_rate).frames
    stop = frames if stop is None else min(stop, frames)
    n = max(stop - start, 0)
    return n if max_samples is None else min(n, max_samples)


def extract_embeddings(
    encoder_fn,
    items,
    cache_path=None,
    batch_size=16,
    sample_rate=16000,
    device="cpu",
    max_seconds=None,
    progress=True,
    model_tag=None,
):
    """Encode every utterance once, batched by length, with an optional cache.

    Putting the model in eval mode (and on ``device``) is the caller's job;
    this function runs it under ``torch.no_grad``.

    Arguments
    ---------
    encoder_fn : callable
        ``encoder_fn(wavs[B, T] float, lens[B] relative in (0, 1])`` returning
        ``[B, D]`` or ``[B, 1, D]`` embeddings.
    items : list of tuple
        ``(utt_id, wav_path)`` or ``(utt_id, wav_path, start, stop)`` (samples;
        ``stop=None`` reads to the end). Repeated utterances are encoded once.
    cache_path : str | None
        ``.pt`` cache file; ``None`` disables caching.
    batch_size : int
        Utterances per forward pass.
    sample_rate : int
        Required sampling rate of the audio files.
    device : str | torch.device
        Where the batches are sent.
    max_seconds : float | None
        Encode at most the first ``max_seconds`` of each utterance.
    progress : bool
        Show a tqdm progress bar.
    model_tag : str | None
        Names the model/checkpoint; required with ``cache_path``, since a
        cache is only reused for the same tag.

    Returns
    -------
    dict
        Utterance id to a CPU float tensor ``[D]``.

    Example
    -------
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> tmp = getfixture("tmpdir")
    >>> items = []
    >>> for i, n in enumerate([800, 1600, 400]):
    ...     p = os.path.join(tmp, f"u{i}.wav")
    ...     write_wav(p, torch.full((n,), 0.25), 16000)
    ...     items.append((f"u{i}", p))
    >>> def enc(wavs, lens):  # mean of the valid samples, and the length
    ...     n = (lens * wavs.shape[1]).round()
    ...     return torch.stack([wavs.sum(1) / n, n], dim=1)
    >>> emb = extract_embeddings(enc, items, batch_size=2, progress=False)
    >>> [emb[u].tolist() for u in ("u0", "u1", "u2")]
    [[0.25, 800.0], [0.25, 1600.0], [0.25, 400.0]]
    """
    if cache_path is not None and model_tag is None:
        raise ValueError(
            "extract_embeddings: give model_tag with cache_path, so a cache "
            "made by another model is never reused"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    wanted = _normalize_items(items)
    max_samples = (
        None if max_seconds is None else int(max_seconds * sample_rate)
    )
    settings = {"sample_rate": int(sample_rate), "max_samples": max_samples}
    keys = {utt: _item_key(*spec) for utt, spec in wanted.items()}

    cached_keys, cached = _load_cache(cache_path, model_tag, settings)
    result = {}
    todo = []
    for utt, spec in wanted.items():
        if utt in cached and cached_keys.get(utt) == keys[utt]:
            result[utt] = cached[utt]
        else:
            todo.append((utt, spec))
    if not todo:
        return result

    # Longest first: an out-of-memory error shows up in the first batch.
    lengths = {
        utt: _n_samples(*spec, sample_rate, max_samples) for utt, spec in todo
    }
    todo.sort(key=lambda it: -lengths[it[0]])
    all_keys = dict(cached_keys)
    all_emb = dict(cached)
    last_save = time.monotonic()
    bar = tqdm(
        total=len(todo), desc="embeddings", unit="utt", disable=not progress
    )
    with torch.no_grad():
        for b in range(0, len(todo), batch_size):
            batch = todo[b : b + batch_size]
            wavs = []
            for _, (path, start, stop) in batch:
                if max_samples is not None:
                    stop = (
                        start + max_samples
                        if stop is None
                        else min(stop, start + max_samples)
                    )
                wavs.append(read_audio_checked(path, start, stop, sample_rate))
            longest = max(w.shape[0] for w in wavs)
            padded = torch.zeros(len(wavs), longest)
            for i, w in enumerate(wavs):
                padded[i, : w.shape[0]] = w
            lens = torch.tensor([w.shape[0] / longest for w in wavs])
            emb = encoder_fn(padded.to(device), lens.to(device))
            if emb.dim() == 3 and emb.shape[1] == 1:
                emb = emb.squeeze(1)
            if emb.dim() != 2 or emb.shape[0] != len(batch):
                raise ValueError(
                    f"encoder_fn returned shape {tuple(emb.shape)} for a batch "
                    f"of {len(batch)}; expected [B, D] or [B, 1, D]"
                )
            emb = emb.detach().float().cpu()
            finite = torch.isfinite(emb).all(dim=1)
            if not finite.all():
                utt, (path, _, _) = batch[int((~finite).nonzero()[0])]
                raise ValueError(
                    f"encoder_fn produced a NaN/inf embedding for {utt!r} "
                    f"({path})"
                )
            for (utt, _), e in zip(batch, emb):
                # clone: a row view would keep the whole batch tensor alive
                # and be saved with it.
                e = e.clone()
                result[utt] = all_emb[utt] = e
                all_keys[utt] = keys[utt]
            bar.update(len(batch))
            if (
                cache_path is not None
                and time.monotonic() - last_save > _CHECKPOINT_SECONDS
            ):
                _save_cache(cache_path, model_tag, settings, all_keys, all_emb)
                last_save = time.monotonic()
    bar.close()
    if cache_path is not None:
        _save_cache(cache_path, model_tag, settings, all_keys, all_emb)
    return result
