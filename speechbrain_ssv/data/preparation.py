"""What the VoxCeleb and FFSVC preparations share: the data folders, the
output files, writing the manifests, the "skip if unchanged" record and
the command line.

The record is a :mod:`speechbrain_ssv.utils.stages` record (``stage.json``
in the save folder, which the recipes share with their checkpoints, so it
is begun as a *shared* stage folder and never deleted). A preparation whose
options and outputs are unchanged is skipped; one with other options, or
interrupted, is redone and its outputs overwritten atomically. A folder
prepared before the record moved here (it held ``prepare_opts.json``) is
prepared once more, and that old file is then removed.

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import csv
import json
import logging
import os

from speechbrain_ssv.utils.errors import ManifestError, SSVInputError
from speechbrain_ssv.utils.io import atomic_path
from speechbrain_ssv.utils.stages import (
    STAGE_FILE,
    begin_stage,
    finish_stage,
)

__all__ = [
    "SPEAKER_COLUMNS",
    "begin_preparation",
    "check_split_ratio",
    "finish_preparation",
    "output_paths",
    "preparation_parser",
    "prepared_paths",
    "run_preparation_cli",
    "speaker_split",
    "split_folders",
    "write_csv",
    "write_trial_copies",
]

SPEAKER_COLUMNS = ("spk_id", "gender", "n_utts", "split")
#: The record of preparations before they used ``utils.stages``.
OLD_OPTS_FILE = "prepare_opts.json"
EPILOG = (
    "Bad input ends with one 'error: ...' line and exit status 2; set "
    "SSV_DEBUG=1 to see the traceback as well."
)


def split_folders(data_folder):
    """Normalise ``data_folder`` to a list of absolute folder paths.

    Arguments
    ---------
    data_folder : str | os.PathLike | list
        One folder, a comma-separated list (SpeechBrain's convention for
        ``vox1,vox2``) or a list of folders. An existing folder whose name
        contains a comma is taken as one folder.

    Returns
    -------
    list of str
        Absolute paths, in the given order.

    Example
    -------
    >>> [os.path.basename(f) for f in split_folders("a/vox1, a/vox2")]
    ['vox1', 'vox2']
    >>> d = os.path.join(getfixture("tmpdir"), "vox,1")
    >>> os.makedirs(d)
    >>> split_folders(d) == [d]
    True
    """
    if isinstance(data_folder, (str, os.PathLike)):
        text = os.fspath(data_folder)
        # A folder whose own name holds a comma is one folder, not a list.
        parts = [text] if os.path.isdir(text) else text.split(",")
    else:
        parts = [os.fspath(p) for p in data_folder]
    folders = [os.path.abspath(p.strip()) for p in parts if p.strip()]
    if not folders:
        raise SSVInputError("data_folder", "is empty; expected a folder path")
    return folders


def check_split_ratio(split_ratio):
    """Refuse a train/dev ratio that is not two positive numbers.

    Arguments
    ---------
    split_ratio : sequence of two numbers
        Train/dev proportions.

    Returns
    -------
    list of float
        The ratio, as recorded.

    Example
    -------
    >>> check_split_ratio((90, 10))
    [90.0, 10.0]
    """
    if len(split_ratio) != 2 or min(split_ratio) <= 0:
        raise SSVInputError(
            "split_ratio",
            f"is {split_ratio}; expected two positive numbers (train, dev)",
        )
    return [float(r) for r in split_ratio]


def output_paths(save_folder, trial_lists, extra=()):
    """The output files of a preparation.

    Arguments
    ---------
    save_folder : str
        Absolute save folder.
    trial_lists : list of str
        Trial lists (their copies keep the file name).
    extra : sequence of str
        Further CSVs, ``<name>.csv`` (FFSVC's ``devices``).

    Returns
    -------
    dict
        ``train``, ``dev``, ``test``, ``speakers``, the ``extra`` names,
        ``trials`` (list) and ``opts``: the record of the options.

    Example
    -------
    >>> p = output_paths("/s", ["/d/meta/veri_test2.txt"], extra=["devices"])
    >>> p["devices"], p["trials"], p["opts"]
    ('/s/devices.csv', ['/s/veri_test2.txt'], '/s/stage.json')
    """
    names = [os.path.basename(os.fspath(t)) for t in trial_lists]
    if len(set(names)) != len(names):
        raise SSVInputError(
            "trial_lists",
            f"two lists share a file name ({names}); their copies in the "
            "save folder would overwrite each other",
        )
    paths = {
        name: os.path.join(save_folder, f"{name}.csv")
        for name in ("train", "dev", "test", "speakers", *extra)
    }
    paths["trials"] = [os.path.join(save_folder, n) for n in names]
    paths["opts"] = os.path.join(save_folder, STAGE_FILE)
    return paths


def _flat(paths):
    return [
        p for v in paths.values() for p in (v if isinstance(v, list) else [v])
    ]


def prepared_paths(paths, save_folder):
    """``paths`` when every output of an earlier preparation exists
    (``skip_prep=True``), else one error naming the missing ones.

    Arguments
    ---------
    paths : dict
        From :func:`output_paths`.
    save_folder : str
        For the error.

    Returns
    -------
    dict
        ``paths``.
    """
    missing = [p for p in _flat(paths) if not os.path.isfile(p)]
    if missing:
        raise ManifestError(
            save_folder,
            f"skip_prep=True but outputs are missing: {missing}; run the "
            "preparation once with skip_prep=False",
        )
    return paths


def begin_preparation(save_folder, opts, what, logger):
    """True when ``save_folder`` holds a preparation with ``opts`` whose
    outputs all exist (skip it); otherwise its record is marked unfinished,
    so that an interrupted rewrite is never taken for a finished one.

    Arguments
    ---------
    save_folder : str
        Save folder (created).
    opts : dict
        Everything the outputs depend on.
    what : str
        ``VoxCeleb`` or ``FFSVC``, for the log.
    logger : logging.Logger
        The calling module's logger.

    Returns
    -------
    bool
        ``True``: up to date, skip.
    """
    if begin_stage(save_folder, opts, f"{what} preparation", shared=True):
        logger.info(
            "%s preparation skipped: %s is up to date (options unchanged)",
            what,
            save_folder,
        )
        return True
    return False


def finish_preparation(save_folder, opts, paths, what, logger):
    """Record a finished preparation (written last: a complete one).

    Arguments
    ---------
    save_folder : str
        Save folder.
    opts : dict
        The options it ran with.
    paths : dict
        From :func:`output_paths`; every file but the record is an output.
    what : str
        For the log.
    logger : logging.Logger
        The calling module's logger.
    """
    outputs = [
        os.path.relpath(p, save_folder)
        for p in _flat(paths)
        if p != paths["opts"]
    ]
    finish_stage(save_folder, opts, outputs)
    old = os.path.join(save_folder, OLD_OPTS_FILE)
    if os.path.isfile(old):
        os.remove(old)
    logger.info("%s manifests written to %s", what, save_folder)


def write_csv(path, header, rows):
    """Write a manifest atomically; an empty one is an error.

    Arguments
    ---------
    path : str
        Output CSV.
    header : sequence of str
        Column names.
    rows : list of sequence
        Rows.
    """
    if not rows:
        raise ManifestError(path, "would be empty; no utterance qualifies")
    with (
        atomic_path(path) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_trial_copies(trials_per_list, outs):
    """Write the normalised trial lists: ``[<label> ]<id>.wav <id>.wav``.

    Arguments
    ---------
    trials_per_list : list of list of (label or None, enrol, test)
        Parsed lists (``None``: unlabelled).
    outs : list of str
        Their copies.
    """
    for trials, out in zip(trials_per_list, outs):
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for label, enrol, test in trials:
                prefix = "" if label is None else f"{label} "
                f.write(f"{prefix}{enrol}.wav {test}.wav\n")


def speaker_split(spk, n_used, test_spks):
    """The ``split`` column of ``speakers.csv``.

    Arguments
    ---------
    spk : str
        Speaker.
    n_used : dict
        Training files per speaker.
    test_spks : set
        Trial speakers.

    Returns
    -------
    str
        ``train``, ``test``, ``train+test`` or ``unused``.

    Example
    -------
    >>> speaker_split("a", {"a": 3}, {"a"}), speaker_split("b", {}, set())
    ('train+test', 'unused')
    """
    roles = []
    if n_used.get(spk):
        roles.append("train")
    if spk in test_spks:
        roles.append("test")
    return "+".join(roles) or "unused"


def preparation_parser(prog, description, trial_lists, unit, min_duration):
    """The argument parser of a preparation command line, with the options
    every preparation has; the caller adds its own.

    Arguments
    ---------
    prog : str
        ``python -m ...``.
    description : str
        What it prepares.
    trial_lists : list of str | None
        Default trial lists (``None``: the module looks for them).
    unit : str
        What the train/dev split divides (``utterances``, ``recordings``).
    min_duration : float
        Default of ``--min_duration``.

    Returns
    -------
    argparse.ArgumentParser
        With ``--data_folder``, ``--save_folder``, ``--trial_lists``,
        ``--split_ratio``, ``--min_duration``, ``--keep_trial_speakers`` and
        ``--skip_prep``; the caller adds ``--seed`` (its help differs) and
        its own options.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=EPILOG
    )
    parser.add_argument(
        "--data_folder",
        required=True,
        nargs="+",
        help="data folder(s); a comma-separated list also works",
    )
    parser.add_argument(
        "--save_folder",
        required=True,
        help="where the manifests and trial lists are written",
    )
    if trial_lists is None:
        where = "the data folders and their meta/ (default: every "
        where += "default-named list found)"
    else:
        where = "<folder>/meta/ and <folder>/ (default: "
        where += f"{' '.join(trial_lists)})"
    parser.add_argument(
        "--trial_lists",
        nargs="+",
        default=trial_lists,
        help=f"trial lists, as paths or names looked up in {where}",
    )
    parser.add_argument(
        "--split_ratio",
        nargs=2,
        type=float,
        default=[90, 10],
        metavar=("TRAIN", "DEV"),
        help=f"train/dev proportions of each training speaker's {unit} "
        "(default: 90 10)",
    )
    parser.add_argument(
        "--min_duration",
        type=float,
        default=min_duration,
        help="files shorter than this (seconds) are left out of train/dev "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--keep_trial_speakers",
        action="store_true",
        help="do not exclude trial-list speakers from train/dev",
    )
    parser.add_argument(
        "--skip_prep",
        action="store_true",
        help="write nothing; only print the output paths (they must exist)",
    )
    return parser


def run_preparation_cli(parser, argv, prepare, **kwargs):
    """Parse ``argv``, run ``prepare`` with the common options and
    ``kwargs`` (from the parsed arguments), print the output paths.

    Arguments
    ---------
    parser : argparse.ArgumentParser
        From :func:`preparation_parser`, completed.
    argv : list of str | None
        Arguments.
    prepare : callable
        ``prepare_voxceleb`` or ``prepare_ffsvc``.
    **kwargs : callable
        ``name=f(args)`` for the module's own arguments.

    Returns
    -------
    dict
        The paths ``prepare`` returns.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    folders = [f for arg in args.data_folder for f in split_folders(arg)]
    paths = prepare(
        folders,
        args.save_folder,
        trial_lists=args.trial_lists,
        split_ratio=args.split_ratio,
        min_duration=args.min_duration,
        seed=args.seed,
        exclude_trial_speakers=not args.keep_trial_speakers,
        skip_prep=args.skip_prep,
        **{name: get(args) for name, get in kwargs.items()},
    )
    print(json.dumps(paths, indent=2))
    return paths
