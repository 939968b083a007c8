#!/usr/bin/env python3
"""INSIDE: new synthetic speakers by SLERP between nearby real speakers'
YourTTS embeddings, spoken by YourTTS and added to the training data of a
supervised ECAPA-TDNN (Liu et al., APSIPA ASC 2025).

Stages (each resumable; the stage functions below, built on
``speechbrain_ssv.inside``): embed the real training utterances with the
TTS model's own speaker encoder -> pair same-gender speakers (``pairing:
nn`` = INSIDE-NN, layered nearest-neighbour traversal; ``random`` =
INSIDE-Syn) -> SLERP -> synthesize ``utts_per_identity`` utterances per
identity (sharded over torchrun ranks) -> merge into the training manifests -> train the Supervised recipe's
ECAPA-TDNN on real + synthetic speakers -> EER/minDCF on the trial list ->
export. ``pairing: none`` trains the baseline on the real data only.

The embed, pair and merge stages keep a ``stage.json`` (options, a digest of
their inputs and outputs; :func:`speechbrain_ssv.utils.stages.begin_stage`):
a rerun of the same command skips finished stages, and a stage whose
options or inputs changed is redone together with the stages after it.
Layout under ``<inside_folder>``::

    embed/       YourTTS speaker-encoder embeddings of the real utterances
                 (cache chunks), speakers.pt (per-speaker means, genders)
    pairs/       pairs.csv (syn id, source speakers, gender, alpha, layer,
                 cosine), identities.pt (the SLERP d-vectors)
    synth/       wav/<syn id>/<session>/<utt>.wav, manifests/, synth.csv
    merge/       train.csv / dev.csv: real + synthetic training manifests
    diagnostics/ intra_identity.png, identity_map.png, diagnostics.json

To run (minivox with a tiny random YourTTS: a mechanics and timing check,
its audio is noise)::

    python -m speechbrain_ssv.minivox --out data/minivox
    python -m speechbrain_ssv.inside.tiny --out results/tiny_yourtts
    python recipes/VoxCeleb/INSIDE/train.py \
        recipes/VoxCeleb/INSIDE/hparams/inside_minivox.yaml

With the real YourTTS release (unzipped by the user) on VoxCeleb2::

    torchrun --nproc_per_node=4 recipes/VoxCeleb/INSIDE/train.py \
        recipes/VoxCeleb/INSIDE/hparams/inside.yaml --data_folder /data/vox2 \
        --tts_model_dir /models/your_tts

Authors
 * speechbrain-ssv developers 2026
"""

import json
import os
import time

import torch
from speechbrain.utils.distributed import ddp_barrier, run_on_main

from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.data.pipelines import make_supervised_datasets
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.inside.diagnostics import (
    intra_identity_cosines,
    plot_identity_map,
    plot_intra_identity,
)
from speechbrain_ssv.inside.gender import speaker_genders
from speechbrain_ssv.inside.manifest import (
    merge_manifests,
    split_synthetic,
    subset_manifest,
    write_pairs,
)
from speechbrain_ssv.inside.pairing import (
    identity_sets,
    interpolate_pairs,
    select_pairs,
    speaker_means,
    summarize_pairs,
)
from speechbrain_ssv.inside.release import require_tts
from speechbrain_ssv.inside.speaker_encoder import embed_manifest
from speechbrain_ssv.inside.synthesize import (
    gather_manifests,
    synthesize_identities,
)
from speechbrain_ssv.inside.tts import load_yourtts
from speechbrain_ssv.recipe_utils import (
    check_classifier_size,
    export_and_report,
    final_verification,
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import HparamsError, ManifestError
from speechbrain_ssv.utils.io import (
    atomic_path,
    file_digest,
    save_torch,
    write_json,
)
from speechbrain_ssv.utils.stages import begin_stage, finish_stage, read_stage

#: The YourTTS model of this process, loaded once (the embed, synthesis
#: and diagnostics stages all use it).
_LOADED_TTS = {}


def _tts(hparams, run_opts):
    require_tts()
    device = hparams["tts_device"] or run_opts.get("device", "cpu")
    key = (os.path.abspath(hparams["tts_model_dir"]), str(device))
    if key not in _LOADED_TTS:
        _LOADED_TTS[key] = load_yourtts(
            hparams["tts_model_dir"],
            device=device,
            trust_checkpoint=hparams["tts_trust_checkpoint"],
        )
    return _LOADED_TTS[key]


def _on_main_only(func, *args):
    """Run ``func`` for its files alone: SpeechBrain's ``run_on_main``
    broadcasts the return value to every rank, which would pickle the TTS
    model (and parametrized modules cannot be pickled)."""
    func(*args)


def _folders(hparams):
    root = hparams["inside_folder"]
    return {
        k: os.path.join(root, k)
        for k in ("embed", "pairs", "synth", "merge", "diagnostics")
    }


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
        (:func:`~speechbrain_ssv.inside.gender.speaker_genders`); default:
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
        pairs = select_pairs(method, embedded, n_identities, seed, search_mode)
        rows = write_pairs(
            pairs_csv, pairs, alpha=alpha, real_speakers=real_speakers
        )
        d_vectors = interpolate_pairs(pairs, embedded, alpha)
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
    d_vector_sets,
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
    d_vector_sets : dict
        ``name -> [T, D]`` synthetic d-vectors (e.g. ``INSIDE-NN``,
        ``INSIDE-Syn``;
        :func:`~speechbrain_ssv.inside.pairing.identity_sets`).
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
        {"real": embedded["means"], **d_vector_sets}, map_png, seed=seed
    )
    out = {
        "intra_identity": stats,
        "intra_identity_png": intra_png,
        "identity_map_png": map_png,
    }
    write_json(os.path.join(folder, "diagnostics.json"), out)
    return out


def _embed_and_pair(hparams, run_opts):
    """Stages 1-2 (cheap to call again: finished stages are skipped)."""
    tts = _tts(hparams, run_opts)
    folders = _folders(hparams)
    embedded = embed_stage(
        tts,
        hparams["train_annotation"],
        folders["embed"],
        gender_sources=hparams["gender_sources"],
        max_utts_per_speaker=hparams["embed_max_utts_per_speaker"],
        num_eval=hparams["embed_num_eval"],
        batch_size=hparams["embed_batch_size"],
        seed=hparams["seed"],
        progress=not hparams.get("noprogressbar", False),
    )
    paired = pair_stage(
        embedded,
        folders["pairs"],
        hparams["pairing"],
        hparams["n_identities"],
        alpha=hparams["slerp_alpha"],
        seed=hparams["seed"],
        search_mode=hparams["pair_search"],
        real_speakers=hparams["train_annotation"],
    )
    return tts, embedded, paired


def _merge_and_diagnose(hparams, run_opts):
    tts, embedded, paired = _embed_and_pair(hparams, run_opts)
    folders = _folders(hparams)
    synth_csv = gather_manifests(folders["synth"])
    merge_stage(
        {
            "train": hparams["train_annotation"],
            "dev": hparams["valid_annotation"],
        },
        synth_csv,
        paired["pairs_csv"],
        folders["merge"],
        dev_utts=hparams["synthetic_dev_utts"],
    )
    if hparams["diagnostics"]:
        diagnostics_stage(
            tts,
            embedded,
            synth_csv,
            identity_sets(
                embedded,
                hparams["n_identities"],
                alpha=hparams["slerp_alpha"],
                seed=hparams["seed"],
                mode=hparams["pair_search"],
            ),
            folders["diagnostics"],
            num_eval=hparams["embed_num_eval"],
            seed=hparams["seed"],
            progress=not hparams.get("noprogressbar", False),
        )


def run_inside(hparams, run_opts):
    """The data stages on every process (synthesis is sharded over ranks);
    returns the merged manifests and what results.json reports."""
    run_on_main(_on_main_only, args=[_embed_and_pair, hparams, run_opts])
    tts, embedded, paired = _embed_and_pair(hparams, run_opts)
    folders = _folders(hparams)
    synth = synthesize_stage(
        tts,
        paired,
        folders["synth"],
        hparams["utts_per_identity"],
        texts=hparams["text_corpus"],
        seed=hparams["synthesis_seed"],
        batch_size=hparams["synthesis_batch_size"],
        n_sessions=hparams["synthesis_sessions"],
        language=hparams["tts_language"],
        progress=not hparams.get("noprogressbar", False),
    )
    del tts
    # Every rank's synthesis shard is written before the main process
    # merges them (run_on_main only waits after its function).
    ddp_barrier()
    run_on_main(_on_main_only, args=[_merge_and_diagnose, hparams, run_opts])
    merged = read_stage(folders["merge"])["info"]
    report = {
        "pairing": hparams["pairing"],
        "n_identities": hparams["n_identities"],
        "alpha": hparams["slerp_alpha"],
        "embedding": read_stage(folders["embed"])["info"],
        "pairs": paired["summary"],
        "synthesis_this_process": {
            k: synth[k]
            for k in (
                "written",
                "skipped",
                "audio_seconds",
                "wall_seconds",
                "realtime_factor",
            )
        },
        "manifests": merged,
    }
    diag = os.path.join(folders["diagnostics"], "diagnostics.json")
    if os.path.isfile(diag):
        with open(diag) as f:
            report["diagnostics"] = json.load(f)
    train_csv = os.path.join(folders["merge"], "train.csv")
    dev_csv = os.path.join(folders["merge"], "dev.csv")
    return train_csv, dev_csv, report


def fit_classifier(hparams, run_opts, hparams_file, train_csv, dev_csv):
    """Train the Supervised recipe's Brain (encoder + margin softmax) on the
    classes of ``train_csv``'s ``spk_id`` column.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    run_opts : dict
        SpeechBrain run options.
    hparams_file : str
        For error messages.
    train_csv, dev_csv : str
        Training and validation manifests over the same classes.

    Returns
    -------
    tuple
        ``(brain, label_encoder)`` after ``fit``.
    """
    train_data, valid_data, label_encoder = make_supervised_datasets(
        train_csv,
        dev_csv,
        crop_seconds=hparams["sentence_len"],
        label_encoder_path=os.path.join(
            hparams["save_folder"], "label_encoder.txt"
        ),
        sample_rate=hparams["sample_rate"],
    )
    check_classifier_size(hparams, label_encoder, hparams_file)
    brain = SupervisedBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train_data,
        valid_data,
        train_loader_kwargs=hparams["dataloader_options"],
        valid_loader_kwargs=hparams["dataloader_options"],
    )
    return brain, label_encoder


def main(argv):
    """The recipe; ``argv`` is the command line after the script name
    (run it through ``run_recipe``, which ends a torchrun rank safely)."""
    hparams, run_opts, hparams_file = setup_experiment(argv)
    # Manifests (once per node), and the trial list normalised into the save
    # folder, so that a bare name (veri_test2.txt, from <data_folder>/meta)
    # works as well as a path.
    run_on_main(
        prepare_voxceleb,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "trial_lists": [hparams["verification_file"]],
            "split_ratio": hparams["split_ratio"],
            "min_duration": hparams["min_duration"],
            "seed": hparams["seed"],
            "skip_prep": hparams["skip_prep"],
            "progress": not hparams["noprogressbar"],
        },
    )
    hparams["verification_file"] = os.path.join(
        hparams["save_folder"],
        os.path.basename(str(hparams["verification_file"])),
    )
    prepare_augmentation_data(
        hparams,
        [hparams["prepare_noise_data"], hparams["prepare_rir_data"]],
    )
    hparams["noprogressbar"] = run_opts.get("noprogressbar", False)

    pairing = hparams["pairing"]
    if pairing in (None, "none"):
        train_csv, dev_csv = (
            hparams["train_annotation"],
            hparams["valid_annotation"],
        )
        report = {"pairing": "none"}
    elif pairing in ("nn", "random"):
        train_csv, dev_csv, report = run_inside(hparams, run_opts)
    else:
        raise HparamsError(
            f"{hparams_file}: pairing",
            f"is {pairing!r}; expected nn (INSIDE-NN), random (INSIDE-Syn) or none",
        )

    brain, label_encoder = fit_classifier(
        hparams, run_opts, hparams_file, train_csv, dev_csv
    )
    metrics = final_verification(brain, min_key="ErrorRate")
    report["training_speakers"] = len(label_encoder)
    export_and_report(
        brain,
        hparams,
        metrics,
        export_folder=hparams["export_folder"],
        min_key="ErrorRate",
        extra_results={"inside": report},
    )


if __name__ == "__main__":
    run_recipe(main)
