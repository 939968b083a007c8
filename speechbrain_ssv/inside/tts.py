"""Coqui YourTTS adapter: the loaded model and its offline loading.

INSIDE needs two things from YourTTS (coqui-tts 0.28, import name ``TTS``):
its speaker encoder, to place real utterances in the d-vector space the TTS
model is conditioned on (:mod:`speechbrain_ssv.inside.speaker_encoder`),
and the ``Vits`` model itself, to speak from any point of that space
(:mod:`speechbrain_ssv.inside.synthesize`).

:func:`load_yourtts` loads offline from a release folder or the Coqui cache
(:mod:`speechbrain_ssv.inside.release`: the accepted layouts, the
coqui-tts import check and the config patching) and returns a
:class:`YourTTS`. Checkpoints load with ``torch.load(weights_only=True)``;
pickled ones need the explicit opt-in ``trust_checkpoint=True``.

The weights of the real model are licensed CC BY-NC-ND 4.0 (non-commercial).

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import functools
import hashlib
import json
import os
import pickle
import tempfile

import torch

from speechbrain_ssv.inside.release import (
    PATH_KEYS,
    check_release_folder,
    patch_yourtts_config,
    require_tts,
    resolve_model_dir,
)
from speechbrain_ssv.inside.speaker_encoder import embed_manifest, embed_wavs
from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import file_digest

__all__ = [
    "TRUST_HINT",
    "YourTTS",
    "load_yourtts",
]

TRUST_HINT = (
    "if you trust its origin, load it with trust_checkpoint=True "
    "(recipe: tts_trust_checkpoint: True), which lets torch.load run the "
    "pickled code it holds"
)


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
    encoder_file : str
        The encoder checkpoint.
    encoder_tag : str
        Identifies the encoder weights (content digest) and its audio
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
        self.encoder_file = encoder_file or os.path.join(
            model_dir, "model_se.pth"
        )

    @functools.cached_property
    def _encoder_weights_digest(self):
        """Content digest of the encoder checkpoint, read once."""
        return file_digest(self.encoder_file)

    @property
    def encoder_tag(self):
        """``weights digest:preprocessing digest`` of the speaker encoder.

        By content, not by path or file time: a moved release keeps its
        caches; other weights, another audio config or other preprocessing
        attributes give another tag. The weights are read once, on first
        use.
        """
        audio = self.encoder_config.audio
        audio = audio.to_dict() if hasattr(audio, "to_dict") else dict(audio)
        preprocessing = {
            "audio": audio,
            "sample_rate": self.encoder_sample_rate,
            "hop_length": self.encoder_hop_length,
            "win_length": self.encoder_win_length,
            "trim_db": self.encoder_trim_db,
            "sound_norm": self.encoder_sound_norm,
            "db_level": self.encoder_db_level,
        }
        config = json.dumps(preprocessing, sort_keys=True, default=str)
        return (
            f"{self._encoder_weights_digest}:"
            f"{hashlib.sha1(config.encode()).hexdigest()}"
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
        """Shortcut for
        :func:`~speechbrain_ssv.inside.speaker_encoder.embed_wavs` with this
        model."""
        return embed_wavs(self, items, **kwargs)

    def embed_manifest(self, manifest_csv, cache_dir, **kwargs):
        """Shortcut for
        :func:`~speechbrain_ssv.inside.speaker_encoder.embed_manifest` with
        this model."""
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
        :func:`~speechbrain_ssv.inside.release.check_release_folder`), or a Coqui model name such as
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
    # optional dependency: coqui-tts (speechbrain-ssv[tts]), when a model loads
    from TTS.config import load_config

    # optional dependency: coqui-tts (speechbrain-ssv[tts]), when a model loads
    from TTS.tts.models import setup_model

    if not isinstance(trust_checkpoint, bool):
        raise SSVInputError(
            "trust_checkpoint",
            f"is {trust_checkpoint!r}; expected True or False",
        )
    folder = resolve_model_dir(model_dir)
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
