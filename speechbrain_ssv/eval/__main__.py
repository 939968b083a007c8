"""Command line of the evaluation tools.

``python -m speechbrain_ssv.eval score MODEL TRIALS --data_folder DIR``
scores a labelled trial list with any exported model (loaded with stock
SpeechBrain's ``EncoderClassifier``) and writes the scores, the EER/minDCF
with their decision thresholds (``metrics.json``) and a DET plot.

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import sys

from speechbrain_ssv.eval.score_model import score_model
from speechbrain_ssv.eval.scoring import NORM_METHODS
from speechbrain_ssv.utils.errors import SSVInputError, report_user_error


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.eval",
        description="Speaker-verification evaluation tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score",
        help="score a trial list with an exported model and calibrate its "
        "decision thresholds",
        description="Score a labelled trial list with an exported model "
        "(any folder that SpeechBrain's EncoderClassifier.from_hparams "
        "loads): embeddings, optional cohort score normalisation, EER and "
        "minDCF (normalised, p_target 0.01 and 0.05) with their thresholds "
        "(accept when score > threshold), a DET plot and a score histogram. "
        "The metrics.json it writes can be passed to 'python -m "
        "speechbrain_ssv.export --metrics' to put the thresholds in a "
        "model card.",
    )
    score.add_argument("model", help="the exported model folder")
    score.add_argument(
        "trials",
        help="labelled trial list, one '<label> <enrol.wav> <test.wav>' "
        "line per trial (label 1: same speaker, 0: different)",
    )
    score.add_argument(
        "--data_folder",
        required=True,
        help="folder the trial list's audio paths are relative to (its wav/ "
        "subfolder is also searched, as in VoxCeleb1)",
    )
    score.add_argument(
        "--cohort",
        default=None,
        metavar="LIST_OR_CSV",
        help="score-normalisation cohort (e.g. training utterances of other "
        "speakers): a CSV manifest with ID and wav columns, or a text file "
        "with one audio path per line (relative to --data_folder)",
    )
    score.add_argument(
        "--norm",
        default=None,
        choices=NORM_METHODS,
        help="normalise the cosine scores against --cohort; the thresholds "
        "are then for normalised scores (default: raw cosine scores, the "
        "ones SpeakerRecognition.verify_batch compares with its threshold)",
    )
    score.add_argument(
        "--topk",
        type=int,
        default=None,
        help="cohort scores kept per utterance for adaptive normalisation "
        "(default: 300 for as-norm, the whole cohort otherwise)",
    )
    score.add_argument(
        "--out",
        default=None,
        metavar="FOLDER",
        help="output folder for scores.txt, metrics.json, det.png and "
        "score_hist.png (default: score_<model>_<trials> in the current "
        "folder)",
    )
    score.add_argument(
        "--device",
        default="cpu",
        help="device to run the model on, e.g. cuda:0 (default: cpu)",
    )
    score.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="utterances per forward pass (default: 16)",
    )
    score.add_argument(
        "--noprogressbar",
        action="store_true",
        help="do not show progress bars",
    )
    return parser


def main(argv=None):
    """Run ``python -m speechbrain_ssv.eval``.

    Arguments
    ---------
    argv : list | None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, or 2 after printing an input error as one
        ``error: ...`` line (with the traceback when ``SSV_DEBUG=1``).
    """
    args = _parser().parse_args(argv)
    if args.batch_size < 1:
        return report_user_error(
            SSVInputError(
                "--batch_size", f"is {args.batch_size}; expected >= 1"
            )
        )
    out = args.out
    if out is None:
        model = os.path.basename(os.path.abspath(args.model))
        trials = os.path.splitext(os.path.basename(args.trials))[0]
        out = f"score_{model}_{trials}"
    try:
        m = score_model(
            args.model,
            args.trials,
            args.data_folder,
            out,
            cohort=args.cohort,
            norm=args.norm,
            topk=args.topk,
            device=args.device,
            batch_size=args.batch_size,
            progress=not args.noprogressbar,
        )
    except SSVInputError as err:
        return report_user_error(err)
    print(
        f"EER {100 * m['eer']:.2f}% (threshold {m['eer_threshold']:.4f})  "
        f"minDCF@0.01 {m['min_dcf@0.01']:.4f} "
        f"(threshold {m['min_dcf@0.01_threshold']:.4f})  "
        f"minDCF@0.05 {m['min_dcf@0.05']:.4f} "
        f"(threshold {m['min_dcf@0.05_threshold']:.4f})  "
        f"[{m['n_trials']} trials; accept iff score > threshold]"
    )
    print(f"wrote {os.path.join(out, 'metrics.json')} and scores.txt, det.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
