"""Batched, cached extraction of one embedding per utterance.

Utterances are sorted by duration (read from the file headers, without
decoding) and batched with others of similar length, so padding stays small;
each utterance is encoded once, whole (or cropped to ``max_seconds``). The
result can be cached on disk in a stage folder of
:mod:`speechbrain_ssv.utils.stages` whose ``stage.json`` records the
caller-given model tag and the settings: a later call with the same tag and
settings reuses every cached utterance whose audio entry is unchanged and
computes only the others; another tag or other settings start the cache
over.

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
from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import save_torch
from speechbrain_ssv.utils.stages import (
    begin_stage,
    finish_stage,
    reopen_stage,
)

logger = logging.getLogger(__name__)

__all__ = ["extract_embeddings", "items_fingerprint"]

_CACHE_VERSION = 1
# The cache's data file, next to its stage.json (see _EmbeddingCache).
_CACHE_FILE = "embeddings.pt"
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


def _cache_folder(cache_path):
    """The stage folder of the cache named ``cache_path``: the path without
    its ``.pt`` suffix (``out/embeddings.pt`` -> ``out/embeddings``)."""
    cache_path = os.fspath(cache_path)
    root, ext = os.path.splitext(cache_path)
    return root if ext == ".pt" else cache_path


def _read_entries(path):
    """``(keys, embeddings)`` of a cache file; empty when absent or
    unreadable (recomputed, not fatal)."""
    if not os.path.isfile(path):
        return {}, {}
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any damage means recompute, never a crash
        logger.warning("ignoring unreadable embedding cache %s (%s)", path, err)
        return {}, {}
    if (
        not isinstance(data, dict)
        or data.get("version") != _CACHE_VERSION
        or not isinstance(data.get("keys"), dict)
        or not isinstance(data.get("embeddings"), dict)
    ):
        logger.warning("ignoring embedding cache %s of another format", path)
        return {}, {}
    return data["keys"], data["embeddings"]


def _pop_legacy_cache(cache_path, folder, model_tag, settings):
    """Entries of a cache in the single-file format written before the
    stage record (a ``.pt`` at ``cache_path`` itself); the file is removed.

    Its entries are kept when it is for the same model and settings (each
    entry is still checked against its audio file's key), so an old cache
    is migrated rather than recomputed. A file that is not such a cache is
    left alone, unless it sits where the cache folder goes.
    """
    if not os.path.isfile(cache_path):
        return {}, {}
    try:
        old = torch.load(cache_path, map_location="cpu", weights_only=True)
    except Exception:  # not a cache of ours: decided below
        old = None
    if not (isinstance(old, dict) and {"keys", "embeddings"} <= set(old)):
        if os.path.abspath(cache_path) == os.path.abspath(folder):
            raise SSVInputError(
                cache_path,
                "is a file, not an embedding cache folder; remove it or "
                "give another cache_path",
            )
        return {}, {}
    os.remove(cache_path)
    if (
        old.get("version") == _CACHE_VERSION
        and old.get("model_tag") == model_tag
        and old.get("settings") == settings
    ):
        logger.info(
            "moving the old-format embedding cache %s into %s",
            cache_path,
            folder,
        )
        return old["keys"], old["embeddings"]
    logger.info("removed the old-format embedding cache %s", cache_path)
    return {}, {}


class _EmbeddingCache:
    """The on-disk cache of :func:`extract_embeddings`, a stage folder of
    :mod:`speechbrain_ssv.utils.stages`.

    Its ``stage.json`` records the options every entry depends on (model
    tag, sampling rate, crop) and, once finished, the digest of
    ``embeddings.pt`` and a fingerprint of the items it holds. Other
    options discard the folder (:func:`begin_stage`); an unfinished one
    (a run interrupted after a checkpoint) is resumed from the entries
    saved so far. Each entry also keeps its item key (path, segment, file
    size and time), so a regenerated audio file is re-encoded alone.
    Entries are added under a ``running`` record (:func:`reopen_stage`),
    so a crash before :meth:`finish` never leaves a record that says done.

    Arguments
    ---------
    cache_path : str
        The cache's name (see :func:`_cache_folder`).
    model_tag : str
        Names the model/checkpoint.
    settings : dict
        Extraction settings that change the embeddings.
    """

    def __init__(self, cache_path, model_tag, settings):
        self.folder = _cache_folder(cache_path)
        self.path = os.path.join(self.folder, _CACHE_FILE)
        self.model_tag = model_tag
        self.settings = settings
        self.opts = {
            "cache": "utterance embeddings",
            "version": _CACHE_VERSION,
            "model_tag": model_tag,
            "settings": settings,
        }
        legacy_keys, legacy_emb = _pop_legacy_cache(
            cache_path, self.folder, model_tag, settings
        )
        self.done = begin_stage(self.folder, self.opts, "embedding cache")
        self.keys, self.embeddings = _read_entries(self.path)
        for utt, key in legacy_keys.items():
            if utt not in self.keys and utt in legacy_emb:
                self.add(utt, key, legacy_emb[utt])

    def get(self, utt, key):
        """The cached embedding of ``utt`` if its item key is ``key``."""
        if self.keys.get(utt) == key and utt in self.embeddings:
            return self.embeddings[utt]
        return None

    def add(self, utt, key, embedding):
        """Add (or replace) an entry; the record is reopened first."""
        if self.done:
            reopen_stage(self.folder, "embedding cache")
            self.done = False
        self.keys[utt] = key
        self.embeddings[utt] = embedding

    def save(self):
        """Write the entries so far (atomic); the record stays running."""
        save_torch(
            self.path,
            {
                "version": _CACHE_VERSION,
                "keys": self.keys,
                "embeddings": self.embeddings,
            },
        )

    def finish(self):
        """Save and record the cache as done (nothing to do when it was
        reused unchanged)."""
        if self.done:
            return
        self.save()
        finish_stage(
            self.folder,
            self.opts,
            [_CACHE_FILE],
            info={
                "utterances": len(self.keys),
                "items": items_fingerprint(
                    self.keys, self.model_tag, self.settings
                ),
            },
        )
        self.done = True


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
        Names the cache: ``out/embeddings.pt`` keeps it in the folder
        ``out/embeddings`` (its ``stage.json`` and ``embeddings.pt``); a
        cache in the older single-file format at ``cache_path`` is moved
        in. ``None`` disables caching.
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

    cache = (
        None
        if cache_path is None
        else _EmbeddingCache(cache_path, model_tag, settings)
    )
    result = {}
    todo = []
    for utt, spec in wanted.items():
        hit = None if cache is None else cache.get(utt, keys[utt])
        if hit is None:
            todo.append((utt, spec))
        else:
            result[utt] = hit
    if todo:
        result.update(
            _encode_items(
                encoder_fn,
                todo,
                keys,
                cache,
                batch_size,
                sample_rate,
                device,
                max_samples,
                progress,
            )
        )
    if cache is not None:
        cache.finish()
    return result


def _encode_items(
    encoder_fn,
    todo,
    keys,
    cache,
    batch_size,
    sample_rate,
    device,
    max_samples,
    progress,
):
    """Embeddings of ``todo`` (``[(utt, (path, start, stop))]``), longest
    first, added to ``cache`` (saved every ``_CHECKPOINT_SECONDS``)."""
    # Longest first: an out-of-memory error shows up in the first batch.
    lengths = {
        utt: _n_samples(*spec, sample_rate, max_samples) for utt, spec in todo
    }
    todo = sorted(todo, key=lambda it: -lengths[it[0]])
    result = {}
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
                result[utt] = e
                if cache is not None:
                    cache.add(utt, keys[utt], e)
            bar.update(len(batch))
            if (
                cache is not None
                and time.monotonic() - last_save > _CHECKPOINT_SECONDS
            ):
                cache.save()
                last_save = time.monotonic()
    bar.close()
    return result
