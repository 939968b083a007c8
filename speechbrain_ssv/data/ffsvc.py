"""FFSVC 2020/2022 preparation: audio + speaker/device metadata + trial lists
-> CSV manifests with device labels.

The disentanglement recipe (Mun, Han et al., FFSVC 2022) fine-tunes on
utterances that carry a speaker *and* a recording-device label. One code
path reads every supported layout. Each data folder is read into a table of utterances
(:mod:`speechbrain_ssv.data.ffsvc_sources`: a metadata CSV such as the one
``minivox --variant ffsvc`` writes, FFSVC 2022's ``dev_meta_list``, or FFSVC
original file names), then the split, the trial lists and the CSVs are the
same for all.

Trial lists (``trial_lists=``; default: every one of ``veri_test2.txt``,
``trials_dev_keys``, ``trials_dev_keys.txt`` found in a data folder or its
``meta/``) may be ``<label> <enrol> <test>`` (VoxCeleb, minivox),
``<enrol> <test> <label>`` with 0/1 or target/nontarget labels, or
unlabelled ``<enrol> <test>`` (FFSVC eval). Entries may be utterance ids,
paths (with or without ``wav/`` and ``.wav``) or bare file names. Each is
rewritten to ``save_folder`` as ``<label> <id>.wav <id>.wav`` (or
``<id>.wav <id>.wav``), the format of
:func:`speechbrain_ssv.eval.trials.read_trials`, with the ids of
``test.csv``.

Outputs in ``save_folder``: ``train.csv``, ``dev.csv``, ``test.csv`` with
columns ``ID,duration,wav,start,stop,spk_id,device,distance,session,gender``
(one row per file, ``start = 0``, ``stop`` = samples, durations from the
audio header only), ``speakers.csv``, ``devices.csv``, the trial-list copies
and the record of the options (``stage.json``, written last; an unchanged
rerun is skipped: :mod:`speechbrain_ssv.data.preparation`).
Speakers of any trial are left out of train/dev; the train/dev split is per
speaker and per recording group, so dev speakers are known to the
classifiers and no take is on both sides. Every file is written atomically.

Authors
 * speechbrain-ssv developers 2026
"""

import logging
import os
import random
import sys

from tqdm import tqdm

from speechbrain_ssv.data.audio import audio_info
from speechbrain_ssv.data.ffsvc_sources import (
    collect_utterances,
    find_named,
    strip_ext,
)
from speechbrain_ssv.data.preparation import (
    SPEAKER_COLUMNS,
    begin_preparation,
    check_split_ratio,
    finish_preparation,
    output_paths,
    preparation_parser,
    prepared_paths,
    run_preparation_cli,
    speaker_split,
    split_folders,
    write_csv,
    write_trial_copies,
)
from speechbrain_ssv.data.voxceleb import read_gender_meta
from speechbrain_ssv.utils.errors import (
    ManifestError,
    SSVInputError,
    TrialListError,
    run_cli,
)
from speechbrain_ssv.utils.stages import read_stage

logger = logging.getLogger(__name__)

__all__ = [
    "CSV_COLUMNS",
    "main",
    "prepare_ffsvc",
    "read_ffsvc_trials",
]

CSV_COLUMNS = (
    "ID",
    "duration",
    "wav",
    "start",
    "stop",
    "spk_id",
    "device",
    "distance",
    "session",
    "gender",
)
DEVICE_COLUMNS = ("device", "n_train", "n_dev", "n_test")
DEFAULT_TRIAL_LISTS = (
    "veri_test2.txt",
    "trials_dev_keys",
    "trials_dev_keys.txt",
)
# Bump when the output format changes, so old folders are re-prepared.
PREP_VERSION = 1
_LABELS = {
    "1": 1,
    "0": 0,
    "target": 1,
    "nontarget": 0,
    "tgt": 1,
    "nontgt": 0,
    "imp": 0,
    "true": 1,
    "false": 0,
}


def _resolver(utts):
    """Map trial-list entries (ids, paths, file names) to utterance ids."""
    by_key = {}
    stems = {}
    for u in utts.values():
        by_key[u.id] = u.id
        stem = u.id.rsplit("/", 1)[-1]
        stems.setdefault(stem, set()).add(u.id)
    unique_stems = {
        s: next(iter(ids)) for s, ids in stems.items() if len(ids) == 1
    }

    def resolve(entry):
        """The audio file a metadata entry names, or ``None``."""
        key = strip_ext(entry.replace("\\", "/").lstrip("/"))
        if key.startswith("wav/"):
            key = key[len("wav/") :]
        if key in by_key:
            return by_key[key]
        return unique_stems.get(key.rsplit("/", 1)[-1])

    return resolve


def read_ffsvc_trials(path, resolve=None):
    """Parse a trial list in any of the accepted formats.

    Arguments
    ---------
    path : str
        ``<label> <enrol> <test>``, ``<enrol> <test> <label>`` (0/1,
        target/nontarget) or ``<enrol> <test>`` lines; one format per file.
    resolve : callable | None
        Maps an entry to an utterance id, ``None`` when unknown (an error
        naming the line); ``None`` keeps entries as paths without ``.wav``.

    Returns
    -------
    list of tuple
        ``(label or None, enrol_id, test_id)``.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "trials_dev_keys")
    >>> _ = open(p, "w").write("a.wav b.wav target\\na.wav c.wav nontarget\\n")
    >>> read_ffsvc_trials(p)
    [(1, 'a', 'b'), (0, 'a', 'c')]
    """
    trials = []
    layout = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            where = f"{path}:{lineno}"
            if len(fields) == 3 and fields[0] in ("0", "1"):
                this = "label-first"
                label, entries = int(fields[0]), fields[1:]
            elif len(fields) == 3 and fields[2].lower() in _LABELS:
                this = "label-last"
                label, entries = _LABELS[fields[2].lower()], fields[:2]
            elif len(fields) == 2:
                this = "unlabelled"
                label, entries = None, fields
            else:
                raise TrialListError(
                    where,
                    f"malformed line {line.strip()!r}; expected '<0|1> "
                    "<enrol> <test>', '<enrol> <test> <target|nontarget>' or "
                    "'<enrol> <test>'",
                )
            if layout is None:
                layout = this
            elif this != layout:
                raise TrialListError(
                    where,
                    f"is {this} but earlier lines are {layout}; use one "
                    "format per file",
                )
            ids = []
            for entry in entries:
                if resolve is None:
                    ids.append(strip_ext(entry.replace("\\", "/")))
                    continue
                utt_id = resolve(entry)
                if utt_id is None:
                    raise TrialListError(
                        where,
                        f"names {entry!r}, which is not a prepared utterance "
                        "(not an id, path or unique file name of any data "
                        "folder)",
                    )
                ids.append(utt_id)
            trials.append((label, ids[0], ids[1]))
    if not trials:
        raise TrialListError(path, "has no trials")
    return trials


def _resolve_trial_lists(trial_lists, folders):
    """Paths of the trial lists (auto-detected when ``None``)."""
    if trial_lists is None:
        found = []
        for folder in folders:
            for name in DEFAULT_TRIAL_LISTS:
                cand = find_named(folder, (name,))
                if cand is not None:
                    found.append(os.path.abspath(cand))
        if not found:
            raise TrialListError(
                ", ".join(folders),
                "no trial list found; expected one of "
                f"{list(DEFAULT_TRIAL_LISTS)} in a data folder or its meta/, "
                "or pass trial_lists",
            )
        return found
    if isinstance(trial_lists, (str, os.PathLike)):
        trial_lists = [trial_lists]
    paths = []
    for name in trial_lists:
        name = os.fspath(name)
        cand = name if os.path.isfile(name) else None
        for folder in folders:
            cand = cand or find_named(folder, (name,))
        if cand is None:
            raise TrialListError(
                name,
                "trial list not found (as a path, or in a data folder or "
                "its meta/)",
            )
        paths.append(os.path.abspath(cand))
    return paths


def prepare_ffsvc(
    data_folder,
    save_folder,
    trial_lists=None,
    meta_files=None,
    split_ratio=(90, 10),
    min_duration=1.0,
    sample_rate=16000,
    seed=1986,
    exclude_trial_speakers=True,
    device_with_distance=False,
    skip_prep=False,
    progress=True,
):
    """Prepare FFSVC (or minivox FFSVC-variant) CSV manifests with device labels.

    Arguments
    ---------
    data_folder : str | list
        One or several data folders (comma-separated string or list), each
        in one of the layouts of the module docstring.
    save_folder : str
        Where the outputs are written.
    trial_lists : str | list | None
        Trial lists as paths or names looked up in the data folders (and
        their ``meta/``); ``None`` takes every default-named list found.
    meta_files : list | None
        One metadata file (or ``None`` for auto-detection) per data folder.
    split_ratio : sequence of two numbers
        Train/dev proportions of each training speaker's recordings.
    min_duration : float
        Files shorter than this (seconds) are left out of train/dev (the
        paper keeps utterances longer than 1 s).
    sample_rate : int | None
        Required sample rate of every file used; ``None`` accepts any (the
        real FFSVC mixes 48 kHz phones and 16 kHz arrays: resample first,
        or resample in the pipeline and pass ``None``).
    seed : int
        Seed of the train/dev split.
    exclude_trial_speakers : bool
        Leave every trial speaker out of train/dev.
    device_with_distance : bool
        Device label ``<DEV>_<cm>`` (e.g. ``MIC_150``) instead of ``<DEV>``.
    progress : bool
        Show the header-reading progress bar.
    skip_prep : bool
        Do nothing and return the output paths (they must exist).

    Returns
    -------
    dict
        ``train``, ``dev``, ``test``, ``speakers``, ``devices``, ``opts``
        paths and ``trials``: the normalised trial-list copies.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> root = str(getfixture("tmpdir"))
    >>> lines = ["utt,spk,session,device,distance"]
    >>> for spk in ("s1", "s2", "s3"):
    ...     for take in ("00001", "00002"):
    ...         for dev, cm in (("CLS", "000"), ("MIC", "300")):
    ...             rel = f"wav/{spk}/a/{take}_{dev}_{cm}.wav"
    ...             write_wav(f"{root}/data/{rel}", np.zeros(1600), 16000)
    ...             lines.append(f"{rel},{spk},a,{dev},{int(cm) / 100}")
    >>> _ = open(f"{root}/data/meta.csv", "w").write("\\n".join(lines) + "\\n")
    >>> _ = open(f"{root}/trials.txt", "w").write(
    ...     "1 s3/a/00001_CLS_000.wav s3/a/00002_MIC_300.wav\\n")
    >>> out = prepare_ffsvc(f"{root}/data", f"{root}/save", [f"{root}/trials.txt"],
    ...                     meta_files=[f"{root}/data/meta.csv"],
    ...                     split_ratio=(50, 50), min_duration=0.0)
    >>> import csv as _csv
    >>> rows = list(_csv.DictReader(open(out["train"])))
    >>> sorted({r["spk_id"] for r in rows}), sorted({r["device"] for r in rows})
    (['s1', 's2'], ['CLS', 'MIC'])
    >>> open(out["trials"][0]).read()
    '1 s3/a/00001_CLS_000.wav s3/a/00002_MIC_300.wav\\n'
    """
    save_folder = os.path.abspath(os.fspath(save_folder))
    folders = split_folders(data_folder)
    trial_paths = None
    if skip_prep:
        # Reuse the lists of the last preparation when none are given.
        record = read_stage(save_folder)
        if trial_lists is None and record is not None:
            trial_paths = record.get("opts", {}).get("trial_lists")
        if trial_paths is None:
            trial_paths = _resolve_trial_lists(trial_lists, folders)
        paths = output_paths(save_folder, trial_paths, extra=["devices"])
        return prepared_paths(paths, save_folder)

    trial_paths = _resolve_trial_lists(trial_lists, folders)
    paths = output_paths(save_folder, trial_paths, extra=["devices"])
    if meta_files is not None:
        if isinstance(meta_files, (str, os.PathLike)):
            meta_files = [meta_files]
        meta_files = [
            None if m is None else os.path.abspath(m) for m in meta_files
        ]
        if len(meta_files) != len(folders):
            raise SSVInputError(
                "meta_files",
                f"has {len(meta_files)} entries for {len(folders)} data "
                "folders; give one per folder (None to auto-detect)",
            )
    opts = {
        "version": PREP_VERSION,
        "data_folder": folders,
        "trial_lists": trial_paths,
        "meta_files": meta_files,
        "split_ratio": check_split_ratio(split_ratio),
        "min_duration": float(min_duration),
        "sample_rate": None if sample_rate is None else int(sample_rate),
        "seed": int(seed),
        "exclude_trial_speakers": bool(exclude_trial_speakers),
        "device_with_distance": bool(device_with_distance),
    }
    if begin_preparation(save_folder, opts, "FFSVC", logger):
        return paths

    # --- utterance tables -------------------------------------------------
    utts = {}
    for k, folder in enumerate(folders):
        meta = None if meta_files is None else meta_files[k]
        source, rows = collect_utterances(folder, meta)
        n_dup = 0
        for u in rows:
            if u.id in utts:
                n_dup += 1  # the first folder given wins, as for VoxCeleb
                continue
            utts[u.id] = u
        logger.info(
            "%s: %d files from %s (%d ids already seen)",
            folder,
            len(rows),
            source,
            n_dup,
        )
    genders = read_gender_meta(folders)

    def device_of(u):
        """The device label of an utterance (with its distance if asked)."""
        if device_with_distance and u.distance:
            return f"{u.device}_{int(round(float(u.distance) * 100)):03d}"
        return u.device

    # --- trial lists ------------------------------------------------------
    resolve = _resolver(utts)
    trials_per_list = [read_ffsvc_trials(p, resolve) for p in trial_paths]
    test_ids = {}
    for trials in trials_per_list:
        for _, enrol, test in trials:
            test_ids.setdefault(enrol, None)
            test_ids.setdefault(test, None)
    test_spks = {utts[u].spk for u in test_ids}
    held_spks = {u.spk for u in utts.values() if u.held_out}

    by_spk = {}
    for u in utts.values():
        by_spk.setdefault(u.spk, []).append(u)
    all_spks = sorted(by_spk)
    excluded = held_spks | (test_spks if exclude_trial_speakers else set())
    train_spks = [s for s in all_spks if s not in excluded]
    if exclude_trial_speakers and test_spks:
        level = (
            logging.WARNING
            if len(test_spks) > len(all_spks) / 2
            else logging.INFO
        )
        logger.log(
            level,
            "%d of %d speakers appear in the trial lists and are excluded "
            "from train/dev",
            len(test_spks),
            len(all_spks),
        )
    if not train_spks:
        raise ManifestError(
            save_folder,
            f"all {len(all_spks)} speakers are trial or held-out speakers, so "
            "no training speaker is left; add a training folder or set "
            "exclude_trial_speakers=False",
        )

    # --- headers: only of the files that end up in a CSV ------------------
    needed = [u.id for s in train_spks for u in by_spk[s]]
    train_set = set(train_spks)
    needed += [u for u in test_ids if utts[u].spk not in train_set]
    infos = {}
    bar = tqdm(
        needed,
        desc="Reading audio headers",
        mininterval=2.0,
        disable=not progress,
    )
    for utt_id in bar:
        infos[utt_id] = audio_info(utts[utt_id].wav, expected_sr=sample_rate)

    def row(u):
        """The manifest row of an utterance."""
        info = infos[u.id]
        gender = u.gender or genders.get(u.spk, "u")
        return (
            u.id,
            repr(info.frames / info.samplerate),
            u.wav,
            0,
            info.frames,
            u.spk,
            device_of(u),
            u.distance,
            u.session,
            gender,
        )

    # --- train/dev split, per speaker and recording -----------------------
    rng = random.Random(seed)
    dev_frac = split_ratio[1] / float(sum(split_ratio))
    train_rows, dev_rows, n_short, n_used = [], [], 0, {}
    for spk in train_spks:
        takes = {}
        for u in by_spk[spk]:
            info = infos[u.id]
            if info.frames / info.samplerate < min_duration:
                n_short += 1
                continue
            takes.setdefault(u.recording, []).append(u)
        keys = sorted(takes)
        rng.shuffle(keys)
        # At least one training take per speaker: the classifier must know
        # every dev speaker.
        n_dev = min(int(len(keys) * dev_frac + 0.5), max(len(keys) - 1, 0))
        n_used[spk] = sum(len(v) for v in takes.values())
        for i, key in enumerate(keys):
            target = dev_rows if i < n_dev else train_rows
            target.extend(row(u) for u in takes[key])
    if n_short:
        logger.warning(
            "%d files shorter than min_duration=%.2f s were left out of "
            "train/dev",
            n_short,
            min_duration,
        )
    if train_rows and not dev_rows:
        raise ManifestError(
            paths["dev"],
            f"would be empty: with split_ratio={list(split_ratio)} no "
            "speaker has enough recordings for a dev share; raise the dev "
            "ratio",
        )
    test_rows = [row(utts[u]) for u in test_ids]
    logger.info(
        "train/dev/test: %d + %d + %d files, %d training speakers",
        len(train_rows),
        len(dev_rows),
        len(test_rows),
        sum(1 for s in train_spks if n_used.get(s)),
    )

    # --- write --------------------------------------------------------------
    write_csv(paths["train"], CSV_COLUMNS, sorted(train_rows))
    write_csv(paths["dev"], CSV_COLUMNS, sorted(dev_rows))
    write_csv(paths["test"], CSV_COLUMNS, test_rows)
    write_trial_copies(trials_per_list, paths["trials"])
    spk_rows = [
        (
            spk,
            by_spk[spk][0].gender or genders.get(spk, "u"),
            len(by_spk[spk]),
            speaker_split(spk, n_used, test_spks),
        )
        for spk in all_spks
    ]
    write_csv(paths["speakers"], SPEAKER_COLUMNS, spk_rows)
    counts = {}
    for name, rows in (
        ("train", train_rows),
        ("dev", dev_rows),
        ("test", test_rows),
    ):
        for r in rows:
            counts.setdefault(r[6], {"train": 0, "dev": 0, "test": 0})[
                name
            ] += 1
    write_csv(
        paths["devices"],
        DEVICE_COLUMNS,
        [
            (d, c["train"], c["dev"], c["test"])
            for d, c in sorted(counts.items())
        ],
    )
    finish_preparation(save_folder, opts, paths, "FFSVC", logger)
    return paths


def main(argv=None):
    """Command-line entry point.

    Arguments
    ---------
    argv : list of str | None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    dict
        The paths returned by :func:`prepare_ffsvc`.

    Example
    -------
    >>> main(["--help"])
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = preparation_parser(
        "python -m speechbrain_ssv.data.ffsvc",
        "Prepare FFSVC 2020/2022 (or minivox FFSVC) CSV manifests (train, "
        "dev, test) with device labels, the speaker and device lists and "
        "normalised trial lists.",
        trial_lists=None,
        unit="recordings",
        min_duration=1.0,
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1986,
        help="seed of the train/dev split (default: %(default)s)",
    )
    parser.add_argument(
        "--meta_files",
        nargs="+",
        default=None,
        help="one metadata file per data folder ('auto' to detect)",
    )
    parser.add_argument(
        "--sample_rate",
        type=int,
        default=16000,
        help="required sample rate in Hz; 0 accepts any (default: %(default)s)",
    )
    parser.add_argument(
        "--device_with_distance",
        action="store_true",
        help="label devices <DEV>_<cm> (e.g. MIC_150) instead of <DEV>",
    )
    return run_preparation_cli(
        parser,
        argv,
        prepare_ffsvc,
        meta_files=_cli_meta_files,
        sample_rate=lambda args: args.sample_rate or None,
        device_with_distance=lambda args: args.device_with_distance,
    )


def _cli_meta_files(args):
    """``--meta_files`` with ``auto`` as ``None`` (auto-detect)."""
    if args.meta_files is None:
        return None
    return [None if m == "auto" else m for m in args.meta_files]


if __name__ == "__main__":
    sys.exit(run_cli(main))
