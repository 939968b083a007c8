"""Angular prototypical training with instance mixup: AP, i-AP and l-AP.

Each utterance gives two independently cropped and augmented segments. The
first (the query) is embedded and compared with the second segments of all
utterances in the batch (the anchors) through scaled cosines; AP trains
each query to pick its own anchor (Eq. 1). i-AP mixes each query's
features with those of another utterance of the batch and trains towards
the mixed target (Eq. 4); l-AP mixes the latent means of a pre-trained,
frozen VAE instead, and embeds the decoded features (Eq. 6-7). No speaker
label is used: the training dataset does not provide one.

Authors
 * speechbrain-ssv developers 2026
"""

import logging

import speechbrain as sb
import torch

from speechbrain_ssv.brains.base import (
    VerificationBrain,
    check_method_hparams,
    unwrap,
)
from speechbrain_ssv.lobes.vae import segment_features
from speechbrain_ssv.losses.common import (
    angular_prototypical_loss,
    gather_with_grad,
    mix,
    random_partner,
    sample_lambda,
)
from speechbrain_ssv.losses.mixap import imix_loss

logger = logging.getLogger(__name__)

#: Settings only some methods read (the others' yamls need not list them):
#: i-AP and l-AP weigh their unmixed queries with ``ap_weight``, and only
#: l-AP's recipe loads the VAE. Every other key the Brain reads is required.
METHOD_HPARAMS = {
    "ap": (),
    "imix": ("ap_weight",),
    "lmix": ("ap_weight", "vae", "vae_path"),
}


class MixAPBrain(VerificationBrain):
    """AP (``method: ap``), i-AP (``imix``) or l-AP (``lmix``) training.

    Modules: ``compute_features`` (MFCC), ``mean_var_norm``,
    ``embedding_model``, ``ap_scale``
    (:class:`~speechbrain_ssv.lobes.heads.AngularScale`) and, for l-AP, a
    frozen ``vae`` (:class:`~speechbrain_ssv.lobes.vae.ConvVAE`, loaded by
    the recipe from ``train_vae.py``'s export; never updated, never
    DDP-wrapped).

    Hparams it reads: ``method``, ``mix_alpha`` (Beta(alpha, alpha)),
    ``per_sample_lambda``, ``fold_lambda``, ``n_frames`` (features are cut to
    this many frames: the VAE's input size), ``wav_augment`` (Augmenter or
    null; each segment gets its own draw), ``time_mask`` and ``ceps_mask``
    (SpectrogramDrop or null: cepsaugment), ``gather_negatives`` (under DDP,
    anchors of every rank are negatives), ``ap_weight`` (optional, default
    0: the paper's objective; ``w > 0`` adds ``w`` times the plain AP loss
    of the unmixed queries to the i-AP / l-AP loss, so the mixture becomes
    a regulariser next to AP instead of the whole objective), ``train_logger``,
    ``epoch_counter``, ``lr_annealing`` and the verification keys of
    :class:`VerificationBrain`.
    """

    def __init__(self, modules=None, *args, **kwargs):
        # Frozen before Brain wraps modules for DDP and builds the optimizer.
        if modules is not None and "vae" in modules:
            for p in modules["vae"].parameters():
                p.requires_grad_(False)
        super().__init__(modules, *args, **kwargs)
        method = check_method_hparams(self.hparams, METHOD_HPARAMS)
        if method == "lmix" and "vae" not in self.modules:
            raise ValueError(
                "method 'lmix' needs a pre-trained VAE in modules['vae'] "
                "(train it with recipes/VoxCeleb/MixAP/train_vae.py)"
            )
        # Plain AP has no unmixed queries to add.
        w = 0.0 if method == "ap" else float(self.hparams.ap_weight)
        if w < 0:
            raise ValueError(f"ap_weight={w}; expected >= 0")
        self._ap_w = w
        self._reset_monitor()

    # ---------------------------------------------------------------- inputs
    def _segment_features(self, wavs, lens, augment):
        if augment is not None:
            wavs, lens = augment(wavs, lens)
        return segment_features(
            self.modules.compute_features,
            self.modules.mean_var_norm,
            wavs,
            lens,
            self.hparams.n_frames,
        )

    def _cepsaugment(self, feats):
        for mask in (self.hparams.time_mask, self.hparams.ceps_mask):
            if mask is not None:
                feats = mask(feats)
        return feats

    def mix_queries(self, feats):
        """Mix each query with a partner of the batch in the input (i-mix)
        or latent (l-mix) domain.

        Arguments
        ---------
        feats : torch.Tensor
            ``[B, n_frames, F]`` normalised features of the query segments.

        Returns
        -------
        tuple
            ``(mixed features, partner [B], lam [B])``; for AP the
            features unchanged, ``partner`` = own index and ``lam`` = 1.
        """
        b = feats.shape[0]
        if self.hparams.method == "ap":
            own = torch.arange(b, device=feats.device)
            return feats, own, torch.ones(b, device=feats.device)
        partner = random_partner(b, device=feats.device)
        lam = sample_lambda(
            b,
            self.hparams.mix_alpha,
            per_sample=self.hparams.per_sample_lambda,
            fold=self.hparams.fold_lambda,
            device=feats.device,
        )
        if self.hparams.method == "imix":
            return mix(feats, partner, lam), partner, lam
        vae = unwrap(self.modules.vae)
        vae.eval()
        with torch.no_grad():
            mu, _ = vae.encode(feats)
            # Eq. 6: the mixture's mean is the mix of the means; it is decoded.
            mixed = vae.decode(mix(mu, partner, lam))
        return mixed, partner, lam

    # ---------------------------------------------------------------- forward
    def compute_forward(self, batch, stage):
        """Embed the (mixed) query segments and the anchor segments.

        Arguments
        ---------
        batch : PaddedBatch
            With ``view0`` (queries) and ``view1`` (anchors); no labels.
        stage : sb.Stage
            Only TRAIN is used by the recipe.

        Returns
        -------
        dict
            ``query`` ``[B, D]``, ``anchor`` ``[B, D]``, ``partner``, ``lam``.
        """
        batch = batch.to(self.device)
        training = stage == sb.Stage.TRAIN
        augment = self.hparams.wav_augment if training else None
        q_wavs, q_lens = batch.view0
        a_wavs, a_lens = batch.view1
        q_feats = self._segment_features(q_wavs, q_lens, augment)
        a_feats = self._segment_features(a_wavs, a_lens, augment)
        clean = q_feats
        q_feats, partner, lam = self.mix_queries(q_feats)
        # The unmixed queries ride in the same encoder pass (one BatchNorm
        # population) when the AP term is on.
        with_clean = training and self._ap_weight() > 0
        parts = [q_feats, clean, a_feats] if with_clean else [q_feats, a_feats]
        feats = torch.cat(parts)
        if training:
            feats = self._cepsaugment(feats)
        # Segments have a fixed length: full relative lengths.
        lens = torch.ones(feats.shape[0], device=feats.device)
        emb = self.modules.embedding_model(feats, lens)
        emb = emb.reshape(emb.shape[0], -1)
        b = q_feats.shape[0]
        out = {
            "query": emb[:b],
            "anchor": emb[-b:],
            "partner": partner,
            "lam": lam,
        }
        if with_clean:
            out["clean_query"] = emb[b : 2 * b]
        return out

    def _ap_weight(self):
        return self._ap_w

    def compute_objectives(self, predictions, batch, stage):
        """AP (Eq. 1) or its mixed-target form (Eq. 4 / 7), plus
        ``ap_weight`` times AP on the unmixed queries when that is set.

        Arguments
        ---------
        predictions : dict
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
        anchors, offset = predictions["anchor"], 0
        if self.hparams.gather_negatives:
            anchors, offset = gather_with_grad(anchors)
        logits = self.modules.ap_scale(predictions["query"], anchors)
        if self.hparams.method == "ap":
            loss = angular_prototypical_loss(logits, offset)
        else:
            loss = imix_loss(
                logits, predictions["partner"], predictions["lam"], offset
            )
        if "clean_query" in predictions:
            clean_logits = self.modules.ap_scale(
                predictions["clean_query"], anchors
            )
            loss = loss + self._ap_weight() * angular_prototypical_loss(
                clean_logits, offset
            )
        if stage == sb.Stage.TRAIN:
            self._accumulate(logits.detach(), offset)
        return loss

    # --------------------------------------------------------------- monitor
    def _reset_monitor(self):
        self._mon = {"n": 0, "acc": None}

    def _accumulate(self, logits, offset):
        # Summed on the device and read once per epoch: a float() here
        # would wait for the GPU at every step.
        own = torch.arange(logits.shape[0], device=logits.device) + offset
        acc = (logits.argmax(-1) == own).double().mean()
        self._mon["acc"] = (
            acc if self._mon["acc"] is None else self._mon["acc"] + acc
        )
        self._mon["n"] += 1

    def on_stage_start(self, stage, epoch=None):
        """Reset the epoch statistics.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        epoch : int | None
            The epoch.
        """
        if stage == sb.Stage.TRAIN:
            self._reset_monitor()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log (loss, own-anchor accuracy, AP scale), verify when due,
        checkpoint.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        stage_loss : float
            Average loss of the stage.
        epoch : int | None
            The epoch.
        """
        if stage != sb.Stage.TRAIN:
            return
        stats = {"loss": stage_loss}
        if self._mon["n"]:
            # Accuracy of a query picking its own anchor: for the mixed
            # methods a diagnostic only (the target is soft).
            stats["anchor_acc"] = float(self._mon["acc"]) / self._mon["n"]
        scale = unwrap(self.modules.ap_scale)
        stats["ap_scale"] = float(scale.scale.detach())
        stats["ap_bias"] = float(scale.bias.detach())
        stats.update(self.verification_stats(epoch))
        meta = {"epoch": epoch, "lr": self.current_lr()}
        self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=stats)
        self.checkpointer.save_and_keep_only(meta=stats, num_to_keep=2)
