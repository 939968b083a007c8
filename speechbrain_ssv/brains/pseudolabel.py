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

from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.utils.errors import HparamsError

__all__ = ["PseudoLabelBrain"]


class PseudoLabelBrain(SupervisedBrain):
    """Speaker-embedding training on pseudo-labels (stage 3) with the margin
    softmax of the yaml's ``margin_loss``.

    Forward and objectives are :class:`SupervisedBrain`'s; only the loss
    differs. ``margin_loss`` is one module in ``modules`` (so AdaFace's
    running norm statistics move to the device and are checkpointed), e.g.
    :class:`speechbrain_ssv.lobes.margins.AAMSoftmax` (SpeechBrain's own,
    paper ``s = 30, m = 0.1``), ``OCSoftmax`` or ``AdaFace``. It is called
    as ``loss(cosine, labels, feature_norms=norms)``, where ``norms`` are
    the l2 norms of the embeddings *before* the ECAPA ``Classifier``
    normalises them (AdaFace's quality proxy; the others ignore them).

    The training manifest's ``spk_id`` column holds the pseudo-labels
    (:func:`speechbrain_ssv.clustering.pseudolabels.write_pseudolabel_csv`
    writes no true label). Without a validation set (every held-out
    utterance fell into a cluster absent from training), the checkpoint
    and the verification happen at the end of each training epoch.

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
    >>> PseudoLabelBrain(modules=modules, hparams={"wav_augment": None})
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: modules: margin_loss: missing: ...
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "margin_loss" not in self.modules:
            raise HparamsError(
                "modules: margin_loss",
                "missing: expected the yaml's margin_loss (e.g. "
                "!new:speechbrain_ssv.lobes.margins.AAMSoftmax) in modules",
            )

    def classification_loss(self, logits, labels, lens, embeddings):
        """The margin softmax on the pseudo-labels, with the embedding norms.

        Arguments
        ---------
        logits : torch.Tensor
            ``[B, 1, C]`` cosines.
        labels : torch.Tensor
            ``[B, 1]`` pseudo-labels.
        lens : torch.Tensor
            Relative lengths (unused).
        embeddings : torch.Tensor
            ``[B, 1, D]`` embeddings before the classifier's normalisation.

        Returns
        -------
        torch.Tensor
            The loss.
        """
        norms = embeddings.squeeze(1).norm(dim=-1)
        return self.modules.margin_loss(logits, labels, feature_norms=norms)

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
