"""Error types raised on bad user input.

Every error names the file or key at fault and what was expected, so a user
never has to read a traceback from deep inside torch.

Authors
 * speechbrain-ssv developers 2026
"""


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
