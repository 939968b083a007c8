#!/usr/bin/env python3
"""Supervised ECAPA-TDNN speaker embeddings (AAM-softmax) on VoxCeleb or the
embedded minivox corpus: the baseline of every method in speechbrain-ssv.

To run (minivox, CPU)::

    python -m speechbrain_ssv.minivox --out data/minivox
    python recipes/VoxCeleb/Supervised/train.py \
        recipes/VoxCeleb/Supervised/hparams/ecapa_minivox.yaml

Full scale (VoxCeleb2 dev, GPUs)::

    torchrun --nproc_per_node=4 recipes/VoxCeleb/Supervised/train.py \
        recipes/VoxCeleb/Supervised/hparams/ecapa.yaml --data_folder /data/vox2

Killing the run and re-running the same command resumes from the last
checkpoint (end of epoch, or every ``ckpt_interval_minutes`` inside one).

Authors
 * speechbrain-ssv developers 2026
"""

import os

from speechbrain.utils.distributed import run_on_main

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

    train_data, valid_data, label_encoder = make_supervised_datasets(
        hparams["train_annotation"],
        hparams["valid_annotation"],
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
    metrics = final_verification(brain, min_key="ErrorRate")
    export_and_report(
        brain,
        hparams,
        metrics,
        export_folder=hparams["export_folder"],
        min_key="ErrorRate",
    )


if __name__ == "__main__":
    run_recipe(main)
