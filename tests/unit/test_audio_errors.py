"""Bad audio gets one clear error naming the file."""

import numpy as np
import pytest
import soundfile as sf

from speechbrain_ssv.data.audio import audio_info, read_audio_checked
from speechbrain_ssv.utils.errors import AudioFileError
from speechbrain_ssv.utils.io import write_wav


def test_corrupt_wav(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage that is not audio")
    with pytest.raises(
        AudioFileError, match="corrupt.wav.*not a readable audio file"
    ):
        read_audio_checked(str(p))


def test_empty_wav(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioFileError, match="empty.wav.*is empty"):
        audio_info(str(p))


def test_wrong_sample_rate(tmp_path):
    p = tmp_path / "sr8k.wav"
    write_wav(str(p), np.zeros(800), 8000)
    with pytest.raises(
        AudioFileError, match="sr8k.wav.*8000 Hz; expected 16000"
    ):
        read_audio_checked(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(AudioFileError, match="nothere.wav.*does not exist"):
        read_audio_checked(str(tmp_path / "nothere.wav"))


def test_truncated_header_names_file(tmp_path):
    p = tmp_path / "trunc.wav"
    write_wav(str(p), np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000)
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(AudioFileError, match="trunc.wav"):
        read_audio_checked(str(p))


def test_segment_read_matches_full_read(tmp_path):
    p = tmp_path / "ok.wav"
    x = np.random.default_rng(1).uniform(-0.5, 0.5, 16000)
    write_wav(str(p), x, 16000)
    full = read_audio_checked(str(p))
    part = read_audio_checked(str(p), 1000, 3000)
    assert full.shape == (16000,)
    assert np.array_equal(part.numpy(), full[1000:3000].numpy())
    assert np.abs(full.numpy() - x).max() < 1 / 2**14  # 16-bit PCM round trip
