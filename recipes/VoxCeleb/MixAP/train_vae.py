#!/usr/bin/env python3
"""Train the convolutional VAE whose latent space l-AP mixes in (paper
Table 1, Eq. 5), on fixed-length MFCC segments of VoxCeleb or the embedded
minivox corpus, and export it for the l-AP recipe. Training never reads a
speaker label.

To run (minivox, CPU)::

    python -m speechbrain_ssv.minivox --out data/minivox
    python recipes/VoxCeleb/MixAP/train_vae.py recipes/VoxCeleb/MixAP/hparams/vae_minivox.yaml
    # Figs. 5 and 6 of the paper: i-mix vs l-mix samples
    python recipes/VoxCeleb/MixAP/plot_mixing.py --vae results/vae_minivox/1986/vae.ckpt \
        --hparams recipes/VoxCeleb/MixAP/hparams/vae_minivox.yaml --out results/vae_minivox/1986/mixing

Full scale (VoxCeleb2 dev, 100 epochs, batch 200)::

    python recipes/VoxCeleb/MixAP/train_vae.py recipes/VoxCeleb/MixAP/hparams/vae.yaml --data_folder /data/vox2

Writes ``<output_folder>/vae.ckpt`` (the ``vae_export`` key): the bare
``ConvVAE`` state_dict, loaded strictly by the l-AP recipe (its ``vae_path``).

Authors
 * speechbrain-ssv developers 2026
"""

import os

import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_ssv.brains.vae import VAEBrain, export_vae
from speechbrain_ssv.data.pipelines import make_unlabelled_dataset
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.recipe_utils import (
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.io import write_json


def check_segment_length(hparams, hparams_file):
    """Refuse a segment length whose MFCC is not exactly ``n_frames`` long
    (a shorter one would fail in the first batch, a longer one would waste
    audio the VAE never sees).

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    hparams_file : str
        For the error message.
    """
    n_samples = int(round(hparams["segment_seconds"] * hparams["sample_rate"]))
    with torch.no_grad():
        frames = hparams["compute_features"](torch.zeros(1, n_samples)).shape[1]
    if frames != hparams["n_frames"]:
        raise HparamsError(
            f"{hparams_file}: segment_seconds",
            f"is {hparams['segment_seconds']} s ({n_samples} samples), which "
            f"gives {frames} feature frames; n_frames is {hparams['n_frames']}"
            ": set segment_seconds to (n_frames - 1) * hop (0.01 s)",
        )


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
    prepare_augmentation_data(hparams)
    check_segment_length(hparams, hparams_file)

    train_data = make_unlabelled_dataset(
        hparams["train_annotation"],
        crop_seconds=hparams["segment_seconds"],
        sample_rate=hparams["sample_rate"],
    )
    # Centre crops of held-out utterances: the same segments every epoch.
    recon_data = make_unlabelled_dataset(
        hparams["recon_annotation"],
        crop_seconds=hparams["segment_seconds"],
        sample_rate=hparams["sample_rate"],
        random_crop=False,
    )

    brain = VAEBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.set_reconstruction_examples(recon_data, hparams["n_reconstructions"])
    brain.fit(
        brain.hparams.epoch_counter,
        train_data,
        train_loader_kwargs=hparams["dataloader_options"],
    )
    if if_main_process():
        path = export_vae(brain.modules.vae, hparams["vae_export"])
        print(f"VAE exported to {path}")
        # How much of each band the VAE reconstructs on held-out segments:
        # l-mix can only mix what the decoder gives back.
        r2 = brain.reconstruction_r2(recon_data)
        write_json(
            os.path.join(hparams["output_folder"], "reconstruction_r2.json"),
            {"r2_per_band": r2, "n_segments": len(recon_data)},
        )
        print(
            "held-out reconstruction R^2 per band: "
            + " ".join(f"{v:.2f}" for v in r2)
        )


if __name__ == "__main__":
    run_recipe(main)
