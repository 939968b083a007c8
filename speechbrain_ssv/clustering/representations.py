"""Stage 1 of the pseudo-label recipe as library functions: utterance
representations (i-vectors or embeddings of an exported encoder) of the
utterances of one or more manifests, written to a resumable folder.

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition" (Fig. 2, Appendix D.3): i-vectors of
the training utterances are clustered and the cluster ids become the
speaker labels of an ECAPA-TDNN. Further rounds re-embed the utterances
with the trained encoder.

The output folder is a :mod:`speechbrain_ssv.utils.stages` stage: an
unchanged finished extraction is skipped, an unfinished one resumes, and
one whose options or inputs changed is redone.

Scale: the UBM and the T matrix are trained on random / longest subsets
(Kaldi's VoxCeleb recipe trains the extractor on the 100k longest
utterances), each EM pass streams the audio through a DataLoader, and the
extraction streams the whole corpus in shards saved as they finish.

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import logging
import os

import numpy as np
import torch
from speechbrain.inference.speaker import EncoderClassifier
from speechbrain.lobes.features import MFCC
from speechbrain.processing.features import InputNormalization

from speechbrain_ssv.clustering.ivector import IVectorExtractor
from speechbrain_ssv.data.audio import read_audio_checked
from speechbrain_ssv.data.pipelines import REQUIRED_COLUMNS
from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.utils.errors import (
    HparamsError,
    ManifestError,
    SSVInputError,
)
from speechbrain_ssv.utils.io import (
    atomic_path,
    file_digest,
    save_torch,
    write_text,
)
from speechbrain_ssv.utils.pretrained import load_strict
from speechbrain_ssv.utils.stages import (
    begin_stage,
    finish_stage,
    read_stage,
    seed_stage,
)

logger = logging.getLogger(__name__)

__all__ = [
    "IVECTOR_OPTIONS",
    "check_ivector_options",
    "extract_representations",
    "load_representations",
    "manifest_options",
    "manifest_rows",
]

#: i-vector settings (:func:`extract_representations`). There are no code
#: defaults: the pseudo-label yamls set every one in ``ivector_options``
#: (their comments say what each does; the full-scale values follow Kaldi's
#: VoxCeleb i-vector recipe, since the paper extracts its i-vectors with
#: Kaldi, Appendix D.3, without details).
IVECTOR_OPTIONS = (
    "n_mfcc", "n_mels", "f_min", "f_max", "n_components", "rank", "ubm_iter",
    "split_iter", "tv_iter", "min_div", "var_floor", "ubm_utts", "tv_utts",
    "frames_per_batch", "stats_batch_size", "shard_size", "feature_cache_mb",
)  # fmt: skip


def check_ivector_options(options):
    """The yaml's ``ivector_options`` as a dict, checked against
    :data:`IVECTOR_OPTIONS`.

    Arguments
    ---------
    options : dict | None
        Every key of :data:`IVECTOR_OPTIONS`, no other.

    Returns
    -------
    dict
        A copy of ``options``.

    Example
    -------
    >>> check_ivector_options({"n_mfcc": 20})
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: ivector_options: missing [...
    """
    options = dict(options or {})
    missing = [k for k in IVECTOR_OPTIONS if k not in options]
    unknown = sorted(set(options) - set(IVECTOR_OPTIONS))
    if missing or unknown:
        raise HparamsError(
            "ivector_options",
            f"missing {missing}, unknown {unknown}: list every option of "
            "IVECTOR_OPTIONS, no other (the pseudo-label recipe yamls "
            "explain each)",
        )
    return options


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


def manifest_options(manifests):
    """How manifests enter a stage's options: by content, not path, so that
    experiments with their own copy of the same manifests share a stage
    folder (e.g. the round-1 i-vectors).

    Arguments
    ---------
    manifests : list of str
        CSV paths.

    Returns
    -------
    list of dict
        ``{"sha1": digest}`` per manifest.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "m.csv")
    >>> write_text(p, "ID,duration,wav,start,stop\\n")
    >>> list(manifest_options([p])[0])
    ['sha1']
    """
    return [{"sha1": file_digest(p)} for p in manifests]


# ---------------------------------------------------------------------------
# Stage 1: representations
# ---------------------------------------------------------------------------


class _MFCCDataset(torch.utils.data.Dataset):
    """Per-utterance ``[T, 3 n_mfcc]`` MFCCs with deltas and double deltas,
    sentence mean-normalised (SpeechBrain's ``InputNormalization`` with
    ``norm_type="sentence", std_norm=False``, as the recipes' encoders)."""

    def __init__(self, items, opts, sample_rate, augment=None, cache=False):

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
        # A resumed stage: strict, and a file from other settings is an
        # error that names it.
        load_strict(ext, ext_path)
    else:
        if os.path.isfile(ubm_path):
            load_strict(ext.ubm, ubm_path)
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
    subsets of the corpus (``ivector_options``) -> i-vectors of every
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
        Every i-vector setting (:data:`IVECTOR_OPTIONS`; ``kind="ivector"``
        only).
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
        "manifests": manifest_options(manifests),
        "data_folder": None if data_folder is None else os.fspath(data_folder),
        "sample_rate": sample_rate,
        "augment": None if augment is None else repr(augment),
        "seed": seed,
    }
    if kind == "ivector":
        iv = check_ivector_options(ivector_options)
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
