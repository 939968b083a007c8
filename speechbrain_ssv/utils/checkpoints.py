"""A SpeechBrain Checkpointer whose checkpoints appear all at once.

SpeechBrain 1.1.2 writes a checkpoint's ``CKPT.yaml`` *first* and the
parameter files after it. A run killed during that window (a pre-empted job,
an out-of-memory kill, Ctrl-C twice) leaves a folder that
``recover_if_possible`` picks as the newest checkpoint and then fails to load
(``KeyError`` on the missing parameter file), so the run cannot resume
without a person deleting folders by hand. :class:`AtomicCheckpointer` writes
every parameter file under a temporary name, renames them into place, and
writes ``CKPT.yaml`` last, itself through a rename; a folder without
``CKPT.yaml`` is not a checkpoint to SpeechBrain, so an interrupted save is
invisible to recovery and is removed by the next save.

A save that fails for lack of space (or any other write error) raises one
:class:`~speechbrain_ssv.utils.errors.OutputWriteError` naming the parameter
file, and removes the unfinished folder. A run that resumes while the best
checkpoint has a truncated or unreadable parameter file (a disk that filled,
a copy that was cut short) warns, naming that file, and resumes from the next
best intact checkpoint instead; the damaged folder is left for the user.

Authors
 * speechbrain-ssv developers
"""

import contextlib
import logging
import os
import pathlib
import pickle
import shutil

from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    DEFAULT_LOAD_HOOKS,
    DEFAULT_SAVE_HOOKS,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
    get_default_hook,
)
from speechbrain.utils.distributed import (
    ddp_barrier,
    ddp_broadcast,
    if_main_process,
)
from speechbrain.utils.logger import get_logger

from speechbrain_ssv.utils.errors import CheckpointError, SSVInputError
from speechbrain_ssv.utils.io import output_write_error

logger = get_logger(__name__)

_PARTIAL_SUFFIX = ".partial"

# What torch.load's RuntimeErrors say about a truncated or damaged file
# (zip archive without its central directory, legacy file cut short).
_CORRUPT_MARKERS = (
    "corrupt",
    "PytorchStreamReader",
    "unexpected EOF",
    "zip archive",
)


def _is_corrupt_file_error(err):
    """Whether ``err``, raised by a load hook, means its file is damaged.

    Arguments
    ---------
    err : BaseException
        What the hook raised.

    Returns
    -------
    bool
        ``True`` for a truncated or unreadable file; ``False`` for anything
        else (a model mismatch, a bug in a custom hook), which must surface
        as is rather than send recovery to an older checkpoint.

    Example
    -------
    >>> _is_corrupt_file_error(EOFError())
    True
    >>> _is_corrupt_file_error(RuntimeError("size mismatch for weight"))
    False
    """
    if isinstance(err, pickle.UnpicklingError):
        # weights_only refusing a class is a property of the file's contents,
        # shared by every checkpoint: not damage.
        return "Weights only load failed" not in str(err)
    if isinstance(err, (EOFError, OSError)):
        # A file cut short also surfaces as an OSError (EINVAL) from torch's
        # storage reader; an unreadable file (EIO, EACCES) is just as unusable.
        return True
    if isinstance(err, RuntimeError):
        return any(marker in str(err) for marker in _CORRUPT_MARKERS)
    return False


class _CorruptParamFile(Exception):
    """Raised inside recovery when a parameter file of a checkpoint is damaged.

    Arguments
    ---------
    key : str
        The recoverable's name.
    path : pathlib.Path
        The damaged parameter file.
    cause : BaseException
        What loading it raised.
    """

    def __init__(self, key, path, cause):
        self.key = key
        self.path = pathlib.Path(path)
        self.cause = cause
        super().__init__(f"{self.path}: {type(cause).__name__}: {cause}")


def _about_another_file(err, path):
    """Whether ``err`` is an OSError about a file other than ``path``.

    A custom hook may open files of its own (a tokenizer model elsewhere);
    those errors are not damage to this checkpoint and must surface as is.
    """
    if not isinstance(err, OSError) or err.filename is None:
        return False
    try:
        return os.path.abspath(os.fsdecode(err.filename)) != os.path.abspath(
            path
        )
    except (TypeError, ValueError):
        return False


def _flag_corruption(hook, key):
    """Wrap a load hook so a damaged file raises :class:`_CorruptParamFile`.

    Arguments
    ---------
    hook : callable
        ``hook(obj, path, end_of_epoch)``.
    key : str
        The recoverable's name.

    Returns
    -------
    callable
        The wrapped hook; it tells recovery *which* file was damaged, which
        torch's own errors do not say.
    """

    def load(obj, path, end_of_epoch):
        """The recovery hook, naming the file when it is corrupt."""
        try:
            return hook(obj, path, end_of_epoch)
        except Exception as err:
            if _is_corrupt_file_error(err) and not _about_another_file(
                err, path
            ):
                raise _CorruptParamFile(key, path, err) from err
            raise

    return load


class AtomicCheckpointer(Checkpointer):
    """Drop-in replacement for SpeechBrain's ``Checkpointer`` with atomic saves.

    Same constructor, same files on disk, same loading; only the order and
    naming of writes differ (see the module docstring). Use it in hparams as
    ``checkpointer: !new:speechbrain_ssv.utils.checkpoints.AtomicCheckpointer``.

    Example
    -------
    >>> import tempfile, torch
    >>> tmp = tempfile.mkdtemp()
    >>> model = torch.nn.Linear(2, 2)
    >>> ckpter = AtomicCheckpointer(tmp, recoverables={"model": model})
    >>> ckpt = ckpter.save_checkpoint()
    >>> sorted(p.name for p in ckpt.path.iterdir())
    ['CKPT.yaml', 'model.ckpt']
    >>> ckpter.recover_if_possible().path == ckpt.path
    True
    """

    def save_checkpoint(
        self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO
    ):
        """Saves a checkpoint; ``CKPT.yaml`` is written only once all parameter files are in place.

        Arguments
        ---------
        meta : mapping, optional
            Added to the meta file (``unixtime`` and ``end-of-epoch`` are added).
        end_of_epoch : bool
            Whether the checkpoint is at the end of an epoch.
        name : str, optional
            Custom checkpoint name (prefixed with ``CKPT+``).
        verbosity : int
            Logging level of the "saved" message.

        Returns
        -------
        Checkpoint or None
            The saved checkpoint on the main process, ``None`` elsewhere.
        """
        ckpt_dir = None
        if if_main_process():
            self._remove_interrupted_saves()
            if name is None:
                ckpt_dir = self._new_checkpoint_dirpath()
            else:
                ckpt_dir = self._custom_checkpoint_dirpath(name)
            os.makedirs(ckpt_dir, exist_ok=True)
            # A re-used custom name must not look complete while being rewritten.
            stale_meta = ckpt_dir / METAFNAME
            if stale_meta.exists():
                stale_meta.unlink()
        ckpt_dir = ddp_broadcast(ckpt_dir, src=0)

        saved_paramfiles = {}
        for key, obj in self.recoverables.items():
            final_path = ckpt_dir / f"{key}{PARAMFILE_EXT}"
            # The partial name must not end in ".ckpt": SpeechBrain lists every
            # "*.ckpt" of a folder as a parameter file.
            partial = ckpt_dir / f"{key}{PARAMFILE_EXT}{_PARTIAL_SUFFIX}"
            hook = self.custom_save_hooks.get(key) or get_default_hook(
                obj, DEFAULT_SAVE_HOOKS
            )
            if hook is None:
                raise RuntimeError(
                    f"AtomicCheckpointer: don't know how to save recoverable '{key}' of type "
                    f"{type(obj).__name__}; register a save hook for it."
                )
            try:
                hook(obj, partial)
                # SpeechBrain's hooks write on the main process only, so only it renames.
                if if_main_process() and partial.exists():
                    os.replace(partial, final_path)
            except BaseException as err:
                self._abandon_save(ckpt_dir, final_path, partial, err)
                raise
            saved_paramfiles[key] = final_path

        # Every rank has finished its part before the checkpoint becomes visible.
        ddp_barrier()
        if not if_main_process():
            return None
        tmp_meta = ckpt_dir / (METAFNAME + _PARTIAL_SUFFIX)
        try:
            saved_meta = self._save_checkpoint_metafile(
                tmp_meta, meta, end_of_epoch
            )
            os.replace(tmp_meta, ckpt_dir / METAFNAME)
        except BaseException as err:
            self._abandon_save(ckpt_dir, ckpt_dir / METAFNAME, tmp_meta, err)
            raise
        ckpt_type = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {ckpt_type} checkpoint in {ckpt_dir}")
        return Checkpoint(ckpt_dir, saved_meta, saved_paramfiles)

    @staticmethod
    def _abandon_save(ckpt_dir, final_path, partial, err):
        """Cleans up after a save that raised ``err`` while writing ``final_path``.

        The partial file is always removed. A write failure (no space, a
        read-only folder, torch's zip writer failing) also removes the whole
        unfinished checkpoint folder, whose files hold the space the user
        needs back, and is raised as one ``OutputWriteError`` naming
        ``final_path``; anything else (an interrupt, a hook's own error) is
        left for the caller to re-raise, and the folder for the next save to
        remove.

        Arguments
        ---------
        ckpt_dir : pathlib.Path
            The checkpoint folder being written.
        final_path : pathlib.Path
            The file being written (its final name).
        partial : pathlib.Path
            The temporary name it was written under.
        err : BaseException
            What the write raised.

        Raises
        ------
        OutputWriteError
            When ``err`` is a write failure.
        """
        # Classified before any removal, which frees the space it reports.
        wrapped = (
            output_write_error(final_path, err, [partial])
            if isinstance(err, Exception)
            else None
        )
        if not if_main_process():
            # Only the main process writes files; it cleans up.
            if wrapped is not None:
                raise wrapped from err
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        if wrapped is not None:
            # The folder has no CKPT.yaml, so it is no checkpoint: removing
            # it loses nothing and gives the space back.
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            raise wrapped from err

    def recover_if_possible(
        self,
        importance_key=None,
        max_key=None,
        min_key=None,
        ckpt_predicate=None,
    ):
        """Loads the best intact checkpoint, skipping damaged ones with a warning.

        Candidates are ranked as SpeechBrain ranks them (most recent, or by
        ``max_key`` / ``min_key`` / ``importance_key``). A candidate whose
        parameter file is truncated or unreadable is skipped with a warning
        naming the folder and the file, and the next one is tried; the
        damaged folder is left in place.

        Arguments
        ---------
        importance_key : callable, optional
            The checkpoint with the highest returned value is loaded first.
        max_key : str, optional
            Checkpoints with the highest value for this meta key first.
        min_key : str, optional
            Checkpoints with the lowest value for this meta key first.
        ckpt_predicate : callable, optional
            Only checkpoints for which it returns ``True`` are considered.

        Returns
        -------
        Checkpoint or None
            The checkpoint loaded, or ``None`` when there is none yet.

        Raises
        ------
        CheckpointError
            When there are checkpoints but none of them is intact.
        """
        candidates = self.find_checkpoints(
            importance_key=importance_key,
            max_key=max_key,
            min_key=min_key,
            ckpt_predicate=ckpt_predicate,
        )
        if not candidates:
            logger.info("Would load a checkpoint here, but none found yet.")
            return None
        damaged = []
        for ckpt in candidates:
            try:
                self._load_flagging_corruption(ckpt)
            except _CorruptParamFile as bad:
                logger.warning(
                    f"Checkpoint {ckpt.path} is damaged: its parameter file "
                    f"{bad.path.name} ({bad.path}) cannot be read "
                    f"({type(bad.cause).__name__}: {bad.cause}); trying the "
                    "next best checkpoint. The folder is left in place."
                )
                damaged.append(bad)
                continue
            if damaged:
                logger.warning(
                    f"Resumed from {ckpt.path} instead of the damaged "
                    + ", ".join(str(bad.path.parent) for bad in damaged)
                    + "."
                )
            return ckpt
        listing = "; ".join(
            f"{bad.path} ({type(bad.cause).__name__}: {bad.cause})"
            for bad in damaged
        )
        raise CheckpointError(
            self.checkpoints_dir,
            f"no intact checkpoint to resume from; every candidate has a "
            f"damaged parameter file: {listing}. Restore one from a backup, "
            "or move the damaged CKPT+ folders away to start over.",
        ) from damaged[-1].cause

    def _load_flagging_corruption(self, checkpoint):
        """``load_checkpoint``, but a damaged file raises :class:`_CorruptParamFile`.

        Every recoverable's hook is wrapped for the duration of the load
        only; SpeechBrain's own loading logic (missing files, optional
        recoverables) is reused unchanged.

        Arguments
        ---------
        checkpoint : Checkpoint
            The checkpoint to load.
        """
        original = dict(self.custom_load_hooks)
        try:
            for key, obj in self.recoverables.items():
                hook = original.get(key) or get_default_hook(
                    obj, DEFAULT_LOAD_HOOKS
                )
                if hook is not None:
                    self.custom_load_hooks[key] = _flag_corruption(hook, key)
            self.load_checkpoint(checkpoint)
        finally:
            self.custom_load_hooks.clear()
            self.custom_load_hooks.update(original)

    def _remove_interrupted_saves(self):
        """Deletes ``CKPT+*`` folders without a meta file (saves that never finished)."""
        root = pathlib.Path(self.checkpoints_dir)
        if not root.is_dir():
            return
        for path in root.iterdir():
            if (
                path.is_dir()
                and path.name.startswith(CKPT_PREFIX)
                and not (path / METAFNAME).exists()
            ):
                logger.warning(
                    f"Removing interrupted checkpoint save {path} (no {METAFNAME})."
                )
                shutil.rmtree(path, ignore_errors=True)


def find_checkpoint(path, min_key=None, max_key=None):
    """Resolve ``path`` to one ``CKPT+...`` folder.

    Arguments
    ---------
    path : str
        A ``CKPT+...`` folder, or a recipe ``save`` folder holding several.
    min_key : str | None
        Pick the checkpoint with the lowest value of this meta key.
    max_key : str | None
        Pick the checkpoint with the highest value of this meta key.

    Returns
    -------
    str
        The checkpoint folder (the most recent one when no key is given).
    """
    path = os.fspath(path)
    if min_key is not None and max_key is not None:
        # SpeechBrain would silently use max_key and ignore min_key.
        raise SSVInputError(
            "min_key/max_key", "give at most one of them, not both"
        )
    if os.path.isfile(os.path.join(path, "CKPT.yaml")):
        return path
    if not os.path.isdir(path):
        raise SSVInputError(path, "checkpoint folder does not exist")
    ckpter = Checkpointer(path)
    key = min_key if min_key is not None else max_key
    ckpt = ckpter.find_checkpoint(min_key=min_key, max_key=max_key)
    if ckpt is None:
        # SpeechBrain skips checkpoints without the key (e.g. intra-epoch
        # ones) and returns None when none has it: say which case this is.
        if key is not None and ckpter.list_checkpoints():
            raise SSVInputError(
                path,
                f"no checkpoint has the meta key '{key}'; use --min-key/"
                "--max-key with a key the recipe logged, or none for the "
                "most recent",
            )
        raise SSVInputError(path, "holds no CKPT+* checkpoint folder")
    return str(ckpt.path)
