"""The YourTTS release folder: finding its files offline, the coqui-tts
import check, and the config patching that makes a release loadable on any
machine.

Loading works offline from a folder in the release layout (the unpacked
``tts_models--multilingual--multi-dataset--your_tts.zip``)::

    model_file.pth  config.json  speakers.json  language_ids.json
    model_se.pth    config_se.json

or in any other layout Coqui's own model manager accepts, such as the
v0.5.0 zip's ``model_file.pth.tar``, ``model_se.pth.tar`` and
``speakers.pth`` (:func:`check_release_folder`, :data:`PATH_KEYS`).

The released ``config.json`` names its auxiliary files by absolute paths on
the machine it was trained on, so Coqui fails with ``FileNotFoundError`` on
any other machine. :func:`~speechbrain_ssv.inside.tts.load_yourtts` never
edits the user's folder (Coqui's own by-name loader rewrites ``config.json``
in place): it writes a patched copy (:func:`patch_yourtts_config`) to a
temporary folder, or to a path the caller chooses, and loads from that.

Authors
 * speechbrain-ssv developers 2026
"""

import importlib.util
import json
import os
import pathlib

from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import write_json

__all__ = [
    "ENCODER_FILE_NAMES",
    "INSTALL_HINT",
    "MODEL_FILE_NAMES",
    "PATH_KEYS",
    "RELEASE_FILES",
    "YOURTTS_NAME",
    "check_release_folder",
    "model_dir_from_name",
    "patch_yourtts_config",
    "require_tts",
    "resolve_model_dir",
]

RELEASE_FILES = (
    "model_file.pth",
    "config.json",
    "speakers.json",
    "language_ids.json",
    "model_se.pth",
    "config_se.json",
)
YOURTTS_NAME = "tts_models/multilingual/multi-dataset/your_tts"
INSTALL_HINT = 'pip install "speechbrain-ssv[tts]"'

# The names Coqui's ModelManager (TTS/utils/manage.py, coqui-tts 0.28)
# accepts in a model folder, in our order of preference. Older releases
# (the v0.5.0 YourTTS zip) use the ``.pth.tar`` and ``speakers.pth`` names.
MODEL_FILE_NAMES = (
    "model_file.pth",
    "model_file.pth.tar",
    "model.pth",
    "checkpoint.pth",
)
ENCODER_FILE_NAMES = ("model_se.pth", "model_se.pth.tar")
# Every config key holding a path that Coqui rewrites after a download, and
# the file names it falls back to when the key's own base name is absent.
# Keys without a dot are looked up at the top level and under model_args.
PATH_KEYS = {
    "audio.stats_path": ("scale_stats.npy",),
    "d_vector_file": ("speakers.json", "speakers.pth"),
    "speakers_file": ("speaker_ids.json", "speaker_ids.pth"),
    "language_ids_file": ("language_ids.json",),
    "speaker_encoder_model_path": ENCODER_FILE_NAMES,
    "speaker_encoder_config_path": ("config_se.json",),
}


def require_tts():
    """Import coqui-tts, or explain how to install it.

    Only the INSIDE recipe needs coqui-tts, so the rest of the package never
    imports it; every function that does calls this first.

    Returns
    -------
    module
        The ``TTS`` package.

    Raises
    ------
    ImportError
        Naming what is missing and the install command.

    Example
    -------
    >>> try:
    ...     _ = require_tts()
    ... except ImportError as err:
    ...     assert "speechbrain-ssv[tts]" in str(err)
    """
    # coqui-tts 0.28 refuses to import on torch >= 2.9 without torchcodec,
    # and imports six without declaring it: check all three up front so the
    # user gets one message naming everything to install.
    missing = [
        name
        for name in ("TTS", "torchcodec", "six")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(
            f"YourTTS support needs coqui-tts==0.28.* with torchcodec and six "
            f"(missing: {', '.join(missing)}); install them with "
            f"{INSTALL_HINT}"
        )
    try:
        # optional dependency: coqui-tts (speechbrain-ssv[tts]), checked here
        import TTS
    except ImportError as err:
        raise ImportError(
            f"coqui-tts is installed but failed to import ({err}); "
            f"reinstall it with {INSTALL_HINT}"
        ) from err
    return TTS


def model_dir_from_name(name=YOURTTS_NAME):
    """Folder where Coqui keeps a model downloaded by name.

    Coqui stores ``tts_models/<lang>/<dataset>/<model>`` under
    ``$TTS_HOME/tts/tts_models--<lang>--<dataset>--<model>`` (``TTS_HOME``
    defaults to ``$XDG_DATA_HOME``, then ``~/.local/share``). Unzipping the
    release there makes the model loadable by name; nothing is downloaded.

    Arguments
    ---------
    name : str
        Coqui model name.

    Returns
    -------
    str
        The folder (which may not exist).

    Example
    -------
    >>> getfixture("monkeypatch").setenv("TTS_HOME", "/models")
    >>> model_dir_from_name()
    '/models/tts/tts_models--multilingual--multi-dataset--your_tts'
    """
    parts = str(name).strip("/").split("/")
    if len(parts) != 4 or not parts[0].endswith("_models"):
        raise SSVInputError(
            "model name",
            f"{name!r} is not a Coqui model name; expected "
            f"'tts_models/<language>/<dataset>/<model>', e.g. {YOURTTS_NAME!r}",
        )
    home = os.environ.get("TTS_HOME") or os.environ.get("XDG_DATA_HOME")
    if home:
        home = os.path.abspath(os.path.expanduser(home))
    else:
        home = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(home, "tts", "--".join(parts))


def resolve_model_dir(model_dir):
    """The release folder ``model_dir`` names: the folder itself, or the
    Coqui cache folder of a model name (:func:`model_dir_from_name`).

    Arguments
    ---------
    model_dir : str | os.PathLike
        A folder, or a name such as
        ``tts_models/multilingual/multi-dataset/your_tts``.

    Returns
    -------
    str
        The absolute folder.

    Example
    -------
    >>> resolve_model_dir(getfixture("tmpdir")) == str(getfixture("tmpdir"))
    True
    """
    path = os.fspath(model_dir)
    if os.path.isdir(path):
        return os.path.abspath(path)
    if path.startswith("tts_models/"):
        folder = model_dir_from_name(path)
        if not os.path.isdir(folder):
            raise SSVInputError(
                folder,
                f"model {path!r} is not in the Coqui cache; unzip the "
                "release there (set TTS_HOME to use another cache root) or "
                "pass the folder itself",
            )
        return folder
    raise SSVInputError(
        path,
        "is not a folder; expected a YourTTS release folder holding "
        + ", ".join(RELEASE_FILES),
    )


def _first_file(folder, names):
    for name in names:
        path = os.path.join(folder, name)
        if name and os.path.isfile(path):
            return path
    return None


def _find_model_file(folder):
    """The TTS checkpoint: a known name, else the folder's only ``*.pt*``
    file that is not one of the auxiliary files (Coqui's fallback)."""
    found = _first_file(folder, MODEL_FILE_NAMES)
    if found:
        return found
    auxiliary = {name for names in PATH_KEYS.values() for name in names}
    candidates = sorted(
        str(p)
        for p in pathlib.Path(folder).rglob("*.pt*")
        if p.is_file() and p.name not in auxiliary
    )
    return candidates[0] if len(candidates) == 1 else None


def _find_config(folder):
    """``config.json``, at the top or else the shallowest one below."""
    found = _first_file(folder, ["config.json"])
    if found:
        return found
    configs = sorted(
        pathlib.Path(folder).rglob("config.json"),
        key=lambda p: (len(p.parts), str(p)),
    )
    return str(configs[0]) if configs else None


def check_release_folder(folder):
    """Find the files of a YourTTS release in ``folder``.

    Every layout Coqui's model manager accepts is accepted: the checkpoint
    may be named ``model_file.pth``, ``model_file.pth.tar`` (the v0.5.0
    release), ``model.pth`` or ``checkpoint.pth``, or be the only other
    ``*.pt*`` file; ``config.json`` may sit in a subfolder; the speaker
    encoder is ``model_se.pth`` or ``model_se.pth.tar`` with
    ``config_se.json``. Auxiliary files (d-vectors, speaker and language
    ids, scale stats) are found through the config
    (:func:`patch_yourtts_config`).

    Arguments
    ---------
    folder : str
        The folder.

    Returns
    -------
    dict
        Absolute paths under ``"model"``, ``"config"``, ``"encoder"`` and
        ``"encoder_config"``.

    Example
    -------
    >>> check_release_folder(getfixture("tmpdir"))
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.SSVInputError: ...: is missing the TTS checkpoint (model_file.pth or ...
    """
    folder = os.path.abspath(os.fspath(folder))
    files = {
        "model": _find_model_file(folder),
        "config": _find_config(folder),
        "encoder": _first_file(folder, ENCODER_FILE_NAMES),
        "encoder_config": _first_file(folder, ["config_se.json"]),
    }
    wanted = {
        "model": "the TTS checkpoint ("
        + " or ".join(MODEL_FILE_NAMES)
        + ", or a single other *.pth file)",
        "config": "config.json",
        "encoder": "the speaker encoder ("
        + " or ".join(ENCODER_FILE_NAMES)
        + ")",
        "encoder_config": "config_se.json",
    }
    missing = [wanted[role] for role, path in files.items() if path is None]
    if missing:
        raise SSVInputError(
            folder,
            f"is missing {', '.join(missing)}; expected a YourTTS release "
            "folder such as the unpacked "
            "tts_models--multilingual--multi-dataset--your_tts.zip "
            f"({', '.join(RELEASE_FILES)})",
        )
    return files


def _set_path(section, key, new):
    """Point ``section[key]`` at ``new`` (a list stays a one-element list);
    returns ``(old, new_value)`` when it changed, else ``None``."""
    if not isinstance(section, dict) or key not in section:
        return None
    old = section[key]
    new_value = [new] if isinstance(old, list) else new
    if old == new_value:
        return None
    section[key] = new_value
    return old, new_value


def _base_name(value):
    if isinstance(value, list):
        value = value[0] if value else ""
    # A config written on Windows separates with backslashes.
    return os.path.basename(str(value or "").replace("\\", "/"))


def patch_yourtts_config(config_path, model_dir, out_path):
    """Write a copy of a YourTTS ``config.json`` whose file paths point into
    ``model_dir``.

    A released config names its auxiliary files by absolute paths on the
    training machine. Every key of :data:`PATH_KEYS` Coqui rewrites after a
    download (``d_vector_file``, ``speakers_file``, ``language_ids_file``,
    ``speaker_encoder_model_path``, ``speaker_encoder_config_path`` at the
    top level and under ``model_args``, and ``audio.stats_path``) is
    resolved as Coqui does: to the file in ``model_dir`` with the base name
    the config gives, else to the first of the key's usual names present
    (e.g. ``speakers.json`` then ``speakers.pth``). A key is only set where
    the config has it and such a file exists; a list value stays a
    one-element list. The input file is never modified; the output is
    written atomically.

    Arguments
    ---------
    config_path : str
        The released ``config.json``.
    model_dir : str
        Folder holding the release files.
    out_path : str
        Where the patched copy goes (must differ from ``config_path``).

    Returns
    -------
    dict
        ``"<key>"``, ``"model_args.<key>"`` or ``"audio.stats_path"`` to
        ``(old, new)`` for every value changed.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> for name in ("speakers.pth", "language_ids.json"):
    ...     open(os.path.join(tmp, name), "w").close()
    >>> src = os.path.join(tmp, "config.json")
    >>> write_json(src, {"d_vector_file": ["/raid/x/speakers.json"],
    ...                  "model_args": {"language_ids_file": "/raid/x/language_ids.json"}})
    >>> changed = patch_yourtts_config(src, tmp, tmp + "/patched.json")
    >>> sorted(changed)
    ['d_vector_file', 'model_args.language_ids_file']
    >>> json.load(open(tmp + "/patched.json"))["d_vector_file"] == [tmp + "/speakers.pth"]
    True
    >>> json.load(open(src))["d_vector_file"]
    ['/raid/x/speakers.json']
    """
    config_path = os.path.abspath(os.fspath(config_path))
    out_path = os.path.abspath(os.fspath(out_path))
    if out_path == config_path:
        raise SSVInputError(
            out_path,
            "would overwrite the user's config.json; pick another path",
        )
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise SSVInputError(
            config_path, f"is not a readable JSON config ({err})"
        ) from None
    if not isinstance(config, dict):
        raise SSVInputError(config_path, "expected a JSON object at the top")
    model_dir = os.path.abspath(os.fspath(model_dir))
    changed = {}
    for field, defaults in PATH_KEYS.items():
        if "." in field:
            parent, key = field.split(".")
            places = [(f"{parent}.", config.get(parent))]
        else:
            key = field
            places = [("", config), ("model_args.", config.get("model_args"))]
        places = [(p, s) for p, s in places if isinstance(s, dict)]
        names = [_base_name(s.get(key)) for _, s in places]
        new = _first_file(model_dir, names + list(defaults))
        if new is None:
            continue
        for prefix, section in places:
            change = _set_path(section, key, new)
            if change is not None:
                changed[prefix + key] = change
    write_json(out_path, config)
    return changed
