#!/usr/bin/env python3
"""Disentangled speaker and device embeddings by CLUB mutual-information
minimisation (Mun, Han et al., FFSVC 2022) on FFSVC or the embedded FFSVC-
shaped minivox corpus.

Stages (README.md): optional pre-training of the front-end with the
Supervised VoxCeleb recipe, then this script: FFSVC preparation, optional
initialisation of the front-end (``--pretrained_frontend``) and scoring of
its initial embedding (Table I, row 1), fine-tuning of the whole network
with Algorithm 1 (``--table1_row 2..6`` picks the terms of Eq. 21), final
verification on the trial list with the speaker embedding ``x^s``, linear
probes and t-SNE maps, export, ``results.json``.

To run (minivox, CPU)::

    python -m speechbrain_ssv.minivox --out data/minivox_ffsvc \
        --variant ffsvc --seed 2022
    python recipes/FFSVC/CLUB/train.py recipes/FFSVC/CLUB/hparams/club_minivox.yaml

Killing the run and re-running the same command resumes from the last
checkpoint (modules, all four optimizers, the pair sampler, the dataloader
position and the schedule).

Authors
 * speechbrain-ssv developers 2026
"""

import logging
import os

from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes
from speechbrain.utils.distributed import (
    ddp_broadcast,
    if_main_process,
    run_on_main,
)

from speechbrain_ssv.brains.base import weights_fingerprint
from speechbrain_ssv.brains.club import DisentangleBrain
from speechbrain_ssv.brains.club_setup import load_pretrained_frontend
from speechbrain_ssv.data.ffsvc import prepare_ffsvc
from speechbrain_ssv.data.pipelines import make_supervised_datasets
from speechbrain_ssv.data.samplers import SpeakerPairSampler
from speechbrain_ssv.eval.probes import probe_manifest
from speechbrain_ssv.recipe_utils import (
    export_and_report,
    final_verification,
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import HparamsError, ManifestError

logger = logging.getLogger(__name__)


def prepare_ffsvc_data(hparams):
    """Write the FFSVC manifests (once per node) and point
    ``verification_file`` at the normalised trial-list copy.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    """
    kwargs = {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["save_folder"],
        "trial_lists": [hparams["verification_file"]],
        "split_ratio": hparams["split_ratio"],
        "min_duration": hparams["min_duration"],
        "sample_rate": hparams["sample_rate"],
        "seed": hparams["seed"],
        "device_with_distance": hparams["device_with_distance"],
        "skip_prep": hparams["skip_prep"],
        "progress": not hparams.get("noprogressbar", False),
    }
    run_on_main(prepare_ffsvc, kwargs=kwargs)
    paths = prepare_ffsvc(**{**kwargs, "skip_prep": True})
    hparams["verification_file"] = paths["trials"][0]


def dataio_prep(hparams, hparams_file):
    """Training (random crops) and dev (centre crops) datasets with speaker
    and device labels.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    hparams_file : str
        For error messages.

    Returns
    -------
    tuple
        ``(train, dev, speaker_encoder, device_encoder)``.
    """
    train, dev, spk_enc = make_supervised_datasets(
        hparams["train_annotation"],
        hparams["valid_annotation"],
        crop_seconds=hparams["sentence_len"],
        label_encoder_path=os.path.join(
            hparams["save_folder"], "label_encoder.txt"
        ),
        sample_rate=hparams["sample_rate"],
    )
    for ds, path in (
        (train, hparams["train_annotation"]),
        (dev, hparams["valid_annotation"]),
    ):
        first = ds.data[ds.data_ids[0]]
        if "device" not in first:
            raise ManifestError(
                path, "has no 'device' column; prepare it with prepare_ffsvc"
            )
    dev_enc = CategoricalEncoder()

    @takes("device")
    @provides("device_encoded")
    def device_pipeline(device):
        """The device label, encoded."""
        return dev_enc.encode_sequence_torch([device])

    for ds in (train, dev):
        ds.add_dynamic_item(device_pipeline)
        ds.set_output_keys(["id", "sig", "spk_id_encoded", "device_encoded"])
    dev_enc.load_or_create(
        path=os.path.join(hparams["save_folder"], "device_encoder.txt"),
        from_didatasets=[train],
        output_key="device",
    )
    train_devs = {row["device"] for row in train.data.values()}
    unknown = sorted({row["device"] for row in dev.data.values()} - train_devs)
    stale = sorted(d for d in train_devs if d not in dev_enc.lab2ind)
    if unknown or stale or len(dev_enc) != len(train_devs):
        raise ManifestError(
            hparams["valid_annotation"],
            f"devices {unknown} are not in training, or device_encoder.txt "
            f"({len(dev_enc)} labels) belongs to another training set; "
            "delete it to rebuild it",
        )
    dev_enc.expect_len(len(train_devs))
    for key, enc in (("n_speakers", spk_enc), ("n_devices", dev_enc)):
        if hparams[key] < len(enc):
            raise HparamsError(
                f"{hparams_file}: {key}",
                f"is {hparams[key]} but the training manifest has {len(enc)} "
                f"classes; set --{key} {len(enc)}",
            )
        if hparams[key] > len(enc):
            logger.warning(
                "%s is %s but training has %s classes; the extra outputs are "
                "never targets",
                key,
                hparams[key],
                len(enc),
            )
    return train, dev, spk_enc, dev_enc


def check_speaker_encoder(hparams, hparams_file):
    """The exported encoder must wrap the trained modules themselves.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    hparams_file : str
        For error messages.
    """
    enc = hparams["speaker_encoder"]
    if (
        enc.frontend is not hparams["embedding_model"]
        or enc.decoupling is not hparams["decoupling"]
    ):
        raise HparamsError(
            f"{hparams_file}: speaker_encoder",
            "must be SpeakerBranchEncoder(frontend: !ref <embedding_model>, "
            "decoupling: !ref <decoupling>)",
        )


def main(argv):
    """The recipe; ``argv`` is the command line after the script name
    (run it through ``run_recipe``, which ends a torchrun rank safely)."""
    hparams, run_opts, hparams_file = setup_experiment(argv)
    prepare_ffsvc_data(hparams)
    prepare_augmentation_data(
        hparams,
        [hparams["prepare_noise_data"], hparams["prepare_rir_data"]],
    )
    check_speaker_encoder(hparams, hparams_file)
    train_data, valid_data, spk_enc, dev_enc = dataio_prep(
        hparams, hparams_file
    )

    # Two utterances of each of batch_speakers speakers per batch (Eq. 9).
    # Inside a Brain the sampler is single-replica: SpeechBrain wraps it
    # for DDP.
    sampler = SpeakerPairSampler.from_dataset(
        train_data,
        hparams["batch_speakers"],
        seed=hparams["seed"],
        max_pairs_per_speaker=hparams["max_pairs_per_speaker"],
    )
    if abs(len(sampler) - hparams["steps_per_epoch"]) > max(
        1, 0.1 * hparams["steps_per_epoch"]
    ):
        logger.warning(
            "steps_per_epoch is %s but the pair sampler gives %s batches per "
            "epoch; the learning-rate schedule assumes the former (set "
            "--steps_per_epoch %s)",
            hparams["steps_per_epoch"],
            len(sampler),
            len(sampler),
        )
    hparams["checkpointer"].add_recoverable("train_sampler", sampler)

    brain = DisentangleBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    # Without DDP, Brain calls set_epoch only on samplers it built itself.
    brain.train_sampler = sampler

    results = {
        "table1_row": hparams["table1_row"],
        "weights": brain.weights,
        "frontend": hparams["frontend"],
        "pretrained_frontend": None,
        "initial_embedding": None,
    }
    if hparams["pretrained_frontend"]:
        # A resumed run overwrites this with its checkpoint in fit().
        results["pretrained_frontend"] = load_pretrained_frontend(
            brain.modules["embedding_model"], hparams["pretrained_frontend"]
        )
        if hparams["evaluate_initial_embedding"]:
            # Table I, row 1: the pre-trained x before any fine-tuning.
            out_dir = os.path.join(
                hparams["output_folder"], "verification", "initial_embedding"
            )
            results["initial_embedding"] = ddp_broadcast(
                brain.verify_initial_embedding(out_dir)
            )

    brain.fit(
        brain.hparams.epoch_counter,
        train_data,
        valid_data,
        train_loader_kwargs={
            "batch_sampler": sampler,
            "num_workers": hparams["num_workers"],
        },
        valid_loader_kwargs=hparams["valid_dataloader_options"],
    )
    metrics = final_verification(brain, min_key="ErrorRate")

    if if_main_process():
        encoder = [brain.modules[k] for k in brain.encoder_keys]
        tag = (
            f"final-step{brain.optimizer_step}-w{weights_fingerprint(encoder)}"
        )
        with brain.eval_mode():
            probes = probe_manifest(
                brain.inference_encoder("both"),
                hparams["valid_annotation"],
                os.path.join(hparams["output_folder"], "probes"),
                model_tag=tag,
                max_utts=hparams["probe_max_utts"],
                max_seconds=hparams["probe_max_seconds"],
                test_fraction=hparams["probe_test_fraction"],
                seed=hparams["seed"],
                tsne_speakers=hparams["tsne_speakers"],
                batch_size=hparams["verify_batch_size"],
                device=brain.device,
            )
        results["probes"] = probes["probes"]
        for name, res in probes["probes"].items():
            logger.info(
                "probe %s: accuracy %.3f (chance %.3f / majority %.3f)",
                name,
                res["accuracy"],
                res["chance_uniform"],
                res["chance_majority"],
            )

    export_and_report(
        brain,
        hparams,
        metrics,
        export_folder=hparams["export_folder"],
        min_key="ErrorRate",
        encoder_key="speaker_encoder",
        classifier_key="spk_classifier",
        encoder_parts={
            "frontend": "embedding_model",
            "decoupling": "decoupling",
        },
        extra_results=results,
    )


if __name__ == "__main__":
    run_recipe(main)
