"""Supervised speaker-embedding training (ECAPA-TDNN + AAM-softmax), the
baseline every self-supervised method is compared with.

It follows SpeechBrain's ``recipes/VoxCeleb/SpeakerRec`` Brain, plus
periodic verification on the trial list and step-indexed LR schedules.

Authors
 * speechbrain-ssv developers 2026
"""

import speechbrain as sb

from speechbrain_ssv.brains.base import VerificationBrain
from speechbrain_ssv.utils.errors import HparamsError


class SupervisedBrain(VerificationBrain):
    """Speaker classification with a margin softmax on top of the encoder.

    Hparams it reads: ``wav_augment`` (required: an Augmenter, or ``None``
    for no augmentation; a missing key is one :class:`HparamsError`),
    ``compute_cost``, ``error_stats``, ``train_logger``, ``checkpointer``,
    ``epoch_counter``, ``lr_annealing`` and the verification keys of
    :class:`VerificationBrain`. Modules: ``compute_features``,
    ``mean_var_norm``, ``embedding_model``, ``classifier``.

    Subclasses that train on other labels or with another loss override
    :meth:`classification_loss` only (e.g.
    :class:`speechbrain_ssv.brains.pseudolabel.PseudoLabelBrain`).

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> from speechbrain.processing.features import InputNormalization
    >>> modules = {
    ...     "compute_features": Fbank(n_mels=8),
    ...     "mean_var_norm": InputNormalization(norm_type="sentence"),
    ...     "embedding_model": ECAPA_TDNN(8, channels=[8, 8, 8, 8, 24],
    ...                                   attention_channels=4, lin_neurons=6),
    ...     "classifier": Classifier(6, out_neurons=3),
    ... }
    >>> SupervisedBrain(modules=modules, hparams={})
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: wav_augment: missing: ...
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The yaml lists wav_augment even when it is null: a forgotten key
        # must not silently train without augmentation.
        if not hasattr(self.hparams, "wav_augment"):
            raise HparamsError(
                "wav_augment",
                "missing: the yaml lists it (an Augmenter, or null for no "
                "augmentation)",
            )

    def compute_forward(self, batch, stage):
        """Augment (training only), embed, classify.

        Arguments
        ---------
        batch : PaddedBatch
            With ``sig`` and ``spk_id_encoded``.
        stage : sb.Stage
            TRAIN, VALID or TEST.

        Returns
        -------
        tuple
            (cosine logits ``[B, 1, C]``, relative lengths, embeddings
            ``[B, 1, D]`` before the classifier normalises them).
        """
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        augment = self.hparams.wav_augment
        if stage == sb.Stage.TRAIN and augment is not None:
            wavs, lens = augment(wavs, lens)
        emb = self.encode(wavs, lens).unsqueeze(1)
        return self.modules.classifier(emb), lens, emb

    def compute_objectives(self, predictions, batch, stage):
        """Classification loss (:meth:`classification_loss`);
        classification error on VALID/TEST.

        Arguments
        ---------
        predictions : tuple
            Output of :meth:`compute_forward`.
        batch : PaddedBatch
            The batch.
        stage : sb.Stage
            TRAIN, VALID or TEST.

        Returns
        -------
        torch.Tensor
            The loss.
        """
        logits, lens, emb = predictions
        spkid, _ = batch.spk_id_encoded
        augment = self.hparams.wav_augment
        if stage == sb.Stage.TRAIN and augment is not None:
            spkid = augment.replicate_labels(spkid)
        loss = self.classification_loss(logits, spkid, lens, emb)
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, logits, spkid, lens)
        return loss

    def classification_loss(self, logits, labels, lens, embeddings):
        """The yaml's ``compute_cost`` (SpeechBrain's AAM-softmax).

        Arguments
        ---------
        logits : torch.Tensor
            ``[B, 1, C]`` cosine logits.
        labels : torch.Tensor
            ``[B, 1]`` class indices (replicated like the augmented batch).
        lens : torch.Tensor
            Relative lengths.
        embeddings : torch.Tensor
            ``[B, 1, D]`` embeddings (unused here).

        Returns
        -------
        torch.Tensor
            The loss.
        """
        return self.hparams.compute_cost(logits, labels, lens)

    def on_stage_start(self, stage, epoch=None):
        """Reset the classification-error tracker on VALID/TEST.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        epoch : int | None
            The epoch.
        """
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, verify on the trial list when due, checkpoint.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        stage_loss : float
            Average loss of the stage.
        epoch : int | None
            The epoch.
        """
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["ErrorRate"] = self.error_metrics.summarize("average")
        if stage == sb.Stage.VALID:
            stats.update(self.verification_stats(epoch))
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.current_lr()},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta=stats, min_keys=["ErrorRate"], num_to_keep=2
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
