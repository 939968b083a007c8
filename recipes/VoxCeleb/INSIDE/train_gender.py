#!/usr/bin/env python3
"""Gender classification with and without INSIDE's synthetic identities:
an ECAPA-TDNN with a two-class head (the Supervised recipe's Brain with the
gender as the class), trained on the real training speakers (``use_synthetic:
False``) or on real + synthetic speakers (the merged manifests of an INSIDE
run, ``inside_folder``), scored on every utterance of the held-out test
speakers (accuracy, per-gender recall, balanced accuracy).

To run (after recipes/VoxCeleb/INSIDE/train.py has made the synthetic data)::

    python recipes/VoxCeleb/INSIDE/train_gender.py \
        recipes/VoxCeleb/INSIDE/hparams/gender_minivox.yaml --use_synthetic False
    python recipes/VoxCeleb/INSIDE/train_gender.py \
        recipes/VoxCeleb/INSIDE/hparams/gender_minivox.yaml --use_synthetic True

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import os

import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_ssv.brains.base import unwrap
from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.data.pipelines import make_supervised_datasets
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.inside.gender import gender_manifest, gender_scores
from speechbrain_ssv.recipe_utils import (
    check_classifier_size,
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import ManifestError
from speechbrain_ssv.utils.io import write_json


def _sources(hparams):
    if not hparams["use_synthetic"]:
        return {
            "train": hparams["train_annotation"],
            "dev": hparams["valid_annotation"],
        }
    merged = os.path.join(hparams["inside_folder"], "merge")
    out = {k: os.path.join(merged, f"{k}.csv") for k in ("train", "dev")}
    for path in out.values():
        if not os.path.isfile(path):
            raise ManifestError(
                path,
                "does not exist; run recipes/VoxCeleb/INSIDE/train.py first "
                "(use_synthetic: True reads its merged manifests from "
                "inside_folder)",
            )
    return out


def _gender_manifests(hparams):
    folder = os.path.join(hparams["save_folder"], "gender")
    os.makedirs(folder, exist_ok=True)
    sources = dict(_sources(hparams), test=hparams["test_annotation"])
    out = {}
    for k, path in sources.items():
        out[k] = os.path.join(folder, f"{k}.csv")
        gender_manifest(path, out[k])
    return out


def evaluate(brain, test_csv, label_encoder, hparams):
    """Gender of every test utterance (whole utterance, best checkpoint)."""
    brain.checkpointer.recover_if_possible(min_key="ErrorRate")
    with open(test_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    items = [(r["ID"], r["wav"], int(r["start"]), int(r["stop"])) for r in rows]
    for module in brain.modules.values():
        module.eval()
    emb = extract_embeddings(
        brain.inference_encoder(),
        items,
        batch_size=hparams["verify_batch_size"],
        sample_rate=hparams["sample_rate"],
        device=brain.device,
        progress=not hparams["noprogressbar"],
    )
    # Bare module (not DDP / torch.compile wrapped: a compiled classifier
    # would recompile for this evaluation batch).
    classifier = unwrap(brain.modules.classifier)
    with torch.no_grad():
        x = torch.stack([emb[r["ID"]] for r in rows]).to(brain.device)
        scores = classifier(x.unsqueeze(1)).squeeze(1)
    predicted = label_encoder.decode_ndim(scores.argmax(-1).cpu().tolist())
    return gender_scores(predicted, [r["spk_id"] for r in rows])


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
    run_on_main(_gender_manifests, args=[hparams])
    manifests = {
        k: os.path.join(hparams["save_folder"], "gender", f"{k}.csv")
        for k in ("train", "dev", "test")
    }
    brain, label_encoder = fit_classifier(
        hparams, run_opts, hparams_file, manifests["train"], manifests["dev"]
    )
    if if_main_process():
        scores = evaluate(brain, manifests["test"], label_encoder, hparams)
        results = {
            "use_synthetic": bool(hparams["use_synthetic"]),
            "test": scores,
            "training_manifest": os.path.abspath(_sources(hparams)["train"]),
            "optimizer_steps": brain.optimizer_step,
        }
        write_json(
            os.path.join(hparams["output_folder"], "results.json"), results
        )
        print(
            f"gender accuracy {100 * scores['accuracy']:.2f}%  balanced "
            f"{100 * scores['balanced_accuracy']:.2f}%  ({scores['n']} test utterances)"
        )


if __name__ == "__main__":
    run_recipe(main)
