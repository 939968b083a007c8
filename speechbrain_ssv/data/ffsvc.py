"""FFSVC 2020/2022 preparation: audio + speaker/device metadata + trial lists
-> CSV manifests with device labels.

The disentanglement recipe (Mun, Han et al., FFSVC 2022) fine-tunes on
utterances that carry a speaker *and* a recording-device label. One code
path reads every supported layout: each data folder is turned into a table
of utterances ``(id, wav, speaker, device, distance, session, gender,
recording)`` from the first source found in it, then the split, the trial
lists and the CSVs are the same for all.

Sources, in the order they are looked for in each data folder:

1. **A metadata CSV** (``meta_files=``, or ``<folder>/meta/ffsvc_meta.csv``):
   comma- or tab-separated with a header; required columns ``utt`` (the
   wav path, relative to the folder or absolute), ``spk`` and ``device``;
   optional ``session``, ``distance`` (metres), ``gender`` (m/f),
   ``recording`` (the same take through several devices) and ``split``
   (``test`` holds the row's speaker out of training). The embedded
   corpus's FFSVC variant (``minivox --variant ffsvc``) writes exactly this
   file, next to ``wav/<spk>/<session>/<NNNNN>_<DEV>_<cm>.wav``. It is also
   the way in for any real layout whose names carry no labels (e.g. the
   original FFSVC 2020 train/dev release): write the table once.
2. **FFSVC 2022 ``dev_meta_list``** (``<folder>/dev_meta_list[.txt]`` or
   ``<folder>/meta/...``): a header ``Original_Name FFSVC2022_Name`` and one
   line per file, e.g. ``T0344_344I1M_1_0307_normal ffsvc22_dev_000000``;
   the audio is ``ffsvc22_dev_000000.wav`` anywhere under the folder, the
   labels come from the original name (below).
3. **File names** of the FFSVC 2020 supplementary set (the F/S/T visit
   archives): every ``*.wav`` under the folder, named with an original name.

An original name is parsed as (:func:`parse_ffsvc_name`)::

    <V><SSSS>_<sss><DEV><dist>M_<c>_<uuuu>_<pace>    e.g. T0344_344I1M_1_0307_normal

``V`` the visit (F, S, T: first/second/third; used as the session), ``SSSS``
the speaker, ``DEV`` the device letters (``I`` iPhone, ``PAD`` iPad, ...),
``dist`` the distance in metres, ``c`` a channel/take index, ``uuuu`` the
utterance index and ``pace`` the speaking rate. **Assumptions**, since the
official documentation of the names is not public: the parse follows the
``dev_meta_list`` published with FFSVC 2022 and third-party code that reads
it; the recording group (kept on one side of the train/dev split) is
``(speaker, visit, utterance index)``, i.e. the same take through several
devices/channels. Names that do not parse raise an error naming the file;
write a metadata CSV (source 1) for such data.

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
and ``prepare_opts.json`` (written last; an unchanged rerun is skipped).
Speakers of any trial are left out of train/dev; the train/dev split is per
speaker and per recording group, so dev speakers are known to the
classifiers and no take is on both sides. Every file is written atomically.

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import csv
import json
import logging
import os
import random
import re
import sys
from typing import NamedTuple

from tqdm import tqdm

from speechbrain_ssv.data.audio import audio_info
from speechbrain_ssv.data.voxceleb import read_gender_meta, split_folders
from speechbrain_ssv.utils.errors import (
    ManifestError,
    SSVInputError,
    TrialListError,
    run_cli,
)
from speechbrain_ssv.utils.io import atomic_path, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "CSV_COLUMNS",
    "Utterance",
    "collect_utterances",
    "main",
    "parse_ffsvc_name",
    "prepare_ffsvc",
    "read_dev_meta_list",
    "read_ffsvc_trials",
    "read_meta_csv",
    "scan_named_wavs",
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
SPEAKER_COLUMNS = ("spk_id", "gender", "n_utts", "split")
DEVICE_COLUMNS = ("device", "n_train", "n_dev", "n_test")
META_CSV = "ffsvc_meta.csv"
DEV_META_LISTS = ("dev_meta_list", "dev_meta_list.txt")
DEFAULT_TRIAL_LISTS = (
    "veri_test2.txt",
    "trials_dev_keys",
    "trials_dev_keys.txt",
)
AUDIO_EXTS = (".wav", ".flac")
OPTS_FILE = "prepare_opts.json"
# Bump when the output format changes, so old folders are re-prepared.
PREP_VERSION = 1

_NAME_RE = re.compile(
    r"^(?P<visit>[A-Za-z])(?P<spk>\d{3,5})_(?P<cond>[A-Za-z0-9.\-]+)_"
    r"(?P<channel>\d+)_(?P<utt>\d+)_(?P<pace>[A-Za-z]+)$"
)
_COND_RE = re.compile(r"^\d*(?P<device>[A-Za-z]+?)(?P<dist>-?\d+(?:\.\d+)?)M$")
# minivox FFSVC names end in _<DEV>_<cm>; stripping it gives the take.
_MINIVOX_STEM_RE = re.compile(r"^(?P<base>.+)_(?P<dev>[A-Za-z]+)_(?P<cm>\d+)$")
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


class Utterance(NamedTuple):
    """One audio file and its labels.

    Arguments
    ---------
    id : str
        Utterance id (the ``ID`` column and the trial-list key).
    wav : str
        Absolute path.
    spk : str
        Speaker label.
    device : str
        Recording-device label.
    distance : str
        Distance in metres, or ``""`` when unknown.
    session : str
        Session / visit, or ``""``.
    gender : str
        ``m``, ``f`` or ``""`` (filled from VoxCeleb-style meta files or
        ``u`` later).
    recording : str
        Take key: files with the same ``(spk, recording)`` are the same
        speech through different devices and stay on one side of the split.
    held_out : bool
        The metadata marks the speaker as a test speaker.
    """

    id: str
    wav: str
    spk: str
    device: str
    distance: str
    session: str
    gender: str
    recording: str
    held_out: bool = False


def _strip_ext(name):
    low = name.lower()
    for ext in AUDIO_EXTS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def _norm_distance(value):
    """Distance string in metres, ``""`` when absent or not a number."""
    value = str(value).strip()
    if not value:
        return ""
    try:
        return repr(float(value))
    except ValueError:
        return ""


def parse_ffsvc_name(name):
    """Labels from an FFSVC original file name.

    Arguments
    ---------
    name : str
        ``<V><SSSS>_<sss><DEV><dist>M_<c>_<uuuu>_<pace>`` with or without a
        directory and ``.wav`` (see the module docstring for the
        assumptions).

    Returns
    -------
    dict | None
        ``spk``, ``visit``, ``device``, ``distance`` (metres, string),
        ``channel``, ``utt``, ``pace``; ``None`` when the name does not
        match. A condition without a readable device/distance keeps the raw
        condition as the device and an empty distance.

    Example
    -------
    >>> d = parse_ffsvc_name("T0344_344I1M_1_0307_normal.wav")
    >>> d["spk"], d["visit"], d["device"], d["distance"], d["utt"]
    ('0344', 'T', 'I', '1.0', '0307')
    >>> parse_ffsvc_name("S0449_449PAD5M_1_0233_fast")["device"]
    'PAD'
    >>> parse_ffsvc_name("id00001/abc/00001") is None
    True
    """
    stem = _strip_ext(os.path.basename(str(name).strip()))
    match = _NAME_RE.match(stem)
    if match is None:
        return None
    cond = match["cond"]
    cmatch = _COND_RE.match(cond)
    if cmatch is not None:
        device = cmatch["device"].upper()
        distance = _norm_distance(cmatch["dist"])
    else:
        device, distance = re.sub(r"^\d+", "", cond).upper() or cond, ""
    return {
        "spk": match["spk"],
        "visit": match["visit"].upper(),
        "device": device,
        "distance": distance,
        "channel": match["channel"],
        "utt": match["utt"],
        "pace": match["pace"].lower(),
    }


def _utt_id(path, folder):
    """Id of a file: its path under ``<folder>/wav/`` (or ``<folder>``)
    without extension, ``/``-separated; the file name for outside paths."""
    rel = os.path.relpath(path, folder)
    if rel.startswith(".."):
        return _strip_ext(os.path.basename(path))
    rel = rel.replace(os.sep, "/")
    if rel.startswith("wav/"):
        rel = rel[len("wav/") :]
    return _strip_ext(rel)


def _sniff_reader(f, path):
    header = f.readline()
    if not header.strip():
        raise ManifestError(path, "is empty; expected a header line")
    sep = "\t" if header.count("\t") > header.count(",") else ","
    names = [h.strip().lower() for h in header.rstrip("\r\n").split(sep)]
    return sep, names


def read_meta_csv(path, folder):
    """Read a metadata CSV (source 1 of the module docstring).

    Arguments
    ---------
    path : str
        The CSV (comma- or tab-separated, header required).
    folder : str
        Data folder that relative ``utt`` paths are relative to.

    Returns
    -------
    list of Utterance
        In file order.

    Example
    -------
    >>> root = str(getfixture("tmpdir"))
    >>> p = os.path.join(root, "meta.csv")
    >>> _ = open(p, "w").write(
    ...     "utt,spk,session,device,distance\\n"
    ...     "wav/id1/s1/00001_MIC_150.wav,id1,s1,MIC,1.5\\n"
    ... )
    >>> u = read_meta_csv(p, root)[0]
    >>> u.id, u.device, u.distance, u.recording
    ('id1/s1/00001_MIC_150', 'MIC', '1.5', 's1/00001')
    """
    folder = os.path.abspath(folder)
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        sep, names = _sniff_reader(f, path)
        missing = [c for c in ("utt", "spk", "device") if c not in names]
        if missing:
            raise ManifestError(
                path,
                f"lacks column(s) {missing} (header: {names}); expected "
                "utt,spk,device[,session,distance,gender,recording,split]",
            )
        col = {n: i for i, n in enumerate(names)}
        reader = csv.reader(f, delimiter=sep)
        for lineno, fields in enumerate(reader, start=2):
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) < len(names):
                raise ManifestError(
                    f"{path}:{lineno}",
                    f"has {len(fields)} fields; the header has {len(names)}",
                )

            def get(key, fields=fields):
                """The stripped value of column ``key``, or ``''`` when absent."""
                return fields[col[key]].strip() if key in col else ""

            utt, spk, device = get("utt"), get("spk"), get("device")
            if not utt or not spk or not device:
                raise ManifestError(
                    f"{path}:{lineno}",
                    "utt, spk and device must be non-empty",
                )
            wav = utt if os.path.isabs(utt) else os.path.join(folder, utt)
            wav = os.path.normpath(wav)
            utt_id = _utt_id(wav, folder)
            session = get("session")
            recording = get("recording")
            if not recording:
                stem = utt_id.rsplit("/", 1)[-1]
                m = _MINIVOX_STEM_RE.match(stem)
                if m is not None and m["dev"].upper() == device.upper():
                    stem = m["base"]
                recording = f"{session}/{stem}" if session else stem
            gender = get("gender").lower()[:1]
            rows.append(
                Utterance(
                    id=utt_id,
                    wav=wav,
                    spk=spk,
                    device=device,
                    distance=_norm_distance(get("distance")),
                    session=session,
                    gender=gender if gender in ("m", "f") else "",
                    recording=recording,
                    held_out=get("split").lower() == "test",
                )
            )
    if not rows:
        raise ManifestError(path, "has a header but no rows")
    return rows


def _find_audio(folder):
    """``stem -> path`` of every audio file under ``folder`` (recursive)."""
    found = {}
    dups = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in ("noise", "rir")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTS):
                continue
            stem = _strip_ext(name)
            if stem in found:
                dups.add(stem)
            found[stem] = os.path.join(dirpath, name)
    return found, dups


def _from_name(utt_id, wav, parsed):
    return Utterance(
        id=utt_id,
        wav=wav,
        spk=parsed["spk"],
        device=parsed["device"],
        distance=parsed["distance"],
        session=parsed["visit"],
        gender="",
        recording=f"{parsed['visit']}/{parsed['utt']}",
    )


def read_dev_meta_list(path, folder):
    """Read an FFSVC 2022 ``dev_meta_list`` (source 2 of the module docstring).

    Arguments
    ---------
    path : str
        ``Original_Name FFSVC2022_Name`` list.
    folder : str
        Data folder searched (recursively) for ``<FFSVC2022_Name>.wav``.

    Returns
    -------
    list of Utterance
        Ids are the FFSVC 2022 names (as in ``trials_dev_keys``).

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> root = str(getfixture("tmpdir"))
    >>> write_wav(os.path.join(root, "dev", "ffsvc22_dev_000001.wav"), np.zeros(16), 16000)
    >>> p = os.path.join(root, "dev_meta_list")
    >>> _ = open(p, "w").write(
    ...     "Original_Name FFSVC2022_Name\\nF0101_101PAD3M_1_0001_normal ffsvc22_dev_000001\\n"
    ... )
    >>> u = read_dev_meta_list(p, root)[0]
    >>> u.id, u.spk, u.device, u.distance, u.session
    ('ffsvc22_dev_000001', '0101', 'PAD', '3.0', 'F')
    """
    audio, dups = _find_audio(folder)
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines or "original_name" not in lines[0].lower():
        raise ManifestError(
            path,
            "does not start with the header 'Original_Name FFSVC2022_Name'; "
            "expected FFSVC 2022's dev_meta_list",
        )
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 2:
            raise ManifestError(
                where,
                f"malformed line {line.strip()!r}; expected "
                "'<Original_Name> <FFSVC2022_Name>'",
            )
        original, name = fields
        parsed = parse_ffsvc_name(original)
        if parsed is None:
            raise ManifestError(
                where,
                f"original name {original!r} does not parse; expected "
                "<V><SSSS>_<sss><DEV><dist>M_<c>_<uuuu>_<pace>",
            )
        stem = _strip_ext(name)
        if stem not in audio:
            raise ManifestError(
                where,
                f"names {stem}.wav, which is not under {folder}",
            )
        if stem in dups:
            raise ManifestError(
                where, f"{stem}.wav exists twice under {folder}; keep one"
            )
        rows.append(_from_name(stem, os.path.abspath(audio[stem]), parsed))
    if not rows:
        raise ManifestError(path, "has a header but no files")
    return rows


def scan_named_wavs(folder):
    """Audio files named with FFSVC original names (source 3).

    Arguments
    ---------
    folder : str
        Searched recursively (``noise/`` and ``rir/`` skipped).

    Returns
    -------
    list of Utterance
        Ids are the file stems, sorted.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> root = str(getfixture("tmpdir"))
    >>> write_wav(os.path.join(root, "T", "T0002_002I1M_1_0003_slow.wav"), np.zeros(16), 16000)
    >>> [(u.id, u.spk, u.device) for u in scan_named_wavs(root)]
    [('T0002_002I1M_1_0003_slow', '0002', 'I')]
    """
    audio, dups = _find_audio(folder)
    if not audio:
        raise ManifestError(
            folder,
            "has no metadata (meta/ffsvc_meta.csv, dev_meta_list) and no "
            "audio files; expected one of the layouts in "
            "speechbrain_ssv.data.ffsvc",
        )
    if dups:
        raise ManifestError(
            folder,
            f"{len(dups)} file names occur twice (e.g. "
            f"{sorted(dups)[:3]}); ids are file names in this layout",
        )
    rows, bad = [], []
    for stem in sorted(audio):
        parsed = parse_ffsvc_name(stem)
        if parsed is None:
            bad.append(audio[stem])
            continue
        rows.append(_from_name(stem, os.path.abspath(audio[stem]), parsed))
    if bad:
        raise ManifestError(
            bad[0],
            f"and {len(bad) - 1} other files have names that are not FFSVC "
            "original names (<V><SSSS>_<sss><DEV><dist>M_<c>_<uuuu>_<pace>) "
            f"and {folder} has no metadata; write a metadata CSV "
            "(utt,spk,device,...) and pass it as meta_files",
        )
    return rows


def _find_named(folder, names):
    for name in names:
        for cand in (
            os.path.join(folder, "meta", name),
            os.path.join(folder, name),
        ):
            if os.path.isfile(cand):
                return cand
    return None


def collect_utterances(folder, meta_file=None):
    """The utterance table of one data folder, from its first source.

    Arguments
    ---------
    folder : str
        Data folder.
    meta_file : str | None
        Explicit metadata file (CSV or ``dev_meta_list``); ``None`` looks
        for ``meta/ffsvc_meta.csv``, then ``dev_meta_list``, then parses
        file names.

    Returns
    -------
    source : str
        The file (or folder, for file names) the table came from.
    rows : list of Utterance

    Example
    -------
    >>> collect_utterances("/nonexistent")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.ManifestError: /nonexistent: data folder does not exist
    """
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise ManifestError(folder, "data folder does not exist")
    if meta_file is None:
        meta_file = _find_named(folder, (META_CSV,)) or _find_named(
            folder, DEV_META_LISTS
        )
    if meta_file is None:
        return folder, scan_named_wavs(folder)
    meta_file = os.fspath(meta_file)
    if not os.path.isfile(meta_file):
        raise ManifestError(meta_file, "metadata file does not exist")
    with open(meta_file, encoding="utf-8") as f:
        head = f.readline().lower()
    if "original_name" in head:
        return meta_file, read_dev_meta_list(meta_file, folder)
    return meta_file, read_meta_csv(meta_file, folder)


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
        key = _strip_ext(entry.replace("\\", "/").lstrip("/"))
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
                    ids.append(_strip_ext(entry.replace("\\", "/")))
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
                cand = _find_named(folder, (name,))
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
            cand = cand or _find_named(folder, (name,))
        if cand is None:
            raise TrialListError(
                name,
                "trial list not found (as a path, or in a data folder or "
                "its meta/)",
            )
        paths.append(os.path.abspath(cand))
    return paths


def _output_paths(save_folder, trial_paths):
    names = [os.path.basename(t) for t in trial_paths]
    if len(set(names)) != len(names):
        raise SSVInputError(
            "trial_lists",
            f"two lists share a file name ({names}); their copies in the "
            "save folder would overwrite each other",
        )
    return {
        "train": os.path.join(save_folder, "train.csv"),
        "dev": os.path.join(save_folder, "dev.csv"),
        "test": os.path.join(save_folder, "test.csv"),
        "speakers": os.path.join(save_folder, "speakers.csv"),
        "devices": os.path.join(save_folder, "devices.csv"),
        "trials": [os.path.join(save_folder, n) for n in names],
        "opts": os.path.join(save_folder, OPTS_FILE),
    }


def _flat(paths):
    return [
        p for v in paths.values() for p in (v if isinstance(v, list) else [v])
    ]


def _write_csv(path, header, rows, allow_empty=False):
    if not rows and not allow_empty:
        raise ManifestError(path, "would be empty; no utterance qualifies")
    with (
        atomic_path(path) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


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
        opts_path = os.path.join(save_folder, OPTS_FILE)
        if trial_lists is None and os.path.isfile(opts_path):
            with open(opts_path, encoding="utf-8") as f:
                trial_paths = json.load(f).get("trial_lists")
        if trial_paths is None:
            trial_paths = _resolve_trial_lists(trial_lists, folders)
        paths = _output_paths(save_folder, trial_paths)
        missing = [p for p in _flat(paths) if not os.path.isfile(p)]
        if missing:
            raise ManifestError(
                save_folder,
                f"skip_prep=True but outputs are missing: {missing}; run the "
                "preparation once with skip_prep=False",
            )
        return paths

    trial_paths = _resolve_trial_lists(trial_lists, folders)
    paths = _output_paths(save_folder, trial_paths)
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
    if len(split_ratio) != 2 or min(split_ratio) <= 0:
        raise SSVInputError(
            "split_ratio",
            f"is {split_ratio}; expected two positive numbers (train, dev)",
        )
    opts = {
        "version": PREP_VERSION,
        "data_folder": folders,
        "trial_lists": trial_paths,
        "meta_files": meta_files,
        "split_ratio": [float(r) for r in split_ratio],
        "min_duration": float(min_duration),
        "sample_rate": None if sample_rate is None else int(sample_rate),
        "seed": int(seed),
        "exclude_trial_speakers": bool(exclude_trial_speakers),
        "device_with_distance": bool(device_with_distance),
    }
    if all(os.path.isfile(p) for p in _flat(paths)):
        try:
            with open(paths["opts"], encoding="utf-8") as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None
        if previous == opts:
            logger.info(
                "FFSVC preparation skipped: %s is up to date (options "
                "unchanged)",
                save_folder,
            )
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
    os.makedirs(save_folder, exist_ok=True)
    _write_csv(paths["train"], CSV_COLUMNS, sorted(train_rows))
    _write_csv(paths["dev"], CSV_COLUMNS, sorted(dev_rows))
    _write_csv(paths["test"], CSV_COLUMNS, test_rows)
    for trials, out in zip(trials_per_list, paths["trials"]):
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for label, enrol, test in trials:
                prefix = "" if label is None else f"{label} "
                f.write(f"{prefix}{enrol}.wav {test}.wav\n")
    spk_rows = []
    for spk in all_spks:
        roles = []
        if n_used.get(spk):
            roles.append("train")
        if spk in test_spks:
            roles.append("test")
        gender = by_spk[spk][0].gender or genders.get(spk, "u")
        spk_rows.append(
            (spk, gender, len(by_spk[spk]), "+".join(roles) or "unused")
        )
    _write_csv(paths["speakers"], SPEAKER_COLUMNS, spk_rows)
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
    _write_csv(
        paths["devices"],
        DEVICE_COLUMNS,
        [
            (d, c["train"], c["dev"], c["test"])
            for d, c in sorted(counts.items())
        ],
    )
    # Written last: its presence marks a complete preparation.
    write_json(paths["opts"], opts)
    logger.info("FFSVC manifests written to %s", save_folder)
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
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.data.ffsvc",
        description="Prepare FFSVC 2020/2022 (or minivox FFSVC) CSV "
        "manifests (train, dev, test) with device labels, the speaker and "
        "device lists and normalised trial lists.",
        epilog="Bad input ends with one 'error: ...' line and exit status "
        "2; set SSV_DEBUG=1 to see the traceback as well.",
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
    parser.add_argument(
        "--trial_lists",
        nargs="+",
        default=None,
        help="trial lists, as paths or names looked up in the data folders "
        "and their meta/ (default: every default-named list found)",
    )
    parser.add_argument(
        "--meta_files",
        nargs="+",
        default=None,
        help="one metadata file per data folder ('auto' to detect)",
    )
    parser.add_argument(
        "--split_ratio",
        nargs=2,
        type=float,
        default=[90, 10],
        metavar=("TRAIN", "DEV"),
        help="train/dev proportions of each training speaker's recordings "
        "(default: 90 10)",
    )
    parser.add_argument(
        "--min_duration",
        type=float,
        default=1.0,
        help="files shorter than this (seconds) are left out of train/dev "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--sample_rate",
        type=int,
        default=16000,
        help="required sample rate in Hz; 0 accepts any (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1986,
        help="seed of the train/dev split (default: %(default)s)",
    )
    parser.add_argument(
        "--keep_trial_speakers",
        action="store_true",
        help="do not exclude trial-list speakers from train/dev",
    )
    parser.add_argument(
        "--device_with_distance",
        action="store_true",
        help="label devices <DEV>_<cm> (e.g. MIC_150) instead of <DEV>",
    )
    parser.add_argument(
        "--skip_prep",
        action="store_true",
        help="write nothing; only print the output paths (they must exist)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    folders = [f for arg in args.data_folder for f in split_folders(arg)]
    meta = None
    if args.meta_files is not None:
        meta = [None if m == "auto" else m for m in args.meta_files]
    paths = prepare_ffsvc(
        folders,
        args.save_folder,
        trial_lists=args.trial_lists,
        meta_files=meta,
        split_ratio=args.split_ratio,
        min_duration=args.min_duration,
        sample_rate=args.sample_rate or None,
        seed=args.seed,
        exclude_trial_speakers=not args.keep_trial_speakers,
        device_with_distance=args.device_with_distance,
        skip_prep=args.skip_prep,
    )
    print(json.dumps(paths, indent=2))
    return paths


if __name__ == "__main__":
    sys.exit(run_cli(main))
