#!/usr/bin/env python3
"""Self-supervised speaker embeddings with the angular prototypical loss
(AP) and its instance-mixup regularisations: i-AP (mixing in the MFCC
domain) and l-AP (mixing in the latent space of a pre-trained VAE), on
VoxCeleb or the embedded minivox corpus. Training never reads a speaker
label.

To run (minivox, CPU)::

    python -m speechbrain_ssv.minivox --out data/minivox
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

from speechbrain.utils.distributed import run_on_main

from speechbrain_ssv.brains.mixap import MixAPBrain
from speechbrain_ssv.brains.vae import load_exported_vae
from speechbrain_ssv.data.pipelines import make_unlabelled_dataset
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.recipe_utils import (
    export_and_report,
    final_verification,
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import HparamsError


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

    # Two independent crops of each utterance: view0 the query, view1 the anchor.
    train_data = make_unlabelled_dataset(
        hparams["train_annotation"],
        crop_seconds=hparams["segment_seconds"],
        n_views=2,
        sample_rate=hparams["sample_rate"],
        disjoint_views=hparams["disjoint_views"],
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
    export_and_report(
        brain,
        hparams,
        metrics,
        export_folder=hparams["export_folder"],
        classifier_key=None,
    )


if __name__ == "__main__":
    run_recipe(main)
