#!/usr/bin/env python3
"""The quickstart: generate the embedded minivox corpus, train the
supervised small ECAPA-TDNN, evaluate it on the held-out trials, export it
for ``EncoderClassifier``, train the same encoder label-free with SDPN at a
short demonstration budget, and print a table against two baselines (MFCC
mean + cosine, and the same encoder untrained).

Run it with ``make quickstart`` (which creates the venv first), or::

    python recipes/quickstart.py --data_folder data/minivox --output_folder results/quickstart

Every step resumes: the corpus generator skips finished files, training
resumes from its last checkpoint, embeddings are cached.

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import shlex
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SUPERVISED = os.path.join(HERE, "VoxCeleb", "Supervised")
SDPN = os.path.join(HERE, "VoxCeleb", "SDPN")


#: SpeechBrain run options (no value) that also apply to the SDPN run.
RUN_FLAGS = ("--noprogressbar",)


def _table(rows):
    head = f"| {'system':<34} | {'EER %':>6} | {'minDCF@0.01':>11} | {'minDCF@0.05':>11} |"
    sep = "|" + "-" * 36 + "|" + "-" * 8 + "|" + "-" * 13 + "|" + "-" * 13 + "|"
    lines = [head, sep]
    for name, m in rows:
        lines.append(
            f"| {name:<34} | {100 * m['eer']:>6.2f} | {m['min_dcf@0.01']:>11.4f} "
            f"| {m['min_dcf@0.05']:>11.4f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    """Run the quickstart.

    Arguments
    ---------
    argv : list | None
        Command-line arguments.
    """
    parser = argparse.ArgumentParser(
        description="speechbrain-ssv quickstart: corpus, supervised and "
        "label-free (SDPN) training, baselines, export, results table. "
        "Other options (e.g. --number_of_epochs 2) go to the supervised "
        "recipe."
    )
    parser.add_argument(
        "--data_folder",
        default="data/minivox",
        help="where the minivox corpus is generated (default: %(default)s)",
    )
    parser.add_argument(
        "--output_folder",
        default="results/quickstart",
        help="training runs, evaluations and the table (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        default="default",
        choices=["tiny", "default"],
        help="corpus size (default: %(default)s)",
    )
    parser.add_argument(
        "--hparams",
        default=os.path.join(SUPERVISED, "hparams", "ecapa_minivox.yaml"),
        help="supervised recipe yaml (default: the minivox ECAPA-TDNN)",
    )
    parser.add_argument(
        "--sdpn_hparams",
        default=os.path.join(SDPN, "hparams", "sdpn_minivox.yaml"),
        help="label-free SDPN recipe yaml (default: the minivox SDPN)",
    )
    parser.add_argument(
        "--sdpn_overrides",
        default="--number_of_epochs 2 --steps_per_epoch 90 --verify_every 0",
        help="overrides of the SDPN run, one string: its budget here is a "
        "demonstration, a quarter of the recipe's 8 x 90 steps "
        "(default: %(default)s); an empty string skips the SDPN row",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="corpus generation processes (default: %(default)s)",
    )
    # Anything else (--number_of_epochs 2, ...) is passed to the training recipe.
    args, train_overrides = parser.parse_known_args(argv)
    if "--verify_every" not in train_overrides:
        # One trial-list evaluation (the final one) instead of one per
        # epoch: the time goes to the SDPN row (15 min on 2 CPU cores).
        train_overrides = ["--verify_every", "0", *train_overrides]

    from speechbrain_ssv.eval.baselines import MFCCMeanEncoder
    from speechbrain_ssv.eval.verification import (
        evaluate_verification,
        utt_to_wav_from_csv,
    )
    from speechbrain_ssv.minivox import generate_minivox
    from speechbrain_ssv.utils.hparams import load_hparams
    from speechbrain_ssv.utils.io import write_json, write_text

    t0 = time.time()
    timings = {}
    print(
        f"[1/4] generating the minivox corpus ({args.size}) in {args.data_folder}"
    )
    generate_minivox(args.data_folder, size=args.size, workers=args.workers)
    timings["corpus_s"] = time.time() - t0

    print(
        "[2/4] training the supervised small ECAPA-TDNN (resumes if interrupted)"
    )
    train_out = os.path.join(args.output_folder, "supervised")
    t1 = time.time()
    cmd = [
        sys.executable,
        os.path.join(SUPERVISED, "train.py"),
        args.hparams,
        "--data_folder",
        args.data_folder,
        "--output_folder",
        train_out,
        *train_overrides,
    ]
    subprocess.run(cmd, check=True)
    timings["train_s"] = time.time() - t1

    sdpn_out = os.path.join(args.output_folder, "sdpn")
    if args.sdpn_overrides.strip():
        print(
            "[2b/4] training the same encoder label-free with SDPN "
            f"({args.sdpn_overrides}; resumes if interrupted)"
        )
        t2 = time.time()
        run_opts = [t for t in train_overrides if t in RUN_FLAGS]
        cmd = [
            sys.executable,
            os.path.join(SDPN, "train.py"),
            args.sdpn_hparams,
            "--data_folder",
            args.data_folder,
            "--output_folder",
            sdpn_out,
            *shlex.split(args.sdpn_overrides),
            *run_opts,
        ]
        subprocess.run(cmd, check=True)
        timings["sdpn_train_s"] = time.time() - t2

    print("[3/4] baselines on the same trials")
    hp = load_hparams(
        args.hparams,
        {
            "data_folder": args.data_folder,
            "output_folder": train_out,
            **_overrides_dict(train_overrides, args.hparams),
        },
    )
    utts = utt_to_wav_from_csv(hp["test_annotation"])
    trials = hp["verification_file"]
    rows = []
    mfcc = MFCCMeanEncoder().eval()
    rows.append(
        (
            "MFCC mean + cosine",
            evaluate_verification(
                lambda w, lens: mfcc(w, lens),
                utts,
                trials,
                os.path.join(args.output_folder, "mfcc_mean"),
                model_tag="mfcc-mean",
            ),
        )
    )
    # Same architecture and seed as the trained model, before any update.
    torch.manual_seed(hp["seed"])
    enc = {
        k: hp[k].eval()
        for k in ("compute_features", "mean_var_norm", "embedding_model")
    }

    @torch.no_grad()
    def untrained(wavs, lens):
        """Embeddings of the untrained encoder."""
        feats = enc["mean_var_norm"](enc["compute_features"](wavs), lens)
        return enc["embedding_model"](feats, lens).squeeze(1)

    rows.append(
        (
            "ECAPA-TDNN untrained",
            evaluate_verification(
                untrained,
                utts,
                trials,
                os.path.join(args.output_folder, "untrained"),
                model_tag=f"untrained-seed{hp['seed']}",
            ),
        )
    )
    import json

    with open(os.path.join(train_out, "results.json")) as f:
        trained = json.load(f)
    rows.append(("ECAPA-TDNN supervised (AAM)", trained["metrics"]))
    if args.sdpn_overrides.strip():
        with open(os.path.join(sdpn_out, "results.json")) as f:
            rows.append(
                ("ECAPA-TDNN SDPN (no labels)", json.load(f)["metrics"])
            )

    print("[4/4] loading the exported model with EncoderClassifier")
    from speechbrain.inference.speaker import SpeakerRecognition

    export = trained["export_folder"]
    model = SpeakerRecognition.from_hparams(
        source=export, savedir=os.path.join(args.output_folder, "loaded_model")
    )
    same, diff = _example_pairs(trials, utts)
    # Decide with the model's own threshold (its EER point on the held-out
    # trials, from the model card / export_info.json), not verify_files'
    # fixed 0.25, which accepts most different-speaker pairs here.
    with open(os.path.join(export, "export_info.json")) as f:
        threshold = json.load(f)["thresholds"]["eer"]
    s_same = model.verify_files(*same)[0].item()
    s_diff = model.verify_files(*diff)[0].item()
    timings["total_s"] = time.time() - t0

    table = _table(rows)
    summary = (
        f"{table}\n\nHeld-out trials: {trials} ({rows[0][1]['n_trials']} trials). "
        "minDCF is normalised.\n"
        f"Exported model: {export}\n"
        f"Decision threshold (EER point, {export}/README.md): {threshold:.3f}\n"
        f"same-speaker pair: score {s_same:.3f} -> "
        f"{'accept' if s_same > threshold else 'reject'}   "
        f"different-speaker pair: score {s_diff:.3f} -> "
        f"{'accept' if s_diff > threshold else 'reject'}\n"
        f"Time: corpus {timings['corpus_s']:.0f} s, training {timings['train_s']:.0f} s, "
        f"SDPN training {timings.get('sdpn_train_s', 0):.0f} s, "
        f"total {timings['total_s']:.0f} s\n"
    )
    write_text(os.path.join(args.output_folder, "results.md"), summary)
    write_json(
        os.path.join(args.output_folder, "results.json"),
        {
            "rows": dict(rows),
            "verify_files": {"same": s_same, "different": s_diff},
            "threshold": threshold,
            "timings_s": timings,
            "export_folder": export,
        },
    )
    print("\n" + summary)


def _overrides_dict(tokens, hparams_file):
    """Training overrides that are keys of ``hparams_file`` (run options such
    as ``--device`` or ``--noprogressbar`` are not), so the baselines are
    built with the same settings as the trained model."""
    import yaml

    with open(hparams_file) as f:
        keys = {line.split(":", 1)[0] for line in f if line[:1].isalpha()}
    out, i = {}, 0
    while i < len(tokens):
        key = tokens[i].removeprefix("--")
        has_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
        if key in keys and has_value:
            out[key] = yaml.safe_load(tokens[i + 1])
        i += 2 if has_value else 1
    return out


def _example_pairs(trial_path, utts):
    """First target and first non-target trial, as wav paths."""
    same = diff = None
    with open(trial_path) as f:
        for line in f:
            label, a, b = line.split()
            pair = (
                utts[a.removesuffix(".wav")][0],
                utts[b.removesuffix(".wav")][0],
            )
            if label == "1" and same is None:
                same = pair
            elif label == "0" and diff is None:
                diff = pair
            if same and diff:
                break
    return same, diff


if __name__ == "__main__":
    main()
