"""Reading and checking VoxCeleb-style trial lists.

A trial list has one trial per line, ``"<label> <enrol> <test>"``, e.g.
``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav``, with label 1
for a target (same speaker) and 0 for a non-target trial. Unlabelled lists with
two columns ``"<enrol> <test>"`` are accepted too (label ``None``); a file must
use one format throughout. Utterance ids are the paths without ``.wav``, as in
SpeechBrain's ``voxceleb_prepare`` (``id10270/x6uYqmx31kE/00001``).

Authors
 * speechbrain-ssv developers 2026
"""

import os
from typing import NamedTuple

import numpy as np

from speechbrain_ssv.utils.errors import TrialListError

__all__ = [
    "Trial",
    "check_trial_files",
    "index_trials",
    "normalize_item",
    "read_trials",
    "utt_id_from_path",
]


class Trial(NamedTuple):
    """One verification trial.

    Arguments
    ---------
    label : int | None
        1 target, 0 non-target, ``None`` in an unlabelled list.
    enrol : str
        Enrolment utterance id.
    test : str
        Test utterance id.
    source : str
        The trial-list file it came from (for error messages).
    line : int
        Its 1-based line number in ``source``.
    """

    label: int | None
    enrol: str
    test: str
    source: str
    line: int


def utt_id_from_path(path):
    """Utterance id of a trial-list entry: the path without ``.wav``.

    Arguments
    ---------
    path : str
        Entry as written in the trial list.

    Returns
    -------
    str
        The utterance id.

    Example
    -------
    >>> utt_id_from_path("id10270/x6uYqmx31kE/00001.wav")
    'id10270/x6uYqmx31kE/00001'
    """
    return path[:-4] if path.endswith(".wav") else path


def read_trials(path):
    """Parse a trial list.

    Blank lines and lines starting with ``#`` are skipped.

    Arguments
    ---------
    path : str
        Trial-list file.

    Returns
    -------
    list of Trial
        In file order.

    Raises
    ------
    TrialListError
        Missing or empty file, a line with the wrong number of fields, a
        label other than 0/1, or a mix of labelled and unlabelled lines; the
        message names the file and line.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "trials.txt")
    >>> _ = open(p, "w").write("1 a/b/1.wav a/c/2.wav\\n0 a/b/1.wav d/e/3.wav\\n")
    >>> t = read_trials(p)
    >>> t[1].label, t[1].enrol, t[1].test, t[1].line
    (0, 'a/b/1', 'd/e/3', 2)
    >>> _ = open(p, "a").write("2 a/b/1.wav d/e/3.wav\\n")
    >>> read_trials(p)
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.TrialListError: ...trials.txt: line 3: label '2' is not 0 or 1 ...
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TrialListError(path, "trial list does not exist")
    trials = []
    # Many trials share an utterance; interning keeps one string per id.
    ids = {}
    n_fields = None
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            fields = raw.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) not in (2, 3):
                raise TrialListError(
                    path,
                    f"line {line_no}: expected '<label> <enrol> <test>' "
                    f"(3 fields), got {len(fields)}: {raw.strip()!r}",
                )
            if n_fields is None:
                n_fields = len(fields)
            elif len(fields) != n_fields:
                raise TrialListError(
                    path,
                    f"line {line_no}: has {len(fields)} fields but earlier "
                    f"lines have {n_fields}; do not mix labelled and "
                    "unlabelled trials",
                )
            label = None
            if n_fields == 3:
                if fields[0] not in ("0", "1"):
                    raise TrialListError(
                        path,
                        f"line {line_no}: label {fields[0]!r} is not 0 or 1 "
                        "(expected '<label> <enrol> <test>')",
                    )
                label = int(fields[0])
            enrol = utt_id_from_path(fields[-2])
            test = utt_id_from_path(fields[-1])
            enrol = ids.setdefault(enrol, enrol)
            test = ids.setdefault(test, test)
            trials.append(Trial(label, enrol, test, path, line_no))
    if not trials:
        raise TrialListError(
            path, "is empty; expected '<label> <enrol> <test>' lines"
        )
    return trials


def normalize_item(value):
    """Turn a manifest value into ``(wav_path, start, stop)``.

    Arguments
    ---------
    value : str | tuple | list | dict
        A path, a ``(path, start, stop)`` tuple, or a dict with ``wav``/``file``
        and optional ``start``/``stop`` (samples).

    Returns
    -------
    tuple
        ``(path, start, stop)``; ``stop`` is ``None`` for "to the end".

    Example
    -------
    >>> normalize_item("a.wav")
    ('a.wav', 0, None)
    >>> normalize_item({"wav": "a.wav", "start": 10, "stop": 20})
    ('a.wav', 10, 20)
    """
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value), 0, None
    if isinstance(value, dict):
        path = value.get("wav", value.get("file"))
        if path is None:
            raise ValueError(
                f"audio entry {value!r} has no 'wav' or 'file' key"
            )
        start, stop = value.get("start", 0), value.get("stop")
    elif len(value) == 1:
        (path,), start, stop = value, 0, None
    elif len(value) == 3:
        path, start, stop = value
    else:
        raise ValueError(
            f"audio entry {value!r}: expected a path or (path, start, stop)"
        )
    return (
        os.fspath(path),
        int(start or 0),
        None if stop is None else int(stop),
    )


def check_trial_files(trials, utt_to_wav):
    """Check that every utterance of a trial list has an existing audio file.

    Each utterance is checked once, however many trials name it.

    Arguments
    ---------
    trials : list of Trial
        From :func:`read_trials`.
    utt_to_wav : dict
        Utterance id to a wav path or ``(path, start, stop)``.

    Raises
    ------
    TrialListError
        Naming the trial list, the line, the utterance and (when it is in
        ``utt_to_wav``) the missing file, plus how many others are missing.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> p = os.path.join(tmp, "t.txt")
    >>> _ = open(p, "w").write("1 s1/u1.wav s1/u2.wav\\n")
    >>> wav = os.path.join(tmp, "u1.wav")
    >>> _ = open(wav, "w").write("x")
    >>> check_trial_files(read_trials(p), {"s1/u1": wav})
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.TrialListError: ...t.txt: line 1: test utterance 's1/u2' is not in the manifest...
    """
    status = {}
    first = None
    n_bad = 0
    for trial in trials:
        for side, utt in (("enrol", trial.enrol), ("test", trial.test)):
            if utt in status:
                continue
            if utt not in utt_to_wav:
                problem = "is not in the manifest (utt_to_wav)"
            else:
                wav = normalize_item(utt_to_wav[utt])[0]
                problem = (
                    None
                    if os.path.isfile(wav)
                    else f"has no audio file: {wav} does not exist"
                )
            status[utt] = problem
            if problem is not None:
                n_bad += 1
                if first is None:
                    first = (trial, side, utt, problem)
    if first is not None:
        trial, side, utt, problem = first
        more = f" ({n_bad - 1} more utterances missing)" if n_bad > 1 else ""
        raise TrialListError(
            trial.source,
            f"line {trial.line}: {side} utterance {utt!r} {problem}{more}",
        )


def index_trials(trials):
    """Index arrays over the unique utterances of a trial list.

    Arguments
    ---------
    trials : list of Trial
        From :func:`read_trials`.

    Returns
    -------
    utt_ids : list of str
        Unique utterances, in first-seen order.
    enrol_idx : numpy.ndarray
        ``[T]`` int64 rows of ``utt_ids`` for the enrolment side.
    test_idx : numpy.ndarray
        ``[T]`` int64 rows for the test side.
    labels : numpy.ndarray | None
        ``[T]`` int8 labels, ``None`` for an unlabelled list.

    Example
    -------
    >>> t = [Trial(1, "a", "b", "x", 1), Trial(0, "a", "c", "x", 2)]
    >>> ids, e, s, y = index_trials(t)
    >>> ids, e.tolist(), s.tolist(), y.tolist()
    (['a', 'b', 'c'], [0, 0], [1, 2], [1, 0])
    """
    row = {}
    enrol_idx = np.empty(len(trials), dtype=np.int64)
    test_idx = np.empty(len(trials), dtype=np.int64)
    for i, trial in enumerate(trials):
        enrol_idx[i] = row.setdefault(trial.enrol, len(row))
        test_idx[i] = row.setdefault(trial.test, len(row))
    labels = None
    if trials and trials[0].label is not None:
        labels = np.fromiter((t.label for t in trials), np.int8, len(trials))
    return list(row), enrol_idx, test_idx, labels
