#!/usr/bin/env python3
"""INSIDE: new synthetic speakers by SLERP between nearby real speakers'
YourTTS embeddings, spoken by YourTTS and added to the training data of a
supervised ECAPA-TDNN (Liu et al., APSIPA ASC 2025).

Stages (each resumable; see ``speechbrain_ssv/inside/pipeline.py``):
embed the real training utterances with the TTS model's own speaker
encoder -> pair same-gender speakers (``pairing: nn`` = INSIDE-NN, layered
nearest-neighbour traversal; ``random`` = INSIDE-Syn) -> SLERP -> synthesize
``utts_per_identity`` utterances per identity (sharded over torchrun ranks)
-> merge into the training manifests -> train the Supervised recipe's
ECAPA-TDNN on real + synthetic speakers -> EER/minDCF on the trial list ->
export. ``pairing: none`` trains the baseline on the real data only.

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

import os

from speechbrain.utils.distributed import ddp_barrier, run_on_main

from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.data.pipelines import make_supervised_datasets
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.recipe_utils import (
    check_classifier_size,
    export_and_report,
    final_verification,
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.stages import read_stage

#: The YourTTS model of this process, loaded once (the embed, synthesis
#: and diagnostics stages all use it).
_LOADED_TTS = {}


def _tts(hparams, run_opts):
    from speechbrain_ssv.inside.tts import load_yourtts, require_tts

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


def _embed_and_pair(hparams, run_opts):
    """Stages 1-2 (cheap to call again: finished stages are skipped)."""
    from speechbrain_ssv.inside.pipeline import embed_stage, pair_stage

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
    from speechbrain_ssv.inside.pipeline import (
        diagnostics_stage,
        identity_sets,
        merge_stage,
    )
    from speechbrain_ssv.inside.synthesize import gather_manifests

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
    from speechbrain_ssv.inside.pipeline import synthesize_stage

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
        import json

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
        [hparams.get("prepare_noise_data"), hparams.get("prepare_rir_data")],
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
