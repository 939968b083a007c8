"""In-memory noise/RIR banks and per-utterance augmentation draws."""

import os

import numpy as np
import pytest
import torch

from speechbrain_ssv.augment import AugmentBank, UtteranceAugment
from speechbrain_ssv.recipe_utils import load_augmentation_banks
from speechbrain_ssv.utils.errors import (
    AudioFileError,
    HparamsError,
    ManifestError,
)
from speechbrain_ssv.utils.io import write_text, write_wav

SR = 16000


def make_set(folder, name, signals, sr=SR):
    """Write wavs and a SpeechBrain-style CSV listing them."""
    os.makedirs(folder, exist_ok=True)
    rows = ["ID,duration,wav,wav_format,wav_opts"]
    for i, sig in enumerate(signals):
        path = os.path.join(folder, f"{name}{i}.wav")
        write_wav(path, sig, sr)
        rows.append(f"{name}{i},{len(sig) / sr},{path},wav,")
    csv_path = os.path.join(folder, f"{name}.csv")
    write_text(csv_path, "\n".join(rows) + "\n")
    return csv_path


@pytest.fixture
def banks(tmp_path):
    rng = np.random.default_rng(0)
    noise = make_set(
        str(tmp_path / "noise"),
        "noise",
        [0.1 * rng.standard_normal(n) for n in (8000, 24000, 40000)],
    )
    rirs = []
    for delay in (0, 40, 200):
        rir = np.zeros(1600)
        rir[delay] = 1.0
        tail = rng.standard_normal(1600 - delay - 1)
        rir[delay + 1 :] = 0.05 * tail * np.exp(-np.arange(len(tail)) / 200.0)
        rirs.append(rir)
    rir = make_set(str(tmp_path / "rir"), "rir", rirs)
    return noise, rir


def augmenter(banks, **probs):
    noise, rir = banks
    return UtteranceAugment(AugmentBank(noise), AugmentBank(rir), **probs)


def test_per_utterance_condition_frequencies(banks):
    probs = {"p_clean": 1 / 6, "p_noise": 0.375, "p_reverb": 0.125}
    probs["p_noise_reverb"] = 1 - sum(probs.values())
    aug = augmenter(banks, **probs).load()
    torch.manual_seed(0)
    # Short utterances keep the 9,600 draws cheap; the draw does not
    # depend on the length.
    wavs = 0.1 * torch.randn(800, 100)
    counts = torch.zeros(4)
    mixed_batches = 0
    for _ in range(12):
        aug(wavs, torch.ones(800))
        cond = aug.last_conditions
        counts += torch.bincount(cond, minlength=4)
        mixed_batches += int(len(cond.unique()) > 1)
    freq = counts / counts.sum()
    expected = torch.tensor(list(probs.values()))
    # 9,600 draws: the standard error of each frequency is below 0.005.
    assert torch.allclose(freq, expected, atol=0.02), freq
    # Draws are per utterance, not per batch.
    assert mixed_batches == 12


def test_views_draw_independently(banks):
    aug = augmenter(
        banks, p_clean=0.25, p_noise=0.25, p_reverb=0.25, p_noise_reverb=0.25
    ).load()
    torch.manual_seed(1)
    wavs = 0.1 * torch.randn(32, 4000)
    out1, _ = aug(wavs, torch.ones(32))
    c1 = aug.last_conditions.clone()
    out2, _ = aug(wavs, torch.ones(32))
    assert not torch.equal(c1, aug.last_conditions)
    # Two noise draws of the same utterance differ (own crop and SNR).
    both_noise = (c1 == 1) & (aug.last_conditions == 1)
    if both_noise.any():
        i = int(both_noise.nonzero()[0])
        assert not torch.allclose(out1[i], out2[i])


def test_conditions_do_what_they_say(banks):
    torch.manual_seed(2)
    wavs = 0.1 * torch.randn(16, 8000)
    lens = torch.full((16,), 0.75)  # last 2000 samples are padding
    wavs[:, 6000:] = 0
    clean = augmenter(
        banks, p_clean=1.0, p_noise=0.0, p_reverb=0.0, p_noise_reverb=0.0
    )
    assert torch.equal(clean(wavs, lens)[0], wavs)
    noisy = augmenter(
        banks,
        p_clean=0.0,
        p_noise=1.0,
        p_reverb=0.0,
        p_noise_reverb=0.0,
        snr_low=10.0,
        snr_high=10.0,
    )
    out, out_lens = noisy(wavs, lens)
    assert torch.equal(out_lens, lens) and out.shape == wavs.shape
    # SpeechBrain's AddNoise convention: the SNR is between the scaled
    # clean signal and the added noise.
    scaled = wavs[:, :6000] * (1 - 1 / (10**0.5 + 1))
    added = out[:, :6000] - scaled
    ratio = scaled.pow(2).mean(1) / added.pow(2).mean(1)
    snr = 10 * torch.log10(ratio)
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.1)
    assert out[:, 6000:].abs().max() == 0  # padding stays silent
    reverb = augmenter(
        banks, p_clean=0.0, p_noise=0.0, p_reverb=1.0, p_noise_reverb=0.0
    )
    out, _ = reverb(wavs, lens)
    assert torch.isfinite(out).all() and not torch.allclose(out, wavs)
    # Average amplitude restored, alignment on the direct path kept (even
    # for the RIRs whose direct path comes 40 or 200 samples late): the
    # reverberant signal still correlates with the clean one at lag 0.
    amp = out[:, :6000].abs().mean(1) / wavs[:, :6000].abs().mean(1)
    assert torch.allclose(amp, torch.ones_like(amp), atol=1e-3)
    corr = torch.nn.functional.cosine_similarity(out[:, :6000], wavs[:, :6000])
    assert (corr > 0.5).all()


def test_bf16_autocast_keeps_float32_math(banks):
    aug = augmenter(
        banks, p_clean=0.0, p_noise=0.5, p_reverb=0.0, p_noise_reverb=0.5
    )
    wavs = 0.1 * torch.randn(8, 4000)
    torch.manual_seed(3)
    ref, _ = aug(wavs, torch.ones(8))
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = aug(wavs, torch.ones(8))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)


def test_memory_mapped_cache_matches_memory(banks, tmp_path):
    noise, _ = banks
    ram = AugmentBank(noise).load()
    cache = str(tmp_path / "cache" / "noise.npy")
    mapped = AugmentBank(noise, cache_file=cache).load()
    assert os.path.isfile(cache)
    assert torch.equal(ram.samples, mapped.samples)
    again = AugmentBank(noise, cache_file=cache).load()  # reuses the file
    assert torch.equal(again.samples, ram.samples)
    index = torch.tensor([0, 1, 2, 2])
    torch.manual_seed(4)
    a = ram.crops(index, 30000)
    torch.manual_seed(4)
    b = mapped.crops(index, 30000)
    assert torch.equal(a, b)
    # A file shorter than the crop is tiled, not zero-padded.
    assert a[0].abs().min() >= 0 and (a[0] != 0).float().mean() > 0.99


def test_max_seconds_truncates_rirs(banks):
    _, rir = banks
    bank = AugmentBank(rir, max_seconds=0.05).load()
    assert int(bank.lengths.max()) == 800


def test_bad_noise_sets_fail_before_training_naming_the_path(tmp_path):
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match="nope.csv: augmentation CSV"):
        AugmentBank(missing).load()
    empty = str(tmp_path / "empty.csv")
    write_text(empty, "ID,duration,wav\n")
    with pytest.raises(ManifestError, match="empty.csv: lists no audio"):
        AugmentBank(empty).load()
    gone = str(tmp_path / "gone.csv")
    write_text(gone, f"ID,duration,wav\na,1.0,{tmp_path}/missing.wav\n")
    with pytest.raises(AudioFileError, match="missing.wav: audio file does"):
        AugmentBank(gone).load()
    wrong_sr = make_set(
        str(tmp_path / "sr"), "n8k", [np.zeros(8000) + 0.1], sr=8000
    )
    with pytest.raises(AudioFileError, match="n8k0.wav: sample rate is 8000"):
        AugmentBank(wrong_sr).load()
    # Through the recipes' preparation step, before any training.
    aug = UtteranceAugment(AugmentBank(wrong_sr), None, 0.5, 0.5, 0.0, 0.0)
    with pytest.raises(AudioFileError, match="expected 16000 Hz"):
        load_augmentation_banks({"wav_augment": aug})


def test_probabilities_are_checked(banks):
    noise, rir = banks
    with pytest.raises(HparamsError, match="sum to 1.2000"):
        UtteranceAugment(
            AugmentBank(noise), AugmentBank(rir), 0.5, 0.5, 0.2, 0.0
        )
    with pytest.raises(HparamsError, match="rir_bank"):
        UtteranceAugment(AugmentBank(noise), None, 0.5, 0.0, 0.5, 0.0)
