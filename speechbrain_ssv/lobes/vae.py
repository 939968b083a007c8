"""Convolutional variational autoencoder over fixed-size MFCC segments, the
latent space of l-mix.

Kang, Alam and Fathan, "Investigation on instance mixup regularization
strategies for self-supervised speaker representation learning" (AAAI 2022
workshop), Table 1: five 3x3 2-D convolutions with stride 3 (32, 64, 32, 32,
32 channels, ReLU), fully connected heads for the 64-d mean and log-variance;
the decoder mirrors it (FC, then 3x3 transposed convolutions with stride 3).
The paper points to Ha and Schmidhuber (2018, "World Models") for the
implementation details; where Table 1 is silent the choices follow that
implementation and are stated in :class:`ConvVAE`.

The loss (Eq. 5) is in :mod:`speechbrain_ssv.losses.vae`; the latent mixture
of means (Eq. 6) is :func:`speechbrain_ssv.losses.common.mix` on ``mu``.

Authors
 * speechbrain-ssv developers 2026
"""

import torch
import torch.nn.functional as F

from speechbrain_ssv.losses.common import mix


def same_padding(size, kernel_size, stride):
    """Padding that makes a strided convolution tile its whole input
    (TensorFlow's ``"SAME"``): ``ceil(size / stride)`` outputs, every input
    element inside some window, the extra zeros split before/after (one more
    after when odd).

    Arguments
    ---------
    size : int
        Input length.
    kernel_size : int
        Kernel length (at least ``stride``, or windows would skip elements).
    stride : int
        Stride.

    Returns
    -------
    tuple
        ``(out_size, pad_before, pad_after)``.

    Example
    -------
    >>> [same_padding(n, 3, 3) for n in (180, 40, 7, 3, 1)]
    [(60, 0, 0), (14, 1, 1), (3, 1, 1), (1, 0, 0), (1, 1, 1)]
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return out, total // 2, total - total // 2


class ConvVAE(torch.nn.Module):
    """Convolutional VAE over ``[batch, time, feats]`` feature segments
    (paper Table 1).

    The segment is treated as a one-channel image over the (time, feature)
    plane. Encoder: ``len(channels)`` convolutions (``kernel_size``, stride
    ``stride``) each followed by ReLU, flatten, and two linear heads giving
    the posterior mean and log-variance. Decoder: a linear layer from the
    latent to the encoder's last feature map, then transposed convolutions
    mirroring the encoder (channels reversed), every intermediate map the
    size of the corresponding encoder map and the output exactly ``[batch,
    n_frames, n_feats]``. For 180 x 40 MFCCs the maps are 60x14, 20x5, 7x2,
    3x1, 1x1: the last one is 32 x 1 x 1, Table 1's "32 x 64 FC".

    Padding. Each convolution zero-pads its input "SAME"-style
    (:func:`same_padding`: ``ceil(n / stride)`` outputs, the zeros split
    before/after), and each transposed convolution runs unpadded and crops
    the same rows/columns away, its exact inverse in shape. A symmetric
    PyTorch ``padding=1`` gives the same map sizes but, with kernel = stride
    = 3, a window over a 3-row map covers rows -1..1 and never sees row 2;
    through the five layers the encoder then ignores the last 58 of 180
    frames, and the mirrored decoder (``output_padding``) cannot make them
    depend on ``z`` either. Here every input frame is seen and every output
    frame depends on ``z``.

    Deviations from / readings of Table 1 (garbled in the paper's text):

    * the decoder's **last layer is linear**, where the table says ReLU:
      normalised MFCCs are negative as often as positive, and a ReLU output
      cannot reconstruct them (Ha and Schmidhuber use a sigmoid because their
      pixels are in [0, 1]);
    * the decoder has one transposed convolution per encoder convolution (the
      table lists four for a five-layer encoder), with channels mirrored
      (32, 32, 64, 32 hidden, 1 out), so sizes can mirror the encoder's;
    * no activation after the decoder's FC layer (as in Ha and Schmidhuber's
      implementation; Table 1 gives none).

    Time-resolved latent (``time_stride``, not in the paper). With the
    Table 1 strides a 180-frame segment ends in a single 1 x 1 map and one
    64-d code: all the decoder can return is the segment's average shape,
    which sentence mean normalisation has already set to about zero (see the
    MixAP README: the l-AP encoder then collapses). A per-layer time stride
    (e.g. ``[3, 3, 1, 1, 1]``) stops the time downsampling early; the last
    map keeps ``T'`` frames and the FC heads act on each frame, so the
    latent is ``[batch, T', latent_dim]``: one code per ``n_frames / T'``
    frames, mixed frame by frame by l-mix. Without it (the default) the
    heads see the whole flattened last map and the latent is ``[batch,
    latent_dim]``: Table 1's model. For 180 x 40 inputs both have the same
    parameter names and shapes; the strides are saved with the weights as
    the ``time_strides`` buffer.

    Arguments
    ---------
    n_feats : int
        Feature dimension (40 MFCCs in the paper).
    n_frames : int
        Segment length in frames (180 in the paper).
    latent_dim : int
        Latent dimension (64).
    channels : sequence of int
        Output channels of the encoder convolutions.
    kernel_size : int
        Square kernel size (3); at least ``stride``.
    stride : int
        Stride on both axes (3).
    time_stride : int | sequence of int | None
        Stride along time, one for all layers or one per layer; given, the
        latent has one code per frame of the last map. ``None`` (default):
        ``stride`` on time too and a single code per segment. The feature
        axis always uses ``stride``.

    Example
    -------
    >>> vae = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8))
    >>> x = torch.randn(2, 30, 12)
    >>> x_hat, mu, logvar = vae(x)
    >>> x_hat.shape, mu.shape, logvar.shape
    (torch.Size([2, 30, 12]), torch.Size([2, 8]), torch.Size([2, 8]))
    >>> vae.feature_map_sizes
    [(30, 12), (10, 4), (4, 2)]
    >>> tr = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8), time_stride=[3, 1])
    >>> tr.feature_map_sizes, tr.latent_shape
    ([(30, 12), (10, 4), (10, 2)], (10, 8))
    >>> [t.shape for t in tr(x)]
    [torch.Size([2, 30, 12]), torch.Size([2, 10, 8]), torch.Size([2, 10, 8])]
    """

    def __init__(
        self,
        n_feats=40,
        n_frames=180,
        latent_dim=64,
        channels=(32, 64, 32, 32, 32),
        kernel_size=3,
        stride=3,
        time_stride=None,
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        self.per_frame_latent = time_stride is not None
        if time_stride is None:
            time_stride = stride
        if isinstance(time_stride, int):
            time_stride = [time_stride] * len(channels)
        time_stride = [int(t) for t in time_stride]
        if len(time_stride) != len(channels) or min(time_stride, default=1) < 1:
            raise ValueError(
                f"ConvVAE time_stride={time_stride}; expected one positive "
                f"stride per encoder layer ({len(channels)} layers)"
            )
        if not channels or min(channels) < 1:
            raise ValueError(
                f"ConvVAE channels={channels}; expected a non-empty list of "
                "positive channel counts"
            )
        if min(n_feats, n_frames, latent_dim, kernel_size, stride) < 1:
            raise ValueError(
                f"ConvVAE n_feats={n_feats}, n_frames={n_frames}, "
                f"latent_dim={latent_dim}, kernel_size={kernel_size}, "
                f"stride={stride}; expected positive integers"
            )
        if kernel_size < max(stride, *time_stride):
            raise ValueError(
                f"ConvVAE kernel_size={kernel_size} < stride={stride} / "
                f"time_stride={time_stride}: the "
                "convolutions would skip input frames; expected kernel_size "
                ">= stride"
            )
        self.n_feats = int(n_feats)
        self.n_frames = int(n_frames)
        self.latent_dim = int(latent_dim)

        sizes, pads = [(self.n_frames, self.n_feats)], []
        for t_stride in time_stride:
            t, f = sizes[-1]
            t_out, t0, t1 = same_padding(t, kernel_size, t_stride)
            f_out, f0, f1 = same_padding(f, kernel_size, stride)
            sizes.append((t_out, f_out))
            # (left, right, top, bottom) = (feat before/after, time before/after)
            pads.append((f0, f1, t0, t1))
        #: (time, feats) of the input and of every encoder map.
        self.feature_map_sizes = sizes
        self._pads = pads
        #: Frames of the latent (1: Table 1's single code per segment).
        self.latent_frames = sizes[-1][0] if self.per_frame_latent else 1
        #: Shape of one segment's latent: ``(latent_dim,)`` or ``(T', latent_dim)``.
        self.latent_shape = (
            (self.latent_dim,)
            if self.latent_frames == 1
            else (self.latent_frames, self.latent_dim)
        )
        # Saved with the weights: two VAEs that differ only in their time
        # strides have identical parameter shapes, and loading one into the
        # other must still be refused (brains.vae.load_exported_vae).
        self.register_buffer(
            "time_strides", torch.tensor(time_stride, dtype=torch.long)
        )

        self.encoder = torch.nn.ModuleList()
        in_ch = 1
        for out_ch, t_stride in zip(channels, time_stride):
            self.encoder.append(
                torch.nn.Conv2d(in_ch, out_ch, kernel_size, (t_stride, stride))
            )
            in_ch = out_ch
        self._bottleneck = (channels[-1], *sizes[-1])
        # Per-frame heads see channels x feats, Table 1's the whole map.
        flat = (
            channels[-1]
            * sizes[-1][1]
            * (1 if self.per_frame_latent else sizes[-1][0])
        )
        self.fc_mu = torch.nn.Linear(flat, self.latent_dim)
        self.fc_logvar = torch.nn.Linear(flat, self.latent_dim)

        self.fc_decode = torch.nn.Linear(self.latent_dim, flat)
        self.decoder = torch.nn.ModuleList()
        for out_ch, t_stride in zip(
            channels[-2::-1] + [1], reversed(time_stride)
        ):
            self.decoder.append(
                torch.nn.ConvTranspose2d(
                    in_ch, out_ch, kernel_size, (t_stride, stride)
                )
            )
            in_ch = out_ch

    def _check_input(self, x):
        expected = (self.n_frames, self.n_feats)
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"ConvVAE expects features of shape [batch, n_frames="
                f"{self.n_frames}, n_feats={self.n_feats}] ([batch, time, "
                f"feats], SpeechBrain's layout), got {list(x.shape)}"
            )

    def encode(self, x):
        """Posterior parameters of ``q(z | x)``.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, n_frames, n_feats]`` features.

        Returns
        -------
        tuple
            ``(mu, logvar)``, each ``[batch, *latent_shape]``.

        Example
        -------
        >>> vae = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8))
        >>> mu, logvar = vae.encode(torch.randn(3, 30, 12))
        >>> mu.shape
        torch.Size([3, 8])
        >>> vae.encode(torch.randn(3, 12, 30))
        Traceback (most recent call last):
        ...
        ValueError: ConvVAE expects features of shape [batch, n_frames=30, n_feats=12] ([batch, time, feats], SpeechBrain's layout), got [3, 12, 30]
        """
        self._check_input(x)
        h = x.unsqueeze(1)
        for conv, pad in zip(self.encoder, self._pads):
            h = torch.relu(conv(F.pad(h, pad)))
        if self.per_frame_latent:  # [B, C, T', F'] -> [B, T', C * F']
            h = h.transpose(1, 2).flatten(2)
        else:  # Table 1: [B, 1, C * T' * F']
            h = h.flatten(1).unsqueeze(1)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        if self.latent_frames == 1:
            mu, logvar = mu.squeeze(1), logvar.squeeze(1)
        return mu, logvar

    def reparameterize(self, mu, logvar):
        """A sample ``z = mu + sigma * eps`` in training mode, ``mu`` in eval
        mode (deterministic reconstructions and l-mix inputs).

        Arguments
        ---------
        mu : torch.Tensor
            ``[batch, latent_dim]`` means.
        logvar : torch.Tensor
            ``[batch, latent_dim]`` log-variances.

        Returns
        -------
        torch.Tensor
            ``[batch, latent_dim]`` latent codes.

        Example
        -------
        >>> vae = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8)).eval()
        >>> mu = torch.randn(2, 8)
        >>> torch.equal(vae.reparameterize(mu, torch.zeros(2, 8)), mu)
        True
        """
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z):
        """Reconstruct features from latent codes.

        Arguments
        ---------
        z : torch.Tensor
            ``[batch, *latent_shape]``.

        Returns
        -------
        torch.Tensor
            ``[batch, n_frames, n_feats]``.

        Example
        -------
        >>> vae = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8))
        >>> vae.decode(torch.randn(5, 8)).shape
        torch.Size([5, 30, 12])
        """
        if tuple(z.shape[1:]) != self.latent_shape:
            frames = (
                ""
                if self.latent_frames == 1
                else f"latent_frames={self.latent_frames}, "
            )
            raise ValueError(
                f"ConvVAE.decode expects latent codes of shape [batch, "
                f"{frames}latent_dim={self.latent_dim}], got {list(z.shape)}"
            )
        if self.latent_frames == 1:
            z = z.unsqueeze(1)
        c, t, f = self._bottleneck
        h = self.fc_decode(z)
        if self.per_frame_latent:
            h = h.view(z.shape[0], t, c, f).transpose(1, 2)
        else:
            h = h.view(z.shape[0], c, t, f)
        last = len(self.decoder) - 1
        for i, deconv in enumerate(self.decoder):
            # Undo the padding of the mirrored encoder layer.
            f0, _, t0, _ = self._pads[last - i]
            t, f = self.feature_map_sizes[last - i]
            h = deconv(h)[:, :, t0 : t0 + t, f0 : f0 + f]
            if i < last:
                h = torch.relu(h)
        return h.squeeze(1)

    def forward(self, x):
        """Encode, sample (training) or take the mean (eval), decode.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, n_frames, n_feats]`` features.

        Returns
        -------
        tuple
            ``(x_hat, mu, logvar)``: reconstruction ``[batch, n_frames,
            n_feats]`` and posterior parameters ``[batch, *latent_shape]``.

        Example
        -------
        >>> vae = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8))
        >>> [t.shape[-1] for t in vae(torch.randn(2, 30, 12))]
        [12, 8, 8]
        """
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def lmix(self, x, partner, lam):
        """l-mix samples (Eq. 6): decode ``lam * mu_i + (1 - lam) * mu_r``,
        the mean of the mixed latent, for every row ``i`` and its partner
        ``r = partner[i]``.

        Uses the posterior means whatever the mode (the paper feeds "the mean
        of the mixed up latent variable" to the decoder). Gradients flow if
        enabled; wrap in ``torch.no_grad()`` for a frozen VAE.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, n_frames, n_feats]`` features.
        partner : torch.Tensor
            ``[batch]`` long, e.g. from
            :func:`speechbrain_ssv.losses.common.random_partner`.
        lam : torch.Tensor | float
            ``[batch]`` or scalar mixing weights.

        Returns
        -------
        torch.Tensor
            ``[batch, n_frames, n_feats]`` decoded mixtures.

        Example
        -------
        >>> vae = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8)).eval()
        >>> x = torch.randn(2, 30, 12)
        >>> same = vae.lmix(x, torch.tensor([1, 0]), torch.ones(2))
        >>> torch.allclose(same, vae(x)[0])
        True
        """
        mu, _ = self.encode(x)
        return self.decode(mix(mu, partner, lam))


def segment_features(compute_features, mean_var_norm, wavs, lens, n_frames):
    """Waveform crops -> the VAE's input: features, sentence normalisation
    (over the whole crop), then the first ``n_frames`` frames.

    Arguments
    ---------
    compute_features : callable
        ``[B, S]`` waveforms -> ``[B, T, F]`` features (SpeechBrain MFCC).
    mean_var_norm : callable
        ``(feats, lens)`` -> normalised features (InputNormalization).
    wavs : torch.Tensor
        ``[B, S]`` waveforms.
    lens : torch.Tensor
        ``[B]`` relative lengths.
    n_frames : int
        Frames the VAE takes.

    Returns
    -------
    torch.Tensor
        ``[B, n_frames, F]``.

    Example
    -------
    >>> from speechbrain.lobes.features import MFCC
    >>> from speechbrain.processing.features import InputNormalization
    >>> mfcc = MFCC(deltas=False, context=False, n_mels=40, n_mfcc=40)
    >>> norm = InputNormalization(norm_type="sentence")
    >>> segment_features(mfcc, norm, torch.randn(2, 179 * 160), torch.ones(2), 180).shape
    torch.Size([2, 180, 40])
    >>> segment_features(mfcc, norm, torch.randn(2, 16000), torch.ones(2), 180)
    Traceback (most recent call last):
    ...
    ValueError: the crops give 101 feature frames but the VAE takes n_frames=180; crops must be at least (n_frames - 1) * hop samples long (28640 samples here), got 16000 samples
    """
    feats = mean_var_norm(compute_features(wavs), lens)
    if feats.shape[1] < n_frames:
        stft = getattr(compute_features, "compute_STFT", None)
        hop = getattr(stft, "hop_length", None)
        need = f" ({(n_frames - 1) * hop} samples here)" if hop else ""
        raise ValueError(
            f"the crops give {feats.shape[1]} feature frames but the VAE "
            f"takes n_frames={n_frames}; crops must be at least (n_frames - "
            f"1) * hop samples long{need}, got {wavs.shape[-1]} samples"
        )
    return feats[:, :n_frames]
