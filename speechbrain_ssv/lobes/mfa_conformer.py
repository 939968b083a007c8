"""MFA-Conformer speaker encoder (Zhang et al., "MFA-Conformer: Multi-scale
Feature Aggregation Conformer for Automatic Speaker Verification",
Interspeech 2022), the front-end ``E_theta`` of Mun, Han et al. (FFSVC 2022,
Sec. IV-C), built from SpeechBrain's Conformer layers.

Pipeline (``B`` batch, ``T`` frames, ``F`` filterbanks)::

    [B, T, F] --conv2d subsampling (x2)--> [B, T', d]      T' = (T - 1) // 2
      --ConformerEncoder(output_hidden_states=True), L blocks--> h_1 .. h_L
      --concat--> [B, T', L d] --LayerNorm--> attentive statistics pooling
      --> [B, 2 L d] --BN--> Linear --> [B, 1, lin_neurons]

The output has the shape of SpeechBrain's ``ECAPA_TDNN`` (``forward(x,
lengths)`` returning ``[B, 1, lin_neurons]``), so ``EncoderClassifier``,
our Brains and the exporter treat both encoders the same; the FFSVC recipe
can pick either as its front-end.

Differences from the reference (zyzisyz/mfa_conformer, WeNet layers), and
why:

* SpeechBrain's layers: relative positional multi-head attention
  (``RelPosMHAXL`` with ``RelPosEncXL``), macaron feed-forward with half
  steps, Swish, a convolution module with LayerNorm where WeNet has
  BatchNorm, attention dropout equal to ``dropout`` (WeNet: 0).
* The reference pools without lengths. Here padded frames are excluded
  everywhere: attention ignores padded keys, the pooling uses the lengths,
  and the depthwise convolution of every block sees zeros at padded frames
  (a forward pre-hook; SpeechBrain masks only that module's *output*, so a
  padded utterance would otherwise leak up to ``(kernel - 1) / 2`` padded
  frames per block into its valid frames). A padded utterance therefore
  gets the embedding it gets alone (up to float error; verified in
  ``tests/unit/test_mfa_conformer.py``).
* SpeechBrain's encoder normalises its last block's output; MFA normalises
  the concatenation instead, so that unused LayerNorm is removed (unused
  parameters would also break DDP without ``find_unused_parameters``).

Authors
 * speechbrain-ssv developers 2026
"""

import torch
from speechbrain.lobes.models.ECAPA_TDNN import (
    AttentiveStatisticsPooling,
    BatchNorm1d,
    Conv1d,
)
from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder
from speechbrain.nnet.attention import RelPosEncXL

__all__ = ["ConvSubsampling", "MFAConformer"]


class ConvSubsampling(torch.nn.Module):
    """Convolutional subsampling of the frame rate (WeNet's ``conv2d2`` /
    ``conv2d`` input layers).

    Each stage is ``Conv2d(kernel 3, stride 2)`` + ReLU over (time,
    frequency), without padding; a Linear layer then maps
    ``channels x F'`` to ``d_model``. ``factor = 1`` is a Linear layer only.

    Arguments
    ---------
    input_size : int
        Filterbank channels ``F``.
    d_model : int
        Output size (also the number of convolution channels).
    factor : int
        Subsampling factor, 1, 2 or 4.

    Example
    -------
    >>> sub = ConvSubsampling(80, 32, factor=2)
    >>> sub(torch.randn(2, 101, 80)).shape, sub.output_lengths(torch.tensor([101, 50]))
    (torch.Size([2, 50, 32]), tensor([50, 24]))
    """

    def __init__(self, input_size, d_model, factor=2):
        super().__init__()
        if factor not in (1, 2, 4):
            raise ValueError(f"subsampling={factor}; expected 1, 2 or 4")
        self.factor = factor
        n_stages = {1: 0, 2: 1, 4: 2}[factor]
        convs = []
        channels, freq = 1, input_size
        for _ in range(n_stages):
            convs += [torch.nn.Conv2d(channels, d_model, 3, 2), torch.nn.ReLU()]
            channels, freq = d_model, (freq - 1) // 2
        if freq < 1:
            raise ValueError(
                f"input_size={input_size} is too small for subsampling "
                f"{factor}; expected at least {2 * n_stages + 1} features"
            )
        self.conv = torch.nn.Sequential(*convs)
        self.out = torch.nn.Linear(channels * freq, d_model)
        self.n_stages = n_stages
        # Each unpadded kernel-3 stride-2 stage needs 3 frames to give one.
        self.min_frames = 2 ** (n_stages + 1) - 1

    def output_lengths(self, lengths):
        """Absolute output lengths for absolute input lengths.

        Arguments
        ---------
        lengths : torch.Tensor
            Long ``[B]`` frame counts.

        Returns
        -------
        torch.Tensor
            Long ``[B]``; each stage maps ``n`` to ``(n - 1) // 2``.
        """
        for _ in range(self.n_stages):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor")
        return lengths

    def forward(self, x):
        """Subsample.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, F]``.

        Returns
        -------
        torch.Tensor
            ``[B, T', d_model]``.
        """
        if x.shape[1] < self.min_frames:
            raise ValueError(
                f"input of {x.shape[1]} frames is too short for subsampling "
                f"{self.factor}; expected at least {self.min_frames} frames"
            )
        if self.n_stages == 0:
            return self.out(x)
        h = self.conv(x.unsqueeze(1))  # [B, C, T', F']
        b, c, t, f = h.shape
        return self.out(h.transpose(1, 2).reshape(b, t, c * f))


class MFAConformer(torch.nn.Module):
    """Multi-scale feature aggregation Conformer speaker encoder.

    Paper settings (FFSVC 2022, Sec. IV-C): 6 blocks of dimension 256, 4
    heads, convolution kernel 15, feed-forward 2048, dropout 0.1, x2
    subsampling, 192-d embedding.

    Arguments
    ---------
    input_size : int
        Filterbank channels.
    d_model : int
        Conformer dimension.
    num_blocks : int
        Number of Conformer blocks, all of whose outputs are pooled.
    nhead : int
        Attention heads.
    d_ffn : int
        Feed-forward hidden size.
    kernel_size : int
        Depthwise convolution kernel.
    dropout : float
        Dropout inside the blocks and after subsampling.
    lin_neurons : int
        Embedding size.
    subsampling : int
        Frame-rate subsampling: 1, 2 or 4.
    attention_channels : int
        Hidden size of the attentive statistics pooling.

    Example
    -------
    >>> enc = MFAConformer(input_size=20, d_model=16, num_blocks=2, nhead=2,
    ...                    d_ffn=32, kernel_size=3, lin_neurons=8)
    >>> enc(torch.randn(3, 40, 20), torch.tensor([1.0, 0.8, 0.5])).shape
    torch.Size([3, 1, 8])
    """

    def __init__(
        self,
        input_size=80,
        d_model=256,
        num_blocks=6,
        nhead=4,
        d_ffn=2048,
        kernel_size=15,
        dropout=0.1,
        lin_neurons=192,
        subsampling=2,
        attention_channels=128,
    ):
        super().__init__()
        self.d_model = d_model
        self.num_blocks = num_blocks
        self.subsampling = ConvSubsampling(input_size, d_model, subsampling)
        self.input_dropout = torch.nn.Dropout(dropout)
        self.pos_enc = RelPosEncXL(d_model)
        self.encoder = ConformerEncoder(
            num_layers=num_blocks,
            d_model=d_model,
            d_ffn=d_ffn,
            nhead=nhead,
            kernel_size=kernel_size,
            dropout=dropout,
            attention_type="RelPosMHAXL",
            output_hidden_states=True,
        )
        # MFA normalises the concatenation, not the last block (see module
        # docstring); an unused LayerNorm would also trip DDP.
        self.encoder.norm = torch.nn.Identity()
        # Keep-masks of the current forward, per device (DataParallel
        # replicates share this dict and the hooks, one device each).
        self._conv_keep = {}
        for layer in self.encoder.layers:
            layer.convolution_module.conv.register_forward_pre_hook(
                self._mask_conv_input
            )
        channels = d_model * num_blocks
        self.norm = torch.nn.LayerNorm(channels, eps=1e-6)
        self.pooling = AttentiveStatisticsPooling(
            channels, attention_channels=attention_channels
        )
        self.pooling_bn = BatchNorm1d(input_size=channels * 2)
        self.fc = Conv1d(
            in_channels=channels * 2, out_channels=lin_neurons, kernel_size=1
        )

    def _mask_conv_input(self, module, args):
        """Zero padded frames before a block's depthwise convolution."""
        (x,) = args
        keep = self._conv_keep.get(x.device)
        if keep is None:
            return None
        return (x * keep.to(x.dtype),)

    def frame_features(self, x, lengths=None, normalize=True):
        """Frame-level multi-scale features: every block's output, concatenated.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, F]`` filterbanks.
        lengths : torch.Tensor | None
            ``[B]`` relative lengths in (0, 1] (SpeechBrain's convention);
            ``None`` means all full length.
        normalize : bool
            Apply the LayerNorm over the concatenation (the encoder does);
            ``False`` returns the raw ``[h_1, ..., h_L]``.

        Returns
        -------
        feats : torch.Tensor
            ``[B, T', L d]``; slice ``k d : (k + 1) d`` is block ``k``'s
            output. Padded frames are zero.
        frames : torch.Tensor
            Long ``[B]``, valid frames after subsampling.
        """
        batch, n_frames = x.shape[0], x.shape[1]
        h = self.subsampling(x)
        t_sub = h.shape[1]
        if lengths is None:
            frames = torch.full((batch,), t_sub, device=x.device)
        else:
            abs_in = torch.round(lengths.to(x.device).float() * n_frames).long()
            frames = self.subsampling.output_lengths(abs_in).clamp(1, t_sub)
        steps = torch.arange(t_sub, device=x.device)
        keep = steps.unsqueeze(0) < frames.unsqueeze(1)  # [B, T']
        # Masked even when every frame is kept: an all-False mask changes
        # nothing (masked_fill and * 1 are exact), whereas testing
        # keep.all() in Python waits for the GPU at every forward.
        pad_mask = ~keep
        h = self.input_dropout(h)
        pos = self.pos_enc(h)
        self._conv_keep[h.device] = keep.unsqueeze(1)
        try:
            _, _, hidden = self.encoder(
                h, src_key_padding_mask=pad_mask, pos_embs=pos
            )
        finally:
            self._conv_keep.pop(h.device, None)
        # hidden[0] is the encoder input; MFA aggregates the block outputs.
        feats = torch.cat(hidden[1:], dim=-1)
        if normalize:
            feats = self.norm(feats)
        feats = feats * keep.unsqueeze(-1).to(feats.dtype)
        return feats, frames

    def pool(self, feats, frames):
        """Attentive statistics pooling, BN and the embedding layer.

        Arguments
        ---------
        feats : torch.Tensor
            ``[B, T', C]`` from :meth:`frame_features`.
        frames : torch.Tensor
            ``[B]`` valid frames.

        Returns
        -------
        torch.Tensor
            ``[B, 1, lin_neurons]``.
        """
        t_sub = feats.shape[1]
        # SpeechBrain's pooling builds its mask as arange(T') < rel * T'; half
        # a frame below the count keeps float error from admitting the first
        # padded frame.
        rel = (frames.to(feats.dtype) - 0.5) / t_sub
        stats = self.pooling(feats.transpose(1, 2), rel)  # [B, 2C, 1]
        emb = self.fc(self.pooling_bn(stats))  # [B, lin, 1]
        return emb.transpose(1, 2)

    def forward(self, x, lengths=None):
        """Embed a batch of utterances.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, F]`` filterbanks.
        lengths : torch.Tensor | None
            ``[B]`` relative lengths.

        Returns
        -------
        torch.Tensor
            ``[B, 1, lin_neurons]``, like ``ECAPA_TDNN``.
        """
        feats, frames = self.frame_features(x, lengths)
        return self.pool(feats, frames)
