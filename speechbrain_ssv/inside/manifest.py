"""Bookkeeping of INSIDE's synthetic identities: their ids, the table of
source pairs, and the training manifest that mixes real and synthetic
speakers.

Synthetic speakers get ids ``syn000000``, ``syn000001``, ... (prefix and
width configurable), never VoxCeleb-shaped ``id00001`` ids; every function
that meets a real manifest checks that no synthetic id equals a real one.

The pairs table (``write_pairs`` / ``read_pairs``) is a CSV with the
columns::

    syn_spk_id,source_a,source_b,gender,alpha,layer,cosine

one row per synthetic identity (``layer`` 0 and an empty ``cosine`` for
random pairs). ``merge_manifests`` appends synthetic utterances, already in
SpeechBrain manifest format, to a real training manifest;
``split_synthetic`` holds out utterances of every synthetic identity for
the validation manifest, and ``subset_manifest`` keeps a few random
utterances per speaker.

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import math
import os
import re
from typing import NamedTuple

import numpy as np

from speechbrain_ssv.utils.errors import ManifestError, SSVInputError
from speechbrain_ssv.utils.io import atomic_path

__all__ = [
    "MANIFEST_COLUMNS",
    "METADATA_COLUMNS",
    "PAIR_COLUMNS",
    "SyntheticIdentity",
    "merge_manifests",
    "read_pairs",
    "split_synthetic",
    "subset_manifest",
    "synthetic_speaker_id",
    "write_pairs",
]

PAIR_COLUMNS = (
    "syn_spk_id",
    "source_a",
    "source_b",
    "gender",
    "alpha",
    "layer",
    "cosine",
)
MANIFEST_COLUMNS = ("ID", "duration", "wav", "start", "stop", "spk_id")
METADATA_COLUMNS = ("source_a", "source_b", "alpha", "gender", "synthetic")
# VoxCeleb speaker ids: a synthetic prefix must never produce one.
_VOXCELEB_ID = re.compile(r"^id\d+$")
# The id becomes a folder name (wav/<spk_id>/...) and a CSV field.
_SAFE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class SyntheticIdentity(NamedTuple):
    """One synthetic speaker: ``slerp(emb[source_a], emb[source_b],
    alpha)``."""

    syn_spk_id: str
    source_a: str
    source_b: str
    gender: str
    alpha: float
    layer: int
    cosine: float


def synthetic_speaker_id(index, prefix="syn", width=6):
    """Id of the ``index``-th synthetic speaker.

    Arguments
    ---------
    index : int
        Non-negative running number.
    prefix : str
        Letters first, then letters, digits, ``_`` or ``-``; must not make
        VoxCeleb-shaped ids (``id`` followed by digits).
    width : int
        Zero-padded digits (more are used when ``index`` needs them).

    Returns
    -------
    str
        E.g. ``"syn000042"``.

    Example
    -------
    >>> synthetic_speaker_id(42)
    'syn000042'
    >>> synthetic_speaker_id(7, prefix="id")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.SSVInputError: prefix: 'id' makes ...
    """
    index = int(index)
    if index < 0:
        raise SSVInputError("index", f"is {index}; expected >= 0")
    if not isinstance(prefix, str) or not _SAFE_PREFIX.match(prefix):
        raise SSVInputError(
            "prefix",
            f"{prefix!r} is not a safe id prefix; expected a letter followed "
            "by letters, digits, '_' or '-'",
        )
    spk = f"{prefix}{index:0{int(width)}d}"
    if _VOXCELEB_ID.match(spk):
        raise SSVInputError(
            "prefix",
            f"{prefix!r} makes VoxCeleb-shaped ids ({spk}); expected another "
            "prefix, e.g. 'syn'",
        )
    return spk


def _read_csv(path, required, what):
    """Header and rows (dicts) of a CSV, checking required columns."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ManifestError(path, f"not found; expected a {what}")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if not header:
            raise ManifestError(path, f"is empty; expected a {what}")
        missing = [c for c in required if c not in header]
        if missing:
            raise ManifestError(
                path,
                f"lacks column(s) {missing} (header: {header}); expected a "
                f"{what} with columns {list(required)}",
            )
        rows = list(reader)
    return list(header), rows


def _real_speaker_ids(real_speakers):
    """``(set of ids, name for messages)`` from a manifest path or ids."""
    if real_speakers is None:
        return set(), None
    if isinstance(real_speakers, (str, os.PathLike)):
        path = os.fspath(real_speakers)
        _, rows = _read_csv(path, ("spk_id",), "manifest")
        return {r["spk_id"] for r in rows}, path
    return {str(s) for s in real_speakers}, "real_speakers"


def write_pairs(
    path, pairs, alpha=0.5, prefix="syn", start=0, real_speakers=None
):
    """Give each pair a synthetic speaker id and write the pairs table.

    Arguments
    ---------
    path : str
        Destination CSV (written atomically).
    pairs : sequence
        :class:`~speechbrain_ssv.inside.pairing.SpeakerPair` records (or any
        ``(spk_a, spk_b, gender, layer, cosine)`` tuples, or
        :class:`SyntheticIdentity` rows to re-number); ids are assigned in
        this order.
    alpha : float | sequence of float
        SLERP weight of ``spk_b``, one for all or one per pair.
    prefix : str
        Synthetic id prefix (:func:`synthetic_speaker_id`).
    start : int
        Index of the first synthetic id (to extend an existing set).
    real_speakers : str | iterable | None
        A real manifest (its ``spk_id`` column) or real speaker ids: a
        synthetic id among them is an error.

    Returns
    -------
    list of SyntheticIdentity
        The rows written.

    Example
    -------
    >>> from speechbrain_ssv.inside.pairing import SpeakerPair
    >>> p = os.path.join(getfixture("tmpdir"), "pairs.csv")
    >>> ids = write_pairs(p, [SpeakerPair("id1", "id2", "f", 1, 0.8)])
    >>> print(open(p).read().strip())
    syn_spk_id,source_a,source_b,gender,alpha,layer,cosine
    syn000000,id1,id2,f,0.5,1,0.8
    """
    pairs = list(pairs)
    if isinstance(alpha, (int, float)):
        alphas = [float(alpha)] * len(pairs)
    else:
        alphas = [float(a) for a in alpha]
        if len(alphas) != len(pairs):
            raise SSVInputError(
                "alpha",
                f"has {len(alphas)} values for {len(pairs)} pairs; expected "
                "one value or one per pair",
            )
    real, real_name = _real_speaker_ids(real_speakers)
    identities = []
    for n, (pair, a) in enumerate(zip(pairs, alphas)):
        if isinstance(pair, SyntheticIdentity):
            # Re-numbering an existing table: keep its sources, not its ids.
            spk_a, spk_b, gender = pair.source_a, pair.source_b, pair.gender
            layer, cosine = pair.layer, pair.cosine
        else:
            spk_a, spk_b, gender, layer, cosine = tuple(pair)[:5]
        if str(spk_a) == str(spk_b):
            raise SSVInputError(
                "pairs", f"pair {n} joins {spk_a!r} with itself"
            )
        if not math.isfinite(a):
            raise SSVInputError("alpha", f"value {a} of pair {n} is not finite")
        syn = synthetic_speaker_id(start + n, prefix=prefix)
        identities.append(
            SyntheticIdentity(
                syn,
                str(spk_a),
                str(spk_b),
                str(gender),
                a,
                int(layer),
                float(cosine),
            )
        )
    clash = sorted({i.syn_spk_id for i in identities} & real)
    if clash:
        raise SSVInputError(
            real_name,
            f"already has speaker ids {clash[:5]} that the synthetic ids "
            f"would reuse; expected another prefix or start (prefix={prefix!r}"
            f", start={start})",
        )
    with (
        atomic_path(path) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(PAIR_COLUMNS)
        for i in identities:
            cos = "" if math.isnan(i.cosine) else repr(i.cosine)
            writer.writerow(
                (
                    i.syn_spk_id,
                    i.source_a,
                    i.source_b,
                    i.gender,
                    repr(i.alpha),
                    i.layer,
                    cos,
                )
            )
    return identities


def read_pairs(path):
    """Read a pairs table written by :func:`write_pairs`.

    Arguments
    ---------
    path : str
        The CSV.

    Returns
    -------
    list of SyntheticIdentity
        In file order (``cosine`` NaN where empty).

    Raises
    ------
    ManifestError
        Naming the file (and line) for a missing column, a malformed number
        or a repeated synthetic id.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "pairs.csv")
    >>> _ = open(p, "w").write(
    ...     "syn_spk_id,source_a,source_b,gender,alpha,layer,cosine\\n"
    ...     "syn000000,id1,id2,m,0.5,0,\\n"
    ... )
    >>> read_pairs(p)[0].alpha, read_pairs(p)[0].layer
    (0.5, 0)
    """
    path = os.fspath(path)
    _, rows = _read_csv(path, PAIR_COLUMNS, "pairs table")
    out, seen = [], set()
    for lineno, r in enumerate(rows, start=2):
        where = f"{path}:{lineno}"
        syn = r["syn_spk_id"].strip()
        if not syn or syn in seen:
            raise ManifestError(
                where,
                f"synthetic id {syn!r} is empty or repeated; expected "
                "distinct ids",
            )
        seen.add(syn)
        try:
            cos = r["cosine"].strip()
            identity = SyntheticIdentity(
                syn,
                r["source_a"].strip(),
                r["source_b"].strip(),
                r["gender"].strip(),
                float(r["alpha"]),
                int(r["layer"]),
                float(cos) if cos else math.nan,
            )
        except (TypeError, ValueError, AttributeError):
            raise ManifestError(
                where,
                f"malformed row {r}; expected a float alpha, an integer "
                "layer and a float (or empty) cosine",
            ) from None
        out.append(identity)
    return out


def merge_manifests(
    real_csv, synthetic_csv, out_csv, with_metadata=True, pairs_csv=None
):
    """Append synthetic utterances to a real training manifest.

    Both inputs are SpeechBrain manifests with at least ``ID, duration,
    wav, start, stop, spk_id``. The output has the real manifest's columns,
    then the synthetic manifest's other columns, then (``with_metadata``)
    any of ``source_a, source_b, alpha, gender, synthetic`` not yet
    present; missing values are empty. ``synthetic`` is ``1`` on synthetic
    rows and ``0`` on real rows (a real manifest's own ``synthetic`` column
    is kept, so merging twice is possible). Metadata of synthetic rows comes
    from their own columns or, where empty, from ``pairs_csv``.

    Arguments
    ---------
    real_csv : str
        Real training manifest.
    synthetic_csv : str
        Manifest of synthetic utterances (its ``spk_id`` are synthetic ids).
    out_csv : str
        Destination (written atomically; may not be one of the inputs).
    with_metadata : bool
        Add the metadata columns.
    pairs_csv : str | None
        Pairs table (:func:`write_pairs`): fills ``source_a``, ``source_b``,
        ``alpha``, ``gender``; then every synthetic speaker must be in it.

    Returns
    -------
    dict
        ``n_real``, ``n_synthetic`` (rows), ``n_real_speakers``,
        ``n_synthetic_speakers``, ``columns``.

    Raises
    ------
    ManifestError
        Naming the file for a missing column, a repeated or colliding
        utterance ``ID``, a synthetic speaker id equal to a real one, a
        synthetic speaker absent from ``pairs_csv``, or a gender conflict.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> real, syn, out = (f"{tmp}/{n}.csv" for n in ("real", "syn", "out"))
    >>> head = "ID,duration,wav,start,stop,spk_id\\n"
    >>> _ = open(real, "w").write(head + "id1/s/1,3.0,/r/1.wav,0,48000,id1\\n")
    >>> _ = open(syn, "w").write(head + "syn0/0,4.0,/s/0.wav,0,64000,syn0\\n")
    >>> merge_manifests(real, syn, out)["columns"][6:]
    ['source_a', 'source_b', 'alpha', 'gender', 'synthetic']
    >>> print(open(out).read().strip())
    ID,duration,wav,start,stop,spk_id,source_a,source_b,alpha,gender,synthetic
    id1/s/1,3.0,/r/1.wav,0,48000,id1,,,,,0
    syn0/0,4.0,/s/0.wav,0,64000,syn0,,,,,1
    """
    real_csv, synthetic_csv = os.fspath(real_csv), os.fspath(synthetic_csv)
    out_csv = os.fspath(out_csv)
    for src in (real_csv, synthetic_csv):
        if os.path.abspath(out_csv) == os.path.abspath(src):
            raise ManifestError(
                out_csv, "is also an input; expected a new output path"
            )
    syn_header, syn_rows = _read_csv(
        synthetic_csv, MANIFEST_COLUMNS, "synthetic manifest"
    )
    syn_ids, syn_spks = set(), set()
    for lineno, r in enumerate(syn_rows, start=2):
        if r["ID"] in syn_ids:
            raise ManifestError(
                f"{synthetic_csv}:{lineno}",
                f"repeats utterance ID {r['ID']!r}; expected unique IDs",
            )
        syn_ids.add(r["ID"])
        syn_spks.add(r["spk_id"])

    identities = {}
    if pairs_csv is not None:
        identities = {i.syn_spk_id: i for i in read_pairs(pairs_csv)}
        absent = sorted(syn_spks - set(identities))
        if absent:
            raise ManifestError(
                os.fspath(pairs_csv),
                f"has no row for synthetic speaker(s) {absent[:5]} of "
                f"{synthetic_csv}; expected every synthetic speaker",
            )

    # Stream the real manifest: VoxCeleb2 has a million rows.
    real_ids, real_spks = set(), set()
    with open(real_csv, encoding="utf-8", newline="") as f_in:
        reader = csv.DictReader(f_in)
        real_header = reader.fieldnames or []
        missing = [c for c in MANIFEST_COLUMNS if c not in real_header]
        if missing:
            raise ManifestError(
                real_csv,
                f"lacks column(s) {missing} (header: {real_header}); "
                f"expected a manifest with columns {list(MANIFEST_COLUMNS)}",
            )
        columns = list(real_header)
        columns += [c for c in syn_header if c not in columns]
        if with_metadata:
            columns += [c for c in METADATA_COLUMNS if c not in columns]
        with (
            atomic_path(out_csv) as tmp,
            open(tmp, "w", newline="", encoding="utf-8") as f_out,
        ):
            writer = csv.DictWriter(f_out, fieldnames=columns, restval="")
            writer.writeheader()
            for lineno, r in enumerate(reader, start=2):
                where = f"{real_csv}:{lineno}"
                if r["ID"] in real_ids or r["ID"] in syn_ids:
                    other = "itself" if r["ID"] in real_ids else synthetic_csv
                    raise ManifestError(
                        where,
                        f"utterance ID {r['ID']!r} also appears in {other}; "
                        "expected unique IDs",
                    )
                if r["spk_id"] in syn_spks:
                    raise ManifestError(
                        where,
                        f"real speaker {r['spk_id']!r} has the id of a "
                        f"synthetic speaker in {synthetic_csv}; expected "
                        "distinct ids (use another synthetic prefix)",
                    )
                real_ids.add(r["ID"])
                real_spks.add(r["spk_id"])
                row = {c: ("" if r.get(c) is None else r[c]) for c in columns}
                if with_metadata and not row.get("synthetic"):
                    row["synthetic"] = "0"
                writer.writerow(row)
            if not real_ids:
                raise ManifestError(
                    real_csv, "has no rows; expected a manifest"
                )
            for lineno, r in enumerate(syn_rows, start=2):
                row = {c: ("" if r.get(c) is None else r[c]) for c in columns}
                if with_metadata:
                    _fill_metadata(
                        row, identities.get(r["spk_id"]), synthetic_csv, lineno
                    )
                writer.writerow(row)
    return {
        "n_real": len(real_ids),
        "n_synthetic": len(syn_rows),
        "n_real_speakers": len(real_spks),
        "n_synthetic_speakers": len(syn_spks),
        "columns": columns,
    }


def _fill_metadata(row, identity, path, lineno):
    row["synthetic"] = "1"
    if identity is None:
        return
    values = {
        "source_a": identity.source_a,
        "source_b": identity.source_b,
        "alpha": repr(identity.alpha),
        "gender": identity.gender,
    }
    own = row.get("gender", "").strip().lower()
    if own and own not in ("u", identity.gender.lower()):
        raise ManifestError(
            f"{path}:{lineno}",
            f"gender {row['gender']!r} of synthetic speaker "
            f"{identity.syn_spk_id!r} contradicts its pairs table "
            f"({identity.gender!r})",
        )
    for key, value in values.items():
        current = row.get(key, "")
        if not current or (key == "gender" and current.lower() == "u"):
            row[key] = value


def _read_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write_rows(path, columns, rows):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def subset_manifest(manifest_csv, out_csv, max_per_speaker=None, seed=0):
    """Keep at most ``max_per_speaker`` random utterances of each speaker
    (the speaker means of the TTS encoder need a few clips, not all).

    Arguments
    ---------
    manifest_csv : str
        SpeechBrain manifest with ``ID`` and ``spk_id``.
    out_csv : str
        Destination (atomic); the rows keep the input order.
    max_per_speaker : int | None
        ``None`` keeps everything.
    seed : int
        Seed of the choice.

    Returns
    -------
    int
        Rows written.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> rows = "".join(f"u{i},{'ab'[i % 2]}\\n" for i in range(6))
    >>> _ = open(f"{tmp}/m.csv", "w").write("ID,spk_id\\n" + rows)
    >>> subset_manifest(f"{tmp}/m.csv", f"{tmp}/s.csv", max_per_speaker=2)
    4
    """
    columns, rows = _read_rows(manifest_csv)
    for key in ("ID", "spk_id"):
        if key not in columns:
            raise ManifestError(
                manifest_csv, f"has no {key!r} column (columns: {columns})"
            )
    if max_per_speaker is not None:
        rng = np.random.default_rng(seed)
        by_spk = {}
        for n, row in enumerate(rows):
            by_spk.setdefault(row["spk_id"], []).append(n)
        keep = set()
        for spk in sorted(by_spk):
            idx = by_spk[spk]
            if len(idx) > max_per_speaker:
                idx = rng.choice(idx, max_per_speaker, replace=False)
            keep.update(int(i) for i in idx)
        rows = [r for n, r in enumerate(rows) if n in keep]
    _write_rows(out_csv, columns, rows)
    return len(rows)


def split_synthetic(synth_csv, train_csv, dev_csv, dev_utts=1):
    """Hold out the last ``dev_utts`` utterances of every synthetic identity
    for the validation manifest (the classifier's dev set covers the same
    speakers as its training set).

    Arguments
    ---------
    synth_csv : str
        Gathered synthetic manifest.
    train_csv, dev_csv : str
        Destinations (atomic).
    dev_utts : int
        Utterances per identity to hold out (fewer than it has).

    Returns
    -------
    tuple
        ``(train rows, dev rows)``.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> rows = "".join(f"s{i // 3}/a/{i},s{i // 3}\\n" for i in range(6))
    >>> _ = open(f"{tmp}/syn.csv", "w").write("ID,spk_id\\n" + rows)
    >>> split_synthetic(f"{tmp}/syn.csv", f"{tmp}/t.csv", f"{tmp}/d.csv")
    (4, 2)
    """
    columns, rows = _read_rows(synth_csv)
    by_spk = {}
    for row in rows:
        by_spk.setdefault(row["spk_id"], []).append(row)
    train, dev = [], []
    for spk in sorted(by_spk):
        utts = sorted(by_spk[spk], key=lambda r: r["ID"])
        if len(utts) <= dev_utts:
            raise ManifestError(
                synth_csv,
                f"identity {spk} has {len(utts)} utterances; expected more "
                f"than synthetic_dev_utts={dev_utts}",
            )
        cut = len(utts) - dev_utts
        train += utts[:cut]
        dev += utts[cut:]
    _write_rows(train_csv, columns, train)
    _write_rows(dev_csv, columns, dev)
    return len(train), len(dev)
