"""VoxCeleb1/2 preparation: wav folders + metadata + trial lists -> CSV
manifests.

Reads the real VoxCeleb layout (and the embedded ``minivox`` corpus, which
copies it)::

    <data_folder>/wav/<spk_id>/<session>/<utt>.wav      16 kHz mono
    <data_folder>/meta/vox1_meta.csv                    tab-separated
    <data_folder>/meta/vox2_meta.csv                    comma-separated
    <data_folder>/meta/veri_test2.txt                   "<label> <enrol> <test>"

and writes, to ``save_folder``, ``train.csv``, ``dev.csv``, ``test.csv``,
``speakers.csv``, a normalised copy of every trial list and the record of
the options (``stage.json``, :mod:`speechbrain_ssv.data.preparation`: an
unchanged rerun is skipped). Every CSV has the columns::

    ID,duration,wav,start,stop,spk_id,session,gender

with one row per file, ``ID = <spk>/<session>/<utt>`` (the trial-list path
without ``.wav``), ``start = 0`` and ``stop`` = the number of samples: the
training pipeline draws its random crops itself
(:func:`speechbrain_ssv.data.pipelines.crop_pipeline`).

Differences from SpeechBrain's ``voxceleb_prepare.py`` (see
``notes/speechbrain-conventions.md`` §1.1), and why:

* durations come from the audio header, never from decoding, so preparing
  VoxCeleb2 (about 1.1M files) is bound by directory listing, not by I/O;
* the sample rate of every file used is checked (SpeechBrain assumes 16 kHz);
* test speakers are taken from *both* trial-list columns, not only the
  enrolment column;
* the train/dev split is per speaker (each speaker keeps at least one
  training utterance), so every dev speaker is known to the classifier and
  dev works as a classification-validation set;
* all trial lists and all data folders are used for ``test.csv`` (SpeechBrain
  only keeps the last folder of a comma list).

Pitfall kept from SpeechBrain, and warned about: the Vox1-E and Vox1-H lists
are drawn from the whole of VoxCeleb1, so with ``exclude_trial_speakers=True``
they remove all of VoxCeleb1 from training. Train on VoxCeleb2 in that case.

Authors
 * speechbrain-ssv developers 2026
"""

import hashlib
import logging
import os
import random
import sys

from tqdm import tqdm

from speechbrain_ssv.data.audio import audio_info
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
from speechbrain_ssv.utils.errors import (
    ManifestError,
    SSVInputError,
    TrialListError,
    run_cli,
)

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "ID",
    "duration",
    "wav",
    "start",
    "stop",
    "spk_id",
    "session",
    "gender",
)
META_FILES = ("vox1_meta.csv", "vox2_meta.csv")
EXPECTED_LAYOUT = "<data_folder>/wav/<spk_id>/<session>/<utt>.wav"
# Lists drawn from the whole of VoxCeleb1 (see the module docstring).
VOX1_WIDE_LISTS = (
    "list_test_all.txt",
    "list_test_all2.txt",
    "list_test_hard.txt",
    "list_test_hard2.txt",
)
# Bump when the output format changes, so old folders are re-prepared.
PREP_VERSION = 1


def _parse_meta(path):
    """Yield ``(spk_id, gender)`` from one VoxCeleb metadata file.

    VoxCeleb1's file is tab-separated; VoxCeleb2's is comma-separated with a
    space before every comma, so the separator is sniffed from the header
    and every field is stripped.
    """
    with open(path, encoding="utf-8", newline="") as f:
        header = f.readline()
        sep = "\t" if "\t" in header else ","
        names = [h.strip().lower() for h in header.split(sep)]
        if "gender" not in names:
            raise SSVInputError(
                path,
                f"has no 'Gender' column (header: {header.strip()!r}); "
                "expected VoxCeleb's vox1_meta.csv / vox2_meta.csv format",
            )
        g_col = names.index("gender")
        for line in f:
            fields = [x.strip() for x in line.split(sep)]
            if len(fields) <= g_col or not fields[0]:
                continue
            gender = fields[g_col].lower()[:1]
            if gender in ("m", "f"):
                yield fields[0], gender


def read_gender_meta(data_folder):
    """Read speaker genders from the VoxCeleb1 and VoxCeleb2 metadata files.

    Looks for ``vox1_meta.csv`` and ``vox2_meta.csv`` in ``<folder>/meta/``
    and ``<folder>/`` of every data folder and merges them (a later folder
    overrides an earlier one for the same speaker).

    Arguments
    ---------
    data_folder : str | list
        One or several data folders (see :func:`split_folders`).

    Returns
    -------
    dict
        ``spk_id -> 'm' | 'f'``; speakers without metadata are absent.

    Example
    -------
    >>> root = getfixture("tmpdir")
    >>> os.makedirs(os.path.join(root, "meta"))
    >>> _ = open(os.path.join(root, "meta", "vox2_meta.csv"), "w").write(
    ...     "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \\nid00012 ,n000012 ,M ,dev \\n"
    ... )
    >>> read_gender_meta(str(root))
    {'id00012': 'm'}
    """
    genders = {}
    for folder in split_folders(data_folder):
        for name in META_FILES:
            for cand in (
                os.path.join(folder, "meta", name),
                os.path.join(folder, name),
            ):
                if os.path.isfile(cand):
                    genders.update(_parse_meta(cand))
                    break
    return genders


def scan_wavs(folder):
    """List ``<folder>/wav/<spk>/<session>/<utt>.wav`` files.

    Uses ``os.scandir`` three levels deep (no recursive glob, no ``stat``
    beyond the directory entries), so VoxCeleb2 lists in seconds.

    Arguments
    ---------
    folder : str
        A data folder.

    Returns
    -------
    list of tuple
        ``(utt_id, path, spk_id, session)`` sorted by ``utt_id``, where
        ``utt_id = "<spk>/<session>/<utt>"``.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> root = str(getfixture("tmpdir"))
    >>> write_wav(os.path.join(root, "wav", "id1", "s1", "00001.wav"), np.zeros(16), 16000)
    >>> [u[0] for u in scan_wavs(root)]
    ['id1/s1/00001']
    """
    wav_root = os.path.join(folder, "wav")
    found = []
    if not os.path.isdir(wav_root):
        return found
    with os.scandir(wav_root) as spk_entries:
        spks = [e for e in spk_entries if e.is_dir()]
    for spk in spks:
        with os.scandir(spk.path) as sess_entries:
            sessions = [e for e in sess_entries if e.is_dir()]
        for sess in sessions:
            with os.scandir(sess.path) as utt_entries:
                for utt in utt_entries:
                    if utt.name.lower().endswith(".wav") and utt.is_file():
                        stem = utt.name[: -len(".wav")]
                        found.append(
                            (
                                f"{spk.name}/{sess.name}/{stem}",
                                utt.path,
                                spk.name,
                                sess.name,
                            )
                        )
    found.sort()
    return found


def resolve_trial_list(name, folders):
    """Find a trial list by name or path.

    Arguments
    ---------
    name : str
        A path that exists as given, or a file name looked up in
        ``<folder>/meta/`` and ``<folder>/`` of every data folder.
    folders : list of str
        Data folders.

    Returns
    -------
    str
        The path found.

    Example
    -------
    >>> resolve_trial_list("veri_test2.txt", ["/nonexistent"])
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.TrialListError: veri_test2.txt: trial list not found; looked at: veri_test2.txt, /nonexistent/meta/veri_test2.txt, /nonexistent/veri_test2.txt
    """
    name = os.fspath(name)
    candidates = [name]
    for folder in folders:
        candidates += [
            os.path.join(folder, "meta", name),
            os.path.join(folder, name),
        ]
    for cand in candidates:
        if os.path.isfile(cand):
            return cand
    raise TrialListError(
        name, "trial list not found; looked at: " + ", ".join(candidates)
    )


def read_trial_list(path, known_ids=None):
    """Parse a VoxCeleb trial list.

    Arguments
    ---------
    path : str
        Trial list, lines ``"<label> <enrol>.wav <test>.wav"``.
    known_ids : container | None
        Utterance ids that exist on disk; a trial naming any other file
        raises. ``None`` skips the check.

    Returns
    -------
    list of tuple
        ``(label, enrol_id, test_id)`` with ids without ``.wav``.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "trials.txt")
    >>> _ = open(p, "w").write("1 a/s/1.wav a/t/2.wav\\n0 a/s/1.wav b/u/3.wav\\n")
    >>> read_trial_list(p)
    [(1, 'a/s/1', 'a/t/2'), (0, 'a/s/1', 'b/u/3')]
    """
    trials = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{lineno}"
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise TrialListError(
                    where,
                    f"malformed line {line.strip()!r}; expected "
                    "'<0|1> <enrol path>.wav <test path>.wav'",
                )
            ids = []
            for rel in fields[1:]:
                rel = rel.replace("\\", "/").lstrip("/")
                if rel.startswith("wav/"):
                    rel = rel[len("wav/") :]
                utt_id = rel[: -len(".wav")] if rel.endswith(".wav") else rel
                if known_ids is not None and utt_id not in known_ids:
                    raise TrialListError(
                        where,
                        f"names {rel!r}, which is not under wav/ in any data "
                        "folder",
                    )
                ids.append(utt_id)
            trials.append((int(fields[0]), ids[0], ids[1]))
    if not trials:
        raise TrialListError(path, "has no trials")
    return trials


def _row(utt_id, path, spk, session, gender, info):
    return (
        utt_id,
        repr(info.frames / info.samplerate),
        path,
        0,
        info.frames,
        spk,
        session,
        gender,
    )


def prepare_voxceleb(
    data_folder,
    save_folder,
    trial_lists=("veri_test2.txt",),
    split_ratio=(90, 10),
    min_duration=3.0,
    seed=1986,
    exclude_trial_speakers=True,
    max_speakers=None,
    skip_prep=False,
    progress=True,
):
    """Prepare VoxCeleb1/2 (or minivox) CSV manifests and trial lists.

    Arguments
    ---------
    data_folder : str | list
        One or several data folders (comma-separated string or list), each
        laid out as ``<folder>/wav/<spk>/<session>/<utt>.wav``.
    save_folder : str
        Where the outputs are written.
    trial_lists : sequence of str
        Trial lists (``veri_test2.txt``, ``list_test_all2.txt``,
        ``list_test_hard2.txt``), as paths or as names looked up in
        ``<folder>/meta/`` and ``<folder>/``.
    split_ratio : sequence of two numbers
        Train/dev proportions of each training speaker's utterances.
    min_duration : float
        Files shorter than this (seconds) are left out of train/dev.
    seed : int
        Seed of the split (and of the speaker subset).
    exclude_trial_speakers : bool
        Leave every speaker named in a trial list (either column) out of
        train/dev. With Vox1-E/H lists this removes all of VoxCeleb1.
    max_speakers : int | None
        Keep a seeded random subset of this many training speakers (quick
        experiments).
    progress : bool
        Show the header-reading progress bar (``--noprogressbar`` turns it
        off in the recipes).
    skip_prep : bool
        Do nothing and return the output paths (they must exist).

    Returns
    -------
    dict
        ``train``, ``dev``, ``test``, ``speakers``, ``opts`` paths and
        ``trials``: the list of normalised trial-list copies.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> root = str(getfixture("tmpdir"))
    >>> for spk in ("id1", "id2", "id3"):
    ...     for utt in ("00001", "00002"):
    ...         write_wav(f"{root}/data/wav/{spk}/s1/{utt}.wav", np.zeros(100), 16000)
    >>> _ = open(f"{root}/trials.txt", "w").write("1 id3/s1/00001.wav id3/s1/00002.wav\\n")
    >>> out = prepare_voxceleb(
    ...     f"{root}/data",
    ...     f"{root}/save",
    ...     [f"{root}/trials.txt"],
    ...     split_ratio=(50, 50),
    ...     min_duration=0.0,
    ... )
    >>> len(open(out["train"]).readlines()) + len(open(out["dev"]).readlines()) - 2
    4
    >>> open(out["test"]).readline().strip()
    'ID,duration,wav,start,stop,spk_id,session,gender'
    """
    save_folder = os.path.abspath(os.fspath(save_folder))
    if isinstance(trial_lists, (str, os.PathLike)):
        trial_lists = [trial_lists]
    trial_lists = [os.fspath(t) for t in trial_lists]
    paths = output_paths(save_folder, trial_lists)
    if skip_prep:
        return prepared_paths(paths, save_folder)

    folders = split_folders(data_folder)
    opts = {
        "version": PREP_VERSION,
        "data_folder": folders,
        "trial_lists": trial_lists,
        "split_ratio": check_split_ratio(split_ratio),
        "min_duration": float(min_duration),
        "seed": int(seed),
        "exclude_trial_speakers": bool(exclude_trial_speakers),
        "max_speakers": None if max_speakers is None else int(max_speakers),
    }
    # --- find the audio -------------------------------------------------
    files = {}
    for folder in folders:
        if not os.path.isdir(folder):
            raise ManifestError(
                folder,
                "data folder does not exist; expected the layout "
                f"{EXPECTED_LAYOUT}",
            )
        found = scan_wavs(folder)
        if not found:
            raise ManifestError(
                folder,
                f"no wav files found; expected the layout {EXPECTED_LAYOUT} "
                "(convert VoxCeleb2 m4a to 16 kHz wav first)",
            )
        n_dup = 0
        for utt_id, path, spk, sess in found:
            if utt_id in files:
                # VoxCeleb recipes copy the Vox1 test set next to Vox2;
                # the first folder given wins.
                n_dup += 1
                continue
            files[utt_id] = (path, spk, sess)
        logger.info(
            "%s: %d wav files (%d already seen)", folder, len(found), n_dup
        )
    # The listing is part of the options: a speaker folder or file added
    # or removed after preparation re-prepares, instead of "up to date".
    # (Names only: scandir without stat keeps this cheap at VoxCeleb2 scale,
    # so a file rewritten in place is not noticed.)
    listing = hashlib.sha1()
    for utt_id in sorted(files):
        listing.update(f"{utt_id}\t{files[utt_id][0]}\n".encode())
    opts["audio_listing"] = listing.hexdigest()
    if begin_preparation(save_folder, opts, "VoxCeleb", logger):
        return paths

    genders = read_gender_meta(folders)

    # --- trial lists ----------------------------------------------------
    trials_per_list = []
    for name in trial_lists:
        list_path = resolve_trial_list(name, folders)
        trials_per_list.append(read_trial_list(list_path, known_ids=files))
    test_ids = {}
    for trials in trials_per_list:
        for _, enrol, test in trials:
            test_ids.setdefault(enrol, None)
            test_ids.setdefault(test, None)
    test_spks = {files[u][1] for u in test_ids}

    # --- choose training speakers ----------------------------------------
    utts_by_spk = {}
    for utt_id, (_, spk, _) in files.items():
        utts_by_spk.setdefault(spk, []).append(utt_id)
    all_spks = sorted(utts_by_spk)
    train_spks = [
        s for s in all_spks if not (exclude_trial_speakers and s in test_spks)
    ]
    if exclude_trial_speakers and test_spks:
        n_excl_utts = sum(len(utts_by_spk[s]) for s in test_spks)
        vox1_wide = [
            t for t in trial_lists if os.path.basename(t) in VOX1_WIDE_LISTS
        ]
        message = (
            "%d of %d speakers (%d files) appear in the trial lists and are "
            "excluded from train/dev"
        )
        args = (len(test_spks), len(all_spks), n_excl_utts)
        if vox1_wide or len(test_spks) > len(all_spks) / 2:
            logger.warning(
                "!!! " + message + ". The Vox1-E/H lists (%s) cover the whole "
                "of VoxCeleb1, so VoxCeleb1 cannot be used for training with "
                "them: train on VoxCeleb2, or pass "
                "exclude_trial_speakers=False knowingly. !!!",
                *args,
                ", ".join(vox1_wide) or "or lists this large",
            )
        else:
            logger.info(message, *args)
    if not train_spks:
        raise ManifestError(
            save_folder,
            f"all {len(all_spks)} speakers appear in the trial lists, so no "
            "training speaker is left; add a training corpus (e.g. "
            "VoxCeleb2) or set exclude_trial_speakers=False",
        )
    rng = random.Random(seed)
    if max_speakers is not None and max_speakers < len(train_spks):
        train_spks = sorted(rng.sample(train_spks, int(max_speakers)))

    # --- headers: only of the files that end up in a CSV ----------------
    train_set = set(train_spks)
    needed = [u for s in train_spks for u in utts_by_spk[s]]
    needed += [u for u in test_ids if files[u][1] not in train_set]
    infos = {}
    bar = tqdm(
        needed,
        desc="Reading audio headers",
        mininterval=2.0,
        disable=not progress,
    )
    for utt_id in bar:
        infos[utt_id] = audio_info(files[utt_id][0])

    # --- train/dev split ------------------------------------------------
    dev_frac = split_ratio[1] / float(sum(split_ratio))
    train_rows, dev_rows, n_short = [], [], 0
    n_used = {}
    for spk in train_spks:
        utts = []
        for u in utts_by_spk[spk]:
            if infos[u].frames / infos[u].samplerate < min_duration:
                n_short += 1
            else:
                utts.append(u)
        n_used[spk] = len(utts)
        rng.shuffle(utts)
        # Per-speaker split with >= 1 training utterance: a dev speaker
        # unseen in training could not be encoded by the classifier.
        n_dev = min(int(len(utts) * dev_frac + 0.5), max(len(utts) - 1, 0))
        gender = genders.get(spk, "u")
        for i, u in enumerate(sorted(utts[:n_dev]) + sorted(utts[n_dev:])):
            path, _, sess = files[u]
            row = _row(u, path, spk, sess, gender, infos[u])
            (dev_rows if i < n_dev else train_rows).append(row)
    logger.info(
        "train/dev: %d speakers, %d + %d files; %d files shorter than %.2f s "
        "dropped",
        sum(1 for s in train_spks if n_used[s]),
        len(train_rows),
        len(dev_rows),
        n_short,
        min_duration,
    )
    if n_short:
        logger.warning(
            "%d files shorter than min_duration=%.2f s were left out of "
            "train/dev",
            n_short,
            min_duration,
        )

    test_rows = []
    for u in test_ids:
        path, spk, sess = files[u]
        test_rows.append(
            _row(u, path, spk, sess, genders.get(spk, "u"), infos[u])
        )

    if train_rows and not dev_rows:
        raise ManifestError(
            paths["dev"],
            f"would be empty: with split_ratio={list(split_ratio)} no "
            f"speaker has enough utterances ({len(train_rows)} training "
            "files) for a dev share; raise the dev ratio",
        )

    # --- write ----------------------------------------------------------
    write_csv(paths["train"], CSV_COLUMNS, sorted(train_rows))
    write_csv(paths["dev"], CSV_COLUMNS, sorted(dev_rows))
    write_csv(paths["test"], CSV_COLUMNS, test_rows)
    write_trial_copies(trials_per_list, paths["trials"])
    spk_rows = [
        (
            spk,
            genders.get(spk, "u"),
            len(utts_by_spk[spk]),
            speaker_split(spk, n_used, test_spks),
        )
        for spk in all_spks
    ]
    write_csv(paths["speakers"], SPEAKER_COLUMNS, spk_rows)
    finish_preparation(save_folder, opts, paths, "VoxCeleb", logger)
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
        The paths returned by :func:`prepare_voxceleb`.

    Example
    -------
    >>> main(["--help"])
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = preparation_parser(
        "python -m speechbrain_ssv.data.voxceleb",
        "Prepare VoxCeleb1/2 (or minivox) CSV manifests (train, dev, test), "
        "the speaker list and normalised trial lists from folders laid out "
        "as <folder>/wav/<spk>/<session>/<utt>.wav.",
        trial_lists=["veri_test2.txt"],
        unit="utterances",
        min_duration=3.0,
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1986,
        help="seed of the train/dev split and of the speaker subset "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max_speakers",
        type=int,
        default=None,
        help="keep a seeded random subset of this many training speakers "
        "(default: all)",
    )
    return run_preparation_cli(
        parser,
        argv,
        prepare_voxceleb,
        max_speakers=lambda args: args.max_speakers,
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
