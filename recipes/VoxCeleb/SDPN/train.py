#!/usr/bin/env python3
"""Self-supervised speaker embeddings with SDPN (self-distillation
prototypes network) or its DINO baseline, on VoxCeleb or the embedded
minivox corpus. Training never reads a speaker label.

To run (minivox, CPU)::

    python -m speechbrain_ssv.minivox --out data/minivox
    python recipes/VoxCeleb/SDPN/train.py recipes/VoxCeleb/SDPN/hparams/sdpn_minivox.yaml
    python recipes/VoxCeleb/SDPN/train.py recipes/VoxCeleb/SDPN/hparams/dino_minivox.yaml

Full scale (VoxCeleb2 dev, 4 GPUs as in the paper)::

    torchrun --nproc_per_node=4 recipes/VoxCeleb/SDPN/train.py \
        recipes/VoxCeleb/SDPN/hparams/sdpn.yaml --data_folder /data/vox2

The exported model is the teacher's encoder (as evaluated in the paper).

Authors
 * speechbrain-ssv developers 2026
"""

import os

from speechbrain.utils.distributed import run_on_main

from speechbrain_ssv.brains.sdpn import SDPNBrain
from speechbrain_ssv.data.pipelines import make_multicrop_dataset
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.recipe_utils import (
    export_and_report,
    final_verification,
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe


def main(argv):
    """The recipe; ``argv`` is the command line after the script name
    (run it through ``run_recipe``, which ends a torchrun rank safely)."""
    hparams, run_opts, _ = setup_experiment(argv)
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

    train_data = make_multicrop_dataset(
        hparams["train_annotation"],
        global_seconds=hparams["global_seconds"],
        local_seconds=hparams["local_seconds"],
        n_global=hparams["n_global"],
        n_local=hparams["n_local"],
        sample_rate=hparams["sample_rate"],
        disjoint_locals=hparams["disjoint_locals"],
    )

    brain = SDPNBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train_data,
        train_loader_kwargs=hparams["dataloader_options"],
    )
    metrics = final_verification(brain)
    export_and_report(
        brain,
        hparams,
        metrics,
        export_folder=hparams["export_folder"],
        encoder_key="teacher_embedding_model",
        classifier_key=None,
    )


if __name__ == "__main__":
    run_recipe(main)
