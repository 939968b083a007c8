"""The speaker encoder of the pseudo-label recipe (stage 3): ECAPA-TDNN
trained on cluster ids with AAM-softmax (``s = 30, m = 0.1``, Appendix
D.5), OC-softmax or AdaFace (Appendix C).

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition". The clustering model of stage 2 is
:class:`speechbrain_ssv.brains.clustering.ClusteringBrain`.

Authors
 * speechbrain-ssv developers 2026
"""

import speechbrain as sb

from speechbrain_ssv.brains.base import unwrap
from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.utils.errors import HparamsError

__all__ = ["PseudoLabelBrain"]


class PseudoLabelBrain(SupervisedBrain):
    """Speaker-embedding training on pseudo-labels (stage 3) with the margin
    softmax chosen by ``hparams.margin_loss``.

    ``margin_loss`` names one entry of the ``margin_losses`` module (a
    ``torch.nn.ModuleDict`` in ``modules``, so AdaFace's running norm
    statistics move to the device and are checkpointed), e.g. ``aam``
    (:class:`speechbrain_ssv.lobes.margins.AAMSoftmax`, SpeechBrain's own,
    paper ``s = 30, m = 0.1``), ``ocsoftmax`` or ``adaface``. Every loss is
    called as ``loss(cosine, labels, feature_norms=norms)``, where ``norms``
    are the l2 norms of the embeddings *before* the ECAPA ``Classifier``
    normalises them (AdaFace's quality proxy; the others ignore them).

    The training manifest's ``spk_id`` column holds the pseudo-labels
    (:func:`speechbrain_ssv.clustering.pseudolabels.write_pseudolabel_csv`
    writes no true label). Without a validation set (every held-out
    utterance fell into a cluster absent from training), the checkpoint
    and the verification happen at the end of each training epoch.
    """

    def margin_loss(self):
        """The selected margin-softmax module.

        Returns
        -------
        torch.nn.Module
            Called as ``loss(cosine, labels, feature_norms=None)``.
        """
        name = getattr(self.hparams, "margin_loss", None)
        # unwrap: ``--compile`` without compile_module_keys compiles every
        # module, and a compiled ModuleDict supports neither ``in`` nor
        # indexing.
        losses = (
            unwrap(self.modules["margin_losses"])
            if "margin_losses" in self.modules
            else None
        )
        if losses is None:
            losses = getattr(self.hparams, "margin_losses", None)
        if losses is None:
            raise HparamsError(
                "margin_losses",
                "missing: expected a torch.nn.ModuleDict of margin losses "
                "(aam, ocsoftmax, adaface) in modules",
            )
        if name not in losses:
            raise HparamsError(
                "margin_loss",
                f"is {name!r}; expected one of {sorted(losses.keys())}",
            )
        return losses[name]

    def compute_forward(self, batch, stage):
        """Augment (training only), embed, classify; keep the norms.

        Arguments
        ---------
        batch : PaddedBatch
            With ``sig`` and ``spk_id_encoded``.
        stage : sb.Stage
            TRAIN, VALID or TEST.

        Returns
        -------
        tuple
            (cosine ``[B, 1, C]``, relative lengths, embedding norms ``[B]``).
        """
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        augment = getattr(self.hparams, "wav_augment", None)
        if stage == sb.Stage.TRAIN and augment is not None:
            wavs, lens = augment(wavs, lens)
        emb = self.encode(wavs, lens)
        norms = emb.norm(dim=-1)
        return self.modules.classifier(emb.unsqueeze(1)), lens, norms

    def compute_objectives(self, predictions, batch, stage):
        """Margin-softmax loss on the pseudo-labels; classification error
        on VALID/TEST.

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
        cosine, lens, norms = predictions
        labels, _ = batch.spk_id_encoded
        augment = getattr(self.hparams, "wav_augment", None)
        if stage == sb.Stage.TRAIN and augment is not None:
            labels = augment.replicate_labels(labels)
        loss = self.margin_loss()(cosine, labels, feature_norms=norms)
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, cosine, labels, lens)
        return loss

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """As :meth:`speechbrain.Brain.fit`; remembers whether a validation
        set exists (it decides where checkpoints are saved).

        Arguments
        ---------
        epoch_counter : iterable
            The epoch counter.
        train_set : Dataset | DataLoader
            Training data.
        valid_set : Dataset | DataLoader | None
            Validation data.
        **kwargs
            Passed on.
        """
        self._has_valid = valid_set is not None
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """As :class:`SupervisedBrain`, plus the no-validation-set case.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        stage_loss : float
            Average loss.
        epoch : int | None
            The epoch.
        """
        if stage == sb.Stage.TRAIN and not getattr(self, "_has_valid", True):
            stats = self.verification_stats(epoch)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.current_lr()},
                train_stats={"loss": stage_loss, **stats},
            )
            self.checkpointer.save_and_keep_only(
                meta={"loss": stage_loss, **stats}, num_to_keep=1
            )
            return
        super().on_stage_end(stage, stage_loss, epoch)
