"""The multi-objective clustering model of the pseudo-label recipe
(stage 2): its Brain, its training set, and the warm start.

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition". :class:`ClusteringBrain` trains the
``d-S-S-C`` MLP of Appendix D.5 on a fixed matrix of utterance
representations (i-vectors) with ``L_total = L_IMSAT + L_Mixup + L_SupCon``
(Eq. 1) and, for the ablation rows of Table 1, VICReg, InfoNCE and ``L_aug``;
The ECAPA-TDNN trained on the resulting labels is
:class:`speechbrain_ssv.brains.pseudolabel.PseudoLabelBrain`.

Authors
 * speechbrain-ssv developers 2026
"""

import json
import logging
import os

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process

from speechbrain_ssv.brains.base import LRAnnealingMixin, unwrap
from speechbrain_ssv.clustering.metrics import (
    clustering_report,
    plot_metrics_over_epochs,
)
from speechbrain_ssv.lobes.clustering import ClusteringMLP
from speechbrain_ssv.losses.clustering import (
    augmentation_consistency_loss,
    imsat_loss,
    knn_radius,
    mixup_inputs,
    mixup_kl,
    vat_loss,
)
from speechbrain_ssv.losses.contrastive import (
    info_nce_loss,
    supcon_loss,
    supcon_loss_low_rank,
    vicreg_loss,
)
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.io import write_json

logger = logging.getLogger(__name__)

__all__ = [
    "REQUIRED_HPARAMS",
    "ClusteringBrain",
    "clustering_dataset",
    "fit_to_assignment",
    "vat_radii",
]

#: Settings :class:`ClusteringBrain` reads from its hparams. There are no
#: code defaults: the recipe yamls set every one (their comments say what
#: each does and where the value comes from). ``history_file``,
#: ``plot_file`` and ``train_logger`` may be ``None`` (nothing written);
#: ``lr_annealing`` is the schedule
#: (:class:`~speechbrain_ssv.brains.base.LRAnnealingMixin`).
REQUIRED_HPARAMS = (
    "imsat_weight", "mixup_weight", "supcon_weight", "vicreg_weight",
    "infonce_weight", "aug_weight", "imsat_lam", "imsat_mu", "vat_weight",
    "vat_xi", "vat_power_iterations", "mixup_alpha", "mixup_logits",
    "supcon_temperature", "supcon_base_temperature", "supcon_max_samples",
    "supcon_low_rank", "vicreg_sim_weight", "vicreg_var_weight",
    "vicreg_cov_weight", "infonce_temperature", "aug_noise_std",
    "lr_annealing", "eval_every", "eval_ami", "ckpt_every",
    "predict_batch_size", "separate_backward", "history_file", "plot_file",
    "train_logger", "seed", "epoch_counter",
)  # fmt: skip


def vat_radii(features, k=10, scale=0.25, reference_size=10000, seed=0):
    """Per-sample VAT radii ``eps_i = scale * d_k(x_i)`` (IMSAT's adaptive
    radius, :func:`speechbrain_ssv.losses.clustering.knn_radius`), tractable
    at a million points.

    Up to ``reference_size`` points the exact ``k``-th neighbour distance
    is used. Above, neighbours are searched in a random reference subset of
    ``M = reference_size`` points, and the rank is scaled to
    ``k' = max(1, round(k M / N))`` so that ``d_k'`` in the subset
    estimates ``d_k`` in the full set (the ``k``-th of ``N`` uniformly
    spread neighbours is about the ``k M / N``-th of ``M``); below
    ``k' = 1`` the radius is that of the ``N / M``-th neighbour, larger
    than IMSAT's. Points of the subset skip themselves. Cost
    ``N x M x D`` (``1M x 10k x 400``: minutes on CPU, seconds on a GPU).

    Arguments
    ---------
    features : torch.Tensor
        ``[N, D]``.
    k : int
        Neighbour rank (IMSAT: 10).
    scale : float
        Multiplier (IMSAT: 0.25).
    reference_size : int
        Size of the reference subset.
    seed : int
        Seed of the subset.

    Returns
    -------
    torch.Tensor
        ``[N]`` radii, on ``features``' device.

    Example
    -------
    >>> x = torch.tensor([[0.0], [1.0], [3.0]])
    >>> vat_radii(x, k=1, scale=1.0)
    tensor([1., 1., 2.])
    """
    n = features.shape[0]
    if n <= reference_size:
        return knn_radius(features, k=min(k, n - 1), scale=scale)
    g = torch.Generator().manual_seed(seed)
    ref_idx = torch.randperm(n, generator=g)[:reference_size].to(
        features.device
    )
    k_ref = max(1, round(k * reference_size / n))
    ref = features[ref_idx]
    radii = knn_radius(features, k=k_ref, scale=scale, reference=ref)
    # The subset's own points found themselves at distance 0.
    radii[ref_idx] = knn_radius(ref, k=k_ref, scale=scale)
    return radii


def clustering_dataset(features, radii, aug_features=None):
    """The training set of :class:`ClusteringBrain`: ``(x, eps[, x_aug])``
    rows.

    Arguments
    ---------
    features : torch.Tensor
        ``[N, D]`` inputs (l2-normalised, as the paper does).
    radii : torch.Tensor | float
        ``[N]`` VAT radii (:func:`vat_radii`) or one radius for all.
    aug_features : torch.Tensor | None
        ``[N, D]`` representations of augmented audio (a second view for
        InfoNCE, VICReg's invariance term and ``L_aug``).

    Returns
    -------
    torch.utils.data.TensorDataset
        Rows ``(x, eps)`` or ``(x, eps, x_aug)``.

    Example
    -------
    >>> ds = clustering_dataset(torch.randn(5, 3), 0.5)
    >>> len(ds), ds[0][1]
    (5, tensor(0.5000))
    """
    features = torch.as_tensor(features, dtype=torch.float32)
    radii = torch.as_tensor(radii, dtype=torch.float32)
    if radii.dim() == 0:
        radii = radii.expand(features.shape[0]).contiguous()
    if radii.shape != (features.shape[0],):
        raise ValueError(
            f"radii must be a scalar or [{features.shape[0]}]; got "
            f"{tuple(radii.shape)}"
        )
    tensors = [features, radii]
    if aug_features is not None:
        aug = torch.as_tensor(aug_features, dtype=torch.float32)
        if aug.shape != features.shape:
            raise ValueError(
                f"aug_features has shape {tuple(aug.shape)}, expected "
                f"{tuple(features.shape)} (one augmented view per row)"
            )
        tensors.append(aug)
    return torch.utils.data.TensorDataset(*tensors)


class ClusteringBrain(LRAnnealingMixin, sb.Brain):
    """Trains :class:`speechbrain_ssv.lobes.clustering.ClusteringMLP` on a
    fixed feature matrix with the multi-objective loss of Eq. 1.

    Per batch, with ``z = f(x)`` the logits and ``p = softmax(z)``::

        L = w_imsat [w_vat R_SAT(VAT) + lam (H(Y|X) - mu H(Y))]     (Eq. 2)
          + w_mixup L_Mixup(x; alpha)                               (Eq. 3)
          + w_supcon SupCon(normalise(z), argmax p)                 (App. F)
          + w_vicreg VICReg(z[, z_aug]) + w_infonce InfoNCE(z, z_aug)
          + w_aug KL(p_aug || p)                                    (Eq. 4)

    ``H(Y)`` is evaluated at the running marginal (module ``marginal``, a
    :class:`speechbrain_ssv.lobes.clustering.RunningMarginal` updated with
    every training batch), so it balances clusters over the data set even
    when ``C`` approaches the batch size. SupCon uses the online
    pseudo-labels ``argmax p`` of the current batch (detached) as labels
    and the logits as features, as the paper does. ``L_Mixup`` goes through
    the clean forward: one train-mode forward of ``cat([x, x_mix])``
    gives both the target (its clean half, detached) and the prediction
    (its mixed half), so both are normalised with the same BatchNorm
    statistics, and the running averages are those of the joint batch.
    The extra forwards (VAT, second views) use batch statistics without
    updating the running averages (IMSAT's reference does so for VAT).

    Learning rate: ``lr_annealing``, applied by
    :class:`~speechbrain_ssv.brains.base.LRAnnealingMixin`; the recipes'
    ``EpochDecayScheduler`` on the epoch clock gives epoch ``e`` the rate
    ``lr * gamma ** (e - 1)`` (momentum SGD, paper ``lr = 0.01``, decay
    ``0.996``), a pure function of the epoch, so a resumed run continues
    the schedule. The random draws
    of VAT and mixup come from a generator seeded with ``(seed,
    optimizer_step)`` and the batches from SpeechBrain's per-epoch seeded
    sampler: a run resumed from an end-of-epoch checkpoint continues
    exactly as an uninterrupted one.

    Every ``eval_every`` epochs all ``eval_features`` are assigned
    (chunked) and, when ``true_labels`` are given, the clustering metrics
    (:func:`speechbrain_ssv.clustering.metrics.clustering_report`) are
    appended to the ``history_file`` JSON, plotted (Fig. 3) into
    ``plot_file`` after the last epoch. True labels only ever reach these
    metrics, never the loss.

    Modules: ``model`` (the MLP), ``marginal`` (the running marginal).
    Hparams: the keys of :data:`REQUIRED_HPARAMS` (all of them: a missing
    one is one error naming it). The checkpointer should hold ``model``,
    ``marginal`` and ``counter`` (Brain adds the optimizer and its own step
    counters). One process trains (the auxiliary forwards run on the bare
    module, which DDP could not synchronise): under ``torchrun`` run it on
    the main process only, as the recipe does with ``run_on_main``.

    Arguments
    ---------
    *args, **kwargs
        As :class:`speechbrain.Brain`.
    eval_features : torch.Tensor | None
        ``[N, D]`` points assigned for the per-epoch report (normally the
        training features).
    true_labels : sequence | None
        ``[N]`` true classes of ``eval_features`` (metrics only).

    Example
    -------
    >>> from speechbrain_ssv.lobes.clustering import ClusteringMLP, RunningMarginal
    >>> from speechbrain.utils.epoch_loop import EpochCounter
    >>> from speechbrain_ssv.utils.schedulers import EpochDecayScheduler
    >>> x = torch.nn.functional.normalize(torch.randn(64, 8), dim=1)
    >>> hp = dict(  # the paper's settings (the recipe yamls explain each)
    ...     imsat_weight=1.0, mixup_weight=1.0, supcon_weight=1.0,
    ...     vicreg_weight=0.0, infonce_weight=0.0, aug_weight=0.0,
    ...     imsat_lam=0.5, imsat_mu=3.5, vat_weight=1.0, vat_xi=1e-2,
    ...     vat_power_iterations=1, mixup_alpha=1.0, mixup_logits=True,
    ...     supcon_temperature=1.0, supcon_base_temperature=1.0,
    ...     supcon_max_samples=None, supcon_low_rank=True,
    ...     vicreg_sim_weight=1.0, vicreg_var_weight=1.0, vicreg_cov_weight=0.5,
    ...     infonce_temperature=1.0, aug_noise_std=0.05,
    ...     lr_annealing=EpochDecayScheduler(0.01, 0.996, steps_per_epoch=None),
    ...     eval_every=1, eval_ami=True, ckpt_every=1, predict_batch_size=8192,
    ...     separate_backward=True, history_file=None, plot_file=None,
    ...     train_logger=None, seed=0, epoch_counter=EpochCounter(2),
    ... )
    >>> brain = ClusteringBrain(
    ...     modules={"model": ClusteringMLP(8, 4, 16), "marginal": RunningMarginal(4)},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    ...     hparams=hp,
    ...     run_opts={"noprogressbar": True},
    ...     eval_features=x,
    ... )
    >>> brain.fit(brain.hparams.epoch_counter, clustering_dataset(x, 0.1),
    ...           train_loader_kwargs={"batch_size": 32, "shuffle": True})
    >>> [h["epoch"] for h in brain.history]
    [1, 2]
    >>> brain.optimizer.param_groups[0]["lr"] == 0.01 * 0.996
    True
    """

    def __init__(self, *args, eval_features=None, true_labels=None, **kwargs):
        super().__init__(*args, **kwargs)
        missing = [k for k in REQUIRED_HPARAMS if not hasattr(self.hparams, k)]
        if missing:
            raise HparamsError(
                "clustering_hparams",
                f"lacks {missing}: ClusteringBrain has no code defaults "
                "(see the pseudo-label recipe yamls for every setting)",
            )
        # One process trains (under torchrun the recipe runs this Brain on
        # the main process only, run_on_main): no DDP wrapping, no sharded
        # sampler, and no collective call the other ranks would not join.
        self.distributed_launch = False
        self.eval_features = eval_features
        self.true_labels = true_labels
        if true_labels is not None and eval_features is not None:
            if len(true_labels) != eval_features.shape[0]:
                raise ValueError(
                    f"true_labels has {len(true_labels)} entries but "
                    f"eval_features {eval_features.shape[0]} rows"
                )
        self.history = []
        self._term_sums = {}
        self._n_batches = 0
        self._eval_assignment = None

    def _generator(self):
        g = torch.Generator()
        g.manual_seed(int(self.hparams.seed) * 1_000_003 + self.optimizer_step)
        return g

    # -- forward and loss ----------------------------------------------

    def compute_forward(self, batch, stage):
        """Logits of the clean inputs and, with ``L_Mixup``, of the mixed
        ones, from one forward of ``cat([x, x_mix])``.

        One forward, so that BatchNorm normalises the clean rows (the
        mixup target) and the mixed rows (the prediction) with the same
        batch statistics: with two train-mode forwards each half would be
        normalised by its own statistics, and ``L_Mixup`` would penalise
        that difference rather than non-linearity between samples.

        Arguments
        ---------
        batch : tuple
            ``(x [B, D], eps [B][, x_aug [B, D]])``.
        stage : sb.Stage
            TRAIN (the only stage this Brain runs).

        Returns
        -------
        dict
            ``x``, ``eps``, ``x_aug`` (or ``None``), ``logits`` (clean,
            ``[B, C]``), ``hidden`` (clean, or ``None``), ``generator``
            (this step's random source, for VAT and the other terms) and,
            with ``L_Mixup``, ``x_mix``, ``mix_lam``, ``mix_partner`` and
            ``mixed_logits``.
        """
        x, eps, *rest = (t.to(self.device) for t in batch)
        gen = self._generator()
        out = {"x": x, "eps": eps, "x_aug": rest[0] if rest else None}
        out["generator"] = gen
        inputs = x
        if self.hparams.mixup_weight:
            x_mix, lam, partner = mixup_inputs(
                x, self.hparams.mixup_alpha, generator=gen
            )
            out.update(x_mix=x_mix, mix_lam=lam, mix_partner=partner)
            inputs = torch.cat([x, x_mix])
        n = x.shape[0]
        hidden = None
        if self._low_rank_supcon():
            logits, hidden = self.modules.model(inputs, return_hidden=True)
            hidden = hidden[:n]
        else:
            logits = self.modules.model(inputs)
        if inputs is not x:
            out["mixed_logits"] = logits[n:]
        out["logits"], out["hidden"] = logits[:n], hidden
        return out

    def _low_rank_supcon(self):
        model = unwrap(self.modules.model)
        return (
            bool(self.hparams.supcon_weight)
            and bool(self.hparams.supcon_low_rank)
            and isinstance(model, ClusteringMLP)
            and model.n_clusters > model.output.in_features + 1
        )

    def _update_marginal(self, probs):
        rm = self.modules.marginal
        dist = torch.distributed
        if not (
            dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            return rm.update(probs)
        # RunningMarginal.update all-reduces the batch marginal when a
        # process group exists; here only this process trains, so the same
        # update is done locally (an all-reduce would wait for the others).
        with torch.no_grad():
            batch = probs.detach().to(rm.accumulator).mean(dim=0)
            rm.accumulator.mul_(rm.momentum).add_(batch, alpha=1 - rm.momentum)
            rm.n_updates += 1
        return rm.marginal

    def _second_view(self, x, x_aug, generator):
        if x_aug is not None:
            return x_aug
        # No augmented representations: a small isotropic perturbation on
        # the unit sphere stands in for the audio augmentations of the
        # paper (Appendix F). Document the substitution when reporting.
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return F.normalize(
            x + self.hparams.aug_noise_std * noise.to(x.device), dim=1
        )

    def compute_objectives(self, predictions, batch, stage):
        """The weighted sum of the selected terms (class docstring).

        Arguments
        ---------
        predictions : dict
            Output of :meth:`compute_forward`.
        batch : tuple
            The batch.
        stage : sb.Stage
            TRAIN.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        model = unwrap(self.modules.model)
        x, eps, logits = (
            predictions["x"],
            predictions["eps"],
            predictions["logits"],
        )
        probs = F.softmax(logits, dim=1)
        gen = predictions["generator"]

        def aux(inputs):
            """A forward pass that leaves the BatchNorm running statistics alone."""
            with model.frozen_bn_stats():
                return model(inputs)

        terms = {}
        loss = logits.new_zeros(())
        detached = logits.new_zeros(())

        def own_graph(term):
            # A term whose graph does not involve the clean forward: either
            # back-propagate it now (its activations are freed at once) and
            # only add its value to the returned loss, or keep it.
            """Back-propagate a term now (under ``separate_backward``) or keep it in the loss."""
            nonlocal detached
            if (
                self.hparams.separate_backward
                and stage == sb.Stage.TRAIN
                and torch.is_grad_enabled()
                and term.requires_grad
            ):
                scaled = self.scaler.scale(term / self.grad_accumulation_factor)
                scaled.backward()
                detached = detached + term.detach()
                return None
            return term

        w = self.hparams.imsat_weight
        if w:
            marginal = self._update_marginal(probs)
            r_sat = None
            if self.hparams.vat_weight:
                r_sat = self.hparams.vat_weight * vat_loss(
                    aux,
                    x,
                    eps,
                    xi=self.hparams.vat_xi,
                    n_power=self.hparams.vat_power_iterations,
                    logits=logits,
                    generator=gen,
                )
                terms["vat"] = r_sat.detach()
                kept = own_graph(w * r_sat)
                r_sat = None if kept is None else kept / w
            out = imsat_loss(
                probs,
                marginal=marginal,
                lam=self.hparams.imsat_lam,
                mu=self.hparams.imsat_mu,
                r_sat=r_sat,
            )
            loss = loss + w * out["loss"]
            terms["imsat"] = out["loss"].detach() + (
                terms.get("vat", 0.0) if r_sat is None else 0.0
            )
            terms["cond_entropy"] = out["cond_entropy"]
            terms["marginal_entropy"] = out["marginal_entropy"]
        w = self.hparams.mixup_weight
        if w:
            # Shares the clean forward's graph (compute_forward): no
            # separate backward.
            term = mixup_kl(
                logits,
                predictions["mixed_logits"],
                predictions["mix_lam"],
                predictions["mix_partner"],
                mix_logits=self.hparams.mixup_logits,
            )
            terms["mixup"] = term.detach()
            loss = loss + w * term
        w = self.hparams.supcon_weight
        if w:
            hidden = predictions.get("hidden")
            feats = logits if hidden is None else hidden
            labels = logits.detach().argmax(dim=1)
            cap = self.hparams.supcon_max_samples
            if cap and feats.shape[0] > cap:
                keep = torch.randperm(feats.shape[0], generator=gen)[:cap]
                keep = keep.to(feats.device)
                feats, labels = feats[keep], labels[keep]
            temps = {
                "temperature": self.hparams.supcon_temperature,
                "base_temperature": self.hparams.supcon_base_temperature,
            }
            if hidden is None:
                term = supcon_loss(feats, labels, **temps)
            else:
                term = supcon_loss_low_rank(
                    feats, model.output.weight, model.output.bias, labels,
                    **temps,
                )  # fmt: skip
            loss = loss + w * term
            terms["supcon"] = term.detach()
        needs_view = self.hparams.infonce_weight or self.hparams.aug_weight
        has_view = predictions["x_aug"] is not None
        logits_aug = None
        if needs_view or (self.hparams.vicreg_weight and has_view):
            x_aug = self._second_view(x, predictions["x_aug"], gen)
            logits_aug = aux(x_aug)
        w = self.hparams.vicreg_weight
        if w:
            out = vicreg_loss(
                logits,
                logits_aug,
                sim_weight=self.hparams.vicreg_sim_weight,
                var_weight=self.hparams.vicreg_var_weight,
                cov_weight=self.hparams.vicreg_cov_weight,
            )
            loss = loss + w * out["loss"]
            terms["vicreg"] = out["loss"].detach()
        w = self.hparams.infonce_weight
        if w:
            term = info_nce_loss(
                logits, logits_aug, temperature=self.hparams.infonce_temperature
            )
            loss = loss + w * term
            terms["infonce"] = term.detach()
        w = self.hparams.aug_weight
        if w:
            term = augmentation_consistency_loss(logits_aug, logits)
            loss = loss + w * term
            terms["aug"] = term.detach()
        terms["batch_clusters"] = torch.tensor(
            float(torch.unique(logits.detach().argmax(dim=1)).numel())
        )
        for k, v in terms.items():
            self._term_sums[k] = self._term_sums.get(k, 0.0) + float(v)
        self._n_batches += 1
        if not loss.requires_grad:
            # Every term was back-propagated already (e.g. L_Mixup alone):
            # Brain still calls backward() on what is returned.
            loss = loss + 0.0 * logits.sum()
        # The value is the total; the gradient only that of the terms not
        # back-propagated already.
        return loss + detached

    # -- epochs --------------------------------------------------------

    def on_fit_start(self):
        """Recover the latest checkpoint and the history of the epochs it
        covers (later entries belong to a run killed after it)."""
        super().on_fit_start()
        path = self.hparams.history_file
        done = self.hparams.epoch_counter.current
        self.history = []
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            self.history = [h for h in saved if h.get("epoch", 0) <= done]

    def on_stage_start(self, stage, epoch=None):
        """Reset the term averages (the learning rate is set by
        :class:`~speechbrain_ssv.brains.base.LRAnnealingMixin`).

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        epoch : int | None
            The epoch (1-based).
        """
        self._term_sums, self._n_batches = {}, 0

    def predict(self, features=None):
        """Cluster of every row, in chunks, with the current model.

        The assignment of ``eval_features`` is kept until the next optimizer
        step, so the final report and the caller's labels share one pass.

        Arguments
        ---------
        features : torch.Tensor | None
            ``[N, D]`` (default: ``eval_features``).

        Returns
        -------
        torch.Tensor
            ``[N]`` long, on the CPU.
        """
        own = features is None
        features = self.eval_features if own else features
        if features is None:
            raise ValueError("predict needs features (no eval_features set)")
        cached = self._eval_assignment
        if own and cached is not None and cached[0] == self.optimizer_step:
            # The end-of-epoch report assigned eval_features with these
            # very weights: at a million points a second pass would cost
            # minutes for the same labels.
            return cached[1].clone()
        model = unwrap(self.modules.model)
        pred = model.predict(
            torch.as_tensor(features),
            batch_size=self.hparams.predict_batch_size,
        ).cpu()
        if own:
            self._eval_assignment = (self.optimizer_step, pred.clone())
        return pred

    def epoch_report(self, epoch):
        """Metrics of the current assignment of ``eval_features``.

        Arguments
        ---------
        epoch : int
            Recorded in the report.

        Returns
        -------
        dict
            ``epoch``, ``clusters_used`` and, with true labels, the
            supervised metrics of
            :func:`speechbrain_ssv.clustering.metrics.clustering_report`.
        """
        pred = self.predict().numpy()
        if self.true_labels is not None:
            report = clustering_report(
                self.true_labels, pred, ami=bool(self.hparams.eval_ami)
            )
        else:
            report = {"clusters_used": int(len(set(pred.tolist())))}
        return {"epoch": int(epoch), **report}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the term averages, evaluate and checkpoint when due.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        stage_loss : float
            Average loss.
        epoch : int | None
            The epoch.
        """
        if stage != sb.Stage.TRAIN:
            return
        n = max(self._n_batches, 1)
        stats = {"loss": stage_loss}
        stats.update({k: v / n for k, v in self._term_sums.items()})
        last = epoch == self.hparams.epoch_counter.limit
        if self.eval_features is not None and (
            last or epoch % max(1, int(self.hparams.eval_every)) == 0
        ):
            report = self.epoch_report(epoch)
            self.history.append(report)
            for key in ("acc", "nmi", "ari", "clusters_used"):
                if report.get(key) is not None:
                    stats[key] = report[key]
            self._write_history(plot=last)
        if self.hparams.train_logger is not None:
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "clustering epoch": epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                },
                train_stats=stats,
            )
        if self.checkpointer is not None and (
            last or epoch % max(1, int(self.hparams.ckpt_every)) == 0
        ):
            self.checkpointer.save_and_keep_only(
                meta={"epoch": epoch, "loss": stage_loss}, num_to_keep=1
            )

    def _write_history(self, plot=True):
        # The JSON after every evaluation (a killed run keeps it); the
        # figure, which costs about a second, after the last epoch.
        if not if_main_process():
            return
        path = self.hparams.history_file
        if path:
            write_json(path, self.history)
        plot = self.hparams.plot_file if plot else None
        if plot and self.history:
            wanted = ("acc", "ami", "nmi", "clusters_used")
            metrics = [m for m in wanted if self.history[-1].get(m) is not None]
            plot_metrics_over_epochs(
                self.history,
                plot,
                metrics=metrics,
                title="Clustering metrics over epochs (Fig. 3)",
            )


def fit_to_assignment(model, x, labels, epochs, lr, batch_size, seed, device):
    """Warm start: fit a clustering model to a given assignment of ``x``
    (cross-entropy, momentum SGD 0.9, ``epochs`` passes of shuffled
    mini-batches), so that the multi-objective training starts from that
    clustering instead of from random weights. Not in the paper: a
    documented deviation of the recipe (its README has the measurements).

    Arguments
    ---------
    model : torch.nn.Module
        ``[B, D] -> [B, C]`` logits (trained in place).
    x : torch.Tensor
        ``[N, D]`` scaled features.
    labels : array-like
        ``[N]`` cluster ids in ``0..C-1`` (e.g. k-means').
    epochs : int
        Passes over ``x``.
    lr : float
        Learning rate.
    batch_size : int
        Mini-batch size.
    seed : int
        Seed of the shuffling.
    device : str
        Where the model trains.

    Example
    -------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> x = torch.cat([torch.randn(20, 2) + 4, torch.randn(20, 2) - 4])
    >>> y = [0] * 20 + [1] * 20
    >>> model = ClusteringMLP(2, 2, 8)
    >>> fit_to_assignment(model, x, y, epochs=20, lr=0.1, batch_size=8, seed=0, device="cpu")
    >>> (model.eval()(x).argmax(1) == torch.tensor(y)).float().mean().item()
    1.0
    """
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    for _ in range(int(epochs)):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            logits = model(x[idx].to(device))
            loss = F.cross_entropy(logits, y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    logger.info(
        "warm start: %d passes on an assignment of %d clusters",
        int(epochs), int(torch.unique(y).numel()),
    )  # fmt: skip
