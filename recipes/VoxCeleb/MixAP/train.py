#!/usr/bin/env python3
"""Self-supervised speaker embeddings with the angular prototypical loss
(AP) and its instance-mixup regularisations: i-AP (mixing in the MFCC
domain) and l-AP (mixing in the latent space of a pre-trained VAE), on
VoxCeleb or the embedded minivox corpus. Training never reads a speaker
label.

To run (minivox, CPU)::

    python -m speechbrain_ssv.data.minivox --out data/minivox
    python recipes/VoxCeleb/MixAP/train.py recipes/VoxCeleb/MixAP/hparams/ap_minivox.yaml
    python recipes/VoxCeleb/MixAP/train.py recipes/VoxCeleb/MixAP/hparams/i_ap_minivox.yaml --mix_alpha 0.5
    # l-AP: first the VAE, then the embedding network on its latent mixtures
    python recipes/VoxCeleb/MixAP/train_vae.py recipes/VoxCeleb/MixAP/hparams/vae_minivox.yaml
    python recipes/VoxCeleb/MixAP/train.py recipes/VoxCeleb/MixAP/hparams/l_ap_minivox.yaml

Full scale (VoxCeleb2 dev, batch 200)::

    python recipes/VoxCeleb/MixAP/train.py recipes/VoxCeleb/MixAP/hparams/i_ap.yaml --data_folder /data/vox2

``--number_of_epochs 0`` scores the untrained encoder (the baseline every
result should be read against).

Authors
 * speechbrain-ssv developers 2026
"""

import os

from speechbrain_ssv.brains.mixap import MixAPBrain
from speechbrain_ssv.brains.vae import load_exported_vae
from speechbrain_ssv.data.pipelines import make_unlabelled_dataset
from speechbrain_ssv.recipe_utils import (
    export_and_report,
    final_verification,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import HparamsError


def main(argv):
    """The recipe; ``argv`` is the command line after the script name
    (run it through ``run_recipe``, which ends a torchrun rank safely)."""
    hparams, run_opts, _ = setup_experiment(argv)

    # Two independent crops of each utterance: view0 the query, view1 the anchor.
    train_data = make_unlabelled_dataset(
        hparams["train_annotation"],
        crop_seconds=hparams["segment_seconds"],
        n_views=2,
        sample_rate=hparams["sample_rate"],
    )
    if hparams["method"] == "lmix":
        # The VAE trained by train_vae.py, loaded strictly (a resumed run then
        # restores the copy in its checkpoint).
        if not os.path.isfile(hparams["vae_path"]):
            raise HparamsError(
                "vae_path",
                f"{hparams['vae_path']} does not exist: train the VAE first with "
                "recipes/VoxCeleb/MixAP/train_vae.py (or point vae_path at its vae.ckpt)",
            )
        load_exported_vae(hparams["vae"], hparams["vae_path"])

    brain = MixAPBrain(
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
    export_and_report(brain, hparams, metrics, classifier_key=None)


if __name__ == "__main__":
    run_recipe(main)
