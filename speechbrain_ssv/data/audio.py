"""Checked audio reading.

SpeechBrain's readers raise deep errors (or silently return zero-length
tensors) on a corrupt, empty or wrongly sampled file. Every loader in this
package reads through :func:`read_audio_checked`, which names the file and
says what was expected.

Authors
 * speechbrain-ssv developers 2026
"""

import os

import numpy as np
import soundfile as sf
import torch

from speechbrain_ssv.utils.errors import AudioFileError


def audio_info(path, expected_sr=16000):
    """Read an audio header (no decoding) and validate it.

    Arguments
    ---------
    path : str
        Audio file.
    expected_sr : int | None
        Required sampling rate; ``None`` accepts any.

    Returns
    -------
    soundfile._SoundFileInfo
        Header with ``frames``, ``samplerate``, ``channels``, ``duration``.

    Example
    -------
    >>> import os
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> p = os.path.join(getfixture("tmpdir"), "a.wav")
    >>> write_wav(p, np.zeros(8000), 16000)
    >>> audio_info(p).duration
    0.5
    >>> audio_info(p, expected_sr=8000)
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.AudioFileError: ...: sample rate is 16000 Hz; expected 8000 Hz (resample the corpus first)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioFileError(path, "audio file does not exist")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioFileError(
            path,
            f"is not a readable audio file (corrupt or unsupported: {err})",
        ) from None
    if info.frames <= 0:
        raise AudioFileError(
            path, "is empty (0 samples); expected speech audio"
        )
    if expected_sr is not None and info.samplerate != expected_sr:
        raise AudioFileError(
            path,
            f"sample rate is {info.samplerate} Hz; expected {expected_sr} Hz "
            "(resample the corpus first)",
        )
    return info


def read_audio_checked(path, start=0, stop=None, expected_sr=16000):
    """Read (a segment of) a mono audio file as a float32 tensor.

    Multi-channel files are averaged to mono.

    Arguments
    ---------
    path : str
        Audio file.
    start : int
        First sample to read.
    stop : int | None
        One past the last sample (``None``: to the end).
    expected_sr : int | None
        Required sampling rate; ``None`` accepts any.

    Returns
    -------
    torch.Tensor
        Shape ``[samples]``.

    Example
    -------
    >>> import os
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> p = os.path.join(getfixture("tmpdir"), "b.wav")
    >>> write_wav(p, np.full(1600, 0.5), 16000)
    >>> read_audio_checked(p, 100, 200).shape
    torch.Size([100])
    """
    info = audio_info(path, expected_sr)
    stop = info.frames if stop is None else min(int(stop), info.frames)
    start = int(start)
    if start >= stop:
        raise AudioFileError(
            path,
            f"segment [{start}, {stop}) is empty; the file has {info.frames} samples",
        )
    try:
        data, _ = sf.read(
            path, start=start, stop=stop, dtype="float32", always_2d=True
        )
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioFileError(path, f"could not be decoded ({err})") from None
    if data.shape[0] == 0:
        raise AudioFileError(path, "decoded to 0 samples (truncated file?)")
    data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(data).all():
        raise AudioFileError(path, "contains NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(data))
