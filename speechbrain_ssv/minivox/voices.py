"""Synthetic speakers: seeded espeak-ng voices rendered in-process.

A speaker is a stable random draw of an espeak-ng voice file (per-formant
frequency/height/width scaling, F0 base and top, breathiness, spectral tilt
through ``tone``, optionally a Klatt glottal source), a speaking rate and an
English accent. Gender is drawn first and conditions the F0 and formant
ranges, so the metadata gender agrees with what is heard.

The espeak-ng library and data come from the ``espeakng-loader`` wheel (the
``minivox`` extra: ``pip install 'speechbrain-ssv[minivox]'``) and are
driven through ``ctypes`` with a synthesis callback (no subprocess, no system
package). Two espeak-ng behaviours shape this module:

* espeak-ng stops reading voice and variant files beyond its ~350-voice limit
  and then silently falls back to the default voice (a whole corpus can come
  out as one speaker). Each process therefore gets a PRIVATE copy of the
  data folder (symbolic links to the shipped files) whose ``voices/!v``
  holds exactly one variant file, rewritten before every synthesis, and
  :class:`EspeakEngine` checks at start-up that two different voices render
  differently.
* ``flutter`` and ``roughness`` advance a generator state that is not reset
  between calls, so the same text would render differently depending on what
  was synthesised before; voices set both to 0 and the engine reseeds
  espeak-ng's own generator (``espeak_ng_SetRandSeed``) before each call.
  Output is then a pure function of (voice, text, rate, seed).

Authors
 * speechbrain-ssv developers 2026
"""

import atexit
import ctypes
import os
import shutil
import tempfile

import numpy as np
from scipy.signal import firwin, resample_poly

from speechbrain_ssv.utils.errors import MissingExtraError, SSVInputError

#: English accents espeak-ng ships, with the nationality written to the
#: VoxCeleb-style metadata. ``en-gb-scotland`` is left out: its renders
#: depend on what the engine synthesised before (hidden state), which
#: would break byte-identical, worker-independent output.
ACCENTS = (
    ("en-us", "USA"),
    ("en-gb-x-rp", "UK"),
    ("en", "UK"),
    ("en-us-nyc", "USA"),
    ("en-029", "Jamaica"),
    ("en-gb-x-gbclan", "UK"),
    ("en-gb-x-gbcwmd", "UK"),
)

ESPEAK_RATE = 22050
OUT_RATE = 16000
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE_PARAM = 1
_VARIANT = "ssvvoice"
# scipy's default anti-aliasing filter for 441 -> 320, built once: designing
# it on every call cost as much as the resampling itself.
_RESAMPLE_FIR = firwin(2 * 10 * 441 + 1, 1.0 / 441, window=("kaiser", 5.0))


def draw_voice(rng, gender=None):
    """Draw a random speaker voice.

    Arguments
    ---------
    rng : numpy.random.Generator
        Source of randomness (seed it per speaker for a stable speaker).
    gender : str | None
        ``"m"`` or ``"f"``; drawn when ``None``.

    Returns
    -------
    dict
        ``gender``, ``accent``, ``nationality``, ``pitch`` (base, top Hz),
        ``formants`` (9 x [freq %, height %, width %]), ``breath``, ``tone``,
        ``klatt``, ``voicing``, ``rate`` (words per minute).

    Example
    -------
    >>> v = draw_voice(np.random.default_rng(0), gender="f")
    >>> v["gender"], v["pitch"][0] > 140
    ('f', True)
    """
    if gender is None:
        gender = "m" if rng.random() < 0.5 else "f"
    if gender not in ("m", "f"):
        raise SSVInputError("gender", f"got {gender!r}; expected 'm' or 'f'")
    accent, nationality = ACCENTS[int(rng.integers(len(ACCENTS)))]
    if gender == "m":
        base = rng.uniform(70, 135)
        top = base + rng.uniform(15, 75)
        scale = rng.uniform(0.88, 1.04)
    else:
        base = rng.uniform(150, 240)
        top = base + rng.uniform(30, 120)
        scale = rng.uniform(1.04, 1.22)
    formants = []
    for k in range(9):
        # Each formant gets its own jitter around the vocal-tract scale:
        # independent formant shifts are what make voices tellable apart.
        jitter = rng.normal(0.0, 0.05 if 1 <= k <= 5 else 0.02)
        formants.append(
            [
                int(round(100 * scale * (1 + jitter))),
                int(round(rng.uniform(70, 135))),
                int(round(rng.uniform(75, 150))),
            ]
        )
    breath = []
    if rng.random() < 0.4:
        amount = rng.uniform(5, 40)
        breath = [int(round(amount * rng.uniform(0.3, 1.0))) for _ in range(6)]
    tilt = rng.uniform(-0.45, 0.3)
    tone = []
    for freq in (400, 1200, 2600, 4500):
        tone += [freq, int(round(100 * (freq / 1000.0) ** tilt))]
    klatt = int(rng.integers(1, 4)) if rng.random() < 0.25 else 0
    return {
        "gender": gender,
        "accent": accent,
        "nationality": nationality,
        "pitch": [round(float(base), 1), round(float(top), 1)],
        "formants": formants,
        "breath": breath,
        "tone": tone,
        "klatt": klatt,
        "voicing": int(round(rng.uniform(85, 120))),
        "rate": int(round(rng.uniform(140, 205))),
    }


def voice_file_text(voice, pitch_scale=1.0):
    """Write a voice as an espeak-ng variant file.

    Arguments
    ---------
    voice : dict
        From :func:`draw_voice`.
    pitch_scale : float
        Multiplies F0 base and top (per-session voice drift).

    Returns
    -------
    str
        Variant file content.

    Example
    -------
    >>> v = draw_voice(np.random.default_rng(1), gender="m")
    >>> text = voice_file_text(v)
    >>> "flutter 0" in text and "gender male" in text
    True
    """
    base, top = voice["pitch"]
    lines = [
        "language variant",
        f"name {_VARIANT}",
        "gender " + ("male" if voice["gender"] == "m" else "female"),
        f"pitch {int(round(base * pitch_scale))} {int(round(top * pitch_scale))}",
        # Both advance hidden generator state: keep them off (see module doc).
        "flutter 0",
        "roughness 0",
        f"voicing {voice['voicing']}",
    ]
    for k, (freq, height, width) in enumerate(voice["formants"]):
        lines.append(f"formant {k} {freq} {height} {width}")
    if voice["breath"]:
        lines.append("breath " + " ".join(str(b) for b in voice["breath"]))
    lines.append("tone " + " ".join(str(t) for t in voice["tone"]))
    if voice["klatt"]:
        lines.append(f"klatt {voice['klatt']}")
    return "\n".join(lines) + "\n"


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_short),
    ctypes.c_int,
    ctypes.c_void_p,
)


class EspeakEngine:
    """In-process espeak-ng synthesiser with a private voice folder.

    espeak-ng keeps global state, so build one engine per process (use
    :func:`get_engine`).

    Arguments
    ---------
    verify : bool
        Check that two different voices render differently (guards against
        espeak-ng's silent fallback to its default voice).

    Example
    -------
    >>> eng = get_engine()
    >>> v = draw_voice(np.random.default_rng(0))
    >>> wav = eng.synth(v, "Hello there.")
    >>> wav.dtype, 0.2 < len(wav) / 16000 < 3
    (dtype('float32'), True)
    """

    def __init__(self, verify=True):
        try:
            # optional dependency: espeakng-loader (the minivox extra)
            import espeakng_loader
        except ImportError as err:
            raise MissingExtraError(
                "minivox", ["espeakng-loader"], "the espeak-ng voice engine"
            ) from err
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        src = espeakng_loader.get_data_path()
        self._tmp = tempfile.mkdtemp(prefix="ssv-espeak-")
        atexit.register(shutil.rmtree, self._tmp, True)
        data = os.path.join(self._tmp, "espeak-ng-data")
        os.makedirs(os.path.join(data, "voices", "!v"))
        for entry in os.listdir(src):
            if entry != "voices":
                os.symlink(os.path.join(src, entry), os.path.join(data, entry))
        self._variant_path = os.path.join(data, "voices", "!v", _VARIANT)
        self._chunks = []
        self._voice_text = None
        self._callback = _SYNTH_CALLBACK(self._collect)
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int] * 3
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._tmp.encode(), 0
        )
        if rate != ESPEAK_RATE:
            raise RuntimeError(
                f"espeak-ng initialisation failed (returned {rate}; expected "
                f"{ESPEAK_RATE} Hz) with data from {src}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        if verify:
            self.verify()

    def _collect(self, wav, n, _events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth_native(
        self, voice, text, rate_scale=1.0, pitch_scale=1.0, seed=0
    ):
        """Render text at espeak-ng's native 22050 Hz.

        Arguments
        ---------
        voice : dict
            From :func:`draw_voice`.
        text : str
            Text to speak.
        rate_scale : float
            Multiplies the voice's speaking rate.
        pitch_scale : float
            Multiplies the voice's F0.
        seed : int
            espeak-ng's internal random seed (breath noise).

        Returns
        -------
        numpy.ndarray
            int16 samples.
        """
        text_of_voice = voice_file_text(voice, pitch_scale)
        if text_of_voice != self._voice_text:
            self._prime(voice["accent"])
            with open(self._variant_path, "w", encoding="utf-8") as f:
                f.write(text_of_voice)
            self._voice_text = text_of_voice
        name = f"{voice['accent']}+{_VARIANT}".encode()
        if self._lib.espeak_SetVoiceByName(name) != 0:
            raise SSVInputError(
                "accent", f"espeak-ng does not know the voice {name.decode()!r}"
            )
        self._lib.espeak_SetParameter(
            _ESPEAK_RATE_PARAM, int(round(voice["rate"] * rate_scale)), 0
        )
        self._lib.espeak_ng_SetRandSeed(int(seed) % (2**31 - 1) + 1)
        self._chunks = []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(
            data, len(data) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks)

    def _prime(self, accent):
        """Render a fixed phrase with a fixed voice of ``accent``.

        Some accents leave hidden state in espeak-ng (surviving even a
        re-initialisation) that changes the next render; priming on every
        voice change makes what precedes a render always the same.
        """
        with open(self._variant_path, "w", encoding="utf-8") as f:
            f.write(
                f"language variant\nname {_VARIANT}\nflutter 0\nroughness 0\n"
            )
        self._voice_text = None
        self._lib.espeak_SetVoiceByName(f"{accent}+{_VARIANT}".encode())
        self._lib.espeak_SetParameter(_ESPEAK_RATE_PARAM, 175, 0)
        self._lib.espeak_ng_SetRandSeed(1)
        data = b"One two."
        self._lib.espeak_Synth(
            data, len(data) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        self._chunks = []

    def synth(self, voice, text, rate_scale=1.0, pitch_scale=1.0, seed=0):
        """Render text as float32 at 16 kHz (see :meth:`synth_native`).

        Arguments
        ---------
        voice : dict
            From :func:`draw_voice`.
        text : str
            Text to speak.
        rate_scale : float
            Multiplies the voice's speaking rate.
        pitch_scale : float
            Multiplies the voice's F0.
        seed : int
            espeak-ng's internal random seed.

        Returns
        -------
        numpy.ndarray
            float32 samples in [-1, 1] at 16 kHz.
        """
        pcm = self.synth_native(voice, text, rate_scale, pitch_scale, seed)
        wav = pcm.astype(np.float64) / 32768.0
        # 16000 / 22050 = 320 / 441
        return resample_poly(wav, 320, 441, window=_RESAMPLE_FIR).astype(
            np.float32
        )

    def verify(self):
        """Raise if two clearly different voices render the same audio.

        Example
        -------
        >>> get_engine().verify()
        """
        text = "Seven quiet bakers counted the golden apples."
        rng = np.random.default_rng(12345)
        low = self.synth_native(draw_voice(rng, "m"), text)
        high = self.synth_native(draw_voice(rng, "f"), text)
        n = min(len(low), len(high))
        if n == 0:
            raise RuntimeError("espeak-ng rendered no audio for the check text")
        if len(low) == len(high) and np.array_equal(low, high):
            raise RuntimeError(
                f"espeak-ng rendered two different voices identically: it "
                f"ignores the variant files in {os.path.dirname(self._variant_path)} "
                "(voice limit reached or data folder unreadable)"
            )

    def reset(self):
        """Re-initialise espeak-ng so the next render starts from a known state.

        Example
        -------
        >>> get_engine().reset()
        """
        self._lib.espeak_Terminate()
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._tmp.encode(), 0
        )
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng re-initialisation failed ({rate})")
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice_text = None

    def close(self):
        """Free espeak-ng and delete the private data folder."""
        self._lib.espeak_Terminate()
        shutil.rmtree(self._tmp, ignore_errors=True)


_ENGINE = {}


def get_engine():
    """The process's espeak-ng engine, created (and verified) on first use.

    Returns
    -------
    EspeakEngine
        One per process id, so forked workers build their own.

    Example
    -------
    >>> get_engine() is get_engine()
    True
    """
    pid = os.getpid()
    if pid not in _ENGINE:
        _ENGINE.clear()
        _ENGINE[pid] = EspeakEngine()
    return _ENGINE[pid]
