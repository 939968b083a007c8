"""Training the convolutional VAE of l-mix on fixed-length MFCC segments,
and exporting it for the l-AP recipe.

Kang, Alam and Fathan (AAAI 2022 workshop) train the VAE before the
embedding network, on the same training data (VoxCeleb2 dev, 180-frame
40-dim MFCC segments, Adam, lr 0.001, 100 epochs), with the negative ELBO of
Eq. 5. No speaker label is involved: the recipe's dataset does not provide
one.

The exported file is the bare ``state_dict`` of
:class:`~speechbrain_ssv.lobes.vae.ConvVAE`, loadable with
``speechbrain.utils.parameter_transfer.Pretrainer(loadables={"vae": vae},
paths={"vae": <file>})`` (add ``custom_hooks={"vae":
StrictTransfer(check_integer_buffers=True)}`` from
:mod:`speechbrain_ssv.utils.pretrained` to make it strict) or
:func:`load_exported_vae` (strict).

Authors
 * speechbrain-ssv developers 2026
"""

import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger

from speechbrain_ssv.brains.base import (
    LoaderOptionsMixin,
    LRAnnealingMixin,
    unwrap,
)
from speechbrain_ssv.eval.mixing import plot_reconstructions
from speechbrain_ssv.lobes.vae import segment_features
from speechbrain_ssv.losses.vae import elbo_loss
from speechbrain_ssv.utils.io import save_torch
from speechbrain_ssv.utils.pretrained import StrictTransfer, strict_pretrainer

logger = get_logger(__name__)


def export_vae(vae, path):
    """Write the bare ``state_dict`` of a (possibly DDP-wrapped) VAE,
    atomically, with CPU tensors.

    Arguments
    ---------
    vae : torch.nn.Module
        The :class:`~speechbrain_ssv.lobes.vae.ConvVAE`.
    path : str
        Destination (``<output_folder>/vae.ckpt`` in the recipe).

    Returns
    -------
    str
        The absolute path written.

    Example
    -------
    >>> from speechbrain_ssv.lobes.vae import ConvVAE
    >>> vae = ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=(4, 8))
    >>> p = export_vae(vae, os.path.join(getfixture("tmpdir"), "vae.ckpt"))
    >>> sorted(torch.load(p))[:3]
    ['decoder.0.bias', 'decoder.0.weight', 'decoder.1.bias']
    """
    state = {
        k: v.detach().cpu().clone() for k, v in unwrap(vae).state_dict().items()
    }
    save_torch(path, state)
    return os.path.abspath(path)


def load_exported_vae(vae, path):
    """Load a file written by :func:`export_vae` into ``vae``, strictly:
    a file for another architecture (other keys, shapes or time strides) is
    an error that names the file, never a silently half-random model.

    The file is loaded by SpeechBrain's ``Pretrainer`` with the strict hook
    of :mod:`speechbrain_ssv.utils.pretrained` (SpeechBrain's own transfer
    is non-strict and only warns), which also compares the integer buffers:
    ``ConvVAE.time_strides`` records an architecture that the parameter
    shapes alone may not tell apart.

    Arguments
    ---------
    vae : torch.nn.Module
        A :class:`~speechbrain_ssv.lobes.vae.ConvVAE` built with the same
        hparams as the exported one.
    path : str
        The exported ``state_dict``.

    Returns
    -------
    torch.nn.Module
        ``vae`` with the weights loaded.

    Raises
    ------
    speechbrain_ssv.utils.pretrained.PretrainedWeightsError
        (a ``ValueError``) naming the file: missing, not a state dict, or
        not fitting ``vae``.

    Example
    -------
    >>> from speechbrain_ssv.lobes.vae import ConvVAE
    >>> small = dict(n_feats=12, n_frames=30, latent_dim=8)
    >>> p = export_vae(ConvVAE(**small, channels=(4, 8)), os.path.join(getfixture("tmpdir"), "v.ckpt"))
    >>> _ = load_exported_vae(ConvVAE(**small, channels=(4, 8)), p)
    >>> load_exported_vae(ConvVAE(**small, channels=(4, 6)), p)
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.pretrained.PretrainedWeightsError: ...v.ckpt: does not fit this ConvVAE: shape mismatches (7): [encoder.1.weight [8, 4, 3, 3] in the file, [6, 4, 3, 3] in the model; ...]; build the ConvVAE with the hparams it was trained with
    """
    hook = StrictTransfer(
        check_integer_buffers=True,
        hint="build the ConvVAE with the hparams it was trained with",
    )
    pretrainer = strict_pretrainer({"vae": unwrap(vae)}, {"vae": path}, hook)
    pretrainer.collect_files()
    pretrainer.load_collected()
    return vae


class VAEBrain(LRAnnealingMixin, LoaderOptionsMixin, sb.Brain):
    """Trains a :class:`~speechbrain_ssv.lobes.vae.ConvVAE` on normalised
    MFCC segments with the negative ELBO (Eq. 5).

    Modules: ``compute_features`` (SpeechBrain ``MFCC``), ``mean_var_norm``
    (``InputNormalization``, sentence level), ``vae``. Batches hold ``sig``:
    fixed-length crops of at least ``(vae.n_frames - 1) * hop`` samples
    (see :func:`segment_features`).

    Hparams it reads: ``kl_beta``, ``recon_sigma`` (see
    :func:`~speechbrain_ssv.losses.vae.elbo_loss`), ``lr_annealing`` (the
    schedule, applied by :class:`~speechbrain_ssv.brains.base.LRAnnealingMixin`;
    the recipe's ``EpochDecayScheduler`` on the epoch clock gives epoch ``e``
    the rate ``lr * gamma ** (e - 1)``, constant with ``gamma`` 1 as in the
    paper), ``epoch_counter``, ``train_logger``, ``output_folder`` (for the
    reconstruction plots).

    Each training epoch logs the loss and its terms (``kl``, ``nll``, nats
    per segment; ``mse`` per element), draws the reconstructions of the
    segments given to :meth:`set_reconstruction_examples` to
    ``<output_folder>/reconstructions/epoch_NNN.png`` and saves a
    checkpoint (the last two are kept).

    Example
    -------
    >>> from speechbrain.lobes.features import MFCC
    >>> from speechbrain.processing.features import InputNormalization
    >>> from speechbrain_ssv.lobes.vae import ConvVAE
    >>> modules = {
    ...     "compute_features": MFCC(deltas=False, context=False, n_mels=20, n_mfcc=20),
    ...     "mean_var_norm": InputNormalization(norm_type="sentence"),
    ...     "vae": ConvVAE(n_feats=20, n_frames=30, latent_dim=8, channels=(4, 8)),
    ... }
    >>> brain = VAEBrain(modules, hparams={"kl_beta": 1.0, "recon_sigma": 1.0})
    >>> batch = sb.dataio.batch.PaddedBatch(
    ...     [{"id": str(i), "sig": torch.randn(29 * 160)} for i in range(3)]
    ... )
    >>> x_hat, feats, mu, logvar = brain.compute_forward(batch, sb.Stage.TRAIN)
    >>> x_hat.shape == feats.shape == (3, 30, 20)
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recon_wavs = None
        self._reset_terms()

    # ---------------------------------------------------------------- model
    def vae_input(self, wavs, lens, modules=None):
        """Waveforms -> the VAE's input ``[B, n_frames, n_feats]``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, S]`` crops.
        lens : torch.Tensor
            ``[B]`` relative lengths.
        modules : dict-like | None
            Where ``compute_features``, ``mean_var_norm`` and ``vae`` are
            (default ``self.modules``).

        Returns
        -------
        torch.Tensor
            Normalised features.
        """
        source = self.modules if modules is None else modules
        return segment_features(
            source["compute_features"],
            source["mean_var_norm"],
            wavs,
            lens,
            unwrap(source["vae"]).n_frames,
        )

    def compute_forward(self, batch, stage):
        """Features -> sentence normalisation -> first ``n_frames`` -> VAE.

        Arguments
        ---------
        batch : PaddedBatch
            With ``sig`` (fixed-length crops).
        stage : sb.Stage
            TRAIN, VALID or TEST (the VAE samples ``z`` in training mode
            only).

        Returns
        -------
        tuple
            ``(x_hat, feats, mu, logvar)``.
        """
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        feats = self.vae_input(wavs, lens)
        x_hat, mu, logvar = self.modules.vae(feats)
        return x_hat, feats, mu, logvar

    def compute_objectives(self, predictions, batch, stage):
        """Negative ELBO (Eq. 5); its terms are accumulated for the log.

        Arguments
        ---------
        predictions : tuple
            Output of :meth:`compute_forward`.
        batch : PaddedBatch
            The batch.
        stage : sb.Stage
            The stage.

        Returns
        -------
        torch.Tensor
            The loss.
        """
        x_hat, feats, mu, logvar = predictions
        out = elbo_loss(
            x_hat,
            feats,
            mu,
            logvar,
            beta=self.hparams.kl_beta,
            sigma=self.hparams.recon_sigma,
        )
        # Detached sums, read once per stage: no host sync per step.
        self._terms["kl"] += out["kl"].detach()
        self._terms["nll"] += out["nll"].detach()
        self._terms["mse"] += (x_hat.detach() - feats).pow(2).mean()
        self._n_terms += 1
        return out["loss"]

    def _reset_terms(self):
        self._terms = {"kl": 0.0, "nll": 0.0, "mse": 0.0}
        self._n_terms = 0

    def term_means(self):
        """Running means of ``kl``, ``nll`` (nats per segment) and ``mse``
        (per element) over the batches of the current stage.

        Returns
        -------
        dict
            Floats (empty before the first batch).
        """
        if self._n_terms == 0:
            return {}
        return {k: float(v) / self._n_terms for k, v in self._terms.items()}

    def on_stage_start(self, stage, epoch=None):
        """Reset the loss-term means (the learning rate is set by
        :class:`~speechbrain_ssv.brains.base.LRAnnealingMixin`).

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        epoch : int | None
            The epoch.
        """
        self._reset_terms()

    # ------------------------------------------------------- reconstructions
    def set_reconstruction_examples(self, dataset, n=4):
        """Fix the segments drawn at the end of every training epoch.

        Arguments
        ---------
        dataset : Dataset
            Items with ``sig`` (e.g. held-out centre crops:
            ``make_unlabelled_dataset(..., random_crop=False)``); the first
            ``n`` are used.
        n : int
            Number of segments (0 disables the plots).
        """
        n = min(int(n), len(dataset))
        if n <= 0:
            self._recon_wavs = None
            return
        wavs = [dataset[i]["sig"] for i in range(n)]
        length = min(w.shape[0] for w in wavs)
        self._recon_wavs = torch.stack([w[:length] for w in wavs])

    @torch.no_grad()
    def plot_reconstructions(self, path, title=None):
        """Draw the fixed segments and their reconstructions (posterior
        means decoded, the VAE in eval mode) to ``path``.

        Arguments
        ---------
        path : str
            Output PNG.
        title : str | None
            Figure title.

        Returns
        -------
        str | None
            ``path``, or ``None`` when no examples were set.
        """
        if self._recon_wavs is None:
            return None
        modules = {
            k: unwrap(self.modules[k])
            for k in ("compute_features", "mean_var_norm", "vae")
        }
        vae = modules["vae"]
        was_training = vae.training
        vae.eval()
        try:
            wavs = self._recon_wavs.to(self.device)
            lens = torch.ones(wavs.shape[0], device=self.device)
            feats = self.vae_input(wavs, lens, modules)
            x_hat, _, _ = vae(feats)
        finally:
            vae.train(was_training)
        plot_reconstructions(feats.cpu(), x_hat.cpu(), path, title=title)
        return path

    @torch.no_grad()
    def reconstruction_r2(self, dataset, batch_size=32):
        """Per-band reconstruction R^2 of held-out segments: for each
        feature band ``c`` (cepstral coefficient), ``1 - sum (x - x_hat)^2 /
        sum (x - mean_c)^2`` over all segments and frames, with the
        posterior means decoded and the VAE in eval mode. A band near 0 is
        not reconstructed at all (the decoder outputs its mean), so l-mix
        cannot mix it.

        Arguments
        ---------
        dataset : Dataset
            Items with ``sig`` (e.g. centre crops of held-out utterances).
        batch_size : int
            Segments per forward.

        Returns
        -------
        list of float
            R^2 per band, ``[n_feats]``.
        """
        modules = {
            k: unwrap(self.modules[k])
            for k in ("compute_features", "mean_var_norm", "vae")
        }
        vae = modules["vae"]
        was_training = vae.training
        vae.eval()
        sq_err = sums = sq_sums = None
        count = 0
        try:
            for start in range(0, len(dataset), batch_size):
                items = [
                    dataset[i]["sig"]
                    for i in range(start, min(start + batch_size, len(dataset)))
                ]
                length = min(w.shape[0] for w in items)
                wavs = torch.stack([w[:length] for w in items]).to(self.device)
                lens = torch.ones(wavs.shape[0], device=self.device)
                feats = self.vae_input(wavs, lens, modules).double()
                x_hat = vae(feats.float())[0].double()
                flat, flat_hat = feats.flatten(0, 1), x_hat.flatten(0, 1)
                err = (flat - flat_hat).pow(2).sum(0)
                if sq_err is None:
                    sq_err, sums, sq_sums = err, flat.sum(0), flat.pow(2).sum(0)
                else:
                    sq_err += err
                    sums += flat.sum(0)
                    sq_sums += flat.pow(2).sum(0)
                count += flat.shape[0]
        finally:
            vae.train(was_training)
        if count == 0:
            raise ValueError("reconstruction_r2 needs at least one segment")
        total = sq_sums - sums.pow(2) / count
        return (1.0 - sq_err / total.clamp_min(1e-12)).tolist()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log loss/kl/nll/lr, plot reconstructions, checkpoint (TRAIN).

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        stage_loss : float
            Average loss of the stage.
        epoch : int | None
            The epoch.
        """
        stats = {"loss": stage_loss, **self.term_means()}
        if stage != sb.Stage.TRAIN:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch},
                **{f"{stage.name.lower()}_stats": stats},
            )
            return
        self.hparams.train_logger.log_stats(
            stats_meta={
                "epoch": epoch,
                "lr": self.optimizer.param_groups[0]["lr"],
            },
            train_stats=stats,
        )
        if if_main_process() and self._recon_wavs is not None:
            path = os.path.join(
                self.hparams.output_folder,
                "reconstructions",
                f"epoch_{epoch:03d}.png",
            )
            self.plot_reconstructions(
                path, title=f"VAE reconstructions, epoch {epoch}"
            )
        if self.checkpointer is not None:
            self.checkpointer.save_and_keep_only(meta=stats, num_to_keep=2)
