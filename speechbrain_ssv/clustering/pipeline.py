"""Stages of the pseudo-label recipe, usable on their own: representations
(stage 1), clustering into pseudo-labels (stage 2), and the bookkeeping
that makes every stage resumable.

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition" (Fig. 2, Appendix D.3): i-vectors of
the training utterances are clustered and the cluster ids become the
speaker labels of an ECAPA-TDNN. Further rounds re-embed the utterances
with the trained encoder and cluster again.

Stages and resumption
---------------------
Each stage owns a folder and is resumable through
:mod:`speechbrain_ssv.utils.stages`: an unchanged finished stage is
skipped, an unfinished one resumes, and one whose options or inputs changed
is redone together with the stages after it.

Scale
-----
* i-vectors: the UBM and the T matrix are trained on random / longest
  subsets (Kaldi's VoxCeleb recipe trains the extractor on the 100k longest
  utterances), each EM pass streams the audio through a DataLoader, and the
  extraction streams the whole corpus in shards saved as they finish.
* clustering: the features are one ``[N, D]`` float32 matrix (1.6 GB for
  1M x 400), the clustering model trains on mini-batches, and every
  assignment is chunked (:meth:`ClusteringMLP.predict`,
  :func:`speechbrain_ssv.clustering.baselines.assign_chunked`).

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import functools
import logging
import os

import numpy as np
import torch

from speechbrain_ssv.clustering.baselines import METHODS, cluster
from speechbrain_ssv.clustering.metrics import clustering_report, write_report
from speechbrain_ssv.data.pipelines import LABEL_COLUMNS, REQUIRED_COLUMNS
from speechbrain_ssv.utils.errors import (
    HparamsError,
    ManifestError,
    SSVInputError,
)
from speechbrain_ssv.utils.io import (
    atomic_path,
    file_digest,
    write_text,
)
from speechbrain_ssv.utils.stages import (
    begin_stage,
    finish_stage,
    read_stage,
    seed_stage,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CLUSTERING_PIPELINE_DEFAULTS",
    "IVECTOR_DEFAULTS",
    "ORACLE",
    "OURS",
    "cluster_representations",
    "extract_representations",
    "load_representations",
    "manifest_rows",
    "pseudo_label_stage",
    "write_pseudolabel_csv",
]

#: Name of the multi-objective clustering method (the paper's).
OURS = "ours"
# The upper-bound row of the paper's tables (ECAPA on the true speakers):
# the "clusters" are the true labels, renamed like any pseudo-labels, so
# stage 3 trains under exactly the same conditions as on real clusters.
ORACLE = "oracle"
PSEUDO_PREFIX = "pl_"

#: i-vector settings (:func:`extract_representations`); defaults follow
#: Kaldi's VoxCeleb i-vector recipe (egs/voxceleb/v1: 20 MFCCs from 40 mel
#: bands with deltas and double deltas, a 2048-component UBM, 400-dim
#: i-vectors, 5 EM iterations on the 100k longest utterances), since the
#: paper extracts its i-vectors with Kaldi (Appendix D.3) without details.
IVECTOR_DEFAULTS = {
    "n_mfcc": 20,
    "n_mels": 40,
    "f_min": 20.0,
    "f_max": 7600.0,
    "n_components": 2048,
    "rank": 400,
    "ubm_iter": 10,
    "split_iter": 2,
    "tv_iter": 5,
    "min_div": True,
    "var_floor": 1e-3,
    "ubm_utts": 30000,
    "tv_utts": 100000,
    "frames_per_batch": 100000,
    "stats_batch_size": 256,
    "shard_size": 20000,
    # Keep all MFCCs in memory when they fit (and num_workers is 0),
    # instead of recomputing them at every EM pass.
    "feature_cache_mb": 2048,
}

#: Settings of the "ours" method that are not :class:`ClusteringBrain`
#: hparams (those are in
#: :data:`speechbrain_ssv.brains.pseudolabel.CLUSTERING_DEFAULTS`).
CLUSTERING_PIPELINE_DEFAULTS = {
    "number_of_epochs": 150,
    "batch_size": 10240,
    "momentum": 0.9,
    # "knn": IMSAT's adaptive radius 0.25 x (10-th neighbour distance),
    # estimated on a reference subset (vat_radii); or a number.
    "vat_radius": "knn",
    "knn_k": 10,
    "knn_scale": 0.25,
    "knn_reference": 10000,
    # Window of the running marginal of H(Y), in samples per cluster. Long
    # windows lag: every sample is then pushed towards the same rare
    # clusters and the assignment herds (on minivox i-vectors, 10 collapsed
    # or stalled at lr 0.1 where 2-4 reached ACC 0.57-0.60).
    "marginal_samples_per_cluster": 4,
}


# ---------------------------------------------------------------------------
# Stage bookkeeping
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------


def manifest_rows(csv_path, data_folder=None):
    """Rows of a CSV manifest (``$data_root`` substituted), with its header.

    Arguments
    ---------
    csv_path : str
        Manifest with at least ``ID, wav, start, stop, duration``.
    data_folder : str | None
        Value of ``$data_root``.

    Returns
    -------
    tuple
        ``(header, rows)``: the column names and a list of dicts.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "m.csv")
    >>> write_text(p, "ID,duration,wav,start,stop,spk_id\\nu1,1.0,$data_root/a.wav,0,16000,id1\\n")
    >>> header, rows = manifest_rows(p, "/data")
    >>> rows[0]["wav"], header[-1]
    ('/data/a.wav', 'spk_id')
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ManifestError(
            csv_path, "manifest does not exist (run the data preparation first)"
        )
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = [
            {k.strip(): (v or "").strip() for k, v in row.items()}
            for row in reader
        ]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            csv_path, f"lacks the column(s) {missing}; it has {header}"
        )
    if data_folder is not None:
        for row in rows:
            row["wav"] = row["wav"].replace(
                "$data_root", os.fspath(data_folder)
            )
    return header, rows


def _items(manifests, data_folder):
    """``[(id, wav, start, stop)]`` over several manifests, ids unique."""
    items, seen = [], {}
    for path in manifests:
        _, rows = manifest_rows(path, data_folder)
        for row in rows:
            utt = row["ID"]
            if utt in seen:
                raise ManifestError(
                    path,
                    f"utterance {utt!r} is also in {seen[utt]}: the "
                    "manifests clustered together must not overlap",
                )
            seen[utt] = path
            items.append((utt, row["wav"], int(row["start"]), int(row["stop"])))
    if not items:
        raise ManifestError(
            ", ".join(map(str, manifests)), "hold no utterances to represent"
        )
    return items


def _manifest_opts(manifests):
    # The content, not the path: experiments with their own copy of the
    # same manifests can share a stage folder (e.g. the round-1 i-vectors).
    return [{"sha1": file_digest(p)} for p in manifests]


# ---------------------------------------------------------------------------
# Stage 1: representations
# ---------------------------------------------------------------------------


class _MFCCDataset(torch.utils.data.Dataset):
    """Per-utterance ``[T, 3 n_mfcc]`` MFCCs with deltas and double deltas,
    sentence mean-normalised (SpeechBrain's ``InputNormalization`` with
    ``norm_type="sentence", std_norm=False``, as the recipes' encoders)."""

    def __init__(self, items, opts, sample_rate, augment=None, cache=False):
        from speechbrain.lobes.features import MFCC
        from speechbrain.processing.features import InputNormalization

        self.items = items
        self.sample_rate = sample_rate
        self.augment = augment
        # Small corpora: keep the features of every utterance once computed
        # (the EM passes read them ~10 times). Only in the main process.
        self.cache = {} if cache and augment is None else None
        self.mfcc = MFCC(
            deltas=True,
            context=False,
            sample_rate=sample_rate,
            n_mfcc=opts["n_mfcc"],
            n_mels=opts["n_mels"],
            f_min=opts["f_min"],
            f_max=opts["f_max"],
        )
        self.norm = InputNormalization(norm_type="sentence", std_norm=False)

    def __len__(self):
        return len(self.items)

    @torch.no_grad()
    def __getitem__(self, i):
        from speechbrain_ssv.data.audio import read_audio_checked

        if self.cache is not None and i in self.cache:
            return self.cache[i]
        _, wav, start, stop = self.items[i]
        sig = read_audio_checked(wav, start, stop, self.sample_rate)[None]
        lens = torch.ones(1)
        if self.augment is not None:
            sig, lens = self.augment(sig, lens)
        feats = self.norm(self.mfcc(sig), lens)[0]
        if self.cache is not None:
            self.cache[i] = feats
        return feats


def _stream(dataset, indices, num_workers):
    """A callable returning a fresh iterator over the features of
    ``indices`` (what the i-vector EM needs for its passes)."""
    subset = torch.utils.data.Subset(dataset, list(indices))

    def factory():
        """A fresh iterator over the subset (one per epoch)."""
        return iter(
            torch.utils.data.DataLoader(
                subset, batch_size=None, num_workers=num_workers
            )
        )

    return factory


def _ivectors(
    items, out_dir, opts, sample_rate, device, num_workers, seed, augment
):
    from speechbrain_ssv.clustering.ivector import IVectorExtractor
    from speechbrain_ssv.utils.io import save_torch

    # Frames are 10 ms; float32 features of 3 x n_mfcc coefficients.
    n_bytes = sum(stop - start for _, _, start, stop in items)
    n_bytes = n_bytes / sample_rate * 100 * 3 * opts["n_mfcc"] * 4
    cache = num_workers == 0 and n_bytes <= opts["feature_cache_mb"] * 2**20
    plain = _MFCCDataset(items, opts, sample_rate, cache=cache)
    ext = IVectorExtractor(
        feat_dim=3 * opts["n_mfcc"],
        n_components=opts["n_components"],
        rank=opts["rank"],
        var_floor=opts["var_floor"],
        seed=seed,
    ).to(device)
    ubm_path = os.path.join(out_dir, "ubm.ckpt")
    ext_path = os.path.join(out_dir, "extractor.ckpt")
    rng = np.random.default_rng(seed)
    n = len(items)
    if os.path.isfile(ext_path):
        ext.load_state_dict(torch.load(ext_path, map_location=device))
    else:
        if os.path.isfile(ubm_path):
            ext.ubm.load_state_dict(torch.load(ubm_path, map_location=device))
        else:
            m = min(n, opts["ubm_utts"] or n)
            idx = np.sort(rng.choice(n, size=m, replace=False))
            hist = ext.fit_ubm(
                _stream(plain, idx, num_workers),
                n_iter=opts["ubm_iter"],
                split_iter=opts["split_iter"],
                frames_per_batch=opts["frames_per_batch"],
            )
            logger.info("UBM trained: %s", hist[-1])
            save_torch(ubm_path, ext.ubm.state_dict())
        # The longest utterances, as Kaldi: short ones are harmful to
        # the T-matrix estimate (egs/voxceleb/v1/run.sh, stage 3).
        m = min(n, opts["tv_utts"] or n)
        lengths = np.array([stop - start for _, _, start, stop in items])
        idx = np.sort(np.argsort(-lengths, kind="stable")[:m])
        hist = ext.fit_tv(
            _stream(plain, idx, num_workers),
            n_iter=opts["tv_iter"],
            min_div=opts["min_div"],
            batch_size=opts["stats_batch_size"],
        )
        logger.info("T matrix trained: log-likelihoods %s", hist)
        save_torch(ext_path, ext.state_dict())
    ext.eval()

    def extract(dataset, tag):
        # Shards saved as they finish: a killed extraction resumes.
        """Representations of ``dataset``, saved shard by shard under ``tag``."""
        shard_dir = os.path.join(out_dir, f"shards_{tag}")
        os.makedirs(shard_dir, exist_ok=True)
        size = max(1, int(opts["shard_size"]))
        out = []
        for k, begin in enumerate(range(0, n, size)):
            path = os.path.join(shard_dir, f"shard_{k:05d}.pt")
            if os.path.isfile(path):
                out.append(torch.load(path))
                continue
            idx = range(begin, min(n, begin + size))
            vecs = ext.extract(
                _stream(dataset, idx, num_workers)(),
                batch_size=opts["stats_batch_size"],
            )
            save_torch(path, vecs)
            out.append(vecs)
        return torch.cat(out).numpy()

    feats = extract(plain, "clean")
    aug = None
    if augment is not None:
        aug = extract(_MFCCDataset(items, opts, sample_rate, augment), "aug")
    return feats, aug


def _encoder_embeddings(
    items,
    out_dir,
    source,
    sample_rate,
    device,
    batch_size,
    max_seconds,
    augment,
):
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_ssv.eval.embeddings import extract_embeddings

    ckpt = os.path.join(source, "embedding_model.ckpt")
    if not os.path.isfile(ckpt):
        raise SSVInputError(
            source,
            "is not an exported EncoderClassifier folder (no "
            "embedding_model.ckpt); export one with python -m "
            "speechbrain_ssv.export",
        )
    model = EncoderClassifier.from_hparams(
        source=os.path.abspath(source),
        savedir=os.path.join(out_dir, "encoder"),
        run_opts={"device": device},
    )
    model.eval()
    tag = file_digest(ckpt)

    def encode(wavs, lens):
        """Embeddings of a clean batch."""
        return model.encode_batch(wavs, lens)

    def encode_aug(wavs, lens):
        """Embeddings of an augmented batch."""
        return model.encode_batch(*augment(wavs, lens))

    def run(fn, name):
        """Embeddings of every item with ``fn``, cached under ``name``."""
        emb = extract_embeddings(
            fn,
            items,
            cache_path=os.path.join(out_dir, f"embeddings_{name}.pt"),
            batch_size=batch_size,
            sample_rate=sample_rate,
            device=device,
            max_seconds=max_seconds,
            model_tag=f"{tag}-{name}",
        )
        return torch.stack([emb[i[0]] for i in items]).numpy()

    feats = run(encode, "clean")
    aug = run(encode_aug, "aug") if augment is not None else None
    return feats, aug


def extract_representations(
    kind,
    manifests,
    out_dir,
    *,
    data_folder=None,
    sample_rate=16000,
    ivector_options=None,
    encoder_source=None,
    batch_size=16,
    max_seconds=None,
    augment=None,
    device="cpu",
    num_workers=0,
    seed=0,
):
    """Stage 1: one vector per utterance of ``manifests``, saved in
    ``out_dir`` as ``features.npy`` (``[N, D]`` float32) and ``ids.txt``
    (one utterance id per line, same order), atomically. Skipped when
    ``out_dir`` already holds them for the same options.

    ``kind="ivector"``: MFCCs (SpeechBrain's ``MFCC``, deltas and double
    deltas, sentence mean normalisation) -> UBM + T matrix trained on
    subsets of the corpus (:data:`IVECTOR_DEFAULTS`) -> i-vectors of every
    utterance, streaming in shards (``shards_*/``; the UBM and extractor
    are saved as ``ubm.ckpt`` / ``extractor.ckpt`` once trained, so a
    killed run resumes where it stopped).

    ``kind="encoder"``: embeddings from an exported ``EncoderClassifier``
    folder (``encoder_source``, e.g. the previous round's stage-3 export or
    a self-supervised model), whole utterances batched by length, cached
    (:func:`speechbrain_ssv.eval.embeddings.extract_embeddings`).

    With ``augment`` (a SpeechBrain augmenter, ``(wavs, lens) -> (wavs,
    lens)`` keeping the batch size), a second matrix ``features_aug.npy``
    holds the representations of one augmented copy of each utterance, the
    second view of the augmentation-based clustering terms (Table 1).

    Arguments
    ---------
    kind : str
        ``"ivector"`` or ``"encoder"``.
    manifests : sequence of str
        CSV manifests (their rows are represented in order).
    out_dir : str
        Stage folder.
    data_folder : str | None
        Value of ``$data_root`` in the manifests.
    sample_rate : int
        Expected sampling rate.
    ivector_options : dict | None
        Overrides of :data:`IVECTOR_DEFAULTS`.
    encoder_source : str | None
        Exported encoder folder (``kind="encoder"``).
    batch_size : int
        Utterances per forward pass (encoder).
    max_seconds : float | None
        Encode at most this much of each utterance (encoder).
    augment : callable | None
        Waveform augmentation for the second view.
    device : str
        Where the extractor / encoder runs.
    num_workers : int
        DataLoader workers computing MFCCs (i-vectors).
    seed : int
        Seed of the subsets and of the T-matrix initialisation.

    Returns
    -------
    dict
        ``ids`` (list), ``features`` (``[N, D]`` array, memory-mapped),
        ``aug_features`` (or ``None``), ``folder``, ``digest`` (of the
        options and outputs, for the next stage's options).
    """
    if kind not in ("ivector", "encoder"):
        raise HparamsError(
            "representation", f"is {kind!r}; expected 'ivector' or 'encoder'"
        )
    manifests = [os.fspath(m) for m in manifests]
    opts = {
        "kind": kind,
        "manifests": _manifest_opts(manifests),
        "data_folder": None if data_folder is None else os.fspath(data_folder),
        "sample_rate": sample_rate,
        "augment": None if augment is None else repr(augment),
        "seed": seed,
    }
    if kind == "ivector":
        unknown = sorted(set(ivector_options or {}) - set(IVECTOR_DEFAULTS))
        if unknown:
            raise HparamsError(
                "ivector_options",
                f"unknown key(s) {unknown}; expected some of "
                f"{sorted(IVECTOR_DEFAULTS)}",
            )
        iv = {**IVECTOR_DEFAULTS, **(ivector_options or {})}
        opts["ivector"] = iv
    else:
        if not encoder_source:
            raise HparamsError(
                "encoder_source",
                "is empty; representation 'encoder' needs an exported "
                "EncoderClassifier folder",
            )
        ckpt = os.path.join(encoder_source, "embedding_model.ckpt")
        opts["encoder"] = {
            "source": os.path.abspath(encoder_source),
            "sha1": file_digest(ckpt) if os.path.isfile(ckpt) else None,
            "max_seconds": max_seconds,
        }
    outputs = ["features.npy", "ids.txt"]
    if augment is not None:
        outputs.append("features_aug.npy")
    if not begin_stage(out_dir, opts, "representations"):
        seed_stage(seed, "representations")
        items = _items(manifests, data_folder)
        if kind == "ivector":
            feats, aug = _ivectors(
                items,
                out_dir,
                iv,
                sample_rate,
                device,
                num_workers,
                seed,
                augment,
            )
        else:
            feats, aug = _encoder_embeddings(
                items,
                out_dir,
                encoder_source,
                sample_rate,
                device,
                batch_size,
                max_seconds,
                augment,
            )
        if not np.isfinite(feats).all():
            raise ValueError(
                f"{out_dir}: non-finite representations; check the audio "
                "and the extractor settings"
            )
        _save_npy(os.path.join(out_dir, "features.npy"), feats)
        if aug is not None:
            _save_npy(os.path.join(out_dir, "features_aug.npy"), aug)
        write_text(
            os.path.join(out_dir, "ids.txt"),
            "".join(f"{i[0]}\n" for i in items),
        )
        finish_stage(
            out_dir,
            opts,
            outputs,
            info={"n": int(feats.shape[0]), "dim": int(feats.shape[1])},
        )
    return load_representations(out_dir)


def _save_npy(path, array):
    with atomic_path(path) as tmp:
        np.save(tmp, np.ascontiguousarray(array, dtype=np.float32))


def load_representations(folder):
    """Load a finished stage-1 folder.

    Arguments
    ---------
    folder : str
        Written by :func:`extract_representations`.

    Returns
    -------
    dict
        ``ids``, ``features`` (memory-mapped ``[N, D]``), ``aug_features``
        (or ``None``), ``folder``, ``digest``.
    """
    rec = read_stage(folder)
    if rec is None or rec.get("status") != "done":
        raise SSVInputError(
            folder, "holds no finished representations stage (run stage 1)"
        )
    with open(os.path.join(folder, "ids.txt"), encoding="utf-8") as f:
        ids = [line.rstrip("\n") for line in f if line.strip()]
    feats = np.load(os.path.join(folder, "features.npy"), mmap_mode="r")
    aug_path = os.path.join(folder, "features_aug.npy")
    aug = np.load(aug_path, mmap_mode="r") if os.path.isfile(aug_path) else None
    if feats.shape[0] != len(ids):
        raise SSVInputError(
            folder,
            f"features.npy has {feats.shape[0]} rows but ids.txt {len(ids)}",
        )
    return {
        "ids": ids,
        "features": feats,
        "aug_features": aug,
        "folder": folder,
        "digest": rec["digest"],
    }


# ---------------------------------------------------------------------------
# Stage 2: clustering -> pseudo-labels
# ---------------------------------------------------------------------------


def _scale(x, l2_normalize, standardize, center=False):
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


def _check_keys(given, allowed, where):
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise HparamsError(
            where,
            f"unknown key(s) {unknown}; expected some of {sorted(allowed)}",
        )


def cluster_representations(
    method,
    features,
    n_clusters,
    *,
    work_dir=None,
    true_labels=None,
    l2_normalize=True,
    standardize=False,
    center=False,
    seed=0,
    baseline_options=None,
    model_factory=None,
    clustering_hparams=None,
    opt_class=None,
    aug_features=None,
    device="cpu",
    precision="fp32",
    progress=False,
    train_logger=None,
):
    """Cluster ``[N, D]`` representations into at most ``n_clusters``.

    ``method="ours"``: the multi-objective model trained by
    :class:`speechbrain_ssv.brains.pseudolabel.ClusteringBrain`
    (checkpoints, per-epoch history and Fig. 3 plot in ``work_dir``; a
    killed run resumes from its last checkpoint). Any name of
    :data:`speechbrain_ssv.clustering.baselines.METHODS` runs that
    scikit-learn baseline. Inputs are scaled as the paper does (l2 per
    sample; ``standardize`` is its StandardScaler alternative).

    Arguments
    ---------
    method : str
        ``"ours"``, ``"oracle"`` (the true speakers, for the upper-bound
        row; needs ``true_labels``) or a baseline name.
    features : array-like
        ``[N, D]``.
    n_clusters : int
        ``C``.
    work_dir : str | None
        Checkpoints and history of ``"ours"`` (``None``: none kept).
    true_labels : sequence | None
        ``[N]`` true classes, for the per-epoch metrics of ``"ours"`` only.
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
        which makes every point look alike to the clustering model.
    seed : int
        Seed of the method.
    baseline_options : dict | None
        Keyword arguments of
        :func:`speechbrain_ssv.clustering.baselines.cluster` / the estimator.
    model_factory : callable | None
        ``(input_dim=, n_clusters=) -> ClusteringMLP`` (the yaml's
        ``!name:`` entry); default: a paper-sized ``ClusteringMLP``.
    clustering_hparams : dict | None
        Keys of :data:`CLUSTERING_PIPELINE_DEFAULTS` and of
        :data:`speechbrain_ssv.brains.pseudolabel.CLUSTERING_DEFAULTS`;
        must hold those of
        :data:`speechbrain_ssv.brains.pseudolabel.CLUSTERING_REQUIRED`.
    opt_class : callable | None
        ``params -> optimizer``; default momentum SGD (``lr``, ``momentum``).
    aug_features : array-like | None
        ``[N, D]`` second view (augmented audio) for the augmentation
        terms; scaled like ``features``.
    device : str
        Where ``"ours"`` trains.
    precision : str
        ``"ours"``: SpeechBrain's ``precision`` run option (``fp32``,
        ``fp16``, ``bf16``): the MLP's forwards under autocast, every loss
        term in float32 (:func:`speechbrain_ssv.utils.precision.float32_loss`).
    progress : bool
        Progress bars.
    train_logger : speechbrain.utils.train_logger.TrainLogger | None
        Receives one line per clustering epoch.

    Returns
    -------
    dict
        ``labels`` (``[N]`` int64 numpy, compacted to ``0..K-1``) and
        ``history`` (per-epoch reports of ``"ours"``, else ``None``).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 0.1, (20, 3)) + 1, rng.normal(0, 0.1, (20, 3)) - 1])
    >>> out = cluster_representations("kmeans", x, 2)
    >>> len(set(out["labels"][:20])), len(set(out["labels"][20:]))
    (1, 1)
    """
    if method not in (OURS, ORACLE) and method not in METHODS:
        raise HparamsError(
            "clustering_method",
            f"is {method!r}; expected {OURS!r}, {ORACLE!r} (true speakers) "
            f"or one of {', '.join(METHODS)}",
        )
    if method == ORACLE:
        if true_labels is None:
            raise HparamsError(
                "clustering_method",
                f"is {ORACLE!r}, which needs the manifests' spk_id column",
            )
        _, labels = np.unique(np.asarray(true_labels), return_inverse=True)
        return {
            "labels": labels.reshape(-1).astype(np.int64),
            "history": None,
        }
    x = _scale(features, l2_normalize, standardize, center)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D]; got {tuple(x.shape)}")
    if method != OURS:
        labels = cluster(
            x.numpy(), method, n_clusters, seed=seed, **(baseline_options or {})
        )
        return {"labels": np.asarray(labels, dtype=np.int64), "history": None}
    brain = _clustering_brain(
        x,
        n_clusters,
        work_dir=work_dir,
        true_labels=true_labels,
        model_factory=model_factory,
        hparams=clustering_hparams or {},
        opt_class=opt_class,
        seed=seed,
        aug=None
        if aug_features is None
        else _scale(aug_features, l2_normalize, standardize, center),
        device=device,
        precision=precision,
        progress=progress,
        train_logger=train_logger,
    )
    # eval_features is x: the last epoch's report already assigned it.
    labels = brain.predict().numpy()
    _, labels = np.unique(labels, return_inverse=True)
    return {
        "labels": labels.reshape(-1).astype(np.int64),
        "history": brain.history,
    }


def _clustering_brain(
    x,
    n_clusters,
    work_dir,
    true_labels,
    model_factory,
    hparams,
    opt_class,
    seed,
    aug,
    device,
    precision,
    progress,
    train_logger,
):
    from speechbrain.utils.epoch_loop import EpochCounter

    from speechbrain_ssv.brains.pseudolabel import (
        CLUSTERING_DEFAULTS,
        CLUSTERING_REQUIRED,
        ClusteringBrain,
        clustering_dataset,
        vat_radii,
    )
    from speechbrain_ssv.lobes.clustering import ClusteringMLP, RunningMarginal
    from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer

    _check_keys(
        hparams,
        {**CLUSTERING_PIPELINE_DEFAULTS, **CLUSTERING_DEFAULTS}.keys()
        | set(CLUSTERING_REQUIRED)
        | {"warm_start"},
        "clustering_hparams",
    )
    hp = {**CLUSTERING_PIPELINE_DEFAULTS, **CLUSTERING_DEFAULTS, **hparams}
    hp["seed"] = hparams.get("seed", seed)
    n, dim = x.shape
    batch = min(int(hp["batch_size"]), n)
    factory = model_factory or ClusteringMLP
    model = factory(input_dim=dim, n_clusters=n_clusters)
    marginal = RunningMarginal(
        n_clusters,
        momentum=RunningMarginal.momentum_for(
            n_clusters, batch, hp["marginal_samples_per_cluster"]
        ),
    )
    counter = EpochCounter(int(hp["number_of_epochs"]))
    checkpointer = None
    if work_dir is not None:
        os.makedirs(work_dir, exist_ok=True)
        checkpointer = AtomicCheckpointer(
            os.path.join(work_dir, "ckpt"),
            recoverables={
                "model": model,
                "marginal": marginal,
                "counter": counter,
            },
        )
        for key, name in (
            ("history_file", "history.json"),
            ("plot_file", "metrics_over_epochs.png"),
        ):
            if hp.get(key) is None:
                hp[key] = os.path.join(work_dir, name)
    if opt_class is None:
        opt_class = functools.partial(
            torch.optim.SGD, lr=hp["lr"], momentum=hp["momentum"]
        )
    fresh = checkpointer is None or checkpointer.find_checkpoint() is None
    if hparams.get("warm_start") and fresh:
        _warm_start(model, x, n_clusters, hparams["warm_start"], batch,
                    hp["seed"], device)  # fmt: skip
    radius = hp["vat_radius"]
    if radius == "knn":
        radii = vat_radii(
            x.to(device),
            k=hp["knn_k"],
            scale=hp["knn_scale"],
            reference_size=hp["knn_reference"],
            seed=hp["seed"],
        ).cpu()
    else:
        try:
            radii = float(radius)
        except (TypeError, ValueError):
            raise HparamsError(
                "clustering_hparams: vat_radius",
                f"is {radius!r}; expected 'knn' or a number",
            ) from None
    use_aug = aug is not None and any(
        hp[k] for k in ("infonce_weight", "aug_weight", "vicreg_weight")
    )
    brain_hp = {k: hp[k] for k in CLUSTERING_DEFAULTS}
    # No default: a missing one is reported by the Brain when it reads it.
    brain_hp.update({k: hp[k] for k in CLUSTERING_REQUIRED if k in hp})
    brain_hp["epoch_counter"] = counter
    if train_logger is not None:
        brain_hp["train_logger"] = train_logger
    brain = ClusteringBrain(
        modules={"model": model, "marginal": marginal},
        opt_class=opt_class,
        hparams=brain_hp,
        run_opts={
            "device": device,
            "precision": precision,
            "noprogressbar": not progress,
        },
        checkpointer=checkpointer,
        eval_features=x,
        true_labels=true_labels,
    )
    dataset = clustering_dataset(x, radii, aug if use_aug else None)
    brain.fit(
        counter,
        dataset,
        train_loader_kwargs={
            "batch_size": batch,
            "shuffle": True,
            "drop_last": n > batch,
        },
    )
    return brain


def _warm_start(model, x, n_clusters, opts, batch_size, seed, device):
    """Fit ``model`` to a baseline's assignment of ``x`` (cross-entropy,
    momentum SGD, ``opts["epochs"]`` passes), so that the multi-objective
    training starts from that clustering instead of from random weights.
    Not in the paper (a documented deviation of the recipe). ``opts``:
    ``method`` (a name of
    :data:`speechbrain_ssv.clustering.baselines.METHODS`), ``epochs``,
    ``lr`` and optional ``options`` (keyword arguments of the baseline).
    """
    _check_keys(opts, ("method", "epochs", "lr", "options"),
                "clustering_hparams: warm_start")  # fmt: skip
    labels = cluster(x.numpy(), opts["method"], n_clusters, seed=seed,
                     **(opts.get("options") or {}))  # fmt: skip
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=opts["lr"], momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    for _ in range(int(opts["epochs"])):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            logits = model(x[idx].to(device))
            loss = torch.nn.functional.cross_entropy(logits, y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    logger.info(
        "warm start: %d passes on the %s assignment (%d clusters)",
        int(opts["epochs"]), opts["method"], int(torch.unique(y).numel()),
    )  # fmt: skip


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


def _true_labels(manifests, ids):
    """True ``spk_id`` of each id (for metrics), or ``None`` if a manifest
    has no ``spk_id`` column."""
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


def pseudo_label_stage(
    method,
    representations,
    manifests,
    out_dir,
    n_clusters,
    *,
    metrics=True,
    report_ami=True,
    report_unsupervised=True,
    **cluster_kwargs,
):
    """Stage 2: cluster the stage-1 representations and write one
    pseudo-labelled manifest per input manifest (``pseudo_<name>.csv``),
    with a clustering report (``report.json`` / ``report.md``) against the
    manifests' true speakers when ``metrics``. Skipped when done with the
    same options and inputs.

    The first manifest defines the classes: rows of the others whose
    cluster has no row in it are dropped (see
    :func:`write_pseudolabel_csv`).

    Arguments
    ---------
    method : str
        ``"ours"`` or a baseline name (:func:`cluster_representations`).
    representations : dict
        Output of :func:`extract_representations`.
    manifests : dict
        ``name -> csv path`` (e.g. ``{"train": ..., "dev": ...}``), whose
        rows are all among the representations' ids.
    out_dir : str
        Stage folder.
    n_clusters : int
        ``C``.
    metrics : bool
        Compute the clustering metrics against the manifests' ``spk_id``
        (metrics only: the labels never reach the clustering).
    report_ami : bool
        Include AMI (minutes at 1M points x 10k clusters).
    report_unsupervised : bool
        Include silhouette (subsampled), Calinski-Harabasz and
        Davies-Bouldin on the clustered features.
    **cluster_kwargs
        Passed to :func:`cluster_representations`.

    Returns
    -------
    dict
        ``csv`` (name -> pseudo-labelled manifest), ``report`` (or
        ``None``), ``n_labels``, ``digest``, ``folder``.
    """
    if not manifests:
        raise ValueError("pseudo_label_stage needs at least one manifest")
    names = list(manifests)
    json_kwargs = {
        k: v
        for k, v in cluster_kwargs.items()
        # Where and how fast it runs, not what it clusters (precision:
        # bf16 autocast rounds the MLP's matmuls; the losses stay fp32).
        if k not in ("device", "precision", "progress", "train_logger")
    }
    opts = {
        "method": method,
        "n_clusters": int(n_clusters),
        "representations": representations["digest"],
        "manifests": {k: _manifest_opts([v])[0] for k, v in manifests.items()},
        "metrics": bool(metrics),
        "cluster": json_kwargs,
    }
    out_csv = {k: os.path.join(out_dir, f"pseudo_{k}.csv") for k in names}
    if not begin_stage(out_dir, opts, f"clustering ({method})"):
        seed_stage(cluster_kwargs.get("seed", 0), f"clustering/{method}")
        ids = representations["ids"]
        true = (
            _true_labels([manifests[k] for k in names], ids)
            if metrics or method == ORACLE
            else None
        )
        result = cluster_representations(
            method,
            representations["features"],
            n_clusters,
            work_dir=out_dir,
            true_labels=true,
            aug_features=representations.get("aug_features"),
            **cluster_kwargs,
        )
        labels = result["labels"]
        with atomic_path(os.path.join(out_dir, "labels.npy")) as tmp:
            np.save(tmp, labels)
        report = None
        if true is not None:
            feats = None
            if report_unsupervised:
                feats = _scale(
                    representations["features"],
                    cluster_kwargs.get("l2_normalize", True),
                    cluster_kwargs.get("standardize", False),
                    cluster_kwargs.get("center", False),
                ).numpy()
            report = clustering_report(
                true, labels, features=feats, ami=report_ami
            )
            write_report(
                {method: report},
                os.path.join(out_dir, "report.json"),
                os.path.join(out_dir, "report.md"),
            )
        counts = {}
        known = None
        for k in names:
            out = write_pseudolabel_csv(
                manifests[k], ids, labels, out_csv[k], known_labels=known
            )
            counts[k] = {"rows": out["rows"], "dropped": out["dropped"]}
            if known is None:
                known = out["labels"]
        finish_stage(
            out_dir,
            opts,
            ["labels.npy"] + [os.path.basename(p) for p in out_csv.values()],
            info={
                "report": report,
                "n_labels": len(known),
                "rows": counts,
            },
        )
    rec = read_stage(out_dir)
    return {
        "csv": out_csv,
        "report": rec["info"].get("report"),
        "n_labels": rec["info"]["n_labels"],
        "rows": rec["info"]["rows"],
        "digest": rec["digest"],
        "folder": out_dir,
    }
