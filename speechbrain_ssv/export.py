"""Export a recipe checkpoint as a folder that SpeechBrain's
``EncoderClassifier.from_hparams(source=folder)`` and
``SpeakerRecognition.verify_files`` load offline.

The folder holds ``hyperparams.yaml`` + ``embedding_model.ckpt`` (and
``classifier.ckpt`` / ``label_encoder.ckpt`` when the recipe trained a
classifier, ``mean_var_norm.ckpt`` when the feature normaliser has
statistics). The Pretrainer has no ``paths:`` block, so the folder is
relocatable, and the yaml names exactly the classes the training yaml used
(stock SpeechBrain ones for ECAPA), so loading needs no speechbrain-ssv.

SpeechBrain loads state dicts non-strictly: a mis-keyed file would leave the
model random with only a warning. The export therefore saves the bare
encoder's state dict and re-loads the folder to check every tensor is
bit-identical.

``export_info.json`` records the sha256 and size of every file the export
wrote, so a later bit flip or partial copy is caught by ``verify`` rather
than by a model that quietly scores worse.

``README.md`` is the model card: method, training data, recipe, the
evaluation table and the decision thresholds calibrated on the evaluation
trials (``export_info.json`` holds them machine-readably); without
evaluation metrics it says the thresholds are not calibrated.

Usage::

    python -m speechbrain_ssv.export results/supervised_minivox/1986/save \
        --out pretrained/ecapa_minivox \
        --metrics results/supervised_minivox/1986/verification/final/metrics.json
    python -m speechbrain_ssv.export verify pretrained/ecapa_minivox

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import io
import json
import os
import re
import shutil
import socket
import sys
from types import SimpleNamespace

from hyperpyyaml import resolve_references
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tag import Tag

from speechbrain_ssv.eval.report import method_label, model_card, recipe_name
from speechbrain_ssv.export_checks import (  # noqa: F401 (re-exported)
    EXPORT_MARKER,
    PROBE_SAMPLE_RATE,
    PROBE_SECONDS,
    ExportError,
    _check_finite,
    _file_records,
    check_export,
    verify_checksums,
    verify_export,
)
from speechbrain_ssv.utils.checkpoints import find_checkpoint
from speechbrain_ssv.utils.errors import SSVInputError, report_user_error
from speechbrain_ssv.utils.io import make_temp_dir, save_torch, write_text
from speechbrain_ssv.utils.pretrained import read_state_dict

FEATURE_KEYS = ("compute_features", "mean_var_norm")
MODEL_CARD = "README.md"
# The metrics keys a model card needs (what evaluate_verification and
# ``python -m speechbrain_ssv.eval score`` write to metrics.json).
CARD_METRICS = (
    "eer",
    "eer_threshold",
    "min_dcf@0.01",
    "min_dcf@0.01_threshold",
    "min_dcf@0.05",
    "min_dcf@0.05_threshold",
    "n_trials",
)


def _temp_prefix(out_dir, kind):
    """Name prefix of the temporary folders an export to ``out_dir`` makes
    next to it: ``.<kind>.<name>.<pid>@<host>.`` (``kind`` is ``export`` or
    ``export-old``)."""
    # The name is capped so the prefix plus mkdtemp's suffix stay well
    # under the 255-byte file-name limit.
    name = os.path.basename(out_dir)[:100]
    return f".{kind}.{name}.{os.getpid()}@{socket.gethostname()}."


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Another user's live process.
        return True
    return True


def _remove_orphans(out_dir, kind):
    """Remove the temporary folders that a killed export to ``out_dir``
    left next to it.

    Only folders named by :func:`_temp_prefix` for this same destination,
    by a process of this host that no longer runs, are removed: such a
    folder is never renamed into place by anyone (its export is dead), so
    nothing still uses it. A live export to the same destination, one from
    another host (whose process this host cannot see) and any other
    dot-folder are left alone.

    Arguments
    ---------
    out_dir : str
        The export destination (absolute).
    kind : str
        ``"export"`` (a folder being written) or ``"export-old"`` (the
        previous export, moved aside for the rename; killed between the
        two renames, it holds the only copy of that export).

    Returns
    -------
    list
        The folders removed.
    """
    parent = os.path.dirname(out_dir)
    name = re.escape(os.path.basename(out_dir)[:100])
    pattern = re.compile(
        rf"\.{re.escape(kind)}\.{name}\.(\d+)@(.+)\.[A-Za-z0-9_]+"
    )
    host = socket.gethostname()
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry)
        if m is None or m.group(2) != host:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        path = os.path.join(parent, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _training_hparams(ckpt_dir, hparams_file=None):
    if hparams_file is None:
        hparams_file = os.path.join(
            os.path.dirname(os.path.dirname(ckpt_dir)), "hyperparams.yaml"
        )
    if not os.path.isfile(hparams_file):
        raise SSVInputError(
            hparams_file,
            "training hyperparams.yaml not found (it is written to the recipe's "
            "output folder); pass it with --hparams",
        )
    with open(hparams_file, encoding="utf-8") as fin:
        resolved = resolve_references(fin, {}).getvalue()
    return hparams_file, YAML().load(resolved)


def _copy_node(node, **updates):
    """Copy a tagged yaml mapping (dropping comments, also those of nested
    nodes, which the training yaml's section comments attach to), updating
    some keys."""
    new = CommentedMap()
    for k, v in node.items():
        new[k] = _strip_comments(updates.pop(k, v))
    new.update(updates)
    if getattr(node, "tag", None) is not None and node.tag.value:
        new.yaml_set_ctag(node.tag)
    return new


def _strip_comments(node):
    """A comment-free copy of a yaml value (tags and flow style kept)."""
    if isinstance(node, CommentedMap):
        return _copy_node(node)
    if isinstance(node, CommentedSeq):
        new = CommentedSeq(_strip_comments(v) for v in node)
        if getattr(node, "tag", None) is not None and node.tag.value:
            new.yaml_set_ctag(node.tag)
        if node.fa.flow_style():
            new.fa.set_flow_style()
        return new
    return node


def _load_state(path, prefix=""):
    # The one reader of state_dict files (weights_only, one error naming
    # the file); the selection below is an export's own: the prefix is
    # required here, where load_strict takes the whole file without it.
    state = read_state_dict(path)
    # DDP wraps modules; the bare module must load without the prefix. It
    # is stripped first so ``prefix`` names the bare module's submodule.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if prefix:
        state = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix)
        }
        if not state:
            raise SSVInputError(
                path, f"has no parameter whose name starts with {prefix!r}"
            )
    return state


def export_checkpoint(
    checkpoint,
    out_dir,
    hparams_file=None,
    encoder_key="embedding_model",
    state_prefix="",
    classifier_key="classifier",
    label_encoder_file=None,
    min_key=None,
    max_key=None,
    verify=True,
    extra_info=None,
    encoder_parts=None,
    metrics=None,
    method=None,
):
    """Write an ``EncoderClassifier`` folder from a recipe checkpoint, with
    a model card (``README.md``).

    Arguments
    ---------
    checkpoint : str
        ``CKPT+...`` folder or the recipe's ``save`` folder.
    out_dir : str
        Destination folder (replaced atomically if it is an earlier export;
        refused if it holds anything else).
    hparams_file : str | None
        Training ``hyperparams.yaml`` (default: the one in the recipe's
        output folder, the parent of ``save``).
    encoder_key : str
        Training-yaml key (and checkpoint recoverable name) of the encoder.
    state_prefix : str
        Keep only parameters under this prefix (e.g. ``"backbone."`` when the
        encoder was saved inside a wrapper).
    classifier_key : str | None
        Key of the speaker classifier, exported when present.
    label_encoder_file : str | None
        The recipe's ``label_encoder.txt`` (default: in the save folder).
    min_key, max_key : str | None
        Checkpoint selection when ``checkpoint`` is a save folder.
    verify : bool
        Re-load the folder with ``EncoderClassifier`` and check the weights
        are bit-identical.
    extra_info : dict | None
        Added to ``export_info.json``.
    encoder_parts : dict | None
        For an encoder that the recipe trains as several modules and the
        yaml joins in a wrapper (the FFSVC recipe's ``speaker_encoder`` =
        front-end + decoupling block): wrapper attribute -> recoverable name,
        e.g. ``{"frontend": "embedding_model", "decoupling": "decoupling"}``.
        The exported state dict is ``<attribute>.<param>`` over the parts'
        checkpoint files; ``encoder_key`` then needs no checkpoint file of
        its own.
    metrics : dict | None
        The evaluation of this checkpoint on held-out trials (as
        :func:`~speechbrain_ssv.eval.verification.evaluate_verification`
        returns it; default ``extra_info["metrics"]``): the card and
        ``export_info.json`` report it and its EER/minDCF thresholds.
        ``None``: the card says the thresholds are not calibrated.
    method : str | None
        The training method's display name, for the card (default: the
        training yaml's ``method`` key, if any).

    Returns
    -------
    str
        ``out_dir``.
    """
    ckpt_dir = find_checkpoint(checkpoint, min_key, max_key)
    hparams_file, train_yaml = _training_hparams(ckpt_dir, hparams_file)
    if metrics is None:
        metrics = (extra_info or {}).get("metrics")
    if metrics is not None:
        check_card_metrics(metrics, "metrics")
    for key in (*FEATURE_KEYS, encoder_key):
        if key not in train_yaml:
            raise SSVInputError(hparams_file, f"has no key '{key}' to export")
    for part in (encoder_parts or {encoder_key: encoder_key}).values():
        if not os.path.isfile(os.path.join(ckpt_dir, f"{part}.ckpt")):
            raise SSVInputError(
                ckpt_dir, f"has no {part}.ckpt (recoverables differ?)"
            )

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isfile(
        os.path.join(out_dir, EXPORT_MARKER)
    ):
        if os.listdir(out_dir):
            raise SSVInputError(
                out_dir,
                "exists and is not an earlier export; refusing to overwrite it",
            )
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    # Before writing: a killed export's partial folder may be what fills
    # the disk.
    _remove_orphans(out_dir, "export")
    tmp_dir = make_temp_dir(_temp_prefix(out_dir, "export"), parent)
    try:
        files = _write_folder(
            tmp_dir,
            ckpt_dir,
            train_yaml,
            encoder_key,
            state_prefix,
            classifier_key,
            label_encoder_file,
            encoder_parts,
        )
        info = {
            "checkpoint": ckpt_dir,
            "training_hparams": hparams_file,
            "encoder_key": encoder_key,
        }
        info.update(extra_info or {})
        info.update(
            _card_info(train_yaml, hparams_file, encoder_key, metrics, method)
        )
        write_text(
            os.path.join(tmp_dir, MODEL_CARD),
            model_card(
                method=info["method"],
                metrics=metrics,
                training_hparams=hparams_file,
                trained_on=info["trained_on"],
                encoder=info["encoder"],
                checkpoint=ckpt_dir,
            ),
        )
        files.append(MODEL_CARD)
        # Hashed from the written files (not the in-memory state), so
        # verify checks exactly the bytes that were renamed into place.
        info["files"] = _file_records(tmp_dir, files)
        with open(
            os.path.join(tmp_dir, EXPORT_MARKER), "w", encoding="utf-8"
        ) as f:
            json.dump(info, f, indent=2, sort_keys=True)
        if verify:
            check_export(tmp_dir)
        if os.path.exists(out_dir):
            old = make_temp_dir(_temp_prefix(out_dir, "export-old"), parent)
            os.replace(out_dir, os.path.join(old, "x"))
            os.replace(tmp_dir, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    # Only once the new export is in place: until then a moved-aside
    # previous export is the one copy to recover by hand.
    _remove_orphans(out_dir, "export-old")
    return out_dir


def check_card_metrics(metrics, where):
    """Refuse evaluation metrics a model card cannot report.

    Arguments
    ---------
    metrics : dict
        Metrics as ``evaluate_verification`` returns them.
    where : str
        Names the source in the error (a file or argument).

    Raises
    ------
    SSVInputError
        Naming ``where`` and the first missing or non-numeric key.

    Example
    -------
    >>> check_card_metrics({"eer": 0.1}, "metrics.json")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.SSVInputError: metrics.json: has no 'eer_threshold'; expected the metrics.json of an evaluation (keys eer, eer_threshold, min_dcf@0.01, min_dcf@0.01_threshold, min_dcf@0.05, min_dcf@0.05_threshold, n_trials)
    """
    if not isinstance(metrics, dict):
        raise SSVInputError(
            where, f"is a {type(metrics).__name__}; expected a JSON object"
        )
    for key in CARD_METRICS:
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            what = "has no" if value is None else "has a non-numeric"
            raise SSVInputError(
                where,
                f"{what} {key!r}; expected the metrics.json of an evaluation "
                f"(keys {', '.join(CARD_METRICS)})",
            )


def _card_info(train_yaml, hparams_file, encoder_key, metrics, method):
    """The model-card fields of ``export_info.json``."""
    if method is None and isinstance(train_yaml.get("method"), str):
        method = method_label(
            SimpleNamespace(
                hparams=SimpleNamespace(method=train_yaml["method"])
            )
        )
    # Resolved values: the saved hyperparams.yaml has the overrides applied.
    trained_on = None
    for key in ("train_annotation", "data_folder"):
        if isinstance(train_yaml.get(key), str):
            trained_on = train_yaml[key]
            break
    thresholds = None
    if metrics is not None:
        thresholds = {
            "eer": metrics["eer_threshold"],
            "min_dcf@0.01": metrics["min_dcf@0.01_threshold"],
            "min_dcf@0.05": metrics["min_dcf@0.05_threshold"],
            "decision": "accept iff score > threshold",
            "score": (
                f"{metrics['norm']}-normalised cosine"
                if metrics.get("norm")
                else "cosine"
            ),
            "calibrated_on": metrics.get("trial_list"),
            "n_trials": metrics["n_trials"],
        }
    tag = getattr(getattr(train_yaml[encoder_key], "tag", None), "value", None)
    return {
        "method": method,
        "recipe": recipe_name(hparams_file),
        "trained_on": trained_on,
        "encoder": tag.removeprefix("!new:") if tag else None,
        "metrics": metrics,
        "thresholds": thresholds,
        "thresholds_calibrated": thresholds is not None,
    }


def _write_folder(
    tmp_dir,
    ckpt_dir,
    train_yaml,
    encoder_key,
    state_prefix,
    classifier_key,
    label_encoder_file,
    encoder_parts=None,
):
    inference = CommentedMap()
    loadables = CommentedMap()
    files = []

    inference["compute_features"] = _copy_node(train_yaml["compute_features"])
    inference["mean_var_norm"] = _copy_node(train_yaml["mean_var_norm"])
    norm_ckpt = os.path.join(ckpt_dir, "normalizer.ckpt")
    norm_type = train_yaml["mean_var_norm"].get("norm_type", "global")
    if norm_type != "sentence" and os.path.isfile(norm_ckpt):
        # Global/batch statistics are state; sentence-level CMN has none.
        shutil.copyfile(norm_ckpt, os.path.join(tmp_dir, "mean_var_norm.ckpt"))
        loadables["mean_var_norm"] = "mean_var_norm"
        files.append("mean_var_norm.ckpt")

    inference["embedding_model"] = _copy_node(train_yaml[encoder_key])
    if encoder_parts:
        state = {}
        for attr, part in encoder_parts.items():
            part_path = os.path.join(ckpt_dir, f"{part}.ckpt")
            part_state = _load_state(part_path)
            _check_finite(part_state, part_path)
            state.update({f"{attr}.{k}": v for k, v in part_state.items()})
    else:
        enc_path = os.path.join(ckpt_dir, f"{encoder_key}.ckpt")
        state = _load_state(enc_path, state_prefix)
        _check_finite(state, enc_path)
    save_torch(os.path.join(tmp_dir, "embedding_model.ckpt"), state)
    loadables["embedding_model"] = "embedding_model"
    files.append("embedding_model.ckpt")

    cls_ckpt = (
        os.path.join(ckpt_dir, f"{classifier_key}.ckpt")
        if classifier_key
        else None
    )
    if cls_ckpt and os.path.isfile(cls_ckpt) and classifier_key in train_yaml:
        state = _load_state(cls_ckpt)
        if "weight" not in state or state["weight"].dim() != 2:
            raise SSVInputError(
                cls_ckpt,
                "has no 2-D 'weight' [speakers, embedding]; only "
                "ECAPA-style Classifier heads can be exported "
                "(pass classifier_key=None to export the encoder alone)",
            )
        _check_finite(state, cls_ckpt)
        weight = state["weight"]
        # The yaml's out_n_neurons may exceed the label count; the weight
        # shape is the truth (SpeechBrain never checks it).
        inference["classifier"] = _copy_node(
            train_yaml[classifier_key],
            input_size=int(weight.shape[1]),
            out_neurons=int(weight.shape[0]),
        )
        save_torch(os.path.join(tmp_dir, "classifier.ckpt"), state)
        loadables["classifier"] = "classifier"
        files.append("classifier.ckpt")
        if label_encoder_file is None:
            label_encoder_file = os.path.join(
                os.path.dirname(ckpt_dir), "label_encoder.txt"
            )
        if os.path.isfile(label_encoder_file):
            inference["label_encoder"] = _tagged(
                "!new:speechbrain.dataio.encoder.CategoricalEncoder"
            )
            shutil.copyfile(
                label_encoder_file, os.path.join(tmp_dir, "label_encoder.ckpt")
            )
            loadables["label_encoder"] = "label_encoder"
            files.append("label_encoder.ckpt")

    inference["audio_normalizer"] = _tagged(
        "!new:speechbrain.dataio.preprocess.AudioNormalizer", sample_rate=16000
    )
    modules = CommentedMap()
    for key in (
        "compute_features",
        "mean_var_norm",
        "embedding_model",
        "classifier",
    ):
        if key in inference:
            modules[key] = f"@@REF<{key}>"
    inference["modules"] = modules
    pretrainer = _tagged("!new:speechbrain.utils.parameter_transfer.Pretrainer")
    pretrainer["loadables"] = CommentedMap(
        (k, f"@@REF<{v}>") for k, v in loadables.items()
    )
    inference["pretrainer"] = pretrainer

    stream = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = None
    yaml.dump(inference, stream)
    # ruamel cannot emit the !ref tag on a plain scalar cleanly; write it here.
    text = stream.getvalue()
    text = _replace_refs(text)
    header = (
        "# Inference hyperparameters written by speechbrain_ssv.export.\n"
        "# Load with speechbrain.inference.speaker.EncoderClassifier.from_hparams(\n"
        "#     source=<this folder>, savedir=<any folder>)\n"
    )
    with open(
        os.path.join(tmp_dir, "hyperparams.yaml"), "w", encoding="utf-8"
    ) as f:
        f.write(header + text)
    files.append("hyperparams.yaml")
    return files


def _tagged(tag, **kwargs):
    node = CommentedMap(kwargs)
    node.yaml_set_ctag(Tag(suffix=tag))
    return node


def _replace_refs(text):
    return re.sub(r"'?@@REF<(\w+)>'?", r"!ref <\1>", text)


def load_metrics(path):
    """Read an evaluation's ``metrics.json`` for a model card.

    Arguments
    ---------
    path : str
        ``metrics.json`` written by a recipe's verification or by
        ``python -m speechbrain_ssv.eval score``.

    Returns
    -------
    dict
        The metrics.

    Raises
    ------
    SSVInputError
        When the file is missing, not JSON, or lacks a metric or threshold.
    """
    try:
        with open(path, encoding="utf-8") as f:
            metrics = json.load(f)
    except FileNotFoundError:
        raise SSVInputError(path, "metrics file does not exist") from None
    except (OSError, ValueError) as err:
        raise SSVInputError(path, f"cannot be read as JSON ({err})") from None
    check_card_metrics(metrics, path)
    return metrics


def _verify_main(argv):
    """``python -m speechbrain_ssv.export verify FOLDER``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.export verify",
        description="Check an export folder: every file's size and sha256 "
        f"against {EXPORT_MARKER}, that EncoderClassifier loads it "
        "bit-identically, and that it embeds a probe signal to finite values.",
    )
    parser.add_argument("folder", help="an export folder")
    parser.add_argument(
        "--device",
        default="cpu",
        help="device to load the model on for the check (default: cpu)",
    )
    args = parser.parse_args(argv)
    try:
        check_export(args.folder, device=args.device)
    except SSVInputError as err:
        return report_user_error(err)
    print(f"{args.folder}: OK")
    return 0


def _wants_verify(argv):
    # A save folder literally named "verify" is still exported when --out
    # is given (or pass it as ./verify).
    return (
        bool(argv)
        and argv[0] == "verify"
        and not any(a == "--out" or a.startswith("--out=") for a in argv[1:])
    )


def main(argv=None):
    """Command-line entry point (``python -m speechbrain_ssv.export``).

    ``SAVE_FOLDER --out OUT`` exports; ``verify FOLDER`` checks an export.

    Arguments
    ---------
    argv : list | None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, or 2 after printing an input error.

    Example
    -------
    >>> _wants_verify(["verify", "pretrained/ecapa"])
    True
    >>> _wants_verify(["verify", "--out", "pretrained/ecapa"])
    False
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if _wants_verify(argv):
        return _verify_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.export",
        description="Export a recipe checkpoint as a folder that stock "
        "SpeechBrain loads offline (EncoderClassifier.from_hparams("
        "source=FOLDER)), with a model card (README.md) and the checksum of "
        "every file in export_info.json.",
        epilog="'python -m speechbrain_ssv.export verify FOLDER' checks an "
        "existing export.",
    )
    parser.add_argument(
        "checkpoint", help="a CKPT+... folder, or a recipe save folder"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="destination folder (an earlier export there is replaced)",
    )
    parser.add_argument(
        "--hparams",
        default=None,
        help="the training hyperparams.yaml (default: the one in the "
        "recipe's output folder, the parent of the save folder)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="JSON",
        help="metrics.json of this checkpoint's evaluation on held-out "
        "trials (a recipe's verification/final/metrics.json, or the output "
        "of 'python -m speechbrain_ssv.eval score'); the model card then "
        "gives its EER/minDCF thresholds. Without it the card says the "
        "thresholds are not calibrated",
    )
    parser.add_argument(
        "--method",
        default=None,
        help="training method named in the model card (default: the "
        "training yaml's 'method' key, if any)",
    )
    parser.add_argument(
        "--encoder-key",
        default="embedding_model",
        help="training-yaml key of the encoder (default: embedding_model)",
    )
    parser.add_argument(
        "--state-prefix",
        default="",
        help="export only the parameters under this prefix, e.g. "
        "'backbone.' for an encoder saved inside a wrapper",
    )
    parser.add_argument(
        "--encoder-part",
        action="append",
        default=[],
        metavar="ATTR=KEY",
        help="build the encoder from several recoverables (repeat), e.g. "
        "--encoder-key speaker_encoder --encoder-part frontend=embedding_model "
        "--encoder-part decoupling=decoupling",
    )
    parser.add_argument(
        "--min-key",
        default=None,
        help="export the checkpoint with the lowest value of this meta key "
        "(e.g. ErrorRate); default: the most recent checkpoint",
    )
    parser.add_argument(
        "--max-key",
        default=None,
        help="export the checkpoint with the highest value of this meta key",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip re-loading the export with EncoderClassifier to check "
        "that the weights are bit-identical",
    )
    args = parser.parse_args(argv)
    parts = {}
    for spec in args.encoder_part:
        attr, sep, key = spec.partition("=")
        if not sep or not attr or not key:
            parser.error(f"--encoder-part {spec!r}: expected ATTR=KEY")
        parts[attr] = key
    try:
        metrics = None if args.metrics is None else load_metrics(args.metrics)
        out = export_checkpoint(
            args.checkpoint,
            args.out,
            hparams_file=args.hparams,
            encoder_key=args.encoder_key,
            state_prefix=args.state_prefix,
            min_key=args.min_key,
            max_key=args.max_key,
            verify=not args.no_verify,
            encoder_parts=parts or None,
            metrics=metrics,
            method=args.method,
        )
    except SSVInputError as err:
        return report_user_error(err)
    print(f"exported to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
