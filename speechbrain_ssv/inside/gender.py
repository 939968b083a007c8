"""Speaker genders in INSIDE: reading them from VoxCeleb metadata or
manifests (pairs are made within a gender), and the data and scores of the
gender classification task (INSIDE's second downstream task: an ECAPA-TDNN
with a two-class head, trained with or without synthetic identities, scored
on held-out speakers).

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import logging
import os
import re

import numpy as np

from speechbrain_ssv.utils.errors import ManifestError, SSVInputError
from speechbrain_ssv.utils.io import atomic_path

__all__ = [
    "gender_manifest",
    "gender_scores",
    "normalize_gender",
    "speaker_genders",
]

logger = logging.getLogger(__name__)

_MALE = ("m", "male")
_FEMALE = ("f", "female")
_SPEAKER_COLUMN = re.compile(r"^(spk_id|voxceleb\s*\d+\s*id)$")


def normalize_gender(value):
    """Map a metadata gender string to ``"m"``, ``"f"`` or ``None``.

    Arguments
    ---------
    value : str | None
        E.g. ``"M"``, ``"f "``, ``"female"``; anything else (``"u"``, empty,
        ``None``) is unknown.

    Returns
    -------
    str | None
        ``"m"``, ``"f"`` or ``None`` for unknown.

    Example
    -------
    >>> [normalize_gender(v) for v in ("M ", "female", "u", "")]
    ['m', 'f', None, None]
    """
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in _MALE:
        return "m"
    if v in _FEMALE:
        return "f"
    return None


def _read_gender_file(path):
    """``(spk, gender|None, raw, line)`` for every row of one file."""
    with open(path, encoding="utf-8", newline="") as f:
        header = f.readline()
        if not header.strip():
            raise SSVInputError(path, "is empty; expected a header line")
        # VoxCeleb1's metadata is tab-separated, VoxCeleb2's and manifests
        # are comma-separated (VoxCeleb2's with spaces around the fields).
        sep = "\t" if "\t" in header else ","
        names = [
            h.strip().lower() for h in next(csv.reader([header], delimiter=sep))
        ]
        spk_cols = [i for i, n in enumerate(names) if _SPEAKER_COLUMN.match(n)]
        if not spk_cols or "gender" not in names:
            raise SSVInputError(
                path,
                f"header {header.strip()!r} lacks a speaker or gender column; "
                "expected a manifest with 'spk_id' and 'gender' columns or "
                "VoxCeleb metadata ('VoxCeleb1 ID'/'VoxCeleb2 ID' and "
                "'Gender')",
            )
        s_col, g_col = spk_cols[0], names.index("gender")
        for lineno, fields in enumerate(csv.reader(f, delimiter=sep), start=2):
            if not fields or not "".join(fields).strip():
                continue
            spk = fields[s_col].strip() if len(fields) > s_col else ""
            if not spk:
                raise SSVInputError(
                    f"{path}:{lineno}", "has no speaker id; expected one"
                )
            raw = fields[g_col].strip() if len(fields) > g_col else ""
            yield spk, normalize_gender(raw), raw, lineno


def speaker_genders(paths):
    """Gender of every speaker, from VoxCeleb metadata or manifests.

    Reads any mix of: VoxCeleb1 ``vox1_meta.csv`` (tab-separated, columns
    ``VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set``; the minivox
    metadata has the same format), VoxCeleb2 ``vox2_meta.csv`` (``VoxCeleb2
    ID, VGGFace2 ID, Gender, Set``, comma-separated, fields padded with
    spaces) and SpeechBrain manifests with ``spk_id`` and ``gender`` columns
    (one row per utterance). The format is recognised from the header.

    ``M``/``male`` and ``F``/``female`` (any case) are known genders. A
    speaker whose rows only carry other values (``u``, empty, ...) is left
    out and counted in a warning; rows with an unknown value next to known
    ones are ignored. Two different known genders for one speaker, within a
    file or across files, are an error.

    Arguments
    ---------
    paths : str | os.PathLike | sequence
        One file or several.

    Returns
    -------
    dict
        ``spk_id -> "m" | "f"``, sorted by speaker id.

    Raises
    ------
    SSVInputError
        Naming the file (and line) of a conflicting gender, a missing
        column, or when no speaker has a known gender.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "vox1_meta.csv")
    >>> _ = open(p, "w").write(
    ...     "VoxCeleb1 ID\\tVGGFace1 ID\\tGender\\tNationality\\tSet\\n"
    ...     "id10002\\tB\\tf\\tUK\\tdev\\nid10001\\tA\\tm\\tUSA\\ttest\\n"
    ... )
    >>> speaker_genders(p)
    {'id10001': 'm', 'id10002': 'f'}
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise SSVInputError("paths", "is empty; expected a metadata file")
    genders, source = {}, {}
    unknown_values = {}
    seen = set()
    for path in paths:
        if not os.path.isfile(path):
            raise SSVInputError(path, "not found; expected a metadata file")
        for spk, gender, raw, lineno in _read_gender_file(path):
            seen.add(spk)
            if gender is None:
                unknown_values[raw] = unknown_values.get(raw, 0) + 1
                continue
            previous = genders.get(spk)
            if previous is not None and previous != gender:
                raise SSVInputError(
                    f"{path}:{lineno}",
                    f"speaker {spk!r} has gender {gender!r} here but "
                    f"{previous!r} in {source[spk]}; expected one gender per "
                    "speaker",
                )
            genders[spk] = gender
            source[spk] = f"{path}:{lineno}"
    missing = len(seen) - len(genders)
    if missing:
        shown = ", ".join(repr(v) for v in sorted(unknown_values)[:5])
        logger.warning(
            "%d of %d speakers in %s have no known gender (values seen: %s) "
            "and are excluded from gender-wise pairing",
            missing,
            len(seen),
            ", ".join(paths),
            shown,
        )
    if not genders:
        raise SSVInputError(
            ", ".join(paths),
            f"no speaker has a known gender among {len(seen)}; expected "
            "M/F (or male/female) values in the gender column",
        )
    return dict(sorted(genders.items()))


def gender_manifest(in_csv, out_csv):
    """Copy a manifest with ``spk_id`` replaced by the row's gender (``m`` /
    ``f``), so the speaker-classification pipeline trains a gender
    classifier; the speaker goes to a ``speaker`` column.

    Arguments
    ---------
    in_csv : str
        Manifest with ``spk_id`` and ``gender`` columns.
    out_csv : str
        Destination (atomic).

    Returns
    -------
    dict
        Rows per gender.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> _ = open(f"{tmp}/m.csv", "w").write(
    ...     "ID,spk_id,gender\\na,id1,F\\nb,id2,male\\nc,syn000001,f\\n")
    >>> gender_manifest(f"{tmp}/m.csv", f"{tmp}/g.csv")
    {'f': 2, 'm': 1}
    >>> print(open(f"{tmp}/g.csv").read().strip())
    ID,spk_id,gender,speaker
    a,f,f,id1
    b,m,m,id2
    c,f,f,syn000001
    """
    with open(in_csv, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    for key in ("spk_id", "gender"):
        if key not in columns:
            raise ManifestError(
                in_csv, f"has no {key!r} column; expected one (gender labels)"
            )
    counts = {}
    out = []
    for n, row in enumerate(rows, start=2):
        gender = normalize_gender(row["gender"])
        if gender is None:
            raise ManifestError(
                f"{in_csv}:{n}",
                f"gender {row['gender']!r} of {row['ID']!r}; expected m or f",
            )
        counts[gender] = counts.get(gender, 0) + 1
        out.append(
            dict(row, spk_id=gender, gender=gender, speaker=row["spk_id"])
        )
    columns = columns + ["speaker"] if "speaker" not in columns else columns
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(out)
    return dict(sorted(counts.items()))


def gender_scores(predicted, true):
    """Accuracy, per-class recall and balanced accuracy.

    Arguments
    ---------
    predicted, true : sequence of str
        Predicted and true gender per utterance.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``recall`` (per class),
        ``n``.

    Example
    -------
    >>> s = gender_scores(["m", "m", "f", "m"], ["m", "f", "f", "m"])
    >>> s["accuracy"], s["recall"], s["balanced_accuracy"]
    (0.75, {'f': 0.5, 'm': 1.0}, 0.75)
    """
    predicted = np.asarray(list(predicted))
    true = np.asarray(list(true))
    if predicted.shape != true.shape or true.size == 0:
        raise ValueError(
            f"need as many predictions ({predicted.size}) as labels "
            f"({true.size}), at least one"
        )
    recall = {
        str(c): float(np.mean(predicted[true == c] == c))
        for c in np.unique(true)
    }
    return {
        "accuracy": float(np.mean(predicted == true)),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "recall": recall,
        "n": int(true.size),
    }
