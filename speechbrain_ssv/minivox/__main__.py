"""Command line of the minivox generator::

    python -m speechbrain_ssv.minivox --out DIR [--size tiny|default]
        [--variant voxceleb|ffsvc] [--channel none|mild|strong] [--seed N]
        [--workers N]

(also installed as ``ssv-minivox``).

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import sys

from speechbrain_ssv.minivox.channels import STRENGTHS
from speechbrain_ssv.minivox.generate import generate_minivox
from speechbrain_ssv.minivox.options import SIZES, VARIANTS
from speechbrain_ssv.utils.errors import SSVInputError, report_user_error


def main(argv=None):
    """Command-line entry point (see :mod:`speechbrain_ssv.minivox`).

    Arguments
    ---------
    argv : list of str | None
        Arguments (``sys.argv[1:]`` when ``None``).

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.minivox",
        description="Generate the embedded minivox speaker-verification "
        "corpus, laid out like VoxCeleb1 (or FFSVC), with its trial list, "
        "noise and room-impulse-response sets. Rerunning with the same "
        "options finishes an interrupted run; the output is byte-identical "
        "for the same seed and options. Needs the minivox extra: "
        "pip install 'speechbrain-ssv[minivox]'.",
        epilog="Bad input ends with one 'error: ...' line and exit status "
        "2; set SSV_DEBUG=1 to see the traceback as well.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (created; an existing corpus made with the same "
        "options is completed, one made with other options is refused)",
    )
    parser.add_argument(
        "--size",
        default="default",
        choices=sorted(SIZES),
        help="preset: tiny is 16 speakers (6 held out) x 6 utterances, for "
        "tests; default is 200 speakers (40 held out) x 20 utterances "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--variant",
        default="voxceleb",
        choices=list(VARIANTS),
        help="voxceleb: one file per utterance; ffsvc: every utterance "
        "rendered through each simulated device and distance "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--channel",
        default="strong",
        choices=sorted(STRENGTHS),
        help="per-session channel strength (room, device response, noise, "
        "level); none keeps the clean voice (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1234,
        help="corpus random seed (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes; 1 runs in-process; the output does not "
        "depend on it (default: %(default)s)",
    )
    parser.add_argument(
        "--n_speakers",
        type=int,
        default=None,
        help="number of speakers (default: from --size)",
    )
    parser.add_argument(
        "--n_utts",
        type=int,
        default=None,
        help="utterances per speaker, at least 2 (default: from --size)",
    )
    parser.add_argument(
        "--n_test_speakers",
        type=int,
        default=None,
        help="held-out speakers for the trial list, at least 2 and fewer "
        "than --n_speakers (default: from --size)",
    )
    args = parser.parse_args(argv)
    try:
        summary = generate_minivox(
            args.out,
            size=args.size,
            variant=args.variant,
            channel=args.channel,
            seed=args.seed,
            workers=args.workers,
            n_speakers=args.n_speakers,
            n_utts=args.n_utts,
            n_test_speakers=args.n_test_speakers,
        )
    except SSVInputError as err:
        return report_user_error(err)
    print(
        f"minivox: {summary['n_files']} files ({summary['written']} written, "
        f"{summary['skipped']} already there), {summary['n_speakers']} speakers "
        f"({summary['n_test_speakers']} held out), {summary['n_trials']} trials "
        f"in {summary['seconds']} s -> {summary['root']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
