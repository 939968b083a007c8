#!/usr/bin/env python3
"""Supervised ECAPA-TDNN speaker embeddings (AAM-softmax) on VoxCeleb or the
embedded minivox corpus: the baseline of every method in speechbrain-ssv.

To run (minivox, CPU)::

    python -m speechbrain_ssv.data.minivox --out data/minivox
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

from speechbrain_ssv.recipe_utils import (
    export_and_report,
    final_verification,
    fit_classifier,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe


def main(argv):
    """The recipe; ``argv`` is the command line after the script name
    (run it through ``run_recipe``, which ends a torchrun rank safely)."""
    hparams, run_opts, hparams_file = setup_experiment(argv)
    brain, _ = fit_classifier(
        hparams,
        run_opts,
        hparams_file,
        hparams["train_annotation"],
        hparams["valid_annotation"],
    )
    metrics = final_verification(brain, min_key="ErrorRate")
    export_and_report(brain, hparams, metrics, min_key="ErrorRate")


if __name__ == "__main__":
    run_recipe(main)
