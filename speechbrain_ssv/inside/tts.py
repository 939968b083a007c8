"""Coqui YourTTS adapter: offline loading, speaker-encoder embeddings.

INSIDE needs two things from YourTTS (coqui-tts 0.28, import name ``TTS``):
its speaker encoder, to place real utterances in the d-vector space the TTS
model is conditioned on, and the ``Vits`` model itself, to speak from any
point of that space (:mod:`speechbrain_ssv.inside.synthesize`).

Loading works offline from a folder in the release layout (the unpacked
``tts_models--multilingual--multi-dataset--your_tts.zip``)::

    model_file.pth  config.json  speakers.json  language_ids.json
    model_se.pth    config_se.json

or in any other layout Coqui's own model manager accepts, such as the
v0.5.0 zip's ``model_file.pth.tar``, ``model_se.pth.tar`` and
``speakers.pth`` (:func:`check_release_folder`, :data:`PATH_KEYS`).
Checkpoints load with ``torch.load(weights_only=True)``; pickled ones need
the explicit opt-in ``trust_checkpoint=True``.

The released ``config.json`` names its auxiliary files by absolute paths on
the machine it was trained on, so Coqui fails with ``FileNotFoundError`` on
any other machine. :func:`load_yourtts` never edits the user's folder
(Coqui's own by-name loader rewrites ``config.json`` in place): it writes a
patched copy (:func:`patch_yourtts_config`) to a temporary folder, or to a
path the caller chooses, and loads from that.

Embeddings follow the encoder's own feature path (the path of Coqui's
``SpeakerManager.compute_embedding_from_clip``): mono audio resampled with
soxr's high-quality mode to the encoder rate, silence-trimmed and
peak-normalised when the encoder config asks for it (``do_trim_silence``,
``do_sound_norm``), RMS-normalised to the configured level (-27 dB), then ``num_eval`` evenly spaced windows of 250
hops (2.5 s at 16 kHz; the whole clip when shorter), each L2-normalised, and
their mean. Windows of equal length are batched across clips, which is where
the speed-up over Coqui's one-clip-at-a-time loop comes from. Because each
window is unit-norm, an embedding's norm is at most 1.

The weights of the real model are licensed CC BY-NC-ND 4.0 (non-commercial).

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import csv
import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import pickle
import tempfile
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from speechbrain_ssv.data.audio import read_audio_checked
from speechbrain_ssv.utils.errors import (
    AudioFileError,
    ManifestError,
    SSVInputError,
)
from speechbrain_ssv.utils.io import save_torch, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "ENCODER_FILE_NAMES",
    "EmbeddingResult",
    "MODEL_FILE_NAMES",
    "PATH_KEYS",
    "RELEASE_FILES",
    "YOURTTS_NAME",
    "YourTTS",
    "check_release_folder",
    "embed_manifest",
    "embed_wavs",
    "load_yourtts",
    "model_dir_from_name",
    "patch_yourtts_config",
    "require_tts",
    "resample",
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
TRUST_HINT = (
    "if you trust its origin, load it with trust_checkpoint=True "
    "(recipe: tts_trust_checkpoint: True), which lets torch.load run the "
    "pickled code it holds"
)
# Window length of one encoder pass, in hops (2.5 s at 16 kHz, hop 160);
# the value Coqui's ``compute_embedding`` uses.
_WINDOW_HOPS = 250
_CACHE_VERSION = 1


def require_tts():
    """Import coqui-tts, or explain how to install it.

    Only the INSIDE recipe needs coqui-tts, so the rest of the package never
    imports it; every function here that does calls this first.

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


def _resolve_model_dir(model_dir):
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


def resample(signal, orig_sr, target_sr):
    """Resample a 1-D float signal.

    Uses soxr's high-quality mode, which is what ``librosa.load`` (and so
    Coqui's ``AudioProcessor.load_wav``) applies; soxr comes with coqui-tts.
    Without it (coqui-tts not installed) a polyphase filter from scipy is
    used instead.

    Arguments
    ---------
    signal : numpy.ndarray
        Samples.
    orig_sr : int
        Its rate in Hz.
    target_sr : int
        Wanted rate in Hz.

    Returns
    -------
    numpy.ndarray
        float32 samples at ``target_sr``.

    Example
    -------
    >>> resample(np.zeros(22050, dtype=np.float32), 22050, 16000).shape
    (16000,)
    """
    signal = np.asarray(signal, dtype=np.float32)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return signal
    try:
        import soxr
    except ImportError:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(orig_sr, target_sr)
        out = resample_poly(signal, target_sr // g, orig_sr // g)
        return out.astype(np.float32)
    return soxr.resample(signal, orig_sr, target_sr, quality="HQ")


class EmbeddingResult(NamedTuple):
    """Output of :func:`embed_wavs`.

    Attributes
    ----------
    embeddings : numpy.ndarray
        ``[n_kept, 512]`` float32, finite, norm <= 1, in input order.
    kept : list of int
        Input index of each row of ``embeddings``.
    skipped : dict
        Input index of every skipped item to the reason (``"silent"``,
        ``"too short"``, ``"non-finite"``).
    """

    embeddings: np.ndarray
    kept: list
    skipped: dict


class YourTTS:
    """A loaded YourTTS: the ``Vits`` model, its speaker encoder and what
    callers need to know about them. Build it with :func:`load_yourtts`.

    Arguments
    ---------
    model : TTS.tts.models.vits.Vits
        The TTS model, in eval mode.
    encoder : TTS.encoder.models.resnet.ResNetSpeakerEncoder
        The speaker encoder, in eval mode.
    encoder_config : coqpit.Coqpit
        The encoder's config (``config_se.json``).
    model_dir : str
        The release folder it was loaded from.
    encoder_file : str | None
        The encoder checkpoint (``None``: ``model_dir/model_se.pth``).

    Attributes
    ----------
    sample_rate : int
        Output rate of the TTS model (16 kHz for YourTTS).
    encoder_sample_rate : int
        Input rate of the speaker encoder.
    d_vector_dim : int
        Size of the d-vectors the model is conditioned on (512).
    languages : list of str
        Language names, e.g. ``["en", "fr-fr", "pt-br"]``.
    encoder_trim_db : float | None
        Silence threshold (dB below the peak) trimmed from both ends of a
        clip before embedding; ``None`` when the encoder config's
        ``do_trim_silence`` is off.
    encoder_sound_norm : bool
        Whether clips are peak-normalised (``do_sound_norm``).
    encoder_tag : str
        Identifies the encoder weights (file, size, mtime) and the audio
        preprocessing, for caches.
    """

    def __init__(
        self, model, encoder, encoder_config, model_dir, encoder_file=None
    ):
        self.model = model
        self.encoder = encoder
        self.encoder_config = encoder_config
        self.model_dir = model_dir
        self.sample_rate = int(model.config.audio.sample_rate)
        self.hop_length = int(model.config.audio.hop_length)
        audio = encoder_config.audio
        self.encoder_sample_rate = int(audio.sample_rate)
        self.encoder_hop_length = int(audio.hop_length)
        # RMS normalisation is what AudioProcessor.load_wav applies when the
        # encoder config asks for it; without it the clip is used as read.
        self.encoder_db_level = (
            float(audio.db_level) if audio.get("do_rms_norm") else None
        )
        # The other two steps of AudioProcessor.load_wav, in its order:
        # silence trimming, peak normalisation, then RMS normalisation.
        self.encoder_trim_db = (
            float(audio.trim_db) if audio.get("do_trim_silence") else None
        )
        self.encoder_win_length = int(audio.win_length)
        self.encoder_sound_norm = bool(audio.get("do_sound_norm"))
        self.d_vector_dim = int(model.args.d_vector_dim)
        lm = model.language_manager
        self.languages = list(lm.name_to_id) if lm is not None else []
        se_path = encoder_file or os.path.join(model_dir, "model_se.pth")
        st = os.stat(se_path)
        self.encoder_tag = (
            f"{se_path}:{st.st_size}:{st.st_mtime_ns}:"
            f"{self.encoder_trim_db}:{self.encoder_sound_norm}:"
            f"{self.encoder_db_level}"
        )

    @property
    def device(self):
        """The device the model is on."""
        return next(self.model.parameters()).device

    def to(self, device):
        """Move the model and the encoder to ``device``; returns ``self``."""
        self.model.to(device)
        self.encoder.to(device)
        return self

    def language_id(self, language):
        """Index of ``language`` in the model's language table.

        Arguments
        ---------
        language : str
            E.g. ``"en"`` (YourTTS uses ``en``, ``fr-fr``, ``pt-br``).

        Returns
        -------
        int | None
            ``None`` for a model without a language embedding.
        """
        lm = self.model.language_manager
        if lm is None or not self.model.args.use_language_embedding:
            return None
        if language not in lm.name_to_id:
            raise SSVInputError(
                "language",
                f"{language!r} is not one of the model's languages "
                f"{sorted(lm.name_to_id)} (YourTTS spells them en, fr-fr, pt-br)",
            )
        return int(lm.name_to_id[language])

    def embed_wavs(self, items, **kwargs):
        """Shortcut for :func:`embed_wavs` with this model."""
        return embed_wavs(self, items, **kwargs)

    def embed_manifest(self, manifest_csv, cache_dir, **kwargs):
        """Shortcut for :func:`embed_manifest` with this model."""
        return embed_manifest(self, manifest_csv, cache_dir, **kwargs)

    def __repr__(self):
        return (
            f"YourTTS({self.model_dir!r}, {self.sample_rate} Hz, "
            f"d_vector_dim={self.d_vector_dim}, languages={self.languages}, "
            f"device={self.device})"
        )


def _loaded_file(f):
    """Best-effort name of what ``torch.load`` was given."""
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    for attr in ("path", "name"):
        name = getattr(f, attr, None)
        if isinstance(name, (str, os.PathLike)):
            return os.fspath(name)
    return "a checkpoint"


@contextlib.contextmanager
def _torch_load_policy(trust_checkpoint):
    """Route Coqui's ``torch.load`` calls while a model loads.

    Coqui decides ``weights_only`` itself, deep inside (trainer's
    ``load_fsspec``, the d-vector file loader), and gives callers no way to
    change it, so ``torch.load`` is wrapped for the duration of the load:
    with ``trust_checkpoint`` every call loads with ``weights_only=False``;
    without it, a refused file raises an :class:`SSVInputError` naming the
    file and the opt-in. Not thread-safe: load models one at a time.
    """
    original = torch.load

    def load(f, *args, **kwargs):
        """``torch.load`` with a clear error for a checkpoint that needs pickle."""
        if trust_checkpoint:
            kwargs["weights_only"] = False
            return original(f, *args, **kwargs)
        try:
            return original(f, *args, **kwargs)
        except pickle.UnpicklingError as err:
            raise SSVInputError(
                _loaded_file(f),
                "holds pickled Python objects that "
                f"torch.load(weights_only=True) refuses "
                f"({str(err).splitlines()[0]}); {TRUST_HINT}",
            ) from None

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def load_yourtts(
    model_dir, device="cpu", patched_config=None, trust_checkpoint=False
):
    """Load YourTTS offline from a release folder (or the Coqui cache).

    Arguments
    ---------
    model_dir : str
        A folder in any release layout Coqui's model manager accepts (see
        :func:`check_release_folder`), or a Coqui model name such as
        ``tts_models/multilingual/multi-dataset/your_tts``, looked up in
        ``$TTS_HOME/tts`` (no download).
    device : str | torch.device
        Where to put the model and the encoder.
    patched_config : str | None
        Where to keep the patched ``config.json``; ``None`` uses a temporary
        folder that is removed after loading. The folder's own files are
        never modified.
    trust_checkpoint : bool
        Checkpoints are loaded with ``torch.load(weights_only=True)``, which
        refuses pickled Python objects (old releases store some). ``True``
        loads them with ``weights_only=False``, which runs any code the
        pickle holds: only for files from a source you trust.

    Returns
    -------
    YourTTS
        The loaded model, in eval mode.

    Example
    -------
    >>> tts = load_yourtts("models/your_tts", device="cuda")  # doctest: +SKIP
    >>> tts.sample_rate, tts.d_vector_dim, tts.languages  # doctest: +SKIP
    (16000, 512, ['en', 'fr-fr', 'pt-br'])
    """
    require_tts()
    from TTS.config import load_config
    from TTS.tts.models import setup_model

    if not isinstance(trust_checkpoint, bool):
        raise SSVInputError(
            "trust_checkpoint",
            f"is {trust_checkpoint!r}; expected True or False",
        )
    folder = _resolve_model_dir(model_dir)
    files = check_release_folder(folder)
    with tempfile.TemporaryDirectory(prefix="ssv-yourtts-") as tmp:
        config_path = patched_config or os.path.join(tmp, "config.json")
        patch_yourtts_config(files["config"], folder, config_path)
        config = load_config(config_path)
    if str(config.get("model", "")).lower() != "vits":
        raise SSVInputError(
            files["config"],
            f"is a {config.get('model')!r} config; expected YourTTS (vits)",
        )
    args = config.model_args
    if not args.use_d_vector_file or not args.d_vector_dim:
        raise SSVInputError(
            files["config"],
            "model_args.use_d_vector_file is false; expected a YourTTS "
            "model conditioned on external d-vectors",
        )
    with _torch_load_policy(trust_checkpoint):
        try:
            # The constructor reads the d-vector, speaker and language files
            # and, with the speaker-consistency loss, the encoder.
            model = setup_model(config)
        except FileNotFoundError as err:
            raise SSVInputError(
                files["config"],
                f"names a file that is not in {folder} ({err}); expected the "
                "auxiliary files next to it under their release names "
                f"({', '.join(n for names in PATH_KEYS.values() for n in names)})",
            ) from None
        try:
            model.load_checkpoint(config, files["model"], eval=True)
        except (RuntimeError, KeyError) as err:
            raise SSVInputError(
                files["model"],
                f"does not match config.json ({str(err).splitlines()[0]})",
            ) from None
        manager = model.speaker_manager
        if manager.encoder is None:
            # Configs without the speaker-consistency loss do not load the
            # encoder with the model; the release still ships it.
            manager.init_encoder(files["encoder"], files["encoder_config"])
    encoder = manager.encoder.eval()
    params = manager.encoder_config.model_params
    if not params.get("use_torch_spec", False):
        raise SSVInputError(
            files["encoder_config"],
            "model_params.use_torch_spec is false; only encoders that compute "
            "their own spectrogram from the waveform (as YourTTS's) are "
            "supported",
        )
    tts = YourTTS(
        model,
        encoder,
        manager.encoder_config,
        folder,
        encoder_file=_encoder_file(config, files),
    )
    return tts.to(device)


def _encoder_file(config, files):
    """The encoder checkpoint the model actually loaded."""
    path = config.model_args.get("speaker_encoder_model_path")
    return path if path and os.path.isfile(path) else files["encoder"]


def _read_clip(path, start=0, stop=None):
    """``(float32 signal, rate)`` of a file segment. An empty file or
    segment gives an empty signal (skipped later as too short); a missing
    or corrupt file raises :class:`AudioFileError` naming it."""
    path = os.fspath(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError):
        info = None
    if info is not None:
        end = info.frames if stop is None else min(int(stop), info.frames)
        if int(start) >= end:
            return np.zeros(0, dtype=np.float32), info.samplerate
    sig = read_audio_checked(path, start, stop, expected_sr=None).numpy()
    return sig, info.samplerate


def _as_signal(item, sample_rate, index):
    """``(float32 numpy signal, rate)`` of one embed_wavs item."""
    if isinstance(item, (str, os.PathLike)):
        return _read_clip(item)
    if isinstance(item, tuple) and len(item) == 2:
        sig, sr = item
    else:
        sig, sr = item, sample_rate
    if isinstance(sig, torch.Tensor):
        sig = sig.detach().cpu().numpy()
    sig = np.asarray(sig, dtype=np.float32)
    if sig.ndim == 2 and 1 in sig.shape:
        sig = sig.reshape(-1)
    if sig.ndim != 1:
        raise SSVInputError(
            f"items[{index}]",
            f"signal has shape {sig.shape}; expected a 1-D mono signal",
        )
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise SSVInputError(
            f"items[{index}]", f"sample rate {sr!r} is not a positive integer"
        )
    return sig, int(sr)


def _trim_silence(tts, sig):
    """Coqui's ``trim_silence``: drop 10 ms at each end, then the leading
    and trailing frames more than ``trim_db`` below the peak."""
    import librosa

    margin = int(tts.encoder_sample_rate * 0.01)
    if margin:
        sig = sig[margin:-margin]
    try:
        return librosa.effects.trim(
            sig,
            top_db=tts.encoder_trim_db,
            frame_length=tts.encoder_win_length,
            hop_length=tts.encoder_hop_length,
        )[0]
    except ValueError:
        # Coqui logs and keeps the clip untrimmed in this case too.
        logger.warning("clip of %d samples cannot be trimmed", len(sig))
        return sig


def _prepare_clip(tts, sig, sr, min_samples, min_rms):
    """Encoder-ready float32 signal, or the reason to skip the clip.

    The steps of Coqui's ``AudioProcessor.load_wav`` for the encoder config,
    in its order: resampling, silence trimming (``do_trim_silence``), peak
    normalisation (``do_sound_norm``), RMS normalisation (``do_rms_norm``).
    """
    if not np.isfinite(sig).all():
        return None, "non-finite"
    sig = resample(sig, sr, tts.encoder_sample_rate)
    if len(sig) < min_samples:
        return None, "too short"
    rms = float(np.sqrt(np.mean(np.square(sig, dtype=np.float64))))
    # RMS normalisation divides by this; silence would become NaN (or
    # amplified dither), so such clips carry no speaker and are skipped.
    if rms < min_rms:
        return None, "silent"
    if tts.encoder_trim_db is not None:
        sig = _trim_silence(tts, sig)
        if len(sig) < min_samples:
            return None, "too short"
    if tts.encoder_sound_norm:
        sig = sig / np.abs(sig).max() * 0.95
    if tts.encoder_db_level is not None:
        rms = float(np.sqrt(np.mean(np.square(sig, dtype=np.float64))))
        sig = sig * (10 ** (tts.encoder_db_level / 20) / rms)
    return np.ascontiguousarray(sig, dtype=np.float32), None


@torch.inference_mode()
def _encode_clips(tts, clips, num_eval):
    """Mean of ``num_eval`` L2-normalised window embeddings per clip."""
    window = _WINDOW_HOPS * tts.encoder_hop_length
    groups = {}
    for c, sig in enumerate(clips):
        width = min(window, len(sig))
        offsets = np.linspace(0, len(sig) - width, num=num_eval)
        for off in offsets:
            start = int(off)
            groups.setdefault(width, []).append((c, sig[start : start + width]))
    device = tts.device
    sums = torch.zeros(len(clips), tts.d_vector_dim, dtype=torch.float64)
    for members in groups.values():
        batch = torch.from_numpy(np.stack([w for _, w in members])).to(device)
        out = tts.encoder.inference(batch, l2_norm=True).double().cpu()
        index = torch.tensor([c for c, _ in members])
        sums.index_add_(0, index, out)
    return (sums / num_eval).float().numpy()


def embed_wavs(
    tts,
    items,
    num_eval=10,
    batch_size=16,
    sample_rate=None,
    min_seconds=0.1,
    min_rms=1e-5,
    progress=False,
):
    """Speaker-encoder embeddings of audio files or signals, batched.

    Arguments
    ---------
    tts : YourTTS
        From :func:`load_yourtts`.
    items : list
        Each a path to an audio file (any rate; multi-channel is averaged),
        a ``(signal, sample_rate)`` pair, or a bare 1-D signal at
        ``sample_rate``.
    num_eval : int
        Windows per clip (Coqui uses 10; fewer is faster and noisier).
    batch_size : int
        Clips encoded together (``batch_size * num_eval`` windows).
    sample_rate : int | None
        Rate of bare signals; ``None``: the encoder's rate (16 kHz).
    min_seconds : float
        Shorter clips (after resampling) are skipped.
    min_rms : float
        Clips whose RMS is below this (silence, digital zero) are skipped:
        RMS normalisation would divide by ~0 and yield NaN.
    progress : bool
        Show a tqdm bar over clips.

    Returns
    -------
    EmbeddingResult
        ``embeddings`` ``[n_kept, 512]`` (never NaN), ``kept`` indices,
        ``skipped`` ``{index: reason}``; the skip count is logged.

    Example
    -------
    >>> tts = load_yourtts("models/your_tts")  # doctest: +SKIP
    >>> res = embed_wavs(tts, ["a.wav", (np.zeros(16000), 16000)])  # doctest: +SKIP
    >>> res.embeddings.shape, res.skipped  # doctest: +SKIP
    ((1, 512), {1: 'silent'})
    """
    if not isinstance(num_eval, int) or num_eval < 1:
        raise SSVInputError("num_eval", f"got {num_eval!r}; expected >= 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SSVInputError("batch_size", f"got {batch_size!r}; expected >= 1")
    if isinstance(items, (str, os.PathLike, np.ndarray, torch.Tensor)):
        raise SSVInputError(
            "items", "expected a list of files or signals, not a single one"
        )
    items = list(items)
    sample_rate = sample_rate or tts.encoder_sample_rate
    min_samples = max(1, int(round(min_seconds * tts.encoder_sample_rate)))
    # The encoder's reflect-padded STFT needs more than half an FFT.
    min_samples = max(min_samples, tts.encoder_config.audio.fft_size // 2 + 1)
    vectors = np.zeros((len(items), tts.d_vector_dim), dtype=np.float32)
    ok = np.zeros(len(items), dtype=bool)
    skipped = {}
    bar = tqdm(
        total=len(items), desc="speaker embeddings", disable=not progress
    )
    try:
        for first in range(0, len(items), batch_size):
            index, clips = [], []
            for i in range(first, min(first + batch_size, len(items))):
                sig, sr = _as_signal(items[i], sample_rate, i)
                clip, reason = _prepare_clip(tts, sig, sr, min_samples, min_rms)
                if reason:
                    skipped[i] = reason
                else:
                    index.append(i)
                    clips.append(clip)
            if clips:
                out = _encode_clips(tts, clips, num_eval)
                for i, vec in zip(index, out):
                    if np.isfinite(vec).all():
                        vectors[i], ok[i] = vec, True
                    else:
                        skipped[i] = "non-finite"
            bar.update(min(batch_size, len(items) - first))
    finally:
        bar.close()
    if skipped:
        reasons = {}
        for reason in skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        logger.warning(
            "skipped %d of %d clips with no usable speech (%s)",
            len(skipped),
            len(items),
            ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())),
        )
    kept = [int(i) for i in np.flatnonzero(ok)]
    return EmbeddingResult(vectors[ok], kept, dict(sorted(skipped.items())))


def _read_manifest(path):
    """Rows of a SpeechBrain CSV manifest with ID, wav and spk_id."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ManifestError(path, "does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in ("ID", "wav", "spk_id") if c not in columns]
    if missing:
        raise ManifestError(
            path,
            f"lacks column(s) {', '.join(missing)}; expected SpeechBrain's "
            "ID,duration,wav,start,stop,spk_id[,gender,...]",
        )
    if not rows:
        raise ManifestError(path, "is empty; expected at least one row")
    seen = set()
    for n, row in enumerate(rows, start=2):
        if row["ID"] in seen:
            raise ManifestError(path, f"line {n}: ID {row['ID']!r} repeats")
        seen.add(row["ID"])
    return rows, "gender" in columns


def _segment(row):
    def as_int(key):
        """Column ``key`` as an int, or ``None`` when empty."""
        value = (row.get(key) or "").strip()
        return int(float(value)) if value else None

    start = as_int("start") or 0
    return start, as_int("stop")


def _chunk_fingerprint(rows, settings):
    h = hashlib.sha1(repr(sorted(settings.items())).encode())
    for row in rows:
        wav = row["wav"]
        try:
            st = os.stat(wav)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        h.update(repr((row["ID"], wav, _segment(row), stamp)).encode())
    return h.hexdigest()


def _load_chunk(path, fingerprint):
    if not os.path.isfile(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged cache shard is recomputed
        logger.warning("ignoring unreadable cache shard %s (%s)", path, err)
        return None
    if (
        not isinstance(data, dict)
        or data.get("version") != _CACHE_VERSION
        or data.get("fingerprint") != fingerprint
    ):
        return None
    return data


def embed_manifest(
    tts,
    manifest_csv,
    cache_dir,
    num_eval=10,
    batch_size=16,
    chunk_size=256,
    min_seconds=0.1,
    min_rms=1e-5,
    progress=True,
):
    """Embed every utterance of a SpeechBrain manifest, cached and resumable.

    Audio is read with soundfile (``start``/``stop`` columns, in samples,
    select a segment; empty or absent means the whole file). The manifest
    is cut into chunks of ``chunk_size`` rows; each finished chunk is saved
    atomically to ``cache_dir/chunk-NNNNN.pt`` with a fingerprint of its
    rows (ids, paths, segments, file sizes and times), the encoder weights
    and the settings, so an interrupted run recomputes only unfinished or
    changed chunks.

    Arguments
    ---------
    tts : YourTTS
        From :func:`load_yourtts`.
    manifest_csv : str
        CSV with at least ``ID``, ``wav``, ``spk_id`` (``gender`` is
        returned when present).
    cache_dir : str
        Folder for the cache shards (created).
    num_eval, batch_size, min_seconds, min_rms
        As in :func:`embed_wavs`.
    chunk_size : int
        Rows per cache shard.
    progress : bool
        Show a tqdm bar over utterances.

    Returns
    -------
    dict
        ``ids``, ``speakers``, ``genders`` (``None`` without a gender
        column): lists in manifest order; ``embeddings``: ``[n, 512]``
        float32 for those ids; ``skipped``: ``{id: reason}`` of the
        utterances left out (silent, too short); ``computed``/``cached``:
        chunk counts.

    Example
    -------
    >>> out = embed_manifest(tts, "save/train.csv", "save/yourtts_emb")  # doctest: +SKIP
    >>> out["embeddings"].shape  # doctest: +SKIP
    (5000, 512)
    """
    rows, has_gender = _read_manifest(manifest_csv)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise SSVInputError("chunk_size", f"got {chunk_size!r}; expected >= 1")
    settings = {
        "encoder": tts.encoder_tag,
        "num_eval": num_eval,
        "min_seconds": min_seconds,
        "min_rms": min_rms,
    }
    os.makedirs(cache_dir, exist_ok=True)
    ids, speakers, genders, vectors, skipped = [], [], [], [], {}
    counts = {"computed": 0, "cached": 0}
    bar = tqdm(total=len(rows), desc="yourtts embeddings", disable=not progress)
    try:
        for c, first in enumerate(range(0, len(rows), chunk_size)):
            chunk = rows[first : first + chunk_size]
            fingerprint = _chunk_fingerprint(chunk, settings)
            path = os.path.join(cache_dir, f"chunk-{c:05d}.pt")
            data = _load_chunk(path, fingerprint)
            if data is None:
                items = []
                for row in chunk:
                    try:
                        items.append(_read_clip(row["wav"], *_segment(row)))
                    except AudioFileError as err:
                        raise ManifestError(
                            manifest_csv, f"row {row['ID']!r}: {err}"
                        ) from None
                res = embed_wavs(
                    tts,
                    items,
                    num_eval=num_eval,
                    batch_size=batch_size,
                    min_seconds=min_seconds,
                    min_rms=min_rms,
                )
                data = {
                    "version": _CACHE_VERSION,
                    "fingerprint": fingerprint,
                    "kept": res.kept,
                    "embeddings": torch.from_numpy(res.embeddings),
                    "skipped": {
                        chunk[i]["ID"]: r for i, r in res.skipped.items()
                    },
                }
                save_torch(path, data)
                counts["computed"] += 1
            else:
                counts["cached"] += 1
            for i in data["kept"]:
                row = chunk[i]
                ids.append(row["ID"])
                speakers.append(row["spk_id"])
                genders.append(row.get("gender", ""))
            vectors.append(data["embeddings"].numpy())
            skipped.update(data["skipped"])
            bar.update(len(chunk))
    finally:
        bar.close()
    embeddings = (
        np.concatenate(vectors)
        if vectors
        else np.zeros((0, tts.d_vector_dim), dtype=np.float32)
    )
    return {
        "ids": ids,
        "speakers": speakers,
        "genders": genders if has_gender else None,
        "embeddings": embeddings.astype(np.float32, copy=False),
        "skipped": skipped,
        **counts,
    }
