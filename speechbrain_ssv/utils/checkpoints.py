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

Authors
 * speechbrain-ssv developers
"""

import logging
import os
import pathlib
import shutil

from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
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

logger = get_logger(__name__)

_PARTIAL_SUFFIX = ".partial"


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
            hook(obj, partial)
            # SpeechBrain's hooks write on the main process only, so only it renames.
            if if_main_process() and partial.exists():
                os.replace(partial, final_path)
            saved_paramfiles[key] = final_path

        # Every rank has finished its part before the checkpoint becomes visible.
        ddp_barrier()
        if not if_main_process():
            return None
        tmp_meta = ckpt_dir / (METAFNAME + _PARTIAL_SUFFIX)
        saved_meta = self._save_checkpoint_metafile(
            tmp_meta, meta, end_of_epoch
        )
        os.replace(tmp_meta, ckpt_dir / METAFNAME)
        ckpt_type = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {ckpt_type} checkpoint in {ckpt_dir}")
        return Checkpoint(ckpt_dir, saved_meta, saved_paramfiles)

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
