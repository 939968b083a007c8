"""FFSVC utterance tables: each data folder becomes a table of utterances
``(id, wav, speaker, device, distance, session, gender, recording)`` from the
first source found in it (:func:`collect_utterances`);
:func:`speechbrain_ssv.data.ffsvc.prepare_ffsvc` then splits them and writes
the manifests.

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

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import os
import re
from typing import NamedTuple

from speechbrain_ssv.utils.errors import ManifestError

__all__ = [
    "AUDIO_EXTS",
    "Utterance",
    "collect_utterances",
    "find_named",
    "parse_ffsvc_name",
    "read_dev_meta_list",
    "read_meta_csv",
    "scan_named_wavs",
    "strip_ext",
]

META_CSV = "ffsvc_meta.csv"
DEV_META_LISTS = ("dev_meta_list", "dev_meta_list.txt")
AUDIO_EXTS = (".wav", ".flac")

_NAME_RE = re.compile(
    r"^(?P<visit>[A-Za-z])(?P<spk>\d{3,5})_(?P<cond>[A-Za-z0-9.\-]+)_"
    r"(?P<channel>\d+)_(?P<utt>\d+)_(?P<pace>[A-Za-z]+)$"
)
_COND_RE = re.compile(r"^\d*(?P<device>[A-Za-z]+?)(?P<dist>-?\d+(?:\.\d+)?)M$")
# minivox FFSVC names end in _<DEV>_<cm>; stripping it gives the take.
_MINIVOX_STEM_RE = re.compile(r"^(?P<base>.+)_(?P<dev>[A-Za-z]+)_(?P<cm>\d+)$")


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


def strip_ext(name):
    """``name`` without its audio extension (``.wav``, ``.flac``)."""
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
    stem = strip_ext(os.path.basename(str(name).strip()))
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
        return strip_ext(os.path.basename(path))
    rel = rel.replace(os.sep, "/")
    if rel.startswith("wav/"):
        rel = rel[len("wav/") :]
    return strip_ext(rel)


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
            stem = strip_ext(name)
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
        stem = strip_ext(name)
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
            "speechbrain_ssv.data.ffsvc_sources",
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


def find_named(folder, names):
    """The first of ``names`` found in ``<folder>/meta/`` or ``<folder>/``,
    or ``None``."""
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
        meta_file = find_named(folder, (META_CSV,)) or find_named(
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
