"""Loading HyperPyYAML files with errors that name the file and the key.

Authors
 * speechbrain-ssv developers 2026
"""

import os

from hyperpyyaml import load_hyperpyyaml

from speechbrain_ssv.utils.errors import HparamsError


def load_hparams(hparams_file, overrides=None, required=()):
    """Load a HyperPyYAML file, turning hyperpyyaml's errors into an
    :class:`HparamsError` that names the file and the offending key.

    Arguments
    ---------
    hparams_file : str
        Path of the yaml file.
    overrides : str | dict | None
        Overrides as given by ``speechbrain.parse_arguments``.
    required : sequence of str
        Keys the caller needs; a missing one is reported by name.

    Returns
    -------
    dict
        The loaded hyperparameters.

    Example
    -------
    >>> import os
    >>> p = os.path.join(getfixture("tmpdir"), "h.yaml")
    >>> _ = open(p, "w").write("lr: 0.1\\nbatch_size: 4\\n")
    >>> load_hparams(p, {"lr": 0.5})["lr"]
    0.5
    >>> load_hparams(p, "bacth_size: 8")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: ...: unknown hparams key 'bacth_size' (overrides must name keys of the file; it has: batch_size, lr)
    """
    hparams_file = os.fspath(hparams_file)
    if not os.path.isfile(hparams_file):
        raise HparamsError(hparams_file, "hparams file does not exist")
    overrides = overrides or {}
    with open(hparams_file, encoding="utf-8") as fin:
        text = fin.read()
    try:
        hparams = load_hyperpyyaml(text, overrides)
    except KeyError as err:
        msg = str(err.args[0]) if err.args else str(err)
        if msg.startswith("Override '"):
            key = msg.split("'")[1]
            known = _top_level_keys(text)
            raise HparamsError(
                hparams_file,
                f"unknown hparams key '{key}' (overrides must name keys of "
                f"the file; it has: {', '.join(sorted(known))})",
            ) from None
        raise HparamsError(
            hparams_file, f"reference to a missing key: {msg}"
        ) from None
    except ValueError as err:
        if "PLACEHOLDER" in str(err) or "placeholder" in str(err).lower():
            raise HparamsError(
                hparams_file,
                f"a required value was not given ({err}); pass it on the "
                "command line, e.g. --data_folder /path/to/voxceleb",
            ) from None
        raise HparamsError(hparams_file, str(err)) from None
    missing = [k for k in required if k not in hparams]
    if missing:
        raise HparamsError(
            hparams_file, f"missing required key(s): {', '.join(missing)}"
        )
    return hparams


def _top_level_keys(text):
    keys = []
    for line in text.splitlines():
        if (
            line
            and not line[0].isspace()
            and not line.startswith("#")
            and ":" in line
        ):
            keys.append(line.split(":", 1)[0].strip())
    return keys
