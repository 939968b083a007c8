"""A tiny, randomly initialised YourTTS checkpoint in the release layout.

The real YourTTS weights (CC BY-NC-ND 4.0) cannot be shipped or downloaded
in tests, so this module builds a stand-in with the same *structure* and the
same *file layout* as the released zip:

* ``model_file.pth``: a Coqui ``Vits`` with YourTTS's conditioning (512-d
  external d-vectors, a 4-d language embedding for ``en``/``fr-fr``/``pt-br``,
  HiFi-GAN resblock type 2, character input without a phonemizer, 16 kHz,
  hop 256, the speaker-consistency-loss flag on with the encoder paths set)
  but small hidden sizes (about 2 M parameters, 8 MB);
* ``model_se.pth`` / ``config_se.json``: the H/ASP ``ResNetSpeakerEncoder``
  with the released encoder settings (64 mels from a torch spectrogram,
  16 kHz, RMS normalisation to -27 dB, 512-d output). Coqui always builds the
  full 8 M-parameter network from this config, so this file is about 32 MB;
* ``speakers.json`` (a few random d-vectors), ``language_ids.json`` and
  ``config.json``.

Like the real ``config.json``, the one written here points every auxiliary
file at an absolute path on a (fictitious) training machine, so code and
tests that load it exercise the same path patching a real checkpoint needs
(:func:`speechbrain_ssv.inside.release.patch_yourtts_config`).

The audio it produces is noise-like: use it for mechanics (shapes, files,
determinism, speed of the pipeline), never for quality.

Command line::

    python -m speechbrain_ssv.inside.tiny --out DIR [--seed N]

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

from speechbrain_ssv.inside.release import (
    RELEASE_FILES,
    patch_yourtts_config,
    require_tts,
)
from speechbrain_ssv.utils.errors import SSVInputError, report_user_error
from speechbrain_ssv.utils.io import save_torch, write_json

__all__ = ["FOREIGN_ROOT", "LANGUAGES", "build_tiny_yourtts", "main"]

# Where the released config.json claims its files are: a training machine's
# absolute paths, which never exist on the user's machine.
FOREIGN_ROOT = "/raid/training-node-07/yourtts/checkpoints"
LANGUAGES = ("en", "fr-fr", "pt-br")

# Graphemes of a multilingual character model (English, French, Portuguese);
# digits are deliberately absent, as in YourTTS, so numbers must be spelled.
_LETTERS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    "\u00c0\u00c1\u00c2\u00c3\u00c7\u00c8\u00c9\u00ca\u00cd\u00d3\u00d4"
    "\u00d5\u00da\u00e0\u00e1\u00e2\u00e3\u00e4\u00e7\u00e8\u00e9\u00ea"
    "\u00eb\u00ee\u00ef\u00f3\u00f4\u00f5\u00f9\u00fa\u00fb\u00fc\u0153"
)
_PUNCTUATIONS = "!'(),-.:;? "

# The released speaker encoder's settings (config_se.json of the YourTTS zip).
_ENCODER_AUDIO = {
    "fft_size": 512,
    "win_length": 400,
    "hop_length": 160,
    "frame_shift_ms": None,
    "frame_length_ms": None,
    "stft_pad_mode": "reflect",
    "sample_rate": 16000,
    "resample": False,
    "preemphasis": 0.97,
    "ref_level_db": 20,
    "do_sound_norm": False,
    "do_trim_silence": False,
    "trim_db": 60,
    "power": 1.5,
    "griffin_lim_iters": 60,
    "num_mels": 64,
    "mel_fmin": 0.0,
    "mel_fmax": 8000.0,
    "spec_gain": 20,
    "signal_norm": False,
    "min_level_db": -100,
    "symmetric_norm": False,
    "max_norm": 4.0,
    "clip_norm": False,
    "stats_path": None,
    "do_rms_norm": True,
    "db_level": -27.0,
}
_ENCODER_PARAMS = {
    "model_name": "resnet",
    "input_dim": 64,
    "use_torch_spec": True,
    "log_input": True,
    "proj_dim": 512,
}


def _encoder_config():
    """The released config_se.json settings plus the training keys Coqui's
    config class insists on."""
    return {
        "model": "speaker_encoder",
        "run_name": "speaker_encoder",
        "run_description": "resnet speaker encoder (tiny random stand-in)",
        "audio": dict(_ENCODER_AUDIO),
        "model_params": dict(_ENCODER_PARAMS),
        "loss": "angleproto",
        "num_classes_in_batch": 100,
        "num_utter_per_class": 2,
        "num_loader_workers": 4,
        "voice_len": 2.0,
        "audio_augmentation": {},
    }


# Hidden sizes: "tiny" for tests and the CPU mechanics run; "yourtts" is the
# released model's (40 M parameters in the generator), for timing only.
SIZES = {
    "tiny": {
        "hidden_channels": 32,
        "hidden_channels_ffn_text_encoder": 64,
        "num_layers_text_encoder": 2,
        "num_layers_posterior_encoder": 2,
        "num_layers_flow": 2,
        "upsample_initial_channel_decoder": 32,
    },
    "yourtts": {
        "hidden_channels": 192,
        "hidden_channels_ffn_text_encoder": 768,
        "num_layers_text_encoder": 10,
        "num_layers_posterior_encoder": 16,
        "num_layers_flow": 4,
        "upsample_initial_channel_decoder": 512,
    },
}


def _vits_config(paths, size="tiny"):
    """A YourTTS-shaped VitsConfig dict with the hidden sizes of ``size``."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import VitsArgs

    args = VitsArgs(
        **SIZES[size],
        num_heads_text_encoder=2,
        resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3, 7, 11],
        resblock_dilation_sizes_decoder=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        upsample_rates_decoder=[8, 8, 2, 2],
        upsample_kernel_sizes_decoder=[16, 16, 4, 4],
        init_discriminator=False,
        use_d_vector_file=True,
        d_vector_dim=512,
        d_vector_file=[paths["d_vector_file"]],
        use_language_embedding=True,
        embedded_language_dim=4,
        language_ids_file=paths["language_ids_file"],
        use_speaker_encoder_as_loss=True,
        speaker_encoder_model_path=paths["speaker_encoder_model_path"],
        speaker_encoder_config_path=paths["speaker_encoder_config_path"],
    )
    config = VitsConfig(
        model_args=args,
        audio=BaseAudioConfig(
            sample_rate=16000,
            fft_size=1024,
            win_length=1024,
            hop_length=256,
            num_mels=80,
            mel_fmin=0.0,
            mel_fmax=None,
        ),
        use_phonemes=False,
        phonemizer=None,
        text_cleaner="multilingual_cleaners",
        add_blank=True,
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            pad="_",
            eos="&",
            bos="*",
            blank=None,
            characters=_LETTERS,
            punctuations=_PUNCTUATIONS,
            phonemes="",
            is_unique=True,
            is_sorted=True,
        ),
        use_d_vector_file=True,
        d_vector_file=[paths["d_vector_file"]],
        d_vector_dim=512,
        use_language_weighted_sampler=True,
    )
    out = config.to_dict()
    # The released file also names the language file and the encoder at the
    # top level; keep them there so the patching code sees both places.
    out["language_ids_file"] = paths["language_ids_file"]
    out["speaker_encoder_model_path"] = paths["speaker_encoder_model_path"]
    out["speaker_encoder_config_path"] = paths["speaker_encoder_config_path"]
    return out


def _random_d_vectors(rng, n):
    vectors = rng.standard_normal((n, 512))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build_tiny_yourtts(folder, seed=0, n_speakers=4, size="tiny"):
    """Write a tiny random YourTTS-layout checkpoint into ``folder``.

    Arguments
    ---------
    folder : str
        Destination (created). Existing release files in it are replaced.
    seed : int
        Seed of the random weights and d-vectors; the same seed gives the
        same weights. The caller's global torch RNG state is left untouched.
    n_speakers : int
        Entries of the ``speakers.json`` d-vector file.
    size : str
        ``"tiny"`` (about 2 M parameters) or ``"yourtts"`` (the released
        model's sizes, random weights: for speed measurements).

    Returns
    -------
    dict
        Absolute paths of the six release files, keyed by file name, plus
        ``"folder"``.

    Example
    -------
    >>> paths = build_tiny_yourtts(getfixture("tmpdir"))  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['config.json', 'config_se.json', 'folder', 'language_ids.json', ...]
    """
    require_tts()
    if size not in SIZES:
        raise SSVInputError(
            "size", f"is {size!r}; expected one of {list(SIZES)}"
        )
    from TTS.config import load_config
    from TTS.encoder.utils.generic_utils import setup_encoder_model
    from TTS.tts.models.vits import Vits

    if not isinstance(n_speakers, int) or n_speakers < 1:
        raise SSVInputError(
            "n_speakers", f"got {n_speakers!r}; expected an integer >= 1"
        )
    folder = os.path.abspath(os.fspath(folder))
    os.makedirs(folder, exist_ok=True)
    local = {name: os.path.join(folder, name) for name in RELEASE_FILES}
    foreign = {
        "d_vector_file": f"{FOREIGN_ROOT}/speakers.json",
        "language_ids_file": f"{FOREIGN_ROOT}/language_ids.json",
        "speaker_encoder_model_path": f"{FOREIGN_ROOT}/model_se.pth",
        "speaker_encoder_config_path": f"{FOREIGN_ROOT}/config_se.json",
    }
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 6081])
    speakers = {
        f"tiny-{i:02d}.wav": {
            "name": f"tiny-speaker-{i:02d}",
            "embedding": vec.tolist(),
        }
        for i, vec in enumerate(_random_d_vectors(rng, n_speakers))
    }
    write_json(local["speakers.json"], speakers)
    write_json(
        local["language_ids.json"],
        {lang: i for i, lang in enumerate(LANGUAGES)},
    )
    se_config = _encoder_config()
    write_json(local["config_se.json"], se_config)
    vits_config = _vits_config(foreign, size)
    write_json(local["config.json"], vits_config)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder = setup_encoder_model(load_config(local["config_se.json"]))
        save_torch(local["model_se.pth"], {"model": encoder.state_dict()})
        # The Vits constructor reads the d-vector file, the language table
        # and the encoder, so it is built from a patched copy of the config
        # (the one in the folder keeps its foreign paths, like the release).
        with tempfile.TemporaryDirectory(prefix="ssv-tiny-") as tmp:
            patched = os.path.join(tmp, "config.json")
            patch_yourtts_config(local["config.json"], folder, patched)
            model = Vits(load_config(patched))
        save_torch(
            local["model_file.pth"],
            {"model": model.state_dict(), "step": 0, "epoch": 0},
        )
    return {"folder": folder, **local}


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Arguments
    ---------
    argv : list of str | None
        Arguments (``sys.argv[1:]`` when ``None``).

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.inside.tiny",
        description="Build a tiny random YourTTS-layout checkpoint "
        "(for tests and mechanics runs; it does not speak).",
        epilog="Bad input ends with one 'error: ...' line and exit status "
        "2; set SSV_DEBUG=1 to see the traceback as well.",
    )
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random weights (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        paths = build_tiny_yourtts(args.out, seed=args.seed)
    except (SSVInputError, ImportError) as err:
        return report_user_error(err)
    print(f"tiny YourTTS checkpoint -> {paths['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
