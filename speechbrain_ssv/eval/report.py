"""Human-readable reports of a verification result: the method's display
name, plot titles, and the model card (``README.md``) of an export.

The card states the decision thresholds measured on the evaluation trials:
SpeechBrain's ``SpeakerRecognition.verify_files`` decides with a fixed 0.25,
which suits no particular model (a small supervised model may accept almost
every different-speaker trial there while its own EER threshold is 0.45).

Authors
 * speechbrain-ssv developers 2026
"""

import os

__all__ = ["method_label", "model_card", "plot_title", "recipe_name"]

# hparams ``method`` values -> how papers and READMEs write them.
_METHOD_NAMES = {
    "sdpn": "SDPN",
    "dino": "DINO",
    "ap": "AP",
    "imix": "i-mix AP",
    "lmix": "l-mix AP",
}
# Brain classes without a ``method`` hparam.
_BRAIN_NAMES = {
    "SupervisedBrain": "Supervised",
    "PseudoLabelBrain": "Pseudo-label",
    "DisentangleBrain": "Disentangle",
}


def method_label(brain):
    """The display name of the method a brain trains, e.g. ``"SDPN
    (teacher)"``.

    Arguments
    ---------
    brain : speechbrain.Brain | None
        A trained brain; its ``hparams.method`` (SDPN, MixAP) names the
        method when set, else its class. Brains with an EMA teacher
        (``teacher_keys``) are evaluated with the teacher, which the label
        says.

    Returns
    -------
    str
        The label (``"unknown method"`` for ``None``).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> class SDPNBrain:
    ...     teacher_keys = ("teacher_embedding_model",)
    ...     hparams = SimpleNamespace(method="sdpn")
    >>> method_label(SDPNBrain())
    'SDPN (teacher)'
    >>> class SupervisedBrain:
    ...     hparams = SimpleNamespace()
    >>> method_label(SupervisedBrain())
    'Supervised'
    """
    if brain is None:
        return "unknown method"
    # Not a setting with a default: only the Brains that run one of several
    # methods (SDPN/DINO, AP/i-AP/l-AP) have a ``method`` key; the others
    # are named by their class.
    method = getattr(getattr(brain, "hparams", None), "method", None)
    if isinstance(method, str) and method:
        label = _METHOD_NAMES.get(method, method)
    else:
        name = type(brain).__name__
        label = _BRAIN_NAMES.get(name, name.removesuffix("Brain") or name)
    if getattr(brain, "teacher_keys", None):
        label += " (teacher)"
    return label


def recipe_name(hparams_file):
    """The recipe a training ``hyperparams.yaml`` belongs to: its path from
    the experiment folder, whose name the recipes derive from the hparams
    file (``results/<config>/<seed>/hyperparams.yaml``).

    Arguments
    ---------
    hparams_file : str
        The training hyperparameters file.

    Returns
    -------
    str
        Its last three path components.

    Example
    -------
    >>> recipe_name("/x/results/sdpn_minivox/1986/hyperparams.yaml")
    'sdpn_minivox/1986/hyperparams.yaml'
    """
    parts = os.path.normpath(hparams_file).split(os.sep)
    return "/".join(parts[-3:])


def plot_title(label, epoch=None, eer=None):
    """A plot title such as ``"SDPN (teacher), epoch 8: EER 9.53%"``.

    Arguments
    ---------
    label : str
        The method (see :func:`method_label`) or model name.
    epoch : int | None
        The epoch whose weights were scored.
    eer : float | None
        EER as a fraction.

    Returns
    -------
    str
        The title.

    Example
    -------
    >>> plot_title("SDPN (teacher)", 8, 0.09531)
    'SDPN (teacher), epoch 8: EER 9.53%'
    >>> plot_title("Supervised")
    'Supervised'
    """
    title = label
    if epoch is not None:
        title += f", epoch {epoch}"
    if eer is not None:
        title += f": EER {100 * eer:.2f}%"
    return title


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def model_card(
    method=None,
    metrics=None,
    training_hparams=None,
    trained_on=None,
    encoder=None,
    checkpoint=None,
):
    """The ``README.md`` of an export folder.

    Arguments
    ---------
    method : str | None
        Display name of the training method.
    metrics : dict | None
        Evaluation metrics as :func:`~speechbrain_ssv.eval.metrics.eer_mindcf`
        and :func:`~speechbrain_ssv.eval.verification.evaluate_verification`
        return them (``eer``, ``eer_threshold``, ``min_dcf@0.01`` and
        ``min_dcf@0.05`` with their ``_threshold``, ``n_trials``,
        ``trial_list``, ``norm``). ``None``: the card says that no
        threshold is calibrated.
    training_hparams : str | None
        The training hyperparameters file (its name is the recipe).
    trained_on : str | None
        The training data (corpus folder or manifest).
    encoder : str | None
        The encoder's class.
    checkpoint : str | None
        The exported checkpoint folder.

    Returns
    -------
    str
        Markdown.

    Example
    -------
    >>> m = {"eer": 0.0953, "eer_threshold": 0.455, "min_dcf@0.01": 0.3744,
    ...      "min_dcf@0.01_threshold": 0.61, "min_dcf@0.05": 0.21,
    ...      "min_dcf@0.05_threshold": 0.55, "n_trials": 4000,
    ...      "trial_list": "/d/veri_test2.txt", "norm": None}
    >>> card = model_card("SDPN (teacher)", m, "/r/sdpn_minivox.yaml")
    >>> "| veri_test2.txt | 4000 | 9.53 | 0.3744 | 0.2100 |" in card
    True
    >>> "threshold=0.4550" in card
    True
    >>> "not calibrated" in model_card("SDPN (teacher)", None)
    True
    """
    method = method or "unknown method"
    recipe = recipe_name(training_hparams) if training_hparams else None
    lines = [
        f"# {method} speaker-embedding model",
        "",
        "Speaker-verification embeddings trained with speechbrain-ssv and "
        "exported for SpeechBrain's `EncoderClassifier` / "
        "`SpeakerRecognition` (loading needs no speechbrain-ssv).",
        "",
        "| | |",
        "|---|---|",
        f"| Method | {method} |",
        f"| Training data | {trained_on or 'not recorded'} |",
        f"| Recipe (hparams) | {recipe or 'not recorded'} |",
    ]
    if encoder:
        lines.append(f"| Encoder | `{encoder}` |")
    if checkpoint:
        lines.append(f"| Checkpoint | {os.path.basename(checkpoint)} |")
    lines += ["", "## Evaluation", ""]
    threshold = None
    if metrics:
        trials = os.path.basename(str(metrics.get("trial_list") or "")) or (
            "unnamed trial list"
        )
        n_trials = metrics.get("n_trials", "n/a")
        norm = metrics.get("norm")
        eer = metrics.get("eer")
        threshold = metrics.get("eer_threshold")
        score_name = (
            f"{norm}-normalised cosine score" if norm else "cosine score"
        )
        lines += [
            "| Trial list | Trials | EER (%) | minDCF (p=0.01) "
            "| minDCF (p=0.05) |",
            "|---|---|---|---|---|",
            f"| {trials} | {n_trials} | "
            f"{_fmt(None if eer is None else 100 * eer, '.2f')} | "
            f"{_fmt(metrics.get('min_dcf@0.01'), '.4f')} | "
            f"{_fmt(metrics.get('min_dcf@0.05'), '.4f')} |",
            "",
            "minDCF is normalised (0-1; c_miss = c_fa = 1); EER in %.",
            "",
            "## Decision thresholds",
            "",
            f"Thresholds on the {score_name}; a trial is accepted (same "
            "speaker) when `score > threshold` (unrounded values: "
            "`thresholds` in `export_info.json`).",
            "",
            "| Operating point | Threshold |",
            "|---|---|",
            f"| EER | {_fmt(threshold, '.4f')} |",
            "| minDCF, p_target = 0.01 | "
            f"{_fmt(metrics.get('min_dcf@0.01_threshold'), '.4f')} |",
            "| minDCF, p_target = 0.05 | "
            f"{_fmt(metrics.get('min_dcf@0.05_threshold'), '.4f')} |",
            "",
            f"These thresholds were calibrated on the {n_trials} trials of "
            f"`{trials}`. They hold for audio like those trials only: "
            "recalibrate them on labelled trials of your own domain "
            "(other microphones, languages, durations or noise move the "
            "scores) with `python -m speechbrain_ssv.eval score`.",
        ]
        if norm:
            lines += [
                "",
                f"The scores were {norm}-normalised against a cohort, so "
                "these thresholds do NOT apply to the raw cosine score "
                "that `verify_batch` returns; calibrate raw-score "
                "thresholds without `--norm`.",
            ]
    else:
        lines += [
            "No evaluation was recorded with this export: the decision "
            "thresholds are **not calibrated**. SpeechBrain's default "
            "(0.25) suits no particular model; measure this model's "
            "thresholds on labelled trials of your domain with "
            "`python -m speechbrain_ssv.eval score MODEL TRIALS "
            "--data_folder DIR`.",
        ]
    shown = "THRESHOLD" if threshold is None else f"{threshold:.4f}"
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from speechbrain.inference.speaker import EncoderClassifier, "
        "SpeakerRecognition",
        "",
        'encoder = EncoderClassifier.from_hparams(source="<this folder>", '
        'savedir="pretrained_models/ssv")',
        "embeddings = encoder.encode_batch(wavs)  # [batch, 1, dim], 16 kHz",
        "",
        'verifier = SpeakerRecognition.from_hparams(source="<this folder>", '
        'savedir="pretrained_models/ssv")',
        f"score, same = verifier.verify_batch(wavs1, wavs2, threshold={shown})",
        "# verify_files always uses 0.25; decide on its score instead:",
        'score, _ = verifier.verify_files("a.wav", "b.wav")',
        f"same = score.item() > {shown}",
        "```",
        "",
        "Written by `speechbrain_ssv.export`; `export_info.json` holds the "
        "same information in machine-readable form and the checksum of "
        "every file (`python -m speechbrain_ssv.export verify <folder>`).",
        "",
    ]
    return "\n".join(lines)
