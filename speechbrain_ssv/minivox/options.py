"""minivox options: size presets, option checks, the seeded random
generators every draw comes from, and the check of the ``minivox`` extra.

Authors
 * speechbrain-ssv developers 2026
"""

import importlib
import zlib

import numpy as np

from speechbrain_ssv.minivox.channels import STRENGTHS
from speechbrain_ssv.utils.errors import MissingExtraError, SSVInputError

VERSION = 1
FS = 16000
MIN_SECONDS = 3.3

SIZES = {
    "tiny": {
        "n_speakers": 16,
        "n_test_speakers": 6,
        "n_utts": 6,
        "sessions": (2, 3),
        "n_noise": 6,
        "n_rir": 6,
        "trials_per_utt": 3,
    },
    "default": {
        "n_speakers": 200,
        "n_test_speakers": 40,
        "n_utts": 20,
        "sessions": (3, 6),
        "n_noise": 30,
        "n_rir": 40,
        "trials_per_utt": 4,
    },
}
VARIANTS = ("voxceleb", "ffsvc")
#: What the generator needs beyond the base install (module: distribution),
#: all provided by ``pip install 'speechbrain-ssv[minivox]'``.
EXTRA_MODULES = {
    "pyroomacoustics": "pyroomacoustics",
    "espeakng_loader": "espeakng-loader",
}
_OPTION_KEYS = (
    "n_speakers",
    "n_test_speakers",
    "n_utts",
    "sessions",
    "n_noise",
    "n_rir",
    "trials_per_utt",
)


def seeded_rng(seed, *keys):
    """A numpy generator determined by a seed and a tuple of keys.

    Arguments
    ---------
    seed : int
        Corpus seed.
    *keys : int | str
        Purpose and indices (strings are hashed with CRC32, stable across
        runs and Python versions, unlike ``hash``).

    Returns
    -------
    numpy.random.Generator
        Independent stream for these keys.

    Example
    -------
    >>> a = seeded_rng(1, "utt", 3).random()
    >>> a == seeded_rng(1, "utt", 3).random(), a == seeded_rng(1, "utt", 4).random()
    (True, False)
    """
    entropy = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        if isinstance(key, str):
            entropy.append(zlib.crc32(key.encode()))
        else:
            entropy.append(int(key) & 0xFFFFFFFF)
    return np.random.default_rng(entropy)


def resolve_options(
    size="default", variant="voxceleb", channel="strong", seed=1234, **overrides
):
    """Validate generator options and fill them in from a size preset.

    Arguments
    ---------
    size : str
        ``tiny`` or ``default``.
    variant : str
        ``voxceleb`` or ``ffsvc``.
    channel : str
        ``none``, ``mild`` or ``strong``.
    seed : int
        Corpus seed.
    **overrides
        Any of ``n_speakers``, ``n_test_speakers``, ``n_utts``,
        ``sessions`` (min, max), ``n_noise``, ``n_rir``, ``trials_per_utt``.

    Returns
    -------
    dict
        Complete options (what ``meta/minivox.json`` records).

    Example
    -------
    >>> opts = resolve_options("tiny", n_speakers=10, n_test_speakers=4)
    >>> opts["n_speakers"], opts["n_utts"], opts["channel"]
    (10, 6, 'strong')
    >>> resolve_options("huge")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.SSVInputError: size: got 'huge'; expected one of ['default', 'tiny']
    """
    if size not in SIZES:
        raise SSVInputError(
            "size", f"got {size!r}; expected one of {sorted(SIZES)}"
        )
    if variant not in VARIANTS:
        raise SSVInputError(
            "variant", f"got {variant!r}; expected one of {list(VARIANTS)}"
        )
    if channel not in STRENGTHS:
        raise SSVInputError(
            "channel", f"got {channel!r}; expected one of {sorted(STRENGTHS)}"
        )
    unknown = sorted(set(overrides) - set(_OPTION_KEYS))
    if unknown:
        raise SSVInputError(
            unknown[0],
            f"is not a minivox option; expected one of {list(_OPTION_KEYS)}",
        )
    opts = dict(SIZES[size])
    opts.update({k: v for k, v in overrides.items() if v is not None})
    opts["sessions"] = [int(s) for s in opts["sessions"]]
    for key in (
        "n_speakers",
        "n_test_speakers",
        "n_utts",
        "n_noise",
        "n_rir",
        "trials_per_utt",
    ):
        if not isinstance(opts[key], (int, np.integer)) or isinstance(
            opts[key], bool
        ):
            raise SSVInputError(key, f"got {opts[key]!r}; expected an integer")
        opts[key] = int(opts[key])
    lo, hi = opts["sessions"] if len(opts["sessions"]) == 2 else (0, -1)
    if not 1 <= lo <= hi:
        raise SSVInputError(
            "sessions",
            f"got {opts['sessions']}; expected [min, max] with 1 <= min <= max",
        )
    if (
        opts["n_test_speakers"] < 2
        or opts["n_speakers"] - opts["n_test_speakers"] < 1
    ):
        raise SSVInputError(
            "n_test_speakers",
            f"got {opts['n_test_speakers']} of {opts['n_speakers']} speakers; expected at "
            "least 2 held-out speakers and at least 1 training speaker",
        )
    if (
        opts["n_utts"] < 2
        or opts["n_noise"] < 1
        or opts["n_rir"] < 1
        or opts["trials_per_utt"] < 1
    ):
        raise SSVInputError(
            "n_utts/n_noise/n_rir/trials_per_utt",
            "expected n_utts >= 2 and the others >= 1",
        )
    opts.update(
        size=size,
        variant=variant,
        channel=channel,
        seed=int(seed),
        version=VERSION,
    )
    return opts


def check_minivox_extra():
    """Raise one error naming every missing dependency of the generator.

    Only the generator needs them, so they are an extra of the package and
    are imported where used; checking them all up front turns what would
    be an ``ImportError`` deep in a worker into one line saying what to
    install.

    Raises
    ------
    MissingExtraError
        When a module of :data:`EXTRA_MODULES` cannot be imported.

    Example
    -------
    >>> check_minivox_extra()  # both installed: nothing to say
    """
    missing = []
    for module, dist in EXTRA_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    if missing:
        raise MissingExtraError(
            "minivox", missing, "the minivox corpus generator"
        )
