"""Steps shared by the recipes' ``train.py`` scripts, so that those stay
thin: augmentation-data preparation, sanity checks, the final trial-list
evaluation, export and the results summary.

Authors
 * speechbrain-ssv developers 2026
"""

import glob
import logging
import os
import shutil
import sys

import speechbrain as sb
from speechbrain.utils.distributed import (
    ddp_broadcast,
    if_main_process,
    run_on_main,
)

from speechbrain_ssv.augment import UtteranceAugment
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.eval.report import method_label, plot_title
from speechbrain_ssv.export import export_checkpoint
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.hparams import load_hparams
from speechbrain_ssv.utils.io import atomic_path, write_json

logger = logging.getLogger(__name__)


def setup_experiment(argv):
    """The start every recipe shares: parse the command line, join the DDP
    group (under torchrun), load the hparams with clear errors and create
    the experiment folder. The recipe then prepares its data itself (e.g.
    ``run_on_main(prepare_voxceleb, kwargs=...)`` and
    :func:`prepare_augmentation_data`), with the yaml keys it names.

    Arguments
    ---------
    argv : list
        ``sys.argv[1:]``: the hparams file, then ``--key value`` overrides
        and SpeechBrain run options.

    Returns
    -------
    tuple
        ``(hparams, run_opts, hparams_file)``.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams = load_hparams(hparams_file, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    # SpeechBrain 1.1.2 copies the module that calls
    # create_experiment_directory (this one) into the experiment folder, with
    # no argument to name another: keep the recipe script that called us
    # instead, as a SpeechBrain recipe's folder does.
    _keep_recipe_script(hparams["output_folder"], sys._getframe(1))
    # The data-preparation stages read it (their bars follow --noprogressbar).
    hparams["noprogressbar"] = bool(run_opts.get("noprogressbar", False))
    return hparams, run_opts, hparams_file


def _keep_recipe_script(folder, caller_frame):
    """Copy the caller's script into ``folder`` (atomically) and remove the
    copy of this module that SpeechBrain made there."""
    if not if_main_process():
        return
    script = os.path.realpath(caller_frame.f_code.co_filename)
    if os.path.isfile(script) and script != os.path.realpath(__file__):
        with atomic_path(os.path.join(folder, os.path.basename(script))) as tmp:
            shutil.copyfile(script, tmp)
    ours = os.path.join(folder, os.path.basename(__file__))
    if os.path.basename(script) != os.path.basename(__file__):
        if os.path.isfile(ours):
            os.remove(ours)


def prepare_voxceleb_data(hparams):
    """Prepare the manifests (once per node) and point
    ``hparams["verification_file"]`` at the normalised copy of the trial list
    written into the save folder, so a bare list name (``veri_test2.txt``,
    looked up under ``<data_folder>/meta``) works as well as a path.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters (``data_folder``, ``save_folder``,
        ``verification_file``, ``split_ratio``, ``min_duration``, ``seed``,
        ``skip_prep``).
    """
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
            "progress": not hparams.get("noprogressbar", False),
        },
    )
    hparams["verification_file"] = os.path.join(
        hparams["save_folder"],
        os.path.basename(str(hparams["verification_file"])),
    )


def prepare_augmentation_data(hparams, preparations=()):
    """Run the noise/RIR preparation functions the recipe passes (the yaml's
    ``prepare_noise_data`` / ``prepare_rir_data``, e.g. SpeechBrain's
    ``prepare_dataset_from_URL``; ``None`` entries are skipped), once per
    node, check that the CSVs the augmenters read exist and load the
    augmenters' banks.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    preparations : sequence
        Callables taking no argument, or ``None``.

    Example
    -------
    >>> prepared = []
    >>> prepare_augmentation_data({}, [None, lambda: prepared.append("rir")])
    >>> prepared
    ['rir']
    """
    for prepare in preparations:
        if prepare is not None:
            run_on_main(prepare)
    for key in ("noise_annotation", "rir_annotation"):
        path = hparams.get(key)
        if path and not os.path.isfile(path):
            raise HparamsError(
                key,
                f"augmentation CSV {path} does not exist (generate the corpus "
                "with python -m speechbrain_ssv.minivox, or prepare "
                "MUSAN/RIRS_NOISES and point this key at their CSV)",
            )
    load_augmentation_banks(hparams)


def load_augmentation_banks(hparams):
    """Decode every :class:`~speechbrain_ssv.augment.UtteranceAugment`'s
    noise/RIR banks named in the hparams now, before training: a missing,
    empty or wrongly sampled noise/RIR file fails here with its path, and no
    training step reads a file. The main process goes first, so a bank with
    a ``cache_file`` is written once and memory-mapped by the other ranks.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    """
    augmenters = [
        v for v in hparams.values() if isinstance(v, UtteranceAugment)
    ]
    for augment in augmenters:
        run_on_main(augment.load)
        augment.load()


def check_classifier_size(hparams, label_encoder, hparams_file):
    """Refuse a classifier smaller than the number of training speakers
    (SpeechBrain would fail later inside the loss with an index error).

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters with ``out_n_neurons``.
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Encoder built on the training manifest.
    hparams_file : str
        For the error message.
    """
    n_spk = len(label_encoder)
    if hparams["out_n_neurons"] < n_spk:
        raise HparamsError(
            f"{hparams_file}: out_n_neurons",
            f"is {hparams['out_n_neurons']} but the training manifest has "
            f"{n_spk} speakers; set --out_n_neurons {n_spk}",
        )


def final_verification(brain, min_key=None, max_key=None):
    """Load the best checkpoint and score the full trial list.

    Arguments
    ---------
    brain : speechbrain_ssv.brains.base.VerificationBrain
        The trained brain.
    min_key, max_key : str | None
        Checkpoint selection (as ``Checkpointer.recover_if_possible``).

    Returns
    -------
    dict | None
        Metrics on the main process.
    """
    kwargs = {
        k: v for k, v in (("min_key", min_key), ("max_key", max_key)) if v
    }
    brain.checkpointer.recover_if_possible(**kwargs)
    out_dir = os.path.join(brain.hparams.output_folder, "verification", "final")
    # The recovered checkpoint's epoch, for a title a reader understands.
    metrics = brain.verify(
        out_dir,
        model_tag=f"final-step{brain.optimizer_step}",
        title=plot_title(
            method_label(brain), brain.hparams.epoch_counter.current
        ),
    )
    # Only the main process scored the trials, but log_stats is a
    # main-process-only function that broadcasts: every rank must call it.
    metrics = ddp_broadcast(metrics)
    if metrics is not None:
        brain.hparams.train_logger.log_stats(
            stats_meta={
                "final verification": os.path.basename(
                    str(brain.hparams.verification_file)
                )
            },
            test_stats={
                "EER": 100 * metrics["eer"],
                "minDCF@0.01": metrics["min_dcf@0.01"],
                "minDCF@0.05": metrics["min_dcf@0.05"],
            },
        )
    return metrics


def export_and_report(
    brain,
    hparams,
    metrics,
    export_folder=None,
    min_key=None,
    max_key=None,
    encoder_key="embedding_model",
    classifier_key="classifier",
    encoder_parts=None,
    extra_results=None,
):
    """Write ``results.json`` and export the selected checkpoint to
    ``export_folder`` (skipped when that is empty). When nothing was trained
    and no checkpoint exists (``--number_of_epochs 0``), the initial state
    is saved and exported, and the model card calls it untrained.

    Arguments
    ---------
    brain : speechbrain.Brain
        The trained brain.
    hparams : dict
        Loaded hyperparameters (``save_folder``, ``output_folder``).
    metrics : dict | None
        Output of :func:`final_verification`.
    export_folder : str | None
        Where to export (the yaml's ``export_folder``); empty or ``None``:
        no export.
    min_key, max_key : str | None
        Checkpoint selection for the export.
    encoder_key, classifier_key : str
        Keys of the modules to export.
    encoder_parts : dict | None
        Passed to :func:`speechbrain_ssv.export.export_checkpoint` (an
        encoder joined from several recoverables).
    extra_results : dict | None
        More entries for ``results.json`` (e.g. probe accuracies).
    """
    saved = glob.glob(os.path.join(hparams["save_folder"], "CKPT+*"))
    untrained = bool(export_folder) and not saved and brain.optimizer_step == 0
    if untrained:
        # An untrained baseline (--number_of_epochs 0) has no checkpoint:
        # save the initial state so that it exports like any model (and
        # can be scored on other trials, e.g. real speech). Every rank
        # calls it: the save synchronises them.
        brain.checkpointer.save_checkpoint(meta={"untrained": True})
    if not if_main_process():
        return
    results = {"metrics": metrics, "optimizer_steps": brain.optimizer_step}
    results.update(extra_results or {})
    method = method_label(brain)
    if untrained:
        method = f"{method}, untrained (0 optimizer steps)"
        min_key = max_key = None
        results["untrained"] = True
    if export_folder:
        export_checkpoint(
            hparams["save_folder"],
            export_folder,
            hparams_file=os.path.join(
                hparams["output_folder"], "hyperparams.yaml"
            ),
            encoder_key=encoder_key,
            classifier_key=classifier_key,
            min_key=min_key,
            max_key=max_key,
            encoder_parts=encoder_parts,
            metrics=metrics,
            method=method,
        )
        results["export_folder"] = os.path.abspath(export_folder)
    write_json(os.path.join(hparams["output_folder"], "results.json"), results)
    if metrics is not None:
        print(
            f"EER {100 * metrics['eer']:.2f}%  minDCF@0.01 {metrics['min_dcf@0.01']:.4f}  "
            f"minDCF@0.05 {metrics['min_dcf@0.05']:.4f}  ({metrics['n_trials']} trials)"
        )
