#!/usr/bin/env python3
"""Self-supervised speaker embeddings from clustering-based pseudo-labels
(Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition"), on VoxCeleb or the embedded minivox
corpus. No stage reads a speaker label, except the clustering metrics.

Stages of each round (``--stage N`` runs stages 1..N, ``--rounds R``
repeats them, re-embedding with the previous round's encoder):

1. representations of the training utterances: i-vectors (round 1, by
   default) or embeddings of an exported encoder;
2. clustering (the multi-objective model, or a baseline) -> pseudo-labelled
   copies of the training manifests and a clustering report;
3. ECAPA-TDNN trained on the pseudo-labels with AAM-softmax, OC-softmax or
   AdaFace, evaluated on the trial list and exported.

Every stage is skipped when its outputs exist for the same options, and
resumes when it was interrupted, so re-running the same command continues
a killed run.

To run (minivox, CPU)::

    python -m speechbrain_ssv.minivox --out data/minivox
    python recipes/VoxCeleb/PseudoLabel/train.py \
        recipes/VoxCeleb/PseudoLabel/hparams/pseudolabel_minivox.yaml

Full scale (VoxCeleb2 dev; stages 1-2 in one process, then stage 3 on GPUs)::

    python recipes/VoxCeleb/PseudoLabel/train.py \
        recipes/VoxCeleb/PseudoLabel/hparams/pseudolabel.yaml \
        --data_folder /data/vox2 --stage 2 --device cuda:0
    torchrun --nproc_per_node=4 recipes/VoxCeleb/PseudoLabel/train.py \
        recipes/VoxCeleb/PseudoLabel/hparams/pseudolabel.yaml --data_folder /data/vox2

Authors
 * speechbrain-ssv developers 2026
"""

import dataclasses
import json
import os
import sys

import numpy as np
import speechbrain as sb
from speechbrain.utils.distributed import (
    ddp_barrier,
    if_main_process,
    infer_device,
    run_on_main,
)

# The recipe's folder is on sys.path when train.py runs as a script; it is
# added for the bench and tests, which load train.py by its path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clustering_stage import (  # noqa: E402
    OURS,
    cluster_representations,
    method_name,
)

from speechbrain_ssv.brains.pseudolabel import PseudoLabelBrain
from speechbrain_ssv.clustering.metrics import clustering_report, write_report
from speechbrain_ssv.clustering.pseudolabels import (
    ORACLE,
    scale_features,
    true_labels,
    write_pseudolabel_csv,
)
from speechbrain_ssv.clustering.representations import (
    extract_representations,
    load_representations,
    manifest_options,
)
from speechbrain_ssv.data.pipelines import make_supervised_datasets
from speechbrain_ssv.data.voxceleb import prepare_voxceleb
from speechbrain_ssv.export import export_checkpoint
from speechbrain_ssv.recipe_utils import (
    check_classifier_size,
    final_verification,
    prepare_augmentation_data,
    setup_experiment,
)
from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer
from speechbrain_ssv.utils.distributed import run_recipe
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.hparams import load_hparams
from speechbrain_ssv.utils.io import atomic_path, file_digest, write_json
from speechbrain_ssv.utils.pretrained import load_strict
from speechbrain_ssv.utils.stages import (
    begin_stage,
    finish_stage,
    read_stage,
    seed_stage,
    stage_is_done,
)


def representations(hparams, rnd, prev_export, device):
    """Stage 1 of round ``rnd`` (main process computes, all load)."""
    kind = hparams["representation"] if rnd == 1 else "encoder"
    source = hparams["encoder_source"] if rnd == 1 else prev_export
    folder = (
        hparams["representations_folder"]
        if rnd == 1
        else os.path.join(round_dir(hparams, rnd), "representations")
    )
    kwargs = {
        "manifests": [hparams["train_annotation"], hparams["valid_annotation"]],
        "out_dir": folder,
        "sample_rate": hparams["sample_rate"],
        "ivector_options": hparams["ivector_options"],
        "encoder_source": source,
        "batch_size": hparams["representation_batch_size"],
        "augment": hparams["representation_augment"],
        "device": device,
        "num_workers": hparams["representation_workers"],
        "seed": hparams["seed"],
    }
    # The main process computes; every process then loads the (memory-
    # mapped) result, rather than receiving it through a broadcast.
    run_on_main(_no_result, args=[extract_representations, kind], kwargs=kwargs)
    return load_representations(folder)


def _no_result(func, *args, **kwargs):
    func(*args, **kwargs)


def pseudo_labels(hparams, rnd, reps, device, precision):
    """Stage 2 of round ``rnd`` (``precision``: the run option, used by
    the multi-objective model's forwards)."""
    method = hparams["clustering_method"]
    name, _ = method_name(method)
    kwargs = {
        "representations": reps,
        "manifests": {
            "train": hparams["train_annotation"],
            "dev": hparams["valid_annotation"],
        },
        "out_dir": os.path.join(round_dir(hparams, rnd), f"clustering_{name}"),
        "n_clusters": hparams["n_clusters"],
        "report_ami": hparams["report_ami"],
        "l2_normalize": hparams["l2_normalize"],
        "standardize": hparams["standardize"],
        "center": hparams["center"],
        "seed": hparams["seed"],
        "model_factory": hparams["clustering_model"],
        "clustering_hparams": hparams["clustering_hparams"],
        "opt_class": hparams["clustering_opt_class"],
        "device": device,
    }
    if name == OURS:
        kwargs["precision"] = precision
    kwargs["train_logger"] = hparams["train_logger"]
    out = run_on_main(pseudo_label_stage, args=[method], kwargs=kwargs)
    if out["report"] is not None:
        report = out["report"]
        hparams["train_logger"].log_stats(
            stats_meta={"round": rnd, "clustering": name},
            train_stats={
                k: report[k]
                for k in ("acc", "nmi", "ari", "purity", "clusters_used")
            },
        )
    return out


def pseudo_label_stage(
    method,
    representations,
    manifests,
    out_dir,
    n_clusters,
    *,
    metrics=True,
    report_ami=True,
    report_unsupervised=True,
    **cluster_kwargs,
):
    """Stage 2: cluster the stage-1 representations and write one
    pseudo-labelled manifest per input manifest (``pseudo_<name>.csv``),
    with a clustering report (``report.json`` / ``report.md``) against the
    manifests' true speakers when ``metrics``. Skipped when done with the
    same options and inputs.

    The first manifest defines the classes: rows of the others whose
    cluster has no row in it are dropped (see
    :func:`write_pseudolabel_csv`).

    Arguments
    ---------
    method : object
        The yaml's ``clustering_method`` (:func:`method_name`).
    representations : dict
        Output of :func:`extract_representations`.
    manifests : dict
        ``name -> csv path`` (e.g. ``{"train": ..., "dev": ...}``), whose
        rows are all among the representations' ids.
    out_dir : str
        Stage folder.
    n_clusters : int
        ``C``.
    metrics : bool
        Compute the clustering metrics against the manifests' ``spk_id``
        (metrics only: the labels never reach the clustering).
    report_ami : bool
        Include AMI (minutes at 1M points x 10k clusters).
    report_unsupervised : bool
        Include silhouette (subsampled), Calinski-Harabasz and
        Davies-Bouldin on the clustered features.
    **cluster_kwargs
        Passed to :func:`cluster_representations` (``l2_normalize``,
        ``standardize``, ``center`` and ``seed`` are required).

    Returns
    -------
    dict
        ``csv`` (name -> pseudo-labelled manifest), ``report`` (or
        ``None``), ``n_labels``, ``digest``, ``folder``.
    """
    if not manifests:
        raise ValueError("pseudo_label_stage needs at least one manifest")
    names = list(manifests)
    name, options = method_name(method)
    json_kwargs = {
        k: v
        for k, v in cluster_kwargs.items()
        # Where and how fast it runs, not what it clusters (precision:
        # bf16 autocast rounds the MLP's matmuls; the losses stay fp32).
        if k not in ("device", "precision", "progress", "train_logger")
    }
    if json_kwargs.get("clustering_hparams"):
        # Where the stats are logged, not what is clustered (and a logger
        # object has no str that stays the same from one run to the next).
        json_kwargs["clustering_hparams"] = {
            k: v
            for k, v in json_kwargs["clustering_hparams"].items()
            if k != "train_logger"
        }
    # A baseline's options under the key of the records written when they
    # were a yaml key of their own: unchanged runs keep skipping.
    json_kwargs["baseline_options"] = options
    opts = {
        "method": name,
        "n_clusters": int(n_clusters),
        "representations": representations["digest"],
        "manifests": {
            k: manifest_options([v])[0] for k, v in manifests.items()
        },
        "metrics": bool(metrics),
        "cluster": json_kwargs,
    }
    out_csv = {k: os.path.join(out_dir, f"pseudo_{k}.csv") for k in names}
    if not begin_stage(out_dir, opts, f"clustering ({name})"):
        seed_stage(cluster_kwargs["seed"], f"clustering/{name}")
        ids = representations["ids"]
        true = (
            true_labels([manifests[k] for k in names], ids)
            if metrics or name == ORACLE
            else None
        )
        result = cluster_representations(
            method,
            representations["features"],
            n_clusters,
            work_dir=out_dir,
            true=true,
            aug_features=representations.get("aug_features"),
            **cluster_kwargs,
        )
        labels = result["labels"]
        with atomic_path(os.path.join(out_dir, "labels.npy")) as tmp:
            np.save(tmp, labels)
        report = None
        if true is not None:
            feats = None
            if report_unsupervised:
                feats = scale_features(
                    representations["features"],
                    cluster_kwargs["l2_normalize"],
                    cluster_kwargs["standardize"],
                    cluster_kwargs["center"],
                ).numpy()
            report = clustering_report(
                true, labels, features=feats, ami=report_ami
            )
            write_report(
                {name: report},
                os.path.join(out_dir, "report.json"),
                os.path.join(out_dir, "report.md"),
            )
        counts = {}
        known = None
        for k in names:
            out = write_pseudolabel_csv(
                manifests[k], ids, labels, out_csv[k], known_labels=known
            )
            counts[k] = {"rows": out["rows"], "dropped": out["dropped"]}
            if known is None:
                known = out["labels"]
        finish_stage(
            out_dir,
            opts,
            ["labels.npy"] + [os.path.basename(p) for p in out_csv.values()],
            info={
                "report": report,
                "n_labels": len(known),
                "rows": counts,
            },
        )
    rec = read_stage(out_dir)
    return {
        "csv": out_csv,
        "report": rec["info"].get("report"),
        "n_labels": rec["info"]["n_labels"],
        "rows": rec["info"]["rows"],
        "digest": rec["digest"],
        "folder": out_dir,
    }


def round_dir(hparams, rnd):
    """Folder of round ``rnd``'s stages."""
    return os.path.join(hparams["output_folder"], "pseudolabel", f"round{rnd}")


def round_hparams(hparams_file, overrides, first, rnd):
    """Fresh modules for the stage-3 training of round ``rnd`` (the yaml is
    loaded again from round 2 on, so no state leaks between rounds)."""
    if rnd == 1:
        return first
    hp = load_hparams(hparams_file, overrides)
    hp["verification_file"] = first["verification_file"]
    return hp


def init_from_previous_round(model, state_file, rnd):
    """Start round ``rnd``'s encoder from the previous round's export
    (``finetune_rounds``), strictly: all of it, or one error naming the file
    (never a half-random encoder).

    Arguments
    ---------
    model : torch.nn.Module
        The bare ``embedding_model`` of round ``rnd``.
    state_file : str
        ``embedding_model.ckpt`` of round ``rnd - 1``'s export.
    rnd : int
        The round being trained (>= 2).

    Returns
    -------
    str
        ``state_file``.
    """
    return load_strict(
        model,
        state_file,
        hint=f"round {rnd - 1}'s export must hold this embedding_model; "
        f"set finetune_rounds: False to train round {rnd} from scratch",
    )


def train_stage(hparams, run_opts, hparams_file, hp, rnd, pl, prev_export):
    """Stage 3 of round ``rnd``: train, verify, export. Returns the stage
    record's info (metrics, export folder)."""
    folder = os.path.join(round_dir(hparams, rnd), "train")
    init = None
    if rnd > 1 and hparams["finetune_rounds"]:
        init = os.path.join(prev_export, "embedding_model.ckpt")
    opts = {
        "pseudo_labels": pl["digest"],
        "margin_loss": hp["margin_loss"],
        "number_of_epochs": hp["number_of_epochs"],
        "batch_size": hp["batch_size"],
        "lr": hp["lr"],
        "sentence_len": hp["sentence_len"],
        "seed": hp["seed"],
        "encoder": repr(hp["embedding_model"]),
        "out_n_neurons": hp["out_n_neurons"],
        "init_from": None if init is None else file_digest(init),
    }
    run_on_main(begin_stage, args=[folder, opts, f"round {rnd} training"])
    if stage_is_done(folder, opts):
        return read_stage(folder)["info"]
    # Draws of this stage do not depend on whether stages 1-2 ran in this
    # process (a resumed run skips them).
    seed_stage(hp["seed"], f"round{rnd}/train")

    rows = pl["rows"]
    dev_csv = pl["csv"]["dev"] if rows["dev"]["rows"] else pl["csv"]["train"]
    train_data, valid_data, label_encoder = make_supervised_datasets(
        pl["csv"]["train"],
        dev_csv,
        crop_seconds=hp["sentence_len"],
        label_encoder_path=os.path.join(folder, "label_encoder.txt"),
        sample_rate=hp["sample_rate"],
    )
    if not rows["dev"]["rows"]:
        valid_data = None  # every held-out row fell into an unseen cluster
    check_classifier_size(hp, label_encoder, hparams_file)
    checkpointer = AtomicCheckpointer(
        os.path.join(folder, "save"),
        recoverables=dict(hp["checkpointer"].recoverables),
    )
    if init is not None and checkpointer.find_checkpoint() is None:
        # A resumed run restores its own checkpoint in fit() instead.
        init_from_previous_round(hp["embedding_model"], init, rnd)
    brain = PseudoLabelBrain(
        modules=hp["modules"],
        opt_class=hp["opt_class"],
        hparams=hp,
        run_opts=run_opts,
        checkpointer=checkpointer,
    )
    # Verification outputs of this round go to its own folder.
    brain.hparams.output_folder = folder
    hp["train_logger"].log_stats(
        stats_meta={"round": rnd, "stage": "training on pseudo-labels"},
        train_stats={"pseudo_speakers": len(label_encoder)},
    )
    brain.fit(
        hp["epoch_counter"],
        train_data,
        valid_data,
        train_loader_kwargs=hp["dataloader_options"],
        valid_loader_kwargs=hp["dataloader_options"],
    )
    # The last checkpoint: selecting on the pseudo-label error would
    # select on agreement with noisy labels.
    metrics = final_verification(brain)
    export = os.path.join(folder, "pretrained")
    info = {"metrics": metrics, "export_folder": export}
    if if_main_process():
        export_checkpoint(
            os.path.join(folder, "save"),
            export,
            hparams_file=os.path.join(
                hparams["output_folder"], "hyperparams.yaml"
            ),
            classifier_key=None,
            extra_info={"metrics": metrics, "round": rnd},
        )
        finish_stage(folder, opts, ["pretrained/embedding_model.ckpt"], info)
    ddp_barrier()
    return info


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
    _, _, overrides = sb.parse_arguments(argv)
    device = run_opts.get("device") or infer_device()
    # SpeechBrain 1.1.2 leaves --optimizer_step_limit (Optional[int]) a
    # string, and Brain then fails comparing it with the step count.
    limit = run_opts.get("optimizer_step_limit")
    if isinstance(limit, str):
        run_opts = dataclasses.replace(
            run_opts, optimizer_step_limit=int(limit)
        )
    for key in ("stage", "rounds"):
        if not isinstance(hparams[key], int) or hparams[key] < 1:
            raise HparamsError(
                key, f"is {hparams[key]!r}; expected an integer >= 1"
            )
    method_name(hparams["clustering_method"])  # fails before stage 1's hours
    summary, prev_export = {"rounds": []}, None
    for rnd in range(1, hparams["rounds"] + 1):
        entry = {"round": rnd}
        summary["rounds"].append(entry)
        reps = representations(hparams, rnd, prev_export, device)
        entry["representations"] = reps["folder"]
        if hparams["stage"] < 2:
            break
        pl = pseudo_labels(
            hparams, rnd, reps, device, run_opts.get("precision") or "fp32"
        )
        entry["clustering"] = pl["report"]
        entry["pseudo_labels"] = pl["csv"]
        entry["n_pseudo_speakers"] = pl["n_labels"]
        if hparams["stage"] < 3:
            break  # later rounds need this round's encoder
        hp = round_hparams(hparams_file, overrides, hparams, rnd)
        info = train_stage(
            hparams, run_opts, hparams_file, hp, rnd, pl, prev_export
        )
        entry.update(info)
        prev_export = info["export_folder"]
        if if_main_process() and info["metrics"] is not None:
            m = info["metrics"]
            print(
                f"round {rnd}: EER {100 * m['eer']:.2f}%  "
                f"minDCF@0.01 {m['min_dcf@0.01']:.4f}  ({m['n_trials']} trials)"
            )

    last = summary["rounds"][-1]
    summary["metrics"] = last.get("metrics")
    summary["clustering"] = last.get("clustering")
    if if_main_process():
        if prev_export is not None and hparams["export_folder"]:
            final_export(hparams, prev_export, summary)
            summary["export_folder"] = os.path.abspath(hparams["export_folder"])
        write_json(
            os.path.join(hparams["output_folder"], "results.json"), summary
        )


def final_export(hparams, round_export, summary):
    """Copy the last round's export to ``export_folder`` (skipped when it
    already holds the same weights)."""
    out = hparams["export_folder"]
    marker = "export_info.json"

    def source(folder):
        """The checkpoint an export came from, or ``None``."""
        try:
            with open(os.path.join(folder, marker), encoding="utf-8") as f:
                return json.load(f).get("checkpoint")
        except (OSError, ValueError):
            return None

    # Both exports name the checkpoint they came from (a unique folder).
    if source(out) is not None and source(out) == source(round_export):
        return
    export_checkpoint(
        os.path.join(os.path.dirname(round_export), "save"),
        out,
        hparams_file=os.path.join(hparams["output_folder"], "hyperparams.yaml"),
        classifier_key=None,
        extra_info={
            "metrics": summary["metrics"],
            "round": len(summary["rounds"]),
        },
    )


if __name__ == "__main__":
    run_recipe(main)
