"""How a recipe process ends under ``torchrun``: every rank waits for the
others, the process group is torn down, and the process exits without the
interpreter's final garbage collection.

Why this exists (a PyTorch problem, worked around here): ``ProcessGroupGloo``
runs collectives on C++ worker threads (``pt_gloo_runloop``). When such a
thread finishes a collective it drops its reference to the work object, and
if that was the last reference the work's tensors are freed *on that
thread*; tensors created from Python carry a Python object, so freeing them
takes the GIL. If the main thread has meanwhile reached interpreter
finalization, taking the GIL makes the worker call ``pthread_exit``, whose
forced unwind crosses a ``noexcept`` C++ frame: ``std::terminate`` ->
"terminate called without an active exception" -> SIGABRT, and torchrun
then kills the other ranks. Seen in gdb on torch 2.14.1: the aborting
thread is ``pt_gloo_runloop`` in ``AsyncScatterWork::~AsyncScatterWork`` ->
``TensorImpl::decref_pyobject`` -> ``take_gil`` -> ``PyThread_exit_thread``,
while the main thread is in ``Py_FinalizeEx``'s garbage collection. It is a
race, more frequent on a loaded machine.

``destroy_process_group`` does not end it: it drops only the registry's
reference, and the gloo worker threads are joined only when the last
reference goes. DistributedDataParallel wrappers hold one, and so does
``torch.distributed.nn.functional`` itself: its ``group=group.WORLD``
default arguments capture the group when that module is imported after
``init_process_group``. A barrier alone narrows the window but does not
close it: the barrier's own work object holds the works before it and is
freed on a worker thread too. So, after the barrier and the teardown,
:func:`run_recipe` runs the ``atexit`` callbacks (log handlers,
multiprocessing clean-up) while the interpreter is fully alive, flushes the
standard streams and leaves with ``os._exit``: finalization, where the race
is, never starts. Single-process runs end normally.

Authors
 * speechbrain-ssv developers 2026
"""

import atexit
import logging
import os
import sys
import traceback

import torch

from speechbrain_ssv.utils.errors import (
    USER_ERROR_STATUS,
    SSVInputError,
    report_user_error,
)

logger = logging.getLogger(__name__)


def process_group_active():
    """True when this process belongs to an initialised process group.

    Returns
    -------
    bool
        Whether ``torch.distributed`` is initialised here.

    Example
    -------
    >>> process_group_active()
    False
    """
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def finish_process_group():
    """Wait for every rank, then tear the default process group down.

    After this no rank is inside a collective, so no rank can be left
    waiting for one that has exited (the symptom: the launcher's SIGTERM to
    rank 0 after another rank's early exit). A no-op outside DDP.

    Example
    -------
    >>> finish_process_group()  # not distributed: nothing to do
    """
    if not process_group_active():
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def exit_process(code):
    """End the process now with ``code``, after running the ``atexit``
    callbacks and flushing stdout/stderr, without interpreter finalization
    (see the module docstring for why).

    Arguments
    ---------
    code : int
        The exit status.
    """
    try:
        # atexit's own runner: the callbacks registered so far (logging's
        # shutdown, multiprocessing's child clean-up, ...), in LIFO order.
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _exit_status(exc):
    """The status Python itself would exit with for ``SystemExit(exc.code)``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_recipe(main, argv=None):
    """Run a recipe's ``main(argv)`` and end the process safely under
    ``torchrun``.

    Without a process group (a plain ``python train.py ...``), this is just
    ``main(argv)``: the function returns and exceptions propagate, except
    bad input (:class:`~speechbrain_ssv.utils.errors.SSVInputError`), which
    is printed as one ``error: ...`` line with exit status 2 (after the
    traceback when the environment sets ``SSV_DEBUG=1``). Under
    DDP, a rank that finishes waits for every other rank, tears the process
    group down and exits with status 0 without interpreter finalization; a
    rank that fails prints its traceback and exits with status 1 (or the
    ``SystemExit`` status) the same way, and the launcher stops the others.

    Arguments
    ---------
    main : callable
        ``main(argv)``: the recipe (it joins the process group itself, e.g.
        through :func:`speechbrain_ssv.recipe_utils.setup_experiment`).
    argv : list | None
        Command-line arguments; default ``sys.argv[1:]``.

    Returns
    -------
    object
        What ``main`` returned (single-process runs only: under DDP the
        process ends here).

    Example
    -------
    >>> run_recipe(lambda argv: len(argv), ["a.yaml", "--lr", "0.1"])
    3
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = main(argv)
    except SystemExit as exc:
        if not process_group_active():
            raise
        exit_process(_exit_status(exc))
    except SSVInputError as err:
        # Bad input: one line naming the file or key, not a traceback
        # (SSV_DEBUG=1 shows it, for debugging the package itself).
        report_user_error(err)
        if not process_group_active():
            sys.exit(USER_ERROR_STATUS)
        exit_process(USER_ERROR_STATUS)
    except BaseException:
        if not process_group_active():
            raise
        # The other ranks may be blocked inside a collective: no barrier.
        traceback.print_exc()
        exit_process(1)
    if not process_group_active():
        return result
    finish_process_group()
    exit_process(0)
