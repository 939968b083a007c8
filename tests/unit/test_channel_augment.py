"""Random recording channels per utterance (band-pass, EQ, clipping,
mu-law) and their place in UtteranceAugment."""

import math

import numpy as np
import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from scipy.signal import butter, sosfreqz

from speechbrain_ssv.augment import (
    AugmentBank,
    ChannelAugment,
    UtteranceAugment,
)
from speechbrain_ssv.minivox.channels import (
    STRENGTHS,
    draw_session_channel,
    peaking_sos,
)
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.io import write_wav

SR = 16000

#: The channels recommended for the self-supervised recipes (SDPN, DINO,
#: MixAP), as nested under their ``wav_augment`` (the report's yaml):
#: minivox's ranges reach past both ends of its session channels' ranges.
RECOMMENDED = {
    "minivox": """
    channel: !new:speechbrain_ssv.augment.channel.ChannelAugment
        sample_rate: !ref <sample_rate>
        p_bandpass: 0.8
        highpass_low: 40.0
        highpass_high: 450.0
        lowpass_low: 3000.0
        lowpass_high: 7900.0
        p_eq: 0.8
        n_peaks_low: 1
        n_peaks_high: 4
        peak_freq_low: 200.0
        peak_freq_high: 7000.0
        peak_db_low: -9.0
        peak_db_high: 9.0
        peak_q_low: 0.5
        peak_q_high: 2.5
        p_clip: 0.1
        p_mulaw: 0.1
""",
    "voxceleb": """
    channel: !new:speechbrain_ssv.augment.channel.ChannelAugment
        sample_rate: !ref <sample_rate>
        p_bandpass: 0.6
        highpass_low: 40.0
        highpass_high: 300.0
        lowpass_low: 3400.0
        lowpass_high: 7900.0
        p_eq: 0.6
        n_peaks_low: 1
        n_peaks_high: 3
        peak_freq_low: 200.0
        peak_freq_high: 6000.0
        peak_db_low: -6.0
        peak_db_high: 6.0
        peak_q_low: 0.5
        peak_q_high: 2.0
        p_clip: 0.05
        p_mulaw: 0.05
""",
}


def load_recommended(name):
    """A recipe-like yaml whose wav_augment carries the recommended
    channel."""
    text = """sample_rate: 16000
wav_augment: !new:speechbrain_ssv.augment.UtteranceAugment
    p_clean: 1.0
    p_noise: 0.0
    p_reverb: 0.0
    p_noise_reverb: 0.0
""" + RECOMMENDED[name].lstrip("\n")
    return load_hyperpyyaml(text)["wav_augment"]


def psd(x, size):
    """Per-row power spectrum on ``size`` points."""
    return torch.fft.rfft(x.double(), n=size).abs().pow(2)


def test_rows_draw_independent_channels():
    torch.manual_seed(0)
    aug = ChannelAugment(p_bandpass=1.0, p_eq=1.0)
    # One utterance repeated: every row is a view of the same signal.
    wavs = torch.randn(1, 4000).repeat(16, 1)
    out = aug(wavs, torch.ones(16))
    params = aug.last_params
    assert len(params["highpass"].unique()) == 16
    assert len(params["lowpass"].unique()) == 16
    freqs = torch.linspace(20, 7900, 200)
    gain = aug.response(params, freqs)
    # Every pair of rows has its own response, hence its own output.
    diff = torch.cdist(gain.log(), gain.log())
    assert (diff + torch.eye(16)).min() > 0.1
    dist = torch.cdist(out, out)
    assert (dist + torch.eye(16)).min() > 1e-3
    # A second call (a second view) draws anew.
    aug(wavs, torch.ones(16))
    assert not torch.equal(aug.last_params["highpass"], params["highpass"])


def test_effect_frequencies_match_probabilities():
    probs = {"p_bandpass": 0.3, "p_eq": 0.6, "p_clip": 0.1, "p_mulaw": 0.2}
    aug = ChannelAugment(n_peaks_low=1, n_peaks_high=3, **probs)
    torch.manual_seed(1)
    wavs = 0.1 * torch.randn(500, 200)
    counts = dict.fromkeys(probs, 0)
    peaks = torch.zeros(4)
    untouched = 0
    for _ in range(20):
        out = aug(wavs, torch.ones(500))
        params = aug.last_params
        for name in probs:
            counts[name] += int(params[name[2:]].sum())
        peaks += torch.bincount(params["n_peaks"][params["eq"]], minlength=4)
        none = ~(
            params["bandpass"] | params["eq"] | params["clip"] | params["mulaw"]
        )
        # Rows that drew no effect come back bit for bit; the others change.
        assert torch.equal(out[none], wavs[none])
        assert ((out[~none] - wavs[~none]).abs().amax(1) > 0).all()
        untouched += int(none.sum())
    # 10,000 draws: the standard error of each frequency is below 0.005,
    # so 0.02 is a four-sigma tolerance.
    for name, p in probs.items():
        assert abs(counts[name] / 10000 - p) < 0.02, (name, counts[name])
    expected_none = math.prod(1 - p for p in probs.values())
    assert abs(untouched / 10000 - expected_none) < 0.02
    # The number of peaks is uniform over 1..3.
    share = peaks[1:] / peaks.sum()
    assert peaks[0] == 0 and torch.allclose(
        share, torch.full((3,), 1 / 3), atol=0.03
    )


def test_bandpass_attenuates_out_of_band_energy():
    aug = ChannelAugment(
        p_bandpass=1.0,
        highpass_low=100.0,
        highpass_high=400.0,
        lowpass_low=2500.0,
        lowpass_high=3900.0,
        p_eq=0.0,
    )
    torch.manual_seed(2)
    wavs = torch.randn(8, 2 * SR)  # white noise: a flat input spectrum
    out = aug(wavs, torch.ones(8))
    params = aug.last_params
    size = wavs.shape[1]
    freqs = torch.fft.rfftfreq(size, 1 / SR)
    ratio = psd(out, size) / psd(wavs, size)
    for row in range(8):
        hp = float(params["highpass"][row])
        lp = float(params["lowpass"][row])
        mid = ratio[row, (freqs > 2 * hp) & (freqs < lp / 2)].mean()
        below = ratio[row, (freqs > 10) & (freqs < hp / 2)].mean()
        above = ratio[row, freqs > 2 * lp].mean()
        # Order 2 high-pass: >= 12 dB one octave below the corner; order 4
        # low-pass: >= 24 dB one octave above it.
        assert 10 * torch.log10(mid / below) > 12, (row, hp)
        assert 10 * torch.log10(mid / above) > 24, (row, lp)
        # And the -3 dB corners are where they were drawn.
        at_hp = ratio[row, (freqs - hp).abs().argmin()] / mid
        at_lp = ratio[row, (freqs - lp).abs().argmin()] / mid
        assert abs(10 * math.log10(at_hp) + 3) < 0.5
        assert abs(10 * math.log10(at_lp) + 3) < 0.5
    # The RMS of every row is kept.
    rms = out.pow(2).mean(1).sqrt() / wavs.pow(2).mean(1).sqrt()
    assert torch.allclose(rms, torch.ones(8), atol=1e-4)


def test_single_peak_gain_matches_drawn_gain():
    aug = ChannelAugment(
        p_bandpass=0.0,
        p_eq=1.0,
        n_peaks_low=1,
        n_peaks_high=1,
        peak_db_low=-8.0,
        peak_db_high=8.0,
    )
    torch.manual_seed(3)
    wavs = torch.randn(16, 2 * SR)
    out = aug(wavs, torch.ones(16))
    params = aug.last_params
    size = wavs.shape[1]
    freqs = torch.fft.rfftfreq(size, 1 / SR)
    ratio = psd(out, size) / psd(wavs, size)
    for row in range(16):
        centre = float(params["peak_freq"][row, 0])
        drawn = float(params["peak_db"][row, 0])
        q = float(params["peak_q"][row, 0])
        # Gain at the centre, relative to the flat part of the response
        # (which the RMS restoration rescaled): median over a few bins.
        near = (freqs - centre).abs() < centre / (20 * q)
        far = (freqs - centre).abs() > 6 * centre / q
        far = far | (freqs < centre / (6 * q))
        far = far & (freqs > 20) & (freqs < 7500)
        flat = ratio[row, far].median() if far.any() else None
        peak = ratio[row, near].median()
        if flat is None:
            continue
        measured = 10 * math.log10(peak / flat)
        assert abs(measured - drawn) < 0.3, (row, centre, q, drawn, measured)


def test_padding_stays_zero_and_does_not_leak():
    aug = ChannelAugment(p_bandpass=1.0, p_eq=1.0, p_clip=0.5, p_mulaw=0.5)
    lens = torch.tensor([1.0, 0.5, 0.25, 0.75])
    width = 8000
    torch.manual_seed(4)
    wavs = torch.randn(4, width)
    n = (lens * width).long()
    mask = torch.arange(width)[None, :] < n[:, None]
    clean = wavs * mask
    garbage = wavs + 5 * (~mask)  # non-zero padding
    torch.manual_seed(5)
    out = aug(clean, lens)
    torch.manual_seed(5)
    out_garbage = aug(garbage, lens)
    assert out[~mask].abs().max() == 0
    # What lies beyond the length does not reach the signal.
    torch.testing.assert_close(out_garbage, out)
    # The RMS is restored over the valid samples only.
    rms = (out.pow(2).sum(1) / n).sqrt() / (clean.pow(2).sum(1) / n).sqrt()
    assert torch.allclose(rms, torch.ones(4), atol=1e-4)


def test_zero_phase_filter_keeps_alignment_without_wrap_around():
    aug = ChannelAugment(p_bandpass=1.0, p_eq=1.0)
    torch.manual_seed(6)
    wavs = torch.zeros(6, 4000)
    wavs[:, 2000] = 1.0  # an impulse mid-utterance
    wavs[:, 10] = 1.0  # and one at the very start
    out = aug(wavs, torch.ones(6))
    # The filtered impulses stay where they were (no delay) and the start
    # of the utterance does not ring at its end (no circular wrap).
    assert (out[:, 2000].abs() >= out[:, 1500:2500].abs().amax(1) - 1e-6).all()
    tail = out[:, 3800:].abs().amax(1) / out.abs().amax(1)
    assert (tail < 1e-3).all(), tail


def test_clipping_and_mulaw():
    torch.manual_seed(7)
    wavs = torch.randn(4, 4000)
    clip = ChannelAugment(
        p_bandpass=0.0, p_eq=0.0, p_clip=1.0, clip_low=0.3, clip_high=0.3
    )
    out = clip(wavs, torch.ones(4))
    # Clipped at 30 % of the peak, then brought back to the input RMS.
    flat_top = (out.abs() >= out.abs().amax(1, keepdim=True) - 1e-6).float()
    assert (flat_top.mean(1) > 0.002).all()
    level = 0.3 * wavs.abs().amax(1, keepdim=True)
    ref = torch.maximum(torch.minimum(wavs, level), -level)
    ref = ref * (wavs.pow(2).mean(1) / ref.pow(2).mean(1)).sqrt()[:, None]
    torch.testing.assert_close(out, ref)
    mulaw = ChannelAugment(p_bandpass=0.0, p_eq=0.0, p_mulaw=1.0, mulaw_bits=8)
    out = mulaw(wavs, torch.ones(4))
    # 8-bit mu-law: at most 255 levels per row, error well below the signal.
    assert all(len(row.unique()) <= 255 for row in out)
    snr = 10 * torch.log10(wavs.pow(2).sum(1) / (out - wavs).pow(2).sum(1))
    assert (snr > 25).all() and (snr < 45).all(), snr


def test_dtype_and_device_are_kept():
    aug = ChannelAugment(p_bandpass=1.0, p_eq=1.0, p_clip=0.5, p_mulaw=0.5)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            wavs = torch.randn(3, 3000, device=device).to(dtype)
            out = aug(wavs, torch.ones(3, device=device))
            assert out.dtype == dtype and out.device == wavs.device
            assert out.shape == wavs.shape and torch.isfinite(out).all()
            assert aug.last_params["highpass"].device == wavs.device


def test_bf16_autocast_keeps_float32_math():
    aug = ChannelAugment(p_bandpass=1.0, p_eq=1.0, p_clip=0.3, p_mulaw=0.3)
    wavs = 0.1 * torch.randn(8, 4000)
    torch.manual_seed(8)
    ref = aug(wavs, torch.ones(8))
    torch.manual_seed(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aug(wavs, torch.ones(8))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)


def test_passed_generator_governs_draws():
    wavs = torch.randn(4, 2000)
    outs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(9)
        aug = ChannelAugment(p_bandpass=0.5, p_eq=0.5, generator=gen)
        torch.manual_seed(len(outs))  # the global seed does not matter
        outs.append(aug(wavs, torch.ones(4)))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lowpass_high": 9000.0}, "lowpass_high"),
        ({"lowpass_high": 8000.0}, "lowpass_high"),
        ({"p_eq": 1.5}, "p_eq"),
        ({"p_clip": -0.1}, "p_clip"),
        ({"p_bandpass": "often"}, "p_bandpass"),
        ({"highpass_high": 3500.0}, "highpass_high"),
        ({"highpass_low": 0.0}, "highpass_low"),
        ({"peak_freq_low": 0.0}, "peak_freq_low"),
        ({"peak_freq_high": 8000.0}, "peak_freq_high"),
        ({"n_peaks_low": 3, "n_peaks_high": 2}, "n_peaks_high"),
        ({"n_peaks_high": 2.5}, "n_peaks_high"),
        ({"peak_q_low": 0.0}, "peak_q_low"),
        ({"clip_high": 1.5}, "clip_high"),
        ({"highpass_order": 0}, "highpass_order"),
        ({"mulaw_bits": 40}, "mulaw_bits"),
        ({"mulaw_bits": 1}, "mulaw_bits"),
        ({"lowpass_order": True}, "lowpass_order"),
        ({"pad_seconds": -1}, "pad_seconds"),
        ({"sample_rate": 0}, "sample_rate"),
    ],
)
def test_bad_parameters_name_the_key(kwargs, name):
    with pytest.raises(HparamsError, match=f"^{name}: "):
        ChannelAugment(**kwargs)


def test_bad_input_and_bad_channel_are_refused():
    with pytest.raises(HparamsError, match="waveforms: has shape"):
        ChannelAugment()(torch.randn(100), torch.ones(1))
    with pytest.raises(HparamsError, match="channel: is 'bandpass'"):
        UtteranceAugment(
            p_clean=1.0,
            p_noise=0.0,
            p_reverb=0.0,
            p_noise_reverb=0.0,
            channel="bandpass",
        )


def test_reproduces_minivox_device_responses():
    """The module's filters have exactly the magnitude of the corpus'
    session filters (scipy Butterworth + cookbook peaks), so drawing from
    the corpus' ranges emulates its channels up to phase."""
    rng = np.random.default_rng(10)
    freqs = np.linspace(0, 7950, 800)
    aug = ChannelAugment(n_peaks_high=4)
    for strength in ("mild", "strong"):
        for _ in range(10):
            ch = draw_session_channel(rng, strength)
            sos = [
                butter(2, ch["hp"], "highpass", fs=SR, output="sos"),
                butter(4, ch["lp"], "lowpass", fs=SR, output="sos"),
            ]
            sos += [peaking_sos(*p) for p in ch["peaks"]]
            _, h = sosfreqz(np.concatenate(sos), worN=freqs, fs=SR)
            peaks = torch.zeros(1, 4, 3, dtype=torch.float64)
            peaks[..., 0] = 1000.0
            peaks[..., 2] = 1.0
            peaks[0, : len(ch["peaks"])] = torch.tensor(ch["peaks"])
            params = {
                "bandpass": torch.tensor([True]),
                "eq": torch.tensor([True]),
                "highpass": torch.tensor([ch["hp"]], dtype=torch.float64),
                "lowpass": torch.tensor([ch["lp"]], dtype=torch.float64),
                "peak_freq": peaks[..., 0],
                "peak_db": peaks[..., 1],
                "peak_q": peaks[..., 2],
            }
            gain = aug.response(params, torch.tensor(freqs))[0].numpy()
            ref_db = 20 * np.log10(np.abs(h) + 1e-300)
            ok = ref_db > -80
            err = np.abs(20 * np.log10(gain[ok]) - ref_db[ok]).max()
            assert err < 1e-3, (strength, ch, err)


@pytest.mark.parametrize("name", sorted(RECOMMENDED))
def test_recommended_yaml_loads_and_runs(name):
    augment = load_recommended(name)
    assert isinstance(augment.channel, ChannelAugment)
    torch.manual_seed(15)
    wavs = 0.1 * torch.randn(32, 8000)
    out, _ = augment(wavs, torch.ones(32))
    assert torch.isfinite(out).all() and not torch.equal(out, wavs)


def test_recommended_minivox_ranges_cover_the_corpus_channels():
    aug = load_recommended("minivox").channel
    torch.manual_seed(11)
    params = aug.draw(20000)
    hp, lp = params["highpass"], params["lowpass"]
    eq = params["eq"]
    used = params["peak_db"] != 0
    freq, db, q = (params[k][used] for k in ("peak_freq", "peak_db", "peak_q"))
    for strength in ("mild", "strong"):
        cfg = STRENGTHS[strength]
        # The drawn corners, peaks and gains reach past both ends of every
        # corpus range, so every session channel is inside what is drawn.
        assert hp.min() <= cfg["highpass"][0] and hp.max() >= cfg["highpass"][1]
        assert lp.min() <= cfg["lowpass"][0] and lp.max() >= cfg["lowpass"][1]
        assert db.min() <= -cfg["peak_db"] and db.max() >= cfg["peak_db"]
        n = params["n_peaks"][eq]
        assert n.min() <= cfg["n_peaks"][0] and n.max() >= cfg["n_peaks"][1]
    # Centre frequencies and Q: the corpus draws 250-6000 Hz, Q 0.5-2.5.
    assert freq.min() <= 250 and freq.max() >= 6000
    assert q.min() <= 0.51 and q.max() >= 2.49
    # Log-uniform centres: as many below as above the geometric middle.
    middle = math.sqrt(aug.peak_freq[0] * aug.peak_freq[1])
    assert abs(float((freq < middle).float().mean()) - 0.5) < 0.02


@pytest.fixture
def banks(tmp_path):
    """A small noise set and RIR set on disk."""
    rng = np.random.default_rng(14)
    csvs = []
    for name, signals in (
        ("noise", [0.1 * rng.standard_normal(n) for n in (4000, 9000)]),
        ("rir", [np.exp(-np.arange(800) / 100.0) * rng.standard_normal(800)]),
    ):
        rows = ["ID,duration,wav"]
        for i, sig in enumerate(signals):
            path = tmp_path / f"{name}{i}.wav"
            write_wav(str(path), sig, SR)
            rows.append(f"{name}{i},{len(sig) / SR},{path}")
        csv = tmp_path / f"{name}.csv"
        csv.write_text("\n".join(rows) + "\n")
        csvs.append(AugmentBank(str(csv)))
    return csvs


def test_utterance_augment_applies_the_channel_after_its_condition(banks):
    noise, rir = banks
    wavs = 0.1 * torch.randn(16, 3000)
    lens = torch.ones(16)
    probs = {"p_clean": 0.25, "p_noise": 0.25, "p_reverb": 0.25}
    probs["p_noise_reverb"] = 0.25
    channel = ChannelAugment(p_bandpass=0.5, p_eq=0.5, p_clip=0.2)
    plain = UtteranceAugment(noise, rir, **probs)
    with_channel = UtteranceAugment(noise, rir, **probs, channel=channel)
    # Same random stream: the conditions, noises and RIRs first, then the
    # channel, applied to the noisy / reverberant signal.
    torch.manual_seed(12)
    out, out_lens = with_channel(wavs, lens)
    conditions = with_channel.last_conditions
    torch.manual_seed(12)
    first, _ = plain(wavs, lens)
    assert torch.equal(plain.last_conditions, conditions)
    assert torch.equal(out, channel(first, lens))
    assert torch.equal(out_lens, lens)
    # Clean rows get a channel too.
    clean = {"p_clean": 1.0, "p_noise": 0.0, "p_reverb": 0.0}
    clean["p_noise_reverb"] = 0.0
    always = ChannelAugment(p_bandpass=1.0, p_eq=0.0)
    out, _ = UtteranceAugment(**clean, channel=always)(wavs, lens)
    assert not torch.allclose(out, wavs)
    # A channel that applies nothing leaves the output as it was.
    idle = ChannelAugment(p_bandpass=0.0, p_eq=0.0)
    torch.manual_seed(13)
    a, _ = UtteranceAugment(noise, rir, **probs, channel=idle)(wavs, lens)
    torch.manual_seed(13)
    b, _ = plain(wavs, lens)
    assert torch.equal(a, b)
