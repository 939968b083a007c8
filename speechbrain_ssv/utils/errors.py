"""Error types raised on bad user input.

Every error names the file or key at fault and what was expected, so a user
never has to read a traceback from deep inside torch.

Command lines and recipes end on such an error with one ``error: ...`` line
on stderr and exit status 2 (:func:`report_user_error`); setting the
environment variable ``SSV_DEBUG=1`` prints the traceback as well.

Authors
 * speechbrain-ssv developers 2026
"""

import os
import sys
import traceback

#: Exit status of a command stopped by bad input, the status ``argparse``
#: also exits with on bad arguments.
USER_ERROR_STATUS = 2

#: Environment variables that, set to ``1``, add the traceback to a user
#: error. ``SSV_TRACEBACK`` is the older name, still accepted.
DEBUG_ENV_VARS = ("SSV_DEBUG", "SSV_TRACEBACK")


class SSVInputError(ValueError):
    """Bad user input: a file, manifest row, trial or hparams key.

    Arguments
    ---------
    where : str
        The file path or key that is wrong.
    problem : str
        What is wrong and what was expected.

    Example
    -------
    >>> err = SSVInputError("train.csv", "is empty; expected at least one row")
    >>> str(err)
    'train.csv: is empty; expected at least one row'
    """

    def __init__(self, where, problem):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class AudioFileError(SSVInputError):
    """An audio file that is unreadable, empty or at the wrong sample rate."""


class ManifestError(SSVInputError):
    """A CSV manifest that is missing, empty or lacks a required column."""


class TrialListError(SSVInputError):
    """A trial list with a malformed line or naming a file that is absent."""


class HparamsError(SSVInputError):
    """An hparams file with an unknown, missing or mistyped key."""


class OutputWriteError(SSVInputError):
    """An output file (checkpoint, model, cache, result) that could not be
    written: a full disk, an exceeded quota, a read-only or missing folder.

    The message names the final path; whatever was partly written has
    already been removed, so nothing half-written is left looking complete.

    Arguments
    ---------
    where : str
        The final path that was being written.
    problem : str
        The full message; it already names ``where`` (so it is not prefixed
        again, unlike the other errors here).

    Example
    -------
    >>> err = OutputWriteError("a.ckpt", "no space left on device while writing a.ckpt")
    >>> str(err)
    'no space left on device while writing a.ckpt'
    """

    def __init__(self, where, problem):
        super().__init__(where, problem)
        # The problem already names the path; "a.ckpt: ... writing a.ckpt"
        # would only repeat it.
        self.args = (problem,)

    def __str__(self):
        return self.problem

    def __reduce__(self):
        # ``args`` holds one string but ``__init__`` takes two: rebuild from
        # both so the error survives pickling (DataLoader workers, DDP).
        return (type(self), (self.where, self.problem))


class CheckpointError(SSVInputError):
    """A checkpoint folder a run cannot resume from (every candidate
    checkpoint has a truncated or unreadable parameter file)."""


class MissingExtraError(SSVInputError):
    """An optional dependency, installed with one of the package's extras
    (``pip install 'speechbrain-ssv[EXTRA]'``), is absent.

    Arguments
    ---------
    extra : str
        The extra that provides the missing distributions.
    missing : list of str
        The missing distributions, as pip names them.
    purpose : str
        What needs them.

    Example
    -------
    >>> err = MissingExtraError("minivox", ["pyroomacoustics"], "the generator")
    >>> print(err)
    pyroomacoustics: not installed; the generator needs it: pip install 'speechbrain-ssv[minivox]'
    """

    def __init__(self, extra, missing, purpose):
        self.extra = extra
        self.missing = list(missing)
        them = "them" if len(self.missing) > 1 else "it"
        super().__init__(
            ", ".join(self.missing),
            f"not installed; {purpose} needs {them}: "
            f"pip install 'speechbrain-ssv[{extra}]'",
        )

    def __reduce__(self):
        return (type(self), (self.extra, self.missing, self.problem))


def debug_enabled():
    """Whether the environment asks for tracebacks on user errors
    (``SSV_DEBUG=1``, or the older ``SSV_TRACEBACK=1``).

    Returns
    -------
    bool
        True when one of :data:`DEBUG_ENV_VARS` is ``"1"``.

    Example
    -------
    >>> os.environ.pop("SSV_DEBUG", None), os.environ.pop("SSV_TRACEBACK", None)
    (None, None)
    >>> debug_enabled()
    False
    """
    return any(os.environ.get(name) == "1" for name in DEBUG_ENV_VARS)


def report_user_error(err):
    """Print a user error as one ``error: ...`` line on stderr, after its
    traceback when :func:`debug_enabled`, and return the exit status.

    Every command line of the package, and every recipe through
    :func:`speechbrain_ssv.utils.distributed.run_recipe`, ends this way on
    an :class:`SSVInputError`.

    Arguments
    ---------
    err : BaseException
        The error (its ``str`` is the message).

    Returns
    -------
    int
        :data:`USER_ERROR_STATUS` (2).

    Example
    -------
    >>> import contextlib, io
    >>> buf = io.StringIO()
    >>> with contextlib.redirect_stderr(buf):
    ...     status = report_user_error(SSVInputError("m.json", "is empty"))
    >>> status, buf.getvalue().splitlines()
    (2, ['error: m.json: is empty'])
    """
    # Bad input is the user's to fix, not a bug: the traceback only helps
    # someone debugging the package itself.
    if debug_enabled():
        traceback.print_exception(type(err), err, err.__traceback__)
    print(f"error: {err}", file=sys.stderr)
    return USER_ERROR_STATUS


def run_cli(main, argv=None):
    """Run a command line's ``main(argv)`` and return its exit status, with
    an :class:`SSVInputError` reported by :func:`report_user_error`.

    Arguments
    ---------
    main : callable
        ``main(argv)``; a return value that is not an ``int`` (e.g. the
        paths a preparation wrote) counts as success.
    argv : list of str | None
        Arguments (``sys.argv[1:]`` when ``None``).

    Returns
    -------
    int
        ``main``'s status, 0, or :data:`USER_ERROR_STATUS`.

    Example
    -------
    >>> def main(argv):
    ...     raise SSVInputError("--size", "got 'huge'")
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()):
    ...     run_cli(main, [])
    2
    >>> run_cli(lambda argv: {"train": "train.csv"}, [])
    0
    """
    try:
        result = main(argv)
    except SSVInputError as err:
        return report_user_error(err)
    return result if isinstance(result, int) else 0
