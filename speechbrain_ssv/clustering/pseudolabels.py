"""Pseudo-labels from clusters: the scaling applied before clustering,
the true speakers for the metrics, and the pseudo-labelled manifests a
speaker encoder then trains on (stage 2 of the pseudo-label recipe, whose
stage bookkeeping is in ``recipes/VoxCeleb/PseudoLabel/train.py``).

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition" (Fig. 2).

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import os  # noqa: F401 (doctests)

import numpy as np
import torch

from speechbrain_ssv.clustering.representations import manifest_rows
from speechbrain_ssv.data.pipelines import LABEL_COLUMNS
from speechbrain_ssv.utils.errors import ManifestError
from speechbrain_ssv.utils.io import atomic_path, write_text  # noqa: F401 (write_text: doctests)

__all__ = [
    "ORACLE",
    "PSEUDO_PREFIX",
    "oracle_labels",
    "scale_features",
    "true_labels",
    "write_pseudolabel_csv",
]

# The upper-bound row of the paper's tables (ECAPA on the true speakers):
# the "clusters" are the true labels, renamed like any pseudo-labels, so
# stage 3 trains under exactly the same conditions as on real clusters.
ORACLE = "oracle"
#: Prefix of the pseudo-speaker names in the written manifests.
PSEUDO_PREFIX = "pl_"


def oracle_labels(labels):
    """The true speakers as cluster ids ``0..K-1`` (the upper-bound row).

    Arguments
    ---------
    labels : sequence
        ``[N]`` true speaker ids.

    Returns
    -------
    numpy.ndarray
        ``[N]`` int64.

    Example
    -------
    >>> oracle_labels(["b", "a", "b"]).tolist()
    [1, 0, 1]
    """
    _, out = np.unique(np.asarray(labels), return_inverse=True)
    return out.reshape(-1).astype(np.int64)


def scale_features(x, l2_normalize, standardize, center=False):
    """Scale ``[N, D]`` representations as the paper does before clustering
    (l2 per sample; ``standardize`` is its StandardScaler alternative).

    Arguments
    ---------
    x : array-like
        ``[N, D]``.
    l2_normalize : bool
        Unit l2 norm per sample.
    standardize : bool
        Zero mean, unit variance per feature (before the l2 norm).
    center : bool
        Subtract the mean of the features before the l2 norm (no effect
        with ``standardize``). Not in the paper, whose i-vectors have a
        mean near zero anyway (the minimum-divergence step makes it so);
        embeddings of a trained encoder share a dominant mean direction
        that l2 normalisation alone keeps (all pairs at cosine ~0.99),
        which makes every point look alike to a clustering model.

    Returns
    -------
    torch.Tensor
        ``[N, D]`` float32 copy.

    Example
    -------
    >>> scale_features([[3.0, 4.0]], l2_normalize=True, standardize=False)
    tensor([[0.6000, 0.8000]])
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)).clone()
    if standardize:
        std = x.std(dim=0)
        x = (x - x.mean(dim=0)) / torch.where(
            std > 0, std, torch.ones_like(std)
        )
    elif center:
        x = x - x.mean(dim=0)
    if l2_normalize:
        x = torch.nn.functional.normalize(x, dim=1)
    return x


def write_pseudolabel_csv(
    train_csv, ids, labels, out_csv, known_labels=None, prefix=PSEUDO_PREFIX
):
    """Copy a manifest with its ``spk_id`` replaced by pseudo-labels.

    Every row's ``spk_id`` becomes ``f"{prefix}{label:05d}"`` for the
    label of its ``ID``; the columns that identify the speaker otherwise
    (``gender``, ``session``) are dropped, and no column keeps the true
    label, so a recipe reading this manifest (``spk_id`` as the class)
    trains on pseudo-labels only. The metrics against the true speakers
    are computed from the original manifests instead.

    Arguments
    ---------
    train_csv : str
        Source manifest.
    ids : sequence of str
        Utterance ids, in the order of ``labels``.
    labels : sequence of int
        Cluster of each id.
    out_csv : str
        Destination (written atomically).
    known_labels : set | None
        Keep only rows whose label is in this set (for a validation
        manifest: clusters the classifier never saw in training are
        dropped).
    prefix : str
        Prefix of the pseudo-speaker names.

    Returns
    -------
    dict
        ``rows`` written, ``dropped`` rows, ``labels``: the set of labels
        written.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> write_text(f"{tmp}/t.csv", "ID,duration,wav,start,stop,spk_id,session,gender\\n"
    ...            "u1,1.0,a.wav,0,16000,id1,s1,m\\nu2,1.0,b.wav,0,16000,id2,s2,f\\n")
    >>> out = write_pseudolabel_csv(f"{tmp}/t.csv", ["u2", "u1"], [7, 3], f"{tmp}/pl.csv")
    >>> print(open(f"{tmp}/pl.csv").read().strip())
    ID,duration,wav,start,stop,spk_id
    u1,1.0,a.wav,0,16000,pl_00003
    u2,1.0,b.wav,0,16000,pl_00007
    """
    ids = list(ids)
    labels = np.asarray(labels).reshape(-1)
    if len(ids) != labels.shape[0]:
        raise ValueError(
            f"{len(ids)} ids but {labels.shape[0]} labels; expected one label per id"
        )
    mapping = dict(zip(ids, labels.tolist()))
    header, rows = manifest_rows(train_csv)
    missing = [r["ID"] for r in rows if r["ID"] not in mapping]
    if missing:
        raise ManifestError(
            train_csv,
            f"{len(missing)} utterance(s) have no pseudo-label (e.g. "
            f"{missing[:3]}); the representations were extracted from other "
            "manifests: rerun stage 1",
        )
    columns = [c for c in header if c not in LABEL_COLUMNS or c == "spk_id"]
    if "spk_id" not in columns:
        columns.append("spk_id")
    written, dropped = set(), 0
    with (
        atomic_path(out_csv) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            label = int(mapping[row["ID"]])
            if known_labels is not None and label not in known_labels:
                dropped += 1
                continue
            row = dict(row, spk_id=f"{prefix}{label:05d}")
            writer.writerow([row[c] for c in columns])
            written.add(label)
    return {"rows": len(rows) - dropped, "dropped": dropped, "labels": written}


def true_labels(manifests, ids):
    """True ``spk_id`` of each id, for the clustering metrics only.

    Arguments
    ---------
    manifests : list of str
        CSV manifests holding the ids.
    ids : sequence of str
        Utterance ids.

    Returns
    -------
    numpy.ndarray | None
        ``[N]`` speaker ids, or ``None`` if a manifest has no ``spk_id``
        column or lacks an id.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "m.csv")
    >>> write_text(p, "ID,duration,wav,start,stop,spk_id\\nu1,1.0,a.wav,0,16000,id1\\n")
    >>> true_labels([p], ["u1"]).tolist()
    ['id1']
    """
    spk = {}
    for path in manifests:
        header, rows = manifest_rows(path)
        if "spk_id" not in header:
            return None
        spk.update((r["ID"], r["spk_id"]) for r in rows)
    try:
        return np.array([spk[i] for i in ids])
    except KeyError:
        return None
