"""Brains of the pseudo-label recipe: the multi-objective clustering model
(stage 2) and the speaker encoder trained on its pseudo-labels (stage 3).

Paper: Fathan, Zhu and Alam, "An efficient clustering algorithm for
self-supervised speaker recognition". :class:`ClusteringBrain` trains the
``d-S-S-C`` MLP of Appendix D.5 on a fixed matrix of utterance
representations (i-vectors) with ``L_total = L_IMSAT + L_Mixup + L_SupCon``
(Eq. 1) and, for the ablation rows of Table 1, VICReg, InfoNCE and ``L_aug``;
:class:`PseudoLabelBrain` trains ECAPA-TDNN on the resulting labels with
AAM-softmax (``s = 30, m = 0.1``, Appendix D.5), OC-softmax or AdaFace
(Appendix C).

Authors
 * speechbrain-ssv developers 2026
"""

import json
import logging
import os

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process

from speechbrain_ssv.brains.base import unwrap
from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.clustering.metrics import (
    clustering_report,
    plot_metrics_over_epochs,
)
from speechbrain_ssv.lobes.clustering import ClusteringMLP
from speechbrain_ssv.losses.clustering import (
    augmentation_consistency_loss,
    imsat_loss,
    info_nce_loss,
    knn_radius,
    mixup_inputs,
    mixup_kl,
    supcon_loss,
    supcon_loss_low_rank,
    vat_loss,
    vicreg_loss,
)
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.io import write_json

logger = logging.getLogger(__name__)

__all__ = [
    "CLUSTERING_DEFAULTS",
    "CLUSTERING_REQUIRED",
    "ClusteringBrain",
    "PseudoLabelBrain",
    "clustering_dataset",
    "vat_radii",
]

#: Settings :class:`ClusteringBrain` reads from its hparams, with their
#: defaults: the paper's where it gives them (Appendix D.5, F), else the
#: reference code of the method the term comes from (see
#: :mod:`speechbrain_ssv.losses.clustering`).
CLUSTERING_DEFAULTS = {
    # Weights of the terms of Eq. 1 and of the Table 1 ablation terms;
    # 0 removes a term (and its extra forward passes).
    "imsat_weight": 1.0,
    "mixup_weight": 1.0,
    "supcon_weight": 1.0,
    "vicreg_weight": 0.0,
    "infonce_weight": 0.0,
    "aug_weight": 0.0,
    # L_IMSAT (Eq. 2): lambda, mu (paper 0.5, 3.5) and the VAT term.
    "imsat_lam": 0.5,
    "imsat_mu": 3.5,
    "vat_weight": 1.0,
    "vat_power_iterations": 1,
    # L_Mixup (Eq. 3): Beta(alpha, alpha), paper alpha = 1; VMT mixes logits.
    "mixup_alpha": 1.0,
    "mixup_logits": True,
    # L_SupCon on l2-normalised logits (paper tau = tau_b = 1). With a
    # batch of 10240 the similarity matrix is 10240^2; supcon_max_samples
    # caps the anchors (a random subset of the batch) when memory is short.
    "supcon_temperature": 1.0,
    "supcon_base_temperature": 1.0,
    "supcon_max_samples": None,
    # With a ClusteringMLP of more clusters than hidden units + 1, compute
    # SupCon's similarities through the output layer's (S+1)^2 Gram
    # (supcon_loss_low_rank: same value and gradients, ~C/S times fewer
    # multiply-adds; 8x at the bench's C = 10000, S = 1200).
    "supcon_low_rank": True,
    # VICReg weights (paper lambda = 1, mu = 1, nu = 0.5), InfoNCE tau = 1.
    "vicreg_sim_weight": 1.0,
    "vicreg_var_weight": 1.0,
    "vicreg_cov_weight": 0.5,
    "infonce_temperature": 1.0,
    # Second view for the augmentation-based terms when the dataset holds
    # none: Gaussian noise of this standard deviation in input space,
    # then l2 renormalisation (see _second_view).
    "aug_noise_std": 0.05,
    # Optimisation: momentum SGD (built by the opt_class), exponential
    # decay of the learning rate per epoch (paper 0.01 and 0.996).
    "lr": 0.01,
    "lr_decay": 0.996,
    # Metrics / checkpoints every N epochs (and always after the last one).
    "eval_every": 1,
    "eval_ami": True,
    "ckpt_every": 1,
    "predict_batch_size": 8192,
    # Back-propagate the terms with their own forward pass (VAT, second
    # views) as soon as they are computed, so only one graph of
    # activations is alive at a time (gradients add up: same update).
    "separate_backward": True,
    "history_file": None,
    "plot_file": None,
    "seed": 0,
}


#: Settings :class:`ClusteringBrain` reads from its hparams with no default
#: (the recipe yamls set them): ``vat_xi``, the finite-difference step of
#: VAT's power iteration. VAT's 1e-6 is lost to float32 rounding on
#: unit-norm inputs (the direction agrees with a float64 one at median
#: cosine 0.93); 1e-2 keeps it (> 0.99): see the recipe README.
CLUSTERING_REQUIRED = ("vat_xi",)


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


class ClusteringBrain(sb.Brain):
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

    Learning rate: ``lr * lr_decay ** (epoch - 1)`` in epoch ``epoch``
    (momentum SGD, paper ``lr = 0.01``, decay ``0.996``), a pure function
    of the epoch, so a resumed run continues the schedule. The random draws
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
    Hparams: ``epoch_counter``, optional ``train_logger``, the keys of
    :data:`CLUSTERING_REQUIRED` and those of :data:`CLUSTERING_DEFAULTS`. The checkpointer should hold ``model``,
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
    >>> x = torch.nn.functional.normalize(torch.randn(64, 8), dim=1)
    >>> brain = ClusteringBrain(
    ...     modules={"model": ClusteringMLP(8, 4, 16), "marginal": RunningMarginal(4)},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    ...     hparams={"epoch_counter": EpochCounter(2), "vat_xi": 1e-2},
    ...     run_opts={"noprogressbar": True},
    ...     eval_features=x,
    ... )
    >>> brain.fit(brain.hparams.epoch_counter, clustering_dataset(x, 0.1),
    ...           train_loader_kwargs={"batch_size": 32, "shuffle": True})
    >>> [h["epoch"] for h in brain.history]
    [1, 2]
    """

    def __init__(self, *args, eval_features=None, true_labels=None, **kwargs):
        super().__init__(*args, **kwargs)
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

    # -- settings ------------------------------------------------------

    def hp(self, name):
        """Value of a clustering setting: the hparams' or the default
        (the keys of :data:`CLUSTERING_REQUIRED` have none).

        Arguments
        ---------
        name : str
            A key of :data:`CLUSTERING_DEFAULTS` or
            :data:`CLUSTERING_REQUIRED`.

        Returns
        -------
        object
            The value.
        """
        if name in CLUSTERING_REQUIRED:
            if not hasattr(self.hparams, name):
                raise HparamsError(
                    name,
                    "missing: ClusteringBrain has no default for it (set it "
                    "in the yaml's clustering_hparams, e.g. vat_xi: 0.01)",
                )
            return getattr(self.hparams, name)
        if name not in CLUSTERING_DEFAULTS:
            raise KeyError(f"unknown clustering setting {name!r}")
        return getattr(self.hparams, name, CLUSTERING_DEFAULTS[name])

    def _generator(self):
        g = torch.Generator()
        g.manual_seed(int(self.hp("seed")) * 1_000_003 + self.optimizer_step)
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
        if self.hp("mixup_weight"):
            x_mix, lam, partner = mixup_inputs(
                x, self.hp("mixup_alpha"), generator=gen
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
            bool(self.hp("supcon_weight"))
            and bool(self.hp("supcon_low_rank"))
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
            x + self.hp("aug_noise_std") * noise.to(x.device), dim=1
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
                self.hp("separate_backward")
                and stage == sb.Stage.TRAIN
                and torch.is_grad_enabled()
                and term.requires_grad
            ):
                scaled = self.scaler.scale(term / self.grad_accumulation_factor)
                scaled.backward()
                detached = detached + term.detach()
                return None
            return term

        w = self.hp("imsat_weight")
        if w:
            marginal = self._update_marginal(probs)
            r_sat = None
            if self.hp("vat_weight"):
                r_sat = self.hp("vat_weight") * vat_loss(
                    aux,
                    x,
                    eps,
                    xi=self.hp("vat_xi"),
                    n_power=self.hp("vat_power_iterations"),
                    logits=logits,
                    generator=gen,
                )
                terms["vat"] = r_sat.detach()
                kept = own_graph(w * r_sat)
                r_sat = None if kept is None else kept / w
            out = imsat_loss(
                probs,
                marginal=marginal,
                lam=self.hp("imsat_lam"),
                mu=self.hp("imsat_mu"),
                r_sat=r_sat,
            )
            loss = loss + w * out["loss"]
            terms["imsat"] = out["loss"].detach() + (
                terms.get("vat", 0.0) if r_sat is None else 0.0
            )
            terms["cond_entropy"] = out["cond_entropy"]
            terms["marginal_entropy"] = out["marginal_entropy"]
        w = self.hp("mixup_weight")
        if w:
            # Shares the clean forward's graph (compute_forward): no
            # separate backward.
            term = mixup_kl(
                logits,
                predictions["mixed_logits"],
                predictions["mix_lam"],
                predictions["mix_partner"],
                mix_logits=self.hp("mixup_logits"),
            )
            terms["mixup"] = term.detach()
            loss = loss + w * term
        w = self.hp("supcon_weight")
        if w:
            hidden = predictions.get("hidden")
            feats = logits if hidden is None else hidden
            labels = logits.detach().argmax(dim=1)
            cap = self.hp("supcon_max_samples")
            if cap and feats.shape[0] > cap:
                keep = torch.randperm(feats.shape[0], generator=gen)[:cap]
                keep = keep.to(feats.device)
                feats, labels = feats[keep], labels[keep]
            temps = {
                "temperature": self.hp("supcon_temperature"),
                "base_temperature": self.hp("supcon_base_temperature"),
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
        needs_view = self.hp("infonce_weight") or self.hp("aug_weight")
        has_view = predictions["x_aug"] is not None
        logits_aug = None
        if needs_view or (self.hp("vicreg_weight") and has_view):
            x_aug = self._second_view(x, predictions["x_aug"], gen)
            logits_aug = aux(x_aug)
        w = self.hp("vicreg_weight")
        if w:
            out = vicreg_loss(
                logits,
                logits_aug,
                sim_weight=self.hp("vicreg_sim_weight"),
                var_weight=self.hp("vicreg_var_weight"),
                cov_weight=self.hp("vicreg_cov_weight"),
            )
            loss = loss + w * out["loss"]
            terms["vicreg"] = out["loss"].detach()
        w = self.hp("infonce_weight")
        if w:
            term = info_nce_loss(
                logits, logits_aug, temperature=self.hp("infonce_temperature")
            )
            loss = loss + w * term
            terms["infonce"] = term.detach()
        w = self.hp("aug_weight")
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
        path = self.hp("history_file")
        done = self.hparams.epoch_counter.current
        self.history = []
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            self.history = [h for h in saved if h.get("epoch", 0) <= done]

    def on_stage_start(self, stage, epoch=None):
        """Set this epoch's learning rate and reset the term averages.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        epoch : int | None
            The epoch (1-based).
        """
        if stage == sb.Stage.TRAIN:
            lr = self.hp("lr") * self.hp("lr_decay") ** ((epoch or 1) - 1)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
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
            torch.as_tensor(features), batch_size=self.hp("predict_batch_size")
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
                self.true_labels, pred, ami=bool(self.hp("eval_ami"))
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
            last or epoch % max(1, int(self.hp("eval_every"))) == 0
        ):
            report = self.epoch_report(epoch)
            self.history.append(report)
            for key in ("acc", "nmi", "ari", "clusters_used"):
                if report.get(key) is not None:
                    stats[key] = report[key]
            self._write_history(plot=last)
        train_logger = getattr(self.hparams, "train_logger", None)
        if train_logger is not None:
            train_logger.log_stats(
                stats_meta={
                    "clustering epoch": epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                },
                train_stats=stats,
            )
        if self.checkpointer is not None and (
            last or epoch % max(1, int(self.hp("ckpt_every"))) == 0
        ):
            self.checkpointer.save_and_keep_only(
                meta={"epoch": epoch, "loss": stage_loss}, num_to_keep=1
            )

    def _write_history(self, plot=True):
        # The JSON after every evaluation (a killed run keeps it); the
        # figure, which costs about a second, after the last epoch.
        if not if_main_process():
            return
        path = self.hp("history_file")
        if path:
            write_json(path, self.history)
        plot = self.hp("plot_file") if plot else None
        if plot and self.history:
            wanted = ("acc", "ami", "nmi", "clusters_used")
            metrics = [m for m in wanted if self.history[-1].get(m) is not None]
            plot_metrics_over_epochs(
                self.history,
                plot,
                metrics=metrics,
                title="Clustering metrics over epochs (Fig. 3)",
            )


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
    (:func:`speechbrain_ssv.clustering.pipeline.write_pseudolabel_csv`
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
