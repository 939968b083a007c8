"""Resumable stages and "skip if unchanged": the one mechanism for every
step that writes a folder from options (corpus generation, data
preparation, representation extraction, clustering, synthesis).

A stage folder holds a ``stage.json``: the stage's options (everything its
output depends on, including digests of its inputs), a status and, once
finished, the content digests of its outputs.

* :func:`begin_stage` skips a stage whose record says ``done`` with the same
  options and whose outputs exist; resumes one that is ``running`` with the
  same options (its partial work, e.g. checkpoints or shards, is kept);
  discards and redoes one whose options changed. Stages after it notice,
  since their options hold the ``digest`` that :func:`finish_stage` returns.
* :func:`check_recorded_options` is the stricter variant for folders a
  user fills (a generated corpus, a synthesis run): the first run records
  its options; a later run with other options is refused with one error
  naming the differing keys, instead of mixing two configurations in one
  folder.
* :func:`reopen_stage` marks a finished stage ``running`` again before it
  is added to (a cache that grows with new entries), so a crash before the
  next :func:`finish_stage` leaves it resumable, never taken as done.
* :func:`seed_stage` seeds a stage from the recipe seed and its name, so a
  run resumed between stages draws what an uninterrupted one draws.

All records are written atomically (:func:`speechbrain_ssv.utils.io.write_json`).

Authors
 * speechbrain-ssv developers 2026
"""

import hashlib
import json
import logging
import os
import shutil

from speechbrain.utils import seed_everything

from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import file_digest, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "STAGE_FILE",
    "begin_stage",
    "check_recorded_options",
    "finish_stage",
    "read_stage",
    "reopen_stage",
    "seed_stage",
    "stage_is_done",
]

STAGE_FILE = "stage.json"
# Bump when a stage's record format changes, so old folders are redone.
STAGE_VERSION = 1


def _jsonable(obj):
    """``obj`` as it reads back from JSON (callables and paths as strings)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def read_stage(folder):
    """The ``stage.json`` of a stage folder.

    Arguments
    ---------
    folder : str
        Stage folder.

    Returns
    -------
    dict | None
        ``None`` when absent or unreadable.
    """
    path = os.path.join(folder, STAGE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stage_is_done(folder, opts):
    """True when ``folder`` holds a finished stage run with ``opts`` whose
    outputs are all present.

    Arguments
    ---------
    folder : str
        Stage folder.
    opts : dict
        The stage's options.

    Returns
    -------
    bool
        Whether the stage can be skipped.
    """
    rec = read_stage(folder)
    if (
        rec is None
        or rec.get("status") != "done"
        or rec.get("version") != STAGE_VERSION
        or rec.get("opts") != _jsonable(opts)
    ):
        return False
    return all(
        os.path.isfile(os.path.join(folder, name))
        for name in rec.get("outputs", {})
    )


def begin_stage(folder, opts, name="stage", shared=False):
    """Prepare ``folder`` for a stage run with ``opts``.

    Returns ``True`` when the stage is already done (skip it). Otherwise
    the folder is made ready: partial work of a run with the same options
    is kept (resume), a folder from other options is deleted first, and the
    options are recorded with status ``running``.

    A ``shared`` folder also holds files of other steps (a recipe's save
    folder: data preparation writes its manifests next to the checkpoints),
    so it is never deleted: a run with other options overwrites the
    stage's outputs, and a folder without a record is not refused.

    Arguments
    ---------
    folder : str
        Stage folder (created).
    opts : dict
        JSON-able options (non-JSON values are compared as strings).
    name : str
        For log messages.
    shared : bool
        The folder is not the stage's own (see above).

    Returns
    -------
    bool
        ``True``: done, skip.

    Example
    -------
    >>> folder = os.path.join(getfixture("tmpdir"), "s")
    >>> begin_stage(folder, {"k": 1})
    False
    >>> _ = finish_stage(folder, {"k": 1})
    >>> begin_stage(folder, {"k": 1}), begin_stage(folder, {"k": 2})
    (True, False)
    """
    folder = os.fspath(folder)
    if stage_is_done(folder, opts):
        logger.info("%s skipped: %s is up to date", name, folder)
        return True
    rec = read_stage(folder)
    same = (
        rec is not None
        and rec.get("version") == STAGE_VERSION
        and rec.get("opts") == _jsonable(opts)
    )
    if not same and not shared and os.path.isdir(folder) and os.listdir(folder):
        if rec is None:
            raise SSVInputError(
                folder,
                f"is not empty and holds no {STAGE_FILE}, so it is not a "
                "stage folder of this recipe; refusing to delete it (choose "
                "another output_folder or remove it)",
            )
        logger.info(
            "%s: options changed, discarding the earlier run in %s",
            name,
            folder,
        )
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    if not same:
        write_json(
            os.path.join(folder, STAGE_FILE),
            {
                "version": STAGE_VERSION,
                "opts": _jsonable(opts),
                "status": "running",
            },
        )
    elif rec.get("status") != "running":
        rec["status"] = "running"
        write_json(os.path.join(folder, STAGE_FILE), rec)
    if same:
        logger.info("%s: resuming the unfinished run in %s", name, folder)
    return False


def reopen_stage(folder, name="stage"):
    """Mark a finished stage as ``running`` again, keeping its options and
    outputs, before its outputs are added to.

    For caches whose entries accumulate across calls (embeddings of the
    utterances asked for so far): :func:`begin_stage` says ``done`` for
    their options, yet a call asks for entries they lack. Writing those
    under a ``done`` record would let a crash before :func:`finish_stage`
    leave outputs that differ from the recorded ones; reopened, the next
    run resumes instead. A folder that is not a finished stage is left as
    it is.

    Arguments
    ---------
    folder : str
        Stage folder.
    name : str
        For log messages.

    Returns
    -------
    bool
        ``True`` when the record was reopened.

    Example
    -------
    >>> folder = os.path.join(getfixture("tmpdir"), "cache")
    >>> _ = begin_stage(folder, {"model": "m"})
    >>> _ = finish_stage(folder, {"model": "m"})
    >>> reopen_stage(folder), read_stage(folder)["status"]
    (True, 'running')
    >>> begin_stage(folder, {"model": "m"})  # resumes, keeps the folder
    False
    >>> reopen_stage(os.path.join(folder, "absent"))
    False
    """
    rec = read_stage(folder)
    if rec is None or rec.get("status") != "done":
        return False
    rec["status"] = "running"
    write_json(os.path.join(folder, STAGE_FILE), rec)
    logger.info("%s: adding to the finished run in %s", name, folder)
    return True


def seed_stage(seed, name):
    """Seed Python's, NumPy's and torch's generators for stage ``name``
    from the recipe ``seed``.

    A stage's random draws (model initialisation, augmentation, shuffles
    not seeded otherwise) then do not depend on the stages before it in
    this process: a run resumed after stage 1, which skips it, writes the
    same outputs as an uninterrupted one.

    Arguments
    ---------
    seed : int
        The recipe seed.
    name : str
        Stage name (e.g. ``"clustering"``, ``"round1/train"``).

    Returns
    -------
    int
        The stage's seed (31 bits).

    Example
    -------
    >>> import torch
    >>> a = seed_stage(1986, "clustering"); x = torch.rand(1)
    >>> b = seed_stage(1986, "clustering"); torch.equal(x, torch.rand(1))
    True
    >>> a == b != seed_stage(1986, "representations")
    True
    """
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    stage_seed = int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
    seed_everything(stage_seed)
    return stage_seed


def finish_stage(folder, opts, outputs=(), info=None):
    """Record a stage as done; its ``stage.json`` is written last.

    Arguments
    ---------
    folder : str
        Stage folder.
    opts : dict
        The options it ran with.
    outputs : sequence of str
        Output file names (relative to ``folder``), digested.
    info : dict | None
        Anything else to keep (metrics, counts).

    Returns
    -------
    dict
        The record, with ``digest``: one hash of the options and the output
        contents, for the options of the stages that read them.
    """
    digests = {o: file_digest(os.path.join(folder, o)) for o in outputs}
    h = hashlib.sha1(
        json.dumps([_jsonable(opts), digests], sort_keys=True).encode()
    )
    rec = {
        "version": STAGE_VERSION,
        "opts": _jsonable(opts),
        "status": "done",
        "outputs": digests,
        "digest": h.hexdigest(),
        "info": _jsonable(info or {}),
    }
    write_json(os.path.join(folder, STAGE_FILE), rec)
    return rec


def check_recorded_options(path, options, what):
    """Record ``options`` in ``path`` on a folder's first run; refuse a
    later run with other options.

    For folders whose content accumulates across runs (a corpus generated
    speaker by speaker, a synthesis resumed utterance by utterance):
    resuming with the same options is safe, mixing two configurations is
    not, and deleting what a user made is not ours to decide.

    Arguments
    ---------
    path : str
        The JSON record (its folder is created).
    options : dict
        JSON-able options (compared as they read back from JSON).
    what : str
        What the folder holds, for the error ("a minivox corpus").

    Raises
    ------
    SSVInputError
        When the record is unreadable or holds other options; the message
        names the file and the differing keys.

    Example
    -------
    >>> path = os.path.join(getfixture("tmpdir"), "opts.json")
    >>> check_recorded_options(path, {"seed": 1}, "a corpus")
    >>> check_recorded_options(path, {"seed": 1}, "a corpus")  # same: fine
    >>> check_recorded_options(path, {"seed": 2}, "a corpus")
    Traceback (most recent call last):
     ...
    speechbrain_ssv.utils.errors.SSVInputError: ...opts.json: the folder holds a corpus made with other options (differing: seed); use another output folder or the same options
    """
    options = _jsonable(options)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_json(path, {"options": options})
        return
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError) as err:
        raise SSVInputError(
            path, f"is unreadable ({err}); delete it or use another folder"
        ) from None
    if not isinstance(old, dict):
        old = {}
    # Records written before this module held the options at the top level.
    old = old.get("options", old)
    diff = sorted(
        k for k in set(old) | set(options) if old.get(k) != options.get(k)
    )
    if diff:
        raise SSVInputError(
            path,
            f"the folder holds {what} made with other options (differing: "
            f"{', '.join(diff)}); use another output folder or the same options",
        )
