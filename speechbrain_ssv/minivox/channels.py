"""Simulated recording channels for the embedded corpus.

A session channel is one random draw of: a shoebox room (pyroomacoustics
image method, reflection order capped at 10 so a room costs milliseconds),
a source-microphone distance, a device response (band limits plus peaking
EQ), an additive noise (coloured, mains hum, or babble of other voices) at a
random SNR, and a playback level. Within-speaker variability across sessions
then looks like VoxCeleb's variability across videos.

Simulated devices (:data:`DEVICES`) serve the FFSVC-shaped variant: close-talk
microphone, phones, tablet and a far-field array at several distances, each
with its own fixed response, codec-like loss and noise floor.

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from speechbrain_ssv.utils.errors import SSVInputError

FS = 16000

#: Ranges per channel strength. ``none`` keeps the clean voice (level only).
STRENGTHS = {
    "none": None,
    "mild": {
        "absorption": (0.35, 0.8),
        "distance": (0.3, 1.5),
        "max_order": 6,
        "highpass": (50, 200),
        "lowpass": (5500, 7800),
        "n_peaks": (1, 2),
        "peak_db": 5.0,
        "snr": (12, 30),
        "level_db": (-28, -18),
        "pitch_drift": 0.02,
        "rate_drift": 0.04,
    },
    "strong": {
        "absorption": (0.15, 0.6),
        "distance": (0.5, 3.0),
        "max_order": 10,
        "highpass": (80, 400),
        "lowpass": (3200, 7800),
        "n_peaks": (2, 4),
        "peak_db": 8.0,
        "snr": (3, 18),
        "level_db": (-32, -16),
        "pitch_drift": 0.03,
        "rate_drift": 0.06,
    },
}

NOISE_KINDS = ("coloured", "hum", "babble")

#: FFSVC-like devices: (device id, distance in metres, response). Ids follow
#: the FFSVC papers' abbreviations (IPH = iPhone, IPD = iPad, MIC = array);
#: CLS is the close-talk reference microphone, AND an Android phone.
DEVICES = (
    ("CLS", 0.0, {"hp": 50, "lp": 7900, "peaks": (), "rate": FS, "mulaw": 0}),
    (
        "IPH",
        0.25,
        {
            "hp": 150,
            "lp": 7600,
            "peaks": ((2500, 4.0, 1.0),),
            "rate": FS,
            "mulaw": 0,
        },
    ),
    (
        "AND",
        1.0,
        {
            "hp": 300,
            "lp": 3400,
            "peaks": ((1500, 5.0, 1.2),),
            "rate": 8000,
            "mulaw": 255,
        },
    ),
    (
        "IPD",
        1.0,
        {
            "hp": 200,
            "lp": 7000,
            "peaks": ((1000, -6.0, 0.8),),
            "rate": FS,
            "mulaw": 0,
        },
    ),
    (
        "MIC",
        1.5,
        {
            "hp": 80,
            "lp": 7800,
            "peaks": ((4000, -4.0, 0.7),),
            "rate": FS,
            "mulaw": 0,
        },
    ),
    (
        "MIC",
        3.0,
        {
            "hp": 80,
            "lp": 7800,
            "peaks": ((4000, -4.0, 0.7),),
            "rate": FS,
            "mulaw": 0,
        },
    ),
    (
        "MIC",
        5.0,
        {
            "hp": 80,
            "lp": 7800,
            "peaks": ((4000, -4.0, 0.7),),
            "rate": FS,
            "mulaw": 0,
        },
    ),
)


def peaking_sos(freq, gain_db, q, fs=FS):
    """Second-order peaking EQ section (audio EQ cookbook).

    Arguments
    ---------
    freq : float
        Centre frequency in Hz.
    gain_db : float
        Boost (positive) or cut (negative) in dB.
    q : float
        Quality factor.
    fs : int
        Sampling rate.

    Returns
    -------
    numpy.ndarray
        ``[1, 6]`` second-order section for ``scipy.signal.sosfilt``.

    Example
    -------
    >>> peaking_sos(1000, 0.0, 1.0).round(6).tolist()
    [[1.0, ...]]
    """
    a = 10 ** (gain_db / 40.0)
    w0 = 2 * np.pi * freq / fs
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    return np.array([[*(x / den[0] for x in b), *(x / den[0] for x in den)]])


def apply_response(x, hp, lp, peaks=(), fs=FS):
    """Band-limit and equalise a signal (a device frequency response).

    Arguments
    ---------
    x : numpy.ndarray
        Signal.
    hp : float
        High-pass corner in Hz.
    lp : float
        Low-pass corner in Hz (ignored at or above 0.49 fs).
    peaks : sequence of (freq, gain_db, q)
        Peaking filters.
    fs : int
        Sampling rate.

    Returns
    -------
    numpy.ndarray
        Filtered signal (float64).

    Example
    -------
    >>> y = apply_response(np.ones(1600), 100, 4000)
    >>> bool(abs(y[-100:]).max() < 0.05)
    True
    """
    sos = [butter(2, hp, "highpass", fs=fs, output="sos")]
    if lp < 0.49 * fs:
        sos.append(butter(4, lp, "lowpass", fs=fs, output="sos"))
    for freq, gain, q in peaks:
        sos.append(peaking_sos(freq, gain, q, fs))
    return sosfilt(np.concatenate(sos), np.asarray(x, dtype=np.float64))


def coloured_noise(rng, n, alpha):
    """Noise with a ``1 / f**alpha`` power spectrum.

    Arguments
    ---------
    rng : numpy.random.Generator
        Randomness.
    n : int
        Samples.
    alpha : float
        0 white, 1 pink, 2 brown.

    Returns
    -------
    numpy.ndarray
        Unit-RMS noise.

    Example
    -------
    >>> x = coloured_noise(np.random.default_rng(0), 16000, 1.0)
    >>> round(float(np.sqrt(np.mean(x**2))), 3)
    1.0
    """
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / FS)
    freqs[0] = freqs[1]
    x = np.fft.irfft(spec * freqs ** (-alpha / 2.0), n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def hum_noise(rng, n):
    """Mains hum (50 or 60 Hz and decaying harmonics) with a little hiss.

    Arguments
    ---------
    rng : numpy.random.Generator
        Randomness.
    n : int
        Samples.

    Returns
    -------
    numpy.ndarray
        Unit-RMS noise.

    Example
    -------
    >>> hum_noise(np.random.default_rng(0), 800).shape
    (800,)
    """
    base = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / FS
    x = np.zeros(n)
    decay = rng.uniform(0.3, 0.9)
    for k in range(1, 12):
        x += decay ** (k - 1) * np.sin(
            2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)
        )
    x += 0.05 * rng.standard_normal(n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def room_rir(rng, absorption, distance, max_order, dims=None):
    """Room impulse response of a random shoebox room.

    Arguments
    ---------
    rng : numpy.random.Generator
        Randomness (room size, positions).
    absorption : float
        Wall energy absorption in (0, 1].
    distance : float
        Source-microphone distance in metres.
    max_order : int
        Reflection order cap.
    dims : sequence of float | None
        Room size; drawn when ``None``.

    Returns
    -------
    numpy.ndarray
        RIR with the direct path at sample 0, peak-normalised.

    Example
    -------
    >>> h = room_rir(np.random.default_rng(0), 0.3, 1.0, 3)
    >>> int(np.argmax(np.abs(h))) < 5, float(np.abs(h).max())
    (True, 1.0)
    """
    if dims is None:
        dims = [
            rng.uniform(max(3.0, distance + 1.2), distance + 6.0),
            rng.uniform(3.0, 8.0),
            rng.uniform(2.4, 4.0),
        ]
    dims = np.asarray(dims, dtype=float)
    src = np.array(
        [0.6, rng.uniform(0.6, dims[1] - 0.6), rng.uniform(1.2, 1.8)]
    )
    # Place the microphone along the room's length, inside the walls.
    angle = rng.uniform(-0.5, 0.5)
    mic = src + distance * np.array([np.cos(angle), np.sin(angle), 0.0])
    mic = np.clip(mic + [0, 0, rng.uniform(-0.3, 0.2)], 0.3, dims - 0.3)
    # optional dependency: pyroomacoustics (minivox extra), only for rooms
    import pyroomacoustics as pra

    room = pra.ShoeBox(
        dims,
        fs=FS,
        materials=pra.Material(float(absorption)),
        max_order=int(max_order),
        air_absorption=False,
    )
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    start = max(int(np.argmax(np.abs(h))) - 2, 0)
    h = h[start:]
    return h / np.abs(h).max()


def draw_session_channel(rng, strength):
    """Draw the channel parameters of one recording session.

    Arguments
    ---------
    rng : numpy.random.Generator
        Randomness (seed it per session).
    strength : str
        ``none``, ``mild`` or ``strong``.

    Returns
    -------
    dict | None
        Channel parameters, ``None`` for ``strength="none"``.

    Example
    -------
    >>> ch = draw_session_channel(np.random.default_rng(0), "mild")
    >>> ch["noise"] in NOISE_KINDS
    True
    """
    if strength not in STRENGTHS:
        raise SSVInputError(
            "channel", f"got {strength!r}; expected one of {sorted(STRENGTHS)}"
        )
    cfg = STRENGTHS[strength]
    if cfg is None:
        return None
    u = rng.uniform
    n_peaks = int(rng.integers(cfg["n_peaks"][0], cfg["n_peaks"][1] + 1))
    peaks = [
        (
            float(np.exp(u(np.log(250), np.log(6000)))),
            float(u(-cfg["peak_db"], cfg["peak_db"])),
            float(u(0.5, 2.5)),
        )
        for _ in range(n_peaks)
    ]
    return {
        "absorption": float(u(*cfg["absorption"])),
        "distance": float(u(*cfg["distance"])),
        "max_order": cfg["max_order"],
        "hp": float(u(*cfg["highpass"])),
        "lp": float(u(*cfg["lowpass"])),
        "peaks": peaks,
        "noise": NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))],
        "alpha": float(u(0.0, 2.0)),
        "snr": float(u(*cfg["snr"])),
        "level_db": float(u(*cfg["level_db"])),
        "pitch_scale": float(1 + cfg["pitch_drift"] * rng.standard_normal()),
        "rate_scale": float(1 + cfg["rate_drift"] * rng.standard_normal()),
    }


def mix_at_snr(speech, noise, snr_db):
    """Add noise scaled to a target speech-to-noise ratio.

    Arguments
    ---------
    speech : numpy.ndarray
        Signal.
    noise : numpy.ndarray
        Noise, at least as long as ``speech``.
    snr_db : float
        Target SNR in dB.

    Returns
    -------
    numpy.ndarray
        ``speech + g * noise``.

    Example
    -------
    >>> y = mix_at_snr(np.ones(100), np.ones(100), 0.0)
    >>> float(y[0])
    2.0
    """
    noise = noise[: len(speech)]
    ps = np.mean(speech**2) + 1e-12
    pn = np.mean(noise**2) + 1e-12
    return speech + noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10.0)))


def set_level(x, level_db):
    """Scale to an RMS level in dBFS, lowering it if the peak would clip.

    Arguments
    ---------
    x : numpy.ndarray
        Signal.
    level_db : float
        Target RMS in dB relative to full scale.

    Returns
    -------
    numpy.ndarray
        float32 signal with peak at most 0.98.

    Example
    -------
    >>> y = set_level(np.full(100, 0.5), -20.0)
    >>> round(float(y[0]), 3)
    0.1
    """
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    y = x * (10 ** (level_db / 20.0) / rms)
    peak = np.abs(y).max()
    if peak > 0.98:
        y = y * (0.98 / peak)
    return y.astype(np.float32)


def loop_segment(rng, track, n):
    """A random ``n``-sample excerpt of a (looped) noise track.

    Arguments
    ---------
    rng : numpy.random.Generator
        Randomness (offset).
    track : numpy.ndarray
        Source noise.
    n : int
        Samples wanted.

    Returns
    -------
    numpy.ndarray
        The excerpt.

    Example
    -------
    >>> loop_segment(np.random.default_rng(0), np.arange(5.0), 12).shape
    (12,)
    """
    reps = int(np.ceil((n + len(track)) / len(track)))
    start = int(rng.integers(len(track)))
    return np.tile(track, reps)[start : start + n]


def apply_codec(x, rate, mulaw):
    """Codec-like loss: resample through ``rate`` and mu-law quantise.

    Arguments
    ---------
    x : numpy.ndarray
        Signal at 16 kHz.
    rate : int
        Intermediate sampling rate (16000 leaves it).
    mulaw : int
        mu of an 8-bit mu-law quantiser, 0 for none.

    Returns
    -------
    numpy.ndarray
        Degraded signal at 16 kHz, same length.

    Example
    -------
    >>> apply_codec(np.zeros(160), 8000, 255).shape
    (160,)
    """
    n = len(x)
    if rate != FS:
        x = resample_poly(x, rate, FS)
    if mulaw:
        peak = np.abs(x).max() + 1e-12
        y = np.sign(x) * np.log1p(mulaw * np.abs(x) / peak) / np.log1p(mulaw)
        y = np.round(y * 127) / 127
        x = peak * np.sign(y) * np.expm1(np.abs(y) * np.log1p(mulaw)) / mulaw
    if rate != FS:
        x = resample_poly(x, FS, rate)
    out = np.zeros(n)
    out[: min(n, len(x))] = x[:n]
    return out


def reverberate(x, rir):
    """Convolve with a RIR and keep the original length.

    Arguments
    ---------
    x : numpy.ndarray
        Dry signal.
    rir : numpy.ndarray
        Impulse response (direct path first).

    Returns
    -------
    numpy.ndarray
        Reverberant signal.

    Example
    -------
    >>> reverberate(np.ones(10), np.array([1.0, 0.5])).tolist()[:2]
    [1.0, 1.5]
    """
    return fftconvolve(x, rir)[: len(x)]
