"""Speak synthetic identities with YourTTS: sharded, resumable, seeded.

Each synthetic identity (an id and a 512-d d-vector, e.g. a SLERP of two
real speakers' YourTTS embeddings) reads ``n_utts`` sentences through
``Vits.inference(aux_input={"d_vectors": ..., "language_ids": ...,
"x_lengths": ...})``. The output is laid out like VoxCeleb, so the same
preparation and training code reads it::

    <out_dir>/wav/<identity>/<session>/<utt>.wav     16 kHz mono 16-bit PCM
    <out_dir>/manifests/shard-<i>-of-<N>.csv         one per shard
    <out_dir>/synth.csv                              gather_manifests()
    <out_dir>/meta/synthesis.json                    the options used

Sessions are 11-character YouTube-like ids drawn from the seed and the
identity; utterances are numbered ``00001``... within a session. Manifests
have SpeechBrain's columns ``ID,duration,wav,start,stop,spk_id,session``
(plus ``gender`` when the identities carry one), ``ID`` being
``<identity>/<session>/<utt>``, ``start = 0`` and ``stop`` the number of
samples, as :mod:`speechbrain_ssv.data.voxceleb` writes them.

Determinism. VITS sampling is stochastic (the duration predictor's and the
prior's noise). Every utterance gets its own random streams, derived from
(seed, identity, utterance index): while ``Vits.inference`` runs, its normal
draws (``torch.randn``/``randn_like``) are served per batch item from
CPU generators seeded that way, filled in fixed-size time blocks so an
item's noise does not depend on how much the batch is padded. The global
torch RNG is not touched. Hence:

* a file's samples depend only on the seed, the identity, its index, the
  text and the model, never on the sharding, the resume point, the device
  count or the order of identities;
* ``batch_size`` only matters at the very end of an utterance: a batch
  pads shorter items and HiFi-GAN's receptive field reaches into that
  padding, changing their last ~25 ms slightly. Batches are fixed groups of
  one identity's utterances (indices ``[0, b)``, ``[b, 2b)``, ...), so for a
  given ``batch_size`` the output is still independent of the sharding.
  ``batch_size`` is recorded with the options and a resumed run must use
  the same value.

``Vits.inference`` adds no padding or silence of its own (that is
``Synthesizer.tts``'s post-processing, which is not used), so nothing is
trimmed beyond cutting each batch item to its own length.

Sharding: identities are dealt round-robin to ``N`` shards (``shard=(i,
N)``, ``--shard i/N``, or torchrun's ``RANK``/``WORLD_SIZE``). Shards write
disjoint speaker folders and their own manifest, so they can run
concurrently on several machines into one folder. Files are written
atomically and finished ones are skipped, so an interrupted shard resumes.

Text: a user corpus (one sentence per line; digits, ordinals, decimals and
thousands separators are spelled out, because YourTTS is a character model
that silently drops digits) or the package's
:class:`~speechbrain_ssv.data.text.SentenceGenerator`.

Command line (``--gather`` alone merges the shard manifests)::

    python -m speechbrain_ssv.inside.synthesize --model_dir DIR \\
        --identities identities.npz --out OUT --n_utts 20 [--shard 0/2]
        [--texts corpus.txt] [--seed N] [--language en] [--batch_size B]
        [--device cuda]
    python -m speechbrain_ssv.inside.synthesize --out OUT --gather

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import csv
import glob
import hashlib
import logging
import os
import re
import sys
import time

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from speechbrain_ssv.data.text import SentenceGenerator, number_to_words
from speechbrain_ssv.data.voxceleb import CSV_COLUMNS
from speechbrain_ssv.inside.tts import resample
from speechbrain_ssv.utils.errors import (
    ManifestError,
    SSVInputError,
    report_user_error,
)
from speechbrain_ssv.utils.io import atomic_path, write_wav
from speechbrain_ssv.utils.stages import check_recorded_options

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_COLUMNS",
    "expand_numbers",
    "gather_manifests",
    "load_identities",
    "main",
    "normalize_identities",
    "parse_shard",
    "read_text_corpus",
    "resolve_shard",
    "synthesize_identities",
    "utterance_plan",
]

# The VoxCeleb preparation's columns; "gender" only when identities have one
MANIFEST_COLUMNS = tuple(c for c in CSV_COLUMNS if c != "gender")
OPTIONS_FILE = os.path.join("meta", "synthesis.json")
# Bump when a change makes the same options produce different audio.
SYNTH_VERSION = 1
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SESSION_CHARS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)
# Noise is drawn in blocks of this many time steps per item: a block's
# values never depend on how long the (padded) tensor is.
_NOISE_BLOCK = 64


# ---------------------------------------------------------------- text


_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _ordinal(n):
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join(words[:-1] + [last])


def _cardinal(digits):
    if len(digits) > 12:
        # Too long to be a quantity (phone or serial numbers): read digits.
        return " ".join(number_to_words(int(d)) for d in digits)
    return number_to_words(int(digits))


def expand_numbers(text):
    """Spell out the numbers in a sentence.

    Handles thousands separators (``1,500``), decimals (``2.75`` -> "two
    point seven five"), ordinals (``21st``), percentages and plain integers
    (:func:`~speechbrain_ssv.data.text.number_to_words`); whitespace is
    collapsed.

    Arguments
    ---------
    text : str
        A sentence.

    Returns
    -------
    str
        The sentence without digits.

    Example
    -------
    >>> expand_numbers("On the 3rd day, 1,500 people paid 2.5% more.")
    'On the third day, one thousand five hundred people paid two point five percent more.'
    >>> expand_numbers("Room 42")
    'Room forty two'
    """
    text = re.sub(
        r"\b(\d{1,3})((?:,\d{3})+)\b",
        lambda m: m.group(0).replace(",", ""),
        text,
    )
    text = re.sub(r"(\d)\s*%", r"\1 percent", text)
    text = re.sub(
        r"\b(\d+)(st|nd|rd|th)\b",
        lambda m: _ordinal(int(m.group(1))),
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(
        r"(\d+)\.(\d+)",
        lambda m: (
            _cardinal(m.group(1))
            + " point "
            + " ".join(number_to_words(int(d)) for d in m.group(2))
        ),
        text,
    )
    text = re.sub(r"\d+", lambda m: _cardinal(m.group(0)), text)
    return re.sub(r"\s+", " ", text).strip()


def read_text_corpus(path):
    """Read a text corpus: one sentence per line, numbers spelled out.

    Arguments
    ---------
    path : str
        UTF-8 text file; blank lines are ignored.

    Returns
    -------
    list of str
        The sentences.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "corpus.txt")
    >>> _ = open(p, "w").write("I have 2 cats.\\n\\nThe 1st one is black.\\n")
    >>> read_text_corpus(p)
    ['I have two cats.', 'The first one is black.']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SSVInputError(path, "text corpus does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as err:
        raise SSVInputError(path, f"is not UTF-8 text ({err})") from None
    sentences = [expand_numbers(line) for line in lines if line.strip()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise SSVInputError(
            path, "holds no sentence; expected one sentence per line"
        )
    return sentences


# ---------------------------------------------------------- identities


def normalize_identities(identities, dim=None):
    """Validate identities and bring them to one form.

    Arguments
    ---------
    identities : dict | list
        One of: a mapping with ``ids`` and ``embeddings`` (or
        ``d_vectors``) arrays and optionally ``genders``; a mapping from id
        to vector; a list of ``{"id", "embedding" | "d_vector"[, "gender"]}``
        dicts; a list of ``(id, vector)`` or ``(id, vector, gender)``.
    dim : int | None
        Required vector size (512 for YourTTS); ``None`` accepts any, as
        long as all agree.

    Returns
    -------
    list of dict
        ``{"id": str, "d_vector": float32 array, "gender": str | None}``
        in the given order.

    Example
    -------
    >>> out = normalize_identities({"ids": ["a", "b"], "embeddings": np.eye(2),
    ...                             "genders": ["f", "m"]})
    >>> [(i["id"], i["gender"], i["d_vector"].tolist()) for i in out]
    [('a', 'f', [1.0, 0.0]), ('b', 'm', [0.0, 1.0])]
    >>> normalize_identities([("x/y", np.ones(2))])
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.SSVInputError: identities[0]: id 'x/y' is not usable as a folder name; ...
    """
    if isinstance(identities, dict):
        if "ids" in identities:
            vectors = identities.get("embeddings", identities.get("d_vectors"))
            if vectors is None:
                raise SSVInputError(
                    "identities",
                    "has 'ids' but no 'embeddings' (or 'd_vectors') array",
                )
            ids = [str(i) for i in np.asarray(identities["ids"]).tolist()]
            genders = identities.get("genders")
            genders = (
                [None] * len(ids)
                if genders is None
                else [str(g) for g in np.asarray(genders).tolist()]
            )
            vectors = np.asarray(vectors)
            if len(vectors) != len(ids) or len(genders) != len(ids):
                raise SSVInputError(
                    "identities",
                    f"{len(ids)} ids but {len(vectors)} vectors and "
                    f"{len(genders)} genders; expected equal lengths",
                )
            items = list(zip(ids, vectors, genders))
        else:
            items = [(k, v, None) for k, v in identities.items()]
    else:
        items = []
        for n, entry in enumerate(identities):
            if isinstance(entry, dict):
                vec = entry.get("embedding", entry.get("d_vector"))
                items.append((entry.get("id"), vec, entry.get("gender")))
            elif isinstance(entry, (tuple, list)) and len(entry) in (2, 3):
                items.append(
                    (*entry, None) if len(entry) == 2 else tuple(entry)
                )
            else:
                raise SSVInputError(
                    f"identities[{n}]",
                    f"got {type(entry).__name__}; expected a dict with id "
                    "and embedding, or an (id, vector[, gender]) tuple",
                )
    if not items:
        raise SSVInputError("identities", "is empty; expected at least one")
    out, seen, expected = [], set(), dim
    for n, (ident, vec, gender) in enumerate(items):
        where = f"identities[{n}]"
        ident = str(ident) if ident is not None else ""
        if not _ID_PATTERN.match(ident):
            raise SSVInputError(
                where,
                f"id {ident!r} is not usable as a folder name; expected "
                "letters, digits, '_', '-', '.' (not first)",
            )
        if ident in seen:
            raise SSVInputError(where, f"id {ident!r} appears twice")
        seen.add(ident)
        if vec is None:
            raise SSVInputError(where, f"identity {ident!r} has no vector")
        if isinstance(vec, torch.Tensor):
            vec = vec.detach().cpu().numpy()
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if expected is None:
            expected = vec.shape[0]
        if vec.shape[0] != expected:
            raise SSVInputError(
                where,
                f"vector of {ident!r} has {vec.shape[0]} values; expected {expected}",
            )
        # Vits L2-normalises the d-vector, so only its direction matters,
        # and a zero or non-finite one has none.
        if not np.isfinite(vec).all() or not np.linalg.norm(vec) > 0:
            raise SSVInputError(
                where, f"vector of {ident!r} is zero or not finite"
            )
        gender = None if gender is None or str(gender) == "" else str(gender)
        out.append({"id": ident, "d_vector": vec, "gender": gender})
    return out


def load_identities(path):
    """Read identities from ``.npz`` or ``.pt``.

    Arguments
    ---------
    path : str
        ``.npz`` with arrays ``ids``, ``embeddings`` (or ``d_vectors``),
        optionally ``genders``; or ``.pt``/``.pth`` holding such a dict (of
        tensors/lists) or a list of identity dicts (loaded with
        ``weights_only=True``).

    Returns
    -------
    list of dict
        As :func:`normalize_identities`.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "ids.npz")
    >>> np.savez(p, ids=np.array(["s1", "s2"]), embeddings=np.ones((2, 4)))
    >>> [i["id"] for i in load_identities(p)]
    ['s1', 's2']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SSVInputError(path, "identities file does not exist")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as data:
                obj = {k: data[k] for k in data.files}
        elif ext in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise SSVInputError(
                path, "has an unknown extension; expected .npz, .pt or .pth"
            )
    except (OSError, ValueError, RuntimeError) as err:
        if isinstance(err, SSVInputError):
            raise
        raise SSVInputError(path, f"could not be read ({err})") from None
    try:
        return normalize_identities(obj)
    except SSVInputError as err:
        raise SSVInputError(path, str(err)) from None


# ------------------------------------------------------------ sharding


def parse_shard(text):
    """Parse ``"i/N"`` into ``(i, N)``.

    Arguments
    ---------
    text : str
        E.g. ``"0/2"``.

    Returns
    -------
    tuple of int
        ``(i, N)`` with ``0 <= i < N``.

    Example
    -------
    >>> parse_shard("1/4")
    (1, 4)
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise SSVInputError("shard", f"{text!r}: expected 'i/N', e.g. '0/2'")
    return _check_shard((int(match.group(1)), int(match.group(2))))


def _check_shard(shard):
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise SSVInputError(
            "shard", f"{shard!r}: expected a pair (i, N)"
        ) from None
    if n < 1 or not 0 <= i < n:
        raise SSVInputError("shard", f"({i}, {n}): expected 0 <= i < N")
    return i, n


def resolve_shard(shard=None):
    """The shard to run: the given one, else torchrun's rank, else (0, 1).

    Arguments
    ---------
    shard : tuple | str | None
        ``(i, N)``, ``"i/N"`` or ``None`` (use ``RANK``/``WORLD_SIZE``).

    Returns
    -------
    tuple of int
        ``(i, N)``.

    Example
    -------
    >>> resolve_shard("0/3")
    (0, 3)
    """
    if isinstance(shard, str):
        return parse_shard(shard)
    if shard is not None:
        return _check_shard(shard)
    if "WORLD_SIZE" in os.environ:
        return _check_shard(
            (os.environ.get("RANK", "0"), os.environ["WORLD_SIZE"])
        )
    return 0, 1


# ------------------------------------------------------ seeds and plan


def _key_seed(seed, *keys):
    """A 63-bit integer seed from a base seed and keys (stable across runs
    and Python versions, unlike ``hash``)."""
    digest = hashlib.blake2b(
        repr((int(seed), *keys)).encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _session_ids(seed, identity, n_sessions):
    rng = np.random.default_rng(_key_seed(seed, "session", identity))
    out = []
    while len(out) < n_sessions:
        sid = "".join(
            _SESSION_CHARS[i]
            for i in rng.integers(len(_SESSION_CHARS), size=11)
        )
        if sid not in out:
            out.append(sid)
    return out


def utterance_plan(identity, n_utts, seed, texts=None, n_sessions=1):
    """Files, texts and seeds of one identity's utterances.

    Arguments
    ---------
    identity : str
        The identity id.
    n_utts : int
        Utterances to speak.
    seed : int
        Base seed.
    texts : list of str | None
        Sentence pool; ``None`` uses the package's sentence generator.
    n_sessions : int
        Sessions the utterances are spread over (contiguously).

    Returns
    -------
    list of dict
        Per utterance: ``index``, ``session``, ``rel`` (path under
        ``wav/`` without extension), ``text``, ``seed``.

    Example
    -------
    >>> plan = utterance_plan("syn00001", 3, seed=1, texts=["Hello there."])
    >>> [p["rel"].split("/")[2] for p in plan]
    ['00001', '00002', '00003']
    >>> plan[0]["seed"] == utterance_plan("syn00001", 1, seed=1)[0]["seed"]
    True
    """
    if not isinstance(n_utts, int) or n_utts < 1:
        raise SSVInputError("n_utts", f"got {n_utts!r}; expected >= 1")
    if not isinstance(n_sessions, int) or not 1 <= n_sessions <= n_utts:
        raise SSVInputError(
            "n_sessions",
            f"got {n_sessions!r}; expected 1 <= n_sessions <= n_utts",
        )
    sessions = _session_ids(seed, identity, n_sessions)
    generator = SentenceGenerator(seed) if texts is None else None
    plan, counters = [], [0] * n_sessions
    for k in range(n_utts):
        s = k * n_sessions // n_utts
        counters[s] += 1
        rng = np.random.default_rng(_key_seed(seed, "text", identity, k))
        if generator is not None:
            text = generator.sentence(rng)
        else:
            text = texts[int(rng.integers(len(texts)))]
        plan.append(
            {
                "index": k,
                "session": sessions[s],
                "rel": f"{identity}/{sessions[s]}/{counters[s]:05d}",
                "text": text,
                "seed": _key_seed(seed, "utterance", identity, k),
            }
        )
    return plan


# ------------------------------------------------------ seeded noise


class _PerItemNoise(torch.overrides.TorchFunctionMode):
    """Serve ``torch.randn``/``randn_like`` calls of a batched
    ``Vits.inference`` from per-item generators.

    Call ``k`` of item ``b`` uses a generator seeded from (item seed, k),
    filling time-major blocks of ``_NOISE_BLOCK`` steps, so an item's noise
    is the same whatever the batch and its padding. Any other random draw
    means coqui changed how it samples: fail loudly rather than silently
    lose the determinism guarantee.
    """

    _OTHER_RANDOM = {
        torch.rand,
        torch.rand_like,
        torch.randint,
        torch.randint_like,
        torch.normal,
        torch.bernoulli,
        torch.multinomial,
        torch.Tensor.normal_,
        torch.Tensor.uniform_,
        torch.Tensor.bernoulli_,
        torch.Tensor.random_,
    }

    def __init__(self, seeds):
        super().__init__()
        self.seeds = list(seeds)
        self.calls = 0

    def _noise(self, shape, dtype, device):
        if len(shape) != 3 or shape[0] != len(self.seeds):
            raise RuntimeError(
                f"Vits.inference drew noise of shape {tuple(shape)}; expected "
                f"[batch={len(self.seeds)}, channels, time]. This coqui-tts "
                "version samples differently; per-utterance seeding cannot "
                "be guaranteed"
            )
        _, channels, steps = shape
        n_blocks = -(-steps // _NOISE_BLOCK)
        items = []
        for seed in self.seeds:
            gen = torch.Generator().manual_seed(
                _key_seed(seed, "call", self.calls)
            )
            blocks = torch.randn(
                n_blocks * _NOISE_BLOCK, channels, generator=gen
            )
            items.append(blocks[:steps].T)
        self.calls += 1
        return torch.stack(items).to(device=device, dtype=dtype)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.randn_like:
            ref = args[0]
            return self._noise(
                ref.shape, kwargs.get("dtype") or ref.dtype, ref.device
            )
        if func is torch.randn:
            if kwargs.get("generator") is not None:
                return func(*args, **kwargs)
            shape = (
                args[0]
                if len(args) == 1 and not isinstance(args[0], int)
                else args
            )
            return self._noise(
                tuple(int(s) for s in shape),
                kwargs.get("dtype") or torch.get_default_dtype(),
                kwargs.get("device") or "cpu",
            )
        if func in self._OTHER_RANDOM:
            raise RuntimeError(
                f"Vits.inference called {getattr(func, '__name__', func)}; "
                "per-utterance seeding only covers torch.randn/randn_like"
            )
        return func(*args, **kwargs)


def _synthesize_batch(tts, texts, d_vectors, seeds, language_id, language):
    """Waveforms (numpy, model rate) of one batch, each cut to its length."""
    model = tts.model
    token_ids = []
    for text in texts:
        ids = model.tokenizer.text_to_ids(text, language=language)
        if not ids:
            raise SSVInputError(
                "texts", f"{text!r} has no character the model can speak"
            )
        token_ids.append(ids)
    device = tts.device
    longest = max(len(t) for t in token_ids)
    x = torch.zeros(len(texts), longest, dtype=torch.long)
    for b, ids in enumerate(token_ids):
        x[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    aux = {
        "x_lengths": torch.tensor([len(t) for t in token_ids], device=device),
        "d_vectors": torch.from_numpy(np.stack(d_vectors)).to(device),
    }
    if language_id is not None:
        aux["language_ids"] = torch.full(
            (len(texts),), language_id, dtype=torch.long, device=device
        )
    with _PerItemNoise(seeds):
        out = model.inference(x.to(device), aux_input=aux)
    wav = out["model_outputs"][:, 0].float().cpu()
    frames = out["y_mask"].sum(dim=(1, 2)).long().cpu()
    # Samples per decoder frame (the hop, or more when z is interpolated).
    per_frame = wav.shape[-1] / out["y_mask"].shape[-1]
    return [
        wav[b, : min(wav.shape[-1], int(round(int(frames[b]) * per_frame)))]
        .numpy()
        .copy()
        for b in range(len(texts))
    ]


# --------------------------------------------------------- manifests


def _columns(with_gender):
    return MANIFEST_COLUMNS + (("gender",) if with_gender else ())


def _write_csv(path, columns, rows):
    with (
        atomic_path(path) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def _shard_manifest_path(out_dir, shard):
    i, n = shard
    return os.path.join(out_dir, "manifests", f"shard-{i:05d}-of-{n:05d}.csv")


def gather_manifests(out_dir, out_csv=None):
    """Merge the shard manifests of a synthesis folder into one CSV.

    Arguments
    ---------
    out_dir : str
        The folder given to :func:`synthesize_identities`.
    out_csv : str | None
        Destination; ``None``: ``<out_dir>/synth.csv``.

    Returns
    -------
    str
        The merged CSV (rows sorted by ID), written atomically.

    Example
    -------
    >>> out = str(getfixture("tmpdir"))
    >>> _write_csv(_shard_manifest_path(out, (0, 1)), MANIFEST_COLUMNS,
    ...            [("a/s/00001", "1.0", "/x.wav", 0, 16000, "a", "s")])
    >>> open(gather_manifests(out)).read().splitlines()[1]
    'a/s/00001,1.0,/x.wav,0,16000,a,s'
    """
    out_dir = os.fspath(out_dir)
    pattern = os.path.join(out_dir, "manifests", "shard-*-of-*.csv")
    found = {}
    for path in sorted(glob.glob(pattern)):
        m = re.search(r"shard-(\d+)-of-(\d+)\.csv$", path)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if not found:
        raise ManifestError(
            os.path.join(out_dir, "manifests"),
            "holds no shard manifest; run synthesize_identities first",
        )
    if len(found) > 1:
        raise ManifestError(
            os.path.join(out_dir, "manifests"),
            f"mixes shard counts {sorted(found)}; delete the stale manifests",
        )
    ((n, shards),) = found.items()
    missing = [i for i in range(n) if i not in shards]
    if missing:
        raise ManifestError(
            os.path.join(out_dir, "manifests"),
            f"shards {missing} of {n} have not finished; run them first",
        )
    header, rows = None, []
    for i in range(n):
        with open(shards[i], newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            this = next(reader, None)
            if header is None:
                header = this
            elif this != header:
                raise ManifestError(
                    shards[i], f"has columns {this}; expected {header}"
                )
            rows.extend(reader)
    rows.sort(key=lambda r: r[0])
    out_csv = out_csv or os.path.join(out_dir, "synth.csv")
    _write_csv(out_csv, header, rows)
    return out_csv


# ------------------------------------------------------------ options


def _remove_stray_temps(folder):
    """Delete temporary files an interrupted atomic write left behind."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and ".tmp" in name:
                os.remove(os.path.join(dirpath, name))


def _model_scales(model, length_scale, noise_scale, noise_scale_dp):
    old = (
        model.length_scale,
        model.inference_noise_scale,
        model.inference_noise_scale_dp,
    )
    new = tuple(
        o if v is None else float(v)
        for o, v in zip(old, (length_scale, noise_scale, noise_scale_dp))
    )
    return old, new


def _set_scales(model, scales):
    (
        model.length_scale,
        model.inference_noise_scale,
        model.inference_noise_scale_dp,
    ) = scales


# ---------------------------------------------------------- synthesis


def synthesize_identities(
    tts,
    identities,
    out_dir,
    n_utts,
    texts=None,
    seed=1234,
    shard=None,
    language="en",
    batch_size=1,
    n_sessions=1,
    sample_rate=16000,
    length_scale=None,
    noise_scale=None,
    noise_scale_dp=None,
    progress=True,
):
    """Speak ``n_utts`` utterances for each identity of this shard.

    Arguments
    ---------
    tts : speechbrain_ssv.inside.tts.YourTTS
        From :func:`~speechbrain_ssv.inside.tts.load_yourtts`.
    identities : list | dict | str
        Anything :func:`normalize_identities` accepts, or a path for
        :func:`load_identities`. Give every shard the same full list: each
        shard picks its own identities from it.
    out_dir : str
        Output folder (see the module docstring for the layout).
    n_utts : int
        Utterances per identity.
    texts : list of str | str | None
        Sentence pool, a corpus file (:func:`read_text_corpus`), or ``None``
        for the package's sentence generator. Sentences given as a list are
        used verbatim after :func:`expand_numbers`.
    seed : int
        Base seed of texts, sessions and sampling noise.
    shard : tuple | str | None
        ``(i, N)`` or ``"i/N"``; ``None``: torchrun's ``RANK``/``WORLD_SIZE``
        when set, else everything.
    language : str
        Model language (``en``, ``fr-fr``, ``pt-br`` for YourTTS).
    batch_size : int
        Utterances of one identity synthesised together (see the module
        docstring for its small effect on utterance tails).
    n_sessions : int
        Sessions per identity.
    sample_rate : int
        Rate of the written files (resampled when the model's differs).
    length_scale, noise_scale, noise_scale_dp : float | None
        Override the model's speaking-rate factor and the prior / duration
        noise scales (``None``: the checkpoint's values; for YourTTS 1,
        0.667, 1.0). Restored afterwards.
    progress : bool
        Show a tqdm bar over utterances.

    Returns
    -------
    dict
        ``shard``, ``identities`` (in this shard), ``written``,
        ``skipped`` (already there), ``audio_seconds`` and
        ``wall_seconds`` of what was synthesised now, ``realtime_factor``
        (audio seconds per wall second, > 1 is faster than real time;
        ``None`` when nothing was synthesised), ``manifest`` (this shard's
        CSV).

    Example
    -------
    >>> tts = load_yourtts("models/your_tts", device="cuda")  # doctest: +SKIP
    >>> ids = {"syn00001": np.random.randn(512)}  # doctest: +SKIP
    >>> synthesize_identities(tts, ids, "synth", n_utts=2)["written"]  # doctest: +SKIP
    2
    """
    if isinstance(identities, (str, os.PathLike)):
        identities = load_identities(identities)
    identities = normalize_identities(identities, dim=tts.d_vector_dim)
    shard = resolve_shard(shard)
    if isinstance(texts, (str, os.PathLike)):
        texts = read_text_corpus(texts)
    elif texts is not None:
        texts = [expand_numbers(str(t)) for t in texts]
        texts = [t for t in texts if t]
        if not texts:
            raise SSVInputError("texts", "is empty; expected sentences")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SSVInputError("batch_size", f"got {batch_size!r}; expected >= 1")
    # Validate the plan before the options are recorded in the folder.
    utterance_plan(identities[0]["id"], n_utts, seed, texts, n_sessions)
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise SSVInputError("sample_rate", f"got {sample_rate!r}; expected > 0")
    language_id = tts.language_id(language)
    old_scales, scales = _model_scales(
        tts.model, length_scale, noise_scale, noise_scale_dp
    )
    with_gender = any(i["gender"] is not None for i in identities)
    out_dir = os.path.abspath(os.fspath(out_dir))
    text_tag = (
        "generated"
        if texts is None
        else hashlib.sha1("\n".join(texts).encode()).hexdigest()
    )
    check_recorded_options(
        os.path.join(out_dir, OPTIONS_FILE),
        {
            "version": SYNTH_VERSION,
            "seed": int(seed),
            "n_utts": n_utts,
            "n_sessions": n_sessions,
            "language": language,
            "batch_size": batch_size,
            "sample_rate": sample_rate,
            "texts": text_tag,
            "scales": list(scales),
            "model_file_bytes": os.path.getsize(
                os.path.join(tts.model_dir, "model_file.pth")
            ),
        },
        "synthesised speech",
    )
    mine = identities[shard[0] :: shard[1]]
    plans = [
        (ident, utterance_plan(ident["id"], n_utts, seed, texts, n_sessions))
        for ident in mine
    ]
    wav_root = os.path.join(out_dir, "wav")
    rows = []
    counts = {"written": 0, "skipped": 0}
    audio_s, wall_s = 0.0, 0.0
    bar = tqdm(
        total=len(plans) * n_utts,
        desc=f"synthesis {shard[0]}/{shard[1]}",
        disable=not progress,
    )
    _set_scales(tts.model, scales)
    try:
        for ident, plan in plans:
            _remove_stray_temps(os.path.join(wav_root, ident["id"]))
            for first in range(0, n_utts, batch_size):
                group = plan[first : first + batch_size]
                paths = [
                    os.path.join(wav_root, u["rel"] + ".wav") for u in group
                ]
                todo = [not os.path.isfile(p) for p in paths]
                lengths = [None] * len(group)
                if any(todo):
                    start = time.perf_counter()
                    waves = _synthesize_batch(
                        tts,
                        [u["text"] for u in group],
                        [ident["d_vector"]] * len(group),
                        [u["seed"] for u in group],
                        language_id,
                        language,
                    )
                    for j, wave in enumerate(waves):
                        if not todo[j]:
                            continue
                        if tts.sample_rate != sample_rate:
                            wave = resample(wave, tts.sample_rate, sample_rate)
                        write_wav(paths[j], wave, sample_rate)
                        lengths[j] = len(wave)
                        audio_s += len(wave) / sample_rate
                    wall_s += time.perf_counter() - start
                for j, (u, path) in enumerate(zip(group, paths)):
                    if lengths[j] is None:
                        lengths[j] = sf.info(path).frames
                        counts["skipped"] += 1
                    else:
                        counts["written"] += 1
                    row = [
                        u["rel"],
                        repr(lengths[j] / sample_rate),
                        path,
                        0,
                        lengths[j],
                        ident["id"],
                        u["session"],
                    ]
                    if with_gender:
                        row.append(ident["gender"] or "")
                    rows.append(row)
                bar.update(len(group))
    finally:
        bar.close()
        _set_scales(tts.model, old_scales)
    manifest = _shard_manifest_path(out_dir, shard)
    _write_csv(manifest, _columns(with_gender), rows)
    return {
        "shard": shard,
        "identities": len(mine),
        "written": counts["written"],
        "skipped": counts["skipped"],
        "audio_seconds": round(audio_s, 3),
        "wall_seconds": round(wall_s, 3),
        "realtime_factor": round(audio_s / wall_s, 2) if wall_s > 0 else None,
        "manifest": manifest,
    }


# ---------------------------------------------------------------- CLI


def _default_device():
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Arguments
    ---------
    argv : list of str | None
        Arguments (``sys.argv[1:]`` when ``None``).

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.inside.synthesize",
        description="Speak synthetic identities (d-vectors) with YourTTS "
        "into a VoxCeleb-like folder with a CSV manifest per shard; "
        "sharded, resumable and seeded. --gather alone merges the shard "
        "manifests into synth.csv. Needs the tts extra: "
        "pip install 'speechbrain-ssv[tts]'.",
        epilog="Bad input ends with one 'error: ...' line and exit status "
        "2; set SSV_DEBUG=1 to see the traceback as well.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (wav/, manifests/, synth.csv, meta/)",
    )
    parser.add_argument(
        "--model_dir",
        help="YourTTS release folder or name (required unless --gather)",
    )
    parser.add_argument(
        "--identities",
        help=".npz or .pt file of identity ids and 512-d d-vectors "
        "(required unless --gather)",
    )
    parser.add_argument(
        "--n_utts",
        type=int,
        default=20,
        help="utterances per identity (default: %(default)s)",
    )
    parser.add_argument(
        "--texts",
        default=None,
        help="text corpus, one sentence per line (default: the package's "
        "sentence generator)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1234,
        help="base seed of texts, sessions and sampling noise "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--shard",
        default=None,
        help="this process's shard as i/N, e.g. 0/2 (default: torchrun's "
        "RANK/WORLD_SIZE when set, else everything)",
    )
    parser.add_argument(
        "--language",
        default="en",
        help="model language: en, fr-fr or pt-br for YourTTS "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=1,
        help="utterances of one identity synthesised together; a resumed "
        "run must use the same value (default: %(default)s)",
    )
    parser.add_argument(
        "--n_sessions",
        type=int,
        default=1,
        help="sessions per identity (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda:0 (default: cuda:LOCAL_RANK "
        "when CUDA is available, else cpu)",
    )
    parser.add_argument(
        "--gather", action="store_true", help="only merge the shard manifests"
    )
    parser.add_argument(
        "--trust_checkpoint",
        action="store_true",
        help="also load pickled checkpoints (torch.load weights_only=False "
        "runs code stored in the file: only for files you trust)",
    )
    args = parser.parse_args(argv)
    try:
        if args.gather:
            print(f"merged manifest -> {gather_manifests(args.out)}")
            return 0
        if not args.model_dir or not args.identities:
            parser.error("--model_dir and --identities are required")
        from speechbrain_ssv.inside.tts import load_yourtts

        tts = load_yourtts(
            args.model_dir,
            device=args.device or _default_device(),
            trust_checkpoint=args.trust_checkpoint,
        )
        summary = synthesize_identities(
            tts,
            args.identities,
            args.out,
            n_utts=args.n_utts,
            texts=args.texts,
            seed=args.seed,
            shard=args.shard,
            language=args.language,
            batch_size=args.batch_size,
            n_sessions=args.n_sessions,
        )
    except (SSVInputError, ImportError) as err:
        # ImportError: the tts extra (coqui-tts) is missing.
        return report_user_error(err)
    i, n = summary["shard"]
    print(
        f"shard {i}/{n}: {summary['identities']} identities, "
        f"{summary['written']} written, {summary['skipped']} already there, "
        f"{summary['audio_seconds']} s of audio at "
        f"{summary['realtime_factor']}x real time -> {summary['manifest']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
