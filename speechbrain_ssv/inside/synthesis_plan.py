"""What a synthesis shard speaks: the text corpus, the identities, the
shard split and the per-utterance plan (texts, sessions and seeds).

Text: a user corpus (one sentence per line; digits, ordinals, decimals and
thousands separators are spelled out, because YourTTS is a character model
that silently drops digits) or the package's
:class:`~speechbrain_ssv.data.text.SentenceGenerator`.

Identities: ids usable as folder names with one d-vector each (and
optionally a gender), from a dict, a list or an ``.npz`` / ``.pt`` file.

Shards: identities are dealt round-robin to ``N`` shards (``(i, N)``,
``"i/N"``, or torchrun's ``RANK``/``WORLD_SIZE``).

Plan: sessions are 11-character YouTube-like ids drawn from the seed and the
identity; utterances are numbered ``00001``... within a session; each
utterance's text and noise seed derive from (seed, identity, utterance
index) through :func:`key_seed`, never from the sharding or the resume
point. :mod:`speechbrain_ssv.inside.synthesize` speaks the plan.

Authors
 * speechbrain-ssv developers 2026
"""

import hashlib
import os
import re

import numpy as np
import torch

from speechbrain_ssv.data.text import SentenceGenerator, number_to_words
from speechbrain_ssv.utils.errors import SSVInputError

__all__ = [
    "expand_numbers",
    "key_seed",
    "load_identities",
    "normalize_identities",
    "parse_shard",
    "read_text_corpus",
    "resolve_shard",
    "utterance_plan",
]

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SESSION_CHARS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)
# Noise is drawn in blocks of this many time steps per item: a block's


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


def key_seed(seed, *keys):
    """A 63-bit integer seed from a base seed and keys (stable across runs
    and Python versions, unlike ``hash``).

    Arguments
    ---------
    seed : int
        Base seed.
    *keys
        Values with a stable ``repr`` (strings, integers).

    Returns
    -------
    int
        The seed, in ``[0, 2**63)``.

    Example
    -------
    >>> key_seed(1, "text", "syn00001", 0) == key_seed(1, "text", "syn00001", 0)
    True
    """
    digest = hashlib.blake2b(
        repr((int(seed), *keys)).encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _session_ids(seed, identity, n_sessions):
    rng = np.random.default_rng(key_seed(seed, "session", identity))
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
        rng = np.random.default_rng(key_seed(seed, "text", identity, k))
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
                "seed": key_seed(seed, "utterance", identity, k),
            }
        )
    return plan
