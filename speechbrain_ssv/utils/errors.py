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
