"""Untrained baseline encoders.

Authors
 * speechbrain-ssv developers 2026
"""

import torch
from speechbrain.lobes.features import MFCC

__all__ = ["MFCCMeanEncoder"]


class MFCCMeanEncoder(torch.nn.Module):
    """Utterance embedding = mean (and std) of its MFCC frames.

    The classic training-free baseline: long-term cepstral statistics carry
    some speaker (and channel) information. Statistics are taken over the
    valid frames only, so padding in a batch does not change an utterance's
    embedding. Usable directly as an ``encoder_fn``.

    Arguments
    ---------
    n_mfcc : int
        Cepstral coefficients per frame.
    n_mels : int
        Mel filters before the DCT.
    sample_rate : int
        Sampling rate of the input.
    with_std : bool
        Append the per-coefficient standard deviation (doubles the size).
    drop_c0 : bool
        Drop the 0th coefficient (overall level, mostly loudness).

    Example
    -------
    >>> enc = MFCCMeanEncoder(n_mfcc=13)
    >>> wavs = torch.randn(2, 16000)
    >>> emb = enc(wavs, torch.tensor([1.0, 0.5]))
    >>> emb.shape
    torch.Size([2, 24])
    >>> alone = enc(wavs[1:, :8000], torch.tensor([1.0]))
    >>> # Same utterance, padded in a batch or alone: only edge frames differ.
    >>> bool(torch.cosine_similarity(emb[1], alone[0], dim=0) > 0.999)
    True
    """

    def __init__(
        self,
        n_mfcc=20,
        n_mels=40,
        sample_rate=16000,
        with_std=True,
        drop_c0=True,
    ):
        super().__init__()
        self.mfcc = MFCC(
            deltas=False,
            context=False,
            sample_rate=sample_rate,
            n_mels=n_mels,
            n_mfcc=n_mfcc,
        )
        self.with_std = with_std
        self.drop_c0 = drop_c0

    def forward(self, wavs, lens=None):
        """Embed a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` waveforms.
        lens : torch.Tensor | None
            ``[B]`` relative lengths in (0, 1]; ``None`` means all full.

        Returns
        -------
        torch.Tensor
            ``[B, D]`` with ``D = n_mfcc - drop_c0`` (times 2 with std).
        """
        feats = self.mfcc(wavs)  # [B, frames, n_mfcc]
        if self.drop_c0:
            feats = feats[..., 1:]
        n_frames = feats.shape[1]
        if lens is None:
            lens = torch.ones(feats.shape[0], device=feats.device)
        valid = (lens.to(feats.device) * n_frames).round().clamp(min=1)
        mask = (
            torch.arange(n_frames, device=feats.device)[None, :]
            < valid[:, None]
        )
        mask = mask.unsqueeze(-1).to(feats.dtype)
        count = valid[:, None].to(feats.dtype)
        mean = (feats * mask).sum(1) / count
        if not self.with_std:
            return mean
        var = (((feats - mean[:, None]) ** 2) * mask).sum(1) / count
        return torch.cat([mean, var.clamp_min(1e-10).sqrt()], dim=1)
