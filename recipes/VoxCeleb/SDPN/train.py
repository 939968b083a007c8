#!/usr/bin/env python3
"""Self-supervised speaker embeddings with SDPN (self-distillation
prototypes network) or its DINO baseline, on VoxCeleb or the embedded
minivox corpus. Training never reads a speaker label.

To run (minivox, CPU)::

    python -m speechbrain_ssv.data.minivox --out data/minivox
    python recipes/VoxCeleb/SDPN/train.py recipes/VoxCeleb/SDPN/hparams/sdpn_minivox.yaml
    python recipes/VoxCeleb/SDPN/train.py recipes/VoxCeleb/SDPN/hparams/dino_minivox.yaml

Full scale (VoxCeleb2 dev, 4 GPUs as in the paper)::

    torchrun --nproc_per_node=4 recipes/VoxCeleb/SDPN/train.py \
        recipes/VoxCeleb/SDPN/hparams/sdpn.yaml --data_folder /data/vox2

The exported model is the teacher's encoder (as evaluated in the paper).

Authors
 * speechbrain-ssv developers 2026
"""

from speechbrain_ssv.brains.sdpn import SDPNBrain
from speechbrain_ssv.data.pipelines import make_multicrop_dataset
from speechbrain_ssv.recipe_utils import (
    export_and_report,
    final_verification,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe


def main(argv):
    """The recipe; ``argv`` is the command line after the script name
    (run it through ``run_recipe``, which ends a torchrun rank safely)."""
    hparams, run_opts, _ = setup_experiment(argv)

    train_data = make_multicrop_dataset(
        hparams["train_annotation"],
        global_seconds=hparams["global_seconds"],
        local_seconds=hparams["local_seconds"],
        n_global=hparams["n_global"],
        n_local=hparams["n_local"],
        sample_rate=hparams["sample_rate"],
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
        encoder_key="teacher_embedding_model",
        classifier_key=None,
    )


if __name__ == "__main__":
    run_recipe(main)
