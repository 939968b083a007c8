"""The INSIDE data stages of the recipe: embed -> pair -> synthesize ->
merge, each resumable, plus the diagnostics.

Every stage keeps a ``stage.json`` (options, a digest of its inputs and
outputs; :func:`speechbrain_ssv.utils.stages.begin_stage`): a rerun
of the same command skips finished stages, and a stage whose options or
inputs changed is redone together with the stages after it.

Layout under ``<inside_folder>``::

    embed/       YourTTS speaker-encoder embeddings of the real utterances
                 (cache chunks), speakers.pt (per-speaker means, genders)
    pairs/       pairs.csv (syn id, source speakers, gender, alpha, layer,
                 cosine), identities.pt (the SLERP d-vectors)
    synth/       wav/<syn id>/<session>/<utt>.wav, manifests/, synth.csv
    merge/       train.csv / dev.csv: real + synthetic training manifests
    diagnostics/ intra_identity.png, identity_map.png, diagnostics.json

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import logging
import os
import time

import numpy as np
import torch

from speechbrain_ssv.inside.manifest import merge_manifests, write_pairs
from speechbrain_ssv.inside.pairing import (
    layered_nn_pairs,
    random_pairs,
    speaker_genders,
    speaker_means,
    summarize_pairs,
)
from speechbrain_ssv.inside.slerp import slerp
from speechbrain_ssv.utils.errors import HparamsError, ManifestError
from speechbrain_ssv.utils.io import (
    atomic_path,
    file_digest,
    save_torch,
    write_json,
)
from speechbrain_ssv.utils.stages import begin_stage, finish_stage, read_stage

logger = logging.getLogger(__name__)

__all__ = [
    "PAIRINGS",
    "diagnostics_stage",
    "embed_stage",
    "identity_sets",
    "merge_stage",
    "pair_stage",
    "split_synthetic",
    "subset_manifest",
    "synthesize_stage",
]

# "nn": INSIDE-NN (layered nearest-neighbour traversal); "random":
# INSIDE-Syn (random within-gender pairs).
PAIRINGS = ("nn", "random")


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


def embed_stage(
    tts,
    train_csv,
    folder,
    gender_sources=None,
    max_utts_per_speaker=None,
    num_eval=10,
    batch_size=16,
    seed=0,
    progress=True,
):
    """Stage 1: YourTTS speaker-encoder embeddings of the real training
    utterances, averaged per speaker (each clip l2-normalised first, the
    mean l2-normalised), with each speaker's gender.

    Arguments
    ---------
    tts : speechbrain_ssv.inside.tts.YourTTS
        The loaded TTS model (its own speaker encoder embeds).
    train_csv : str
        Real training manifest.
    folder : str
        Stage folder.
    gender_sources : list of str | None
        VoxCeleb metadata files or manifests with genders
        (:func:`~speechbrain_ssv.inside.pairing.speaker_genders`); default:
        ``train_csv`` itself (minivox manifests carry a ``gender`` column).
    max_utts_per_speaker : int | None
        Clips averaged per speaker (``None``: all).
    num_eval : int
        Encoder windows per clip (Coqui's default 10).
    batch_size : int
        Clips per encoder batch.
    seed : int
        Seed of the clip subset.
    progress : bool
        Show a tqdm bar while the clips are embedded.

    Returns
    -------
    dict
        ``speakers``, ``means`` ``[S, 512]``, ``genders`` (speaker -> m/f),
        ``utt_embeddings``, ``utt_speakers``, ``digest``, ``seconds``.
    """
    from speechbrain_ssv.inside.tts import embed_manifest

    sources = list(gender_sources or [train_csv])
    opts = {
        "train": file_digest(train_csv),
        "genders": [file_digest(p) for p in sources],
        "encoder": tts.encoder_tag,
        "max_utts_per_speaker": max_utts_per_speaker,
        "num_eval": int(num_eval),
        "seed": int(seed),
    }
    out = os.path.join(folder, "speakers.pt")
    if not begin_stage(folder, opts, "INSIDE embeddings"):
        start = time.time()
        subset = os.path.join(folder, "clips.csv")
        n = subset_manifest(train_csv, subset, max_utts_per_speaker, seed)
        emb = embed_manifest(
            tts,
            subset,
            os.path.join(folder, "cache"),
            num_eval=num_eval,
            batch_size=batch_size,
            progress=progress,
        )
        if len(emb["ids"]) == 0:
            raise ManifestError(
                train_csv, "no utterance could be embedded (all silent?)"
            )
        speakers, means = speaker_means(emb["embeddings"], emb["speakers"])
        genders = speaker_genders(sources)
        seconds = time.time() - start
        save_torch(
            out,
            {
                "speakers": speakers,
                "means": means,
                "genders": {s: genders[s] for s in speakers if s in genders},
                "utt_embeddings": torch.as_tensor(emb["embeddings"]),
                "utt_speakers": list(emb["speakers"]),
            },
        )
        finish_stage(
            folder,
            opts,
            ["speakers.pt"],
            info={
                "clips": n,
                "skipped": len(emb["skipped"]),
                "speakers": len(speakers),
                "seconds": round(seconds, 1),
                "seconds_per_clip": round(seconds / max(n, 1), 4),
            },
        )
    data = torch.load(out, weights_only=True)
    rec = read_stage(folder)
    data.update(digest=rec["digest"], seconds=rec["info"]["seconds"])
    return data


def _pairs(method, embedded, n_identities, seed, search_mode):
    speakers, means = embedded["speakers"], embedded["means"]
    genders = embedded["genders"]
    if method == "nn":
        return layered_nn_pairs(
            means, speakers, genders, n_identities, mode=search_mode
        )
    if method == "random":
        return random_pairs(
            speakers, genders, n_identities, seed=seed, embeddings=means
        )
    raise HparamsError(
        "pairing", f"is {method!r}; expected one of {PAIRINGS} (or none)"
    )


def _interpolate(pairs, embedded, alpha):
    index = {s: i for i, s in enumerate(embedded["speakers"])}
    means = embedded["means"]
    a = means[[index[p.spk_a] for p in pairs]]
    b = means[[index[p.spk_b] for p in pairs]]
    return slerp(a, b, alpha)


def pair_stage(
    embedded,
    folder,
    method,
    n_identities,
    alpha=0.5,
    seed=0,
    search_mode="exact",
    real_speakers=None,
):
    """Stage 2: choose ``n_identities`` same-gender speaker pairs (INSIDE-NN
    or INSIDE-Syn) and SLERP their mean embeddings into the synthetic
    identities' d-vectors.

    Arguments
    ---------
    embedded : dict
        Output of :func:`embed_stage`.
    folder : str
        Stage folder.
    method : str
        ``"nn"`` or ``"random"``.
    n_identities : int
        ``T``.
    alpha : float
        SLERP weight of the second speaker (the paper: 0.5).
    seed : int
        Seed of the random pairing.
    search_mode : str
        ``"exact"`` or ``"ivf"`` neighbour search (1M speakers).
    real_speakers : str | None
        Real manifest whose ids the synthetic ids must not collide with.

    Returns
    -------
    dict
        ``pairs_csv``, ``identities`` (path of ``identities.pt``),
        ``summary``, ``digest``.
    """
    opts = {
        "embeddings": embedded["digest"],
        "method": method,
        "n_identities": int(n_identities),
        "alpha": float(alpha),
        "seed": int(seed),
        "search_mode": search_mode,
    }
    pairs_csv = os.path.join(folder, "pairs.csv")
    ident_path = os.path.join(folder, "identities.pt")
    if not begin_stage(folder, opts, f"INSIDE pairs ({method})"):
        pairs = _pairs(method, embedded, n_identities, seed, search_mode)
        rows = write_pairs(
            pairs_csv, pairs, alpha=alpha, real_speakers=real_speakers
        )
        d_vectors = _interpolate(pairs, embedded, alpha)
        save_torch(
            ident_path,
            {
                "ids": [r.syn_spk_id for r in rows],
                "d_vectors": d_vectors.float(),
                "genders": [r.gender for r in rows],
            },
        )
        summary = summarize_pairs(pairs)
        finish_stage(
            folder,
            opts,
            ["pairs.csv", "identities.pt"],
            info={"summary": summary},
        )
    rec = read_stage(folder)
    return {
        "pairs_csv": pairs_csv,
        "identities": ident_path,
        "summary": rec["info"]["summary"],
        "digest": rec["digest"],
    }


def synthesize_stage(tts, paired, folder, n_utts, **synth_kwargs):
    """Stage 3: speak every synthetic identity (this process's shard).

    Resumability is :func:`~speechbrain_ssv.inside.synthesize.
    synthesize_identities`' own (finished wavs are skipped; other options
    than the recorded ones are refused), so this stage has no
    ``stage.json``; a new pairing digest starts a fresh folder.

    Arguments
    ---------
    tts : speechbrain_ssv.inside.tts.YourTTS
        The TTS model.
    paired : dict
        Output of :func:`pair_stage`.
    folder : str
        Output folder.
    n_utts : int
        Utterances per identity.
    **synth_kwargs
        ``texts``, ``seed``, ``shard``, ``batch_size``, ``n_sessions``,
        ``language``, ... of ``synthesize_identities``.

    Returns
    -------
    dict
        ``synthesize_identities``' result for this shard.
    """
    from speechbrain_ssv.inside.synthesize import synthesize_identities

    marker = os.path.join(folder, "pairs_digest.txt")
    if os.path.isfile(marker):
        with open(marker) as f:
            if f.read().strip() != paired["digest"]:
                raise ManifestError(
                    folder,
                    "holds the synthesis of other pairs; delete it or use "
                    "another inside_folder",
                )
    else:
        os.makedirs(folder, exist_ok=True)
        with atomic_path(marker) as tmp, open(tmp, "w") as f:
            f.write(paired["digest"] + "\n")
    return synthesize_identities(
        tts, paired["identities"], folder, n_utts, **synth_kwargs
    )


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


def merge_stage(real, synth_csv, pairs_csv, folder, dev_utts=1):
    """Stage 4: real + synthetic training and validation manifests.

    Arguments
    ---------
    real : dict
        ``{"train": csv, "dev": csv}`` real manifests.
    synth_csv : str
        Gathered synthetic manifest.
    pairs_csv : str
        Pairs table (metadata columns of the synthetic rows).
    folder : str
        Stage folder.
    dev_utts : int
        Synthetic utterances per identity in the dev manifest.

    Returns
    -------
    dict
        ``train``, ``dev`` (merged manifests), ``n_speakers`` (real +
        synthetic training speakers), counts.
    """

    opts = {
        "real": {k: file_digest(v) for k, v in real.items()},
        "synthetic": file_digest(synth_csv),
        "pairs": file_digest(pairs_csv),
        "dev_utts": int(dev_utts),
    }
    out = {k: os.path.join(folder, f"{k}.csv") for k in ("train", "dev")}
    if not begin_stage(folder, opts, "INSIDE merge"):
        syn = {k: os.path.join(folder, f"synthetic_{k}.csv") for k in out}
        split_synthetic(synth_csv, syn["train"], syn["dev"], dev_utts)
        info = {}
        for k in out:
            info[k] = merge_manifests(
                real[k], syn[k], out[k], pairs_csv=pairs_csv
            )
            info[k].pop("columns", None)
        finish_stage(folder, opts, ["train.csv", "dev.csv"], info=info)
    info = read_stage(folder)["info"]
    return {
        **out,
        "n_speakers": info["train"]["n_real_speakers"]
        + info["train"]["n_synthetic_speakers"],
        "counts": info,
    }


def diagnostics_stage(
    tts,
    embedded,
    synth_csv,
    identity_sets,
    folder,
    max_per_identity=4,
    num_eval=10,
    seed=0,
    progress=True,
):
    """Same-identity cosine distributions of real speakers and synthetic
    identities (Fig. 4-like; both measured with the TTS speaker encoder)
    and a t-SNE of the real speaker means with the synthetic d-vectors of
    each pairing.

    Arguments
    ---------
    tts : speechbrain_ssv.inside.tts.YourTTS
        The TTS model (its encoder embeds synthetic clips).
    embedded : dict
        Output of :func:`embed_stage` (real clip embeddings).
    synth_csv : str
        Gathered synthetic manifest.
    identity_sets : dict
        ``name -> [T, D]`` synthetic d-vectors (e.g. ``INSIDE-NN``,
        ``INSIDE-Syn``).
    folder : str
        Output folder.
    max_per_identity : int
        Clips per identity in the cosine statistics.
    num_eval : int
        Encoder windows per clip.
    seed : int
        Seed of the subsets and of t-SNE.
    progress : bool
        Show a tqdm bar while the synthetic clips are embedded.

    Returns
    -------
    dict
        Cosine statistics per group and the PNG paths.
    """
    from speechbrain_ssv.inside.diagnostics import (
        intra_identity_cosines,
        plot_identity_map,
        plot_intra_identity,
    )
    from speechbrain_ssv.inside.tts import embed_manifest

    os.makedirs(folder, exist_ok=True)
    subset = os.path.join(folder, "synthetic_clips.csv")
    subset_manifest(synth_csv, subset, max_per_identity, seed)
    syn = embed_manifest(
        tts,
        subset,
        os.path.join(folder, "cache"),
        num_eval=num_eval,
        progress=progress,
    )
    groups = {
        "real": intra_identity_cosines(
            embedded["utt_embeddings"],
            embedded["utt_speakers"],
            max_per_identity,
            seed,
        ),
        "synthetic": intra_identity_cosines(
            syn["embeddings"], syn["speakers"], max_per_identity, seed
        ),
    }
    intra_png = os.path.join(folder, "intra_identity.png")
    stats = plot_intra_identity(groups, intra_png)
    map_png = os.path.join(folder, "identity_map.png")
    plot_identity_map(
        {"real": embedded["means"], **identity_sets}, map_png, seed=seed
    )
    out = {
        "intra_identity": stats,
        "intra_identity_png": intra_png,
        "identity_map_png": map_png,
    }
    write_json(os.path.join(folder, "diagnostics.json"), out)
    return out


def identity_sets(embedded, n_identities, alpha=0.5, seed=0, mode="exact"):
    """Synthetic d-vectors of both pairings (for the identity map; cheap,
    no synthesis).

    Arguments
    ---------
    embedded : dict
        Output of :func:`embed_stage`.
    n_identities : int
        ``T``.
    alpha : float
        SLERP weight.
    seed : int
        Seed of the random pairing.
    mode : str
        Neighbour search mode.

    Returns
    -------
    dict
        ``{"INSIDE-NN": [T, D], "INSIDE-Syn": [T, D]}``.
    """
    return {
        name: _interpolate(
            _pairs(method, embedded, n_identities, seed, mode),
            embedded,
            alpha,
        )
        for name, method in (("INSIDE-NN", "nn"), ("INSIDE-Syn", "random"))
    }
