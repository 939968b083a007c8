"""Per-utterance waveform augmentation from in-memory noise and RIR banks.

SpeechBrain's ``Augmenter`` draws its augmentation once per batch; with
``max_augmentations: 1`` and ``shuffle_augmentations: False`` it always
applies the first one in its list, so whole batches were uniform and, in
our recipes, reverberation never ran. Here every utterance (every call: each
view of a self-supervised recipe calls it separately) draws its own
condition among clean / noise / reverb / noise + reverb with the recipe's
probabilities, its own noise crop and SNR, and its own RIR. The mixing
follows SpeechBrain's ``AddNoise`` (RMS-based SNR, the clean signal scaled
by ``1 - factor``) and ``AddReverb`` (FFT convolution aligned on the direct
path, average amplitude restored), reusing its amplitude helpers; what is
written here is the batching over different RIRs and conditions, which those
modules do not do (one RIR per batch, one condition per batch).

An optional ``channel`` module (:class:`~speechbrain_ssv.augment.channel.
ChannelAugment`) then gives each utterance its own recording channel, after
the room and the noise, in the order of a real chain (room and background
reach the microphone together; the microphone, preamplifier and codec shape
both).

Authors
 * speechbrain-ssv developers 2026
"""

import torch
from speechbrain.processing.signal_processing import (
    compute_amplitude,
    dB_to_amplitude,
)

from speechbrain_ssv.utils.errors import HparamsError

#: The conditions, in the order of the probabilities.
CONDITIONS = ("clean", "noise", "reverb", "noise_reverb")


def fft_size(n):
    """The smallest size >= ``n`` whose only prime factors are 2, 3 and 5
    (FFT libraries are slow on sizes with large prime factors; the linear
    convolution only needs a size of at least ``n``).

    Arguments
    ---------
    n : int
        Minimum size.

    Returns
    -------
    int
        A 5-smooth size.

    Example
    -------
    >>> fft_size(63999), fft_size(64000), fft_size(7)
    (64000, 64000, 8)
    """
    best = 1 << max(0, (n - 1).bit_length())  # a power of two always fits
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class UtteranceAugment(torch.nn.Module):
    """Noise and/or reverberation, drawn independently per utterance.

    Arguments
    ---------
    noise_bank : speechbrain_ssv.augment.banks.AugmentBank | None
        Additive noise (needed when ``p_noise`` or ``p_noise_reverb`` > 0).
    rir_bank : speechbrain_ssv.augment.banks.AugmentBank | None
        Room impulse responses (needed when ``p_reverb`` or
        ``p_noise_reverb`` > 0).
    p_clean, p_noise, p_reverb, p_noise_reverb : float
        Probability of each condition; they must sum to 1.
    snr_low, snr_high : float
        Uniform SNR range in dB for the noise.
    channel : torch.nn.Module | None
        Applied to every utterance after the noise / reverberation, e.g.
        :class:`~speechbrain_ssv.augment.channel.ChannelAugment` (which
        draws per utterance, with its own probabilities, whether each of its
        effects applies); ``forward(wavs, lengths)`` returns the waveforms.

    Example
    -------
    >>> aug = UtteranceAugment(p_clean=1.0, p_noise=0.0, p_reverb=0.0,
    ...                        p_noise_reverb=0.0)
    >>> wavs = torch.randn(3, 1600)
    >>> out, lens = aug(wavs, torch.ones(3))
    >>> torch.equal(out, wavs), aug.last_conditions.tolist()
    (True, [0, 0, 0])
    """

    def __init__(
        self,
        noise_bank=None,
        rir_bank=None,
        p_clean=0.2,
        p_noise=0.3,
        p_reverb=0.3,
        p_noise_reverb=0.2,
        snr_low=0.0,
        snr_high=15.0,
        channel=None,
    ):
        super().__init__()
        probs = [p_clean, p_noise, p_reverb, p_noise_reverb]
        names = ["p_" + c for c in CONDITIONS]
        for name, p in zip(names, probs):
            if not isinstance(p, (int, float)) or p < 0:
                raise HparamsError(name, f"is {p!r}; expected a number >= 0")
        if abs(sum(probs) - 1.0) > 1e-6:
            raise HparamsError(
                "p_clean + p_noise + p_reverb + p_noise_reverb",
                f"sum to {sum(probs):.4f}; expected 1",
            )
        if noise_bank is None and (p_noise > 0 or p_noise_reverb > 0):
            raise HparamsError(
                "noise_bank", "is null but p_noise / p_noise_reverb > 0"
            )
        if rir_bank is None and (p_reverb > 0 or p_noise_reverb > 0):
            raise HparamsError(
                "rir_bank", "is null but p_reverb / p_noise_reverb > 0"
            )
        if snr_high < snr_low:
            raise HparamsError("snr_high", f"is {snr_high} < snr_low {snr_low}")
        if channel is not None and not callable(channel):
            raise HparamsError(
                "channel",
                f"is {channel!r}; expected a module such as "
                "speechbrain_ssv.augment.channel.ChannelAugment, or null",
            )
        self.noise_bank = noise_bank
        self.rir_bank = rir_bank
        self.register_buffer(
            "probs", torch.tensor(probs, dtype=torch.float), persistent=False
        )
        self.snr_low = float(snr_low)
        self.snr_high = float(snr_high)
        self.channel = channel
        self.last_conditions = None

    def load(self):
        """Decode the banks (once); called before training starts so that
        a missing or bad noise/RIR file fails there.

        Returns
        -------
        UtteranceAugment
            ``self``.
        """
        for bank in (self.noise_bank, self.rir_bank):
            if bank is not None:
                bank.load()
        return self

    def replicate_labels(self, labels):
        """The batch keeps its size and order: labels are unchanged (the
        interface of SpeechBrain's ``Augmenter``).

        Arguments
        ---------
        labels : torch.Tensor
            Per-utterance labels.

        Returns
        -------
        torch.Tensor
            ``labels``.
        """
        return labels

    def forward(self, wavs, lens):
        """Augment a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` waveforms.
        lens : torch.Tensor
            ``[B]`` relative lengths.

        Returns
        -------
        tuple
            ``(wavs [B, T], lens [B])``: same shape, same lengths.
        """
        cond = torch.multinomial(
            self.probs.cpu(), wavs.shape[0], replacement=True
        )
        self.last_conditions = cond
        if not bool((cond == 0).all()):
            wavs = self._noise_reverb(wavs, lens, cond)
        if self.channel is not None:
            # Drawn after the noise / reverberation draws, so that a recipe
            # without a channel consumes the random stream as before.
            wavs = self.channel(wavs, lens)
        return wavs, lens

    def _noise_reverb(self, wavs, lens, cond):
        """Apply each row's condition (1 noise, 2 reverb, 3 both)."""
        batch, width = wavs.shape
        self.load()
        n_samples = (lens.float() * width).round().clamp(1, width)
        out = wavs.clone()
        # Numerically, FFT convolution and RMS ratios want float32 even when
        # the step runs under bf16 autocast.
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            rev = ((cond == 2) | (cond == 3)).nonzero().squeeze(1)
            if len(rev):
                idx = rev.to(wavs.device)
                out[idx] = self._reverberate(
                    out[idx].float(), n_samples[idx]
                ).to(out.dtype)
            noi = ((cond == 1) | (cond == 3)).nonzero().squeeze(1)
            if len(noi):
                idx = noi.to(wavs.device)
                out[idx] = self._add_noise(out[idx].float(), n_samples[idx]).to(
                    out.dtype
                )
        return out

    def _valid_mask(self, n_samples, width, device):
        return torch.arange(width, device=device)[None, :] < n_samples[:, None]

    def _reverberate(self, x, n_samples):
        """Convolve each row with its own RIR (FFT), aligned on the RIR's
        direct path (its peak), average amplitude restored."""
        n, width = x.shape
        rir, _ = self.rir_bank.whole(self.rir_bank.draw(n), device=x.device)
        direct = rir.abs().argmax(dim=1)
        size = fft_size(width + rir.shape[1] - 1)
        spec = torch.fft.rfft(x, n=size) * torch.fft.rfft(rir, n=size)
        full = torch.fft.irfft(spec, n=size)
        pos = direct[:, None] + torch.arange(width, device=x.device)[None, :]
        wet = torch.gather(full, 1, pos)
        valid = self._valid_mask(n_samples, width, x.device)
        wet = wet * valid
        lengths = n_samples[:, None].to(x.device)
        before = compute_amplitude(x, lengths, amp_type="avg")
        after = compute_amplitude(wet, lengths, amp_type="avg")
        return wet * (before / (after + 1e-14))

    def _add_noise(self, x, n_samples):
        """SpeechBrain's AddNoise mixing, with a noise crop and an SNR per
        row."""
        n, width = x.shape
        noise = self.noise_bank.crops(
            self.noise_bank.draw(n), width, device=x.device
        )
        valid = self._valid_mask(n_samples, width, x.device)
        noise = noise * valid
        lengths = n_samples[:, None].to(x.device)
        snr = torch.rand(n, 1, device=x.device)
        snr = snr * (self.snr_high - self.snr_low) + self.snr_low
        factor = 1 / (dB_to_amplitude(snr) + 1)
        clean_rms = compute_amplitude(x, lengths, amp_type="rms")
        noise_rms = compute_amplitude(noise, lengths, amp_type="rms")
        noise = noise * (factor * clean_rms / (noise_rms + 1e-14))
        return x * (1 - factor) + noise
