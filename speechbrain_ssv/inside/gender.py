"""Gender classification data and scores (INSIDE's second downstream task:
an ECAPA-TDNN with a two-class head, trained with or without synthetic
identities, scored on held-out speakers).

Authors
 * speechbrain-ssv developers 2026
"""

import csv

import numpy as np

from speechbrain_ssv.inside.pairing import normalize_gender
from speechbrain_ssv.utils.errors import ManifestError
from speechbrain_ssv.utils.io import atomic_path

__all__ = ["gender_manifest", "gender_scores"]


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
