"""Disentangled speaker and device representations by mutual-information
minimisation: Mun, Han et al., "Disentangled speaker representation learning
via mutual information minimization" (FFSVC 2022), Algorithm 1.

Networks (Fig. 1)::

    wav -> Fbank -> norm -> E_theta (embedding_model: MFA-Conformer or ECAPA)
        -> x -> D_theta (decoupling) -> x^s, x^d
    x^s -> C^s (spk_classifier, AAM) + AP over the batch's speaker pairs
    x^d -> C^d (dev_classifier, AAM)
    Q_phi1 (club_s_d):  q(x^d | x^s), Gaussian   -> I(x^s; x^d)   Eq. 12
    Q_phi2 (club_d_ys): q(y^s | x^d), softmax    -> I(x^d; y^s)   Eq. 15
    Q_phi3 (club_s_yd): q(y^d | x^s), softmax    -> I(x^s; y^d)   Eq. 18

One training step (:meth:`DisentangleBrain.fit_batch`):

1. embed the batch once (``x^s``, ``x^d`` with their graph);
2. ``M = estimator_steps`` updates of each variational network on its
   negative log-likelihood (Eq. 14, 17, 20) computed from *detached*
   embeddings, each with its own optimizer: the main networks get no
   gradient from the likelihoods;
3. the main update on Eq. 21, with the three MI bounds computed by the
   just-updated estimators inside :func:`~speechbrain_ssv.lobes.club.frozen`:
   the bounds' gradients reach the embeddings (hence encoder and decoupling
   block) and never the estimators.

Choices where the paper is silent, and why:

* The estimators' learning rate, optimiser and ``M`` are not given. The
  reference CLUB notebook trains its estimator for 5 steps per main step
  with Adam; the recipes use ``estimator_steps: 5`` and Adam at 1e-3 (the
  main fine-tuning rate of 1e-5 is far too low for a freshly initialised
  estimator to follow the embeddings).
* An estimator whose term is switched off (Table I rows 2-5) is still
  trained by default (``train_idle_estimators``) and its bound is logged, so
  every row reports the same disentanglement diagnostics; it never enters
  the main loss.
* The estimator steps run in fp32 outside autocast, and the MI bounds of the
  main step too (``exp(-logvar)`` and log-softmax gathers are fragile in
  fp16/bf16).
* ``L^s_cls = L_AAM + L_AP`` (Eq. 10); the AP term needs two utterances per
  speaker, so training batches must come from
  :class:`~speechbrain_ssv.data.samplers.SpeakerPairSampler` (checked). On
  the validation set (unpaired) the speaker term is the AAM part only.
* Verification embedding: ``x^s`` (Sec. III-B). ``embedding_branch =
  "initial"`` scores the front-end's ``x`` instead (Table I, row 1).

The weights of Eq. 21 and the pre-trained front-end a run starts from are
resolved in :mod:`speechbrain_ssv.brains.club_setup`.

DDP: the main modules are wrapped as usual; the estimators are kept *out* of
DDP (they are never called through ``forward`` in the main graph, and DDP
would otherwise expect their gradients in the main backward). Their
gradients are all-reduced (averaged) by hand in every estimator step, so
all ranks keep identical estimators. When a Table I row leaves a main
module without gradient (row 2: the device branch), ``find_unused_parameters``
is switched on. AP negatives are the speakers of the rank's own batch.

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import logging
import math

import speechbrain as sb
import torch

from speechbrain_ssv.brains.base import VerificationBrain, unwrap
from speechbrain_ssv.brains.club_setup import resolve_weights
from speechbrain_ssv.lobes.club import frozen
from speechbrain_ssv.losses.club import ap_over_pairs, disentangle_total
from speechbrain_ssv.utils.errors import HparamsError, SSVInputError

logger = logging.getLogger(__name__)

__all__ = [
    "ESTIMATORS",
    "DisentangleBrain",
]

#: Estimator module key -> (MI term of Eq. 21, conditioning input, target).
ESTIMATORS = {
    "club_s_d": ("mi_s_d", "x_s", "x_d"),
    "club_d_ys": ("mi_d_ys", "x_d", "y_s"),
    "club_s_yd": ("mi_s_yd", "x_s", "y_d"),
}
BRANCHES = ("speaker", "device", "both", "initial")


class DisentangleBrain(VerificationBrain):
    """Speaker/device disentanglement with CLUB MI minimisation (module
    docstring).

    Modules: ``compute_features``, ``mean_var_norm``, ``embedding_model``
    (front-end), ``decoupling``
    (:class:`~speechbrain_ssv.lobes.decoupling.DecouplingBlock`),
    ``spk_classifier`` and ``dev_classifier`` (SpeechBrain ``Classifier``:
    cosine logits), ``ap_scale``
    (:class:`~speechbrain_ssv.lobes.heads.AngularScale`), ``club_s_d``
    (:class:`~speechbrain_ssv.lobes.club.GaussianCLUB`), ``club_d_ys`` and
    ``club_s_yd`` (:class:`~speechbrain_ssv.lobes.club.CategoricalCLUB`).

    Hparams it reads: ``compute_cost`` (AAM-softmax on cosine logits, for
    both classifiers), ``table1_row`` and ``loss_weights`` (see
    :func:`~speechbrain_ssv.brains.club_setup.resolve_weights`),
    ``estimator_opt_class`` (one optimizer per estimator is built from it),
    ``estimator_steps`` (``M``),
    ``train_idle_estimators``, ``wav_augment`` (``null`` for none; must
    keep the batch size), ``error_stats``, ``train_logger``, ``epoch_counter``,
    ``lr_annealing`` and the verification keys of
    :class:`~speechbrain_ssv.brains.base.VerificationBrain`. Batches hold
    ``sig``, ``spk_id_encoded`` and ``device_encoded``.

    Checkpointed by the Brain: ``optimizer`` (main networks) and
    ``optimizer_<estimator>`` for each estimator, on top of the yaml's
    recoverables.
    """

    encoder_keys = (
        "compute_features",
        "mean_var_norm",
        "embedding_model",
        "decoupling",
    )
    estimator_keys = tuple(ESTIMATORS)
    required_modules = (
        *encoder_keys,
        "spk_classifier",
        "dev_classifier",
        "ap_scale",
        *estimator_keys,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        missing = [k for k in self.required_modules if k not in self.modules]
        if missing:
            raise HparamsError(
                "modules", f"lacks {missing}; DisentangleBrain needs them all"
            )
        self.weights = resolve_weights(
            self.hparams.table1_row,
            self.hparams.loss_weights,
        )
        self.embedding_branch = "speaker"
        self.estimator_optimizers = {}
        self._stats = {}

    # ------------------------------------------------------------ embedding
    def encode(self, wavs, lens, modules=None, branch=None):
        """Waveforms -> the embedding of ``branch`` (default
        ``self.embedding_branch``: ``"speaker"``, i.e. ``x^s``).

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]``.
        lens : torch.Tensor
            ``[B]`` relative lengths.
        modules : dict-like | None
            Where to find ``encoder_keys`` (default ``self.modules``).
        branch : str | None
            ``"speaker"`` (``x^s``), ``"device"`` (``x^d``), ``"both"``
            (``[x^s, x^d]`` concatenated) or ``"initial"`` (the front-end's
            ``x``, Table I row 1).

        Returns
        -------
        torch.Tensor
            ``[B, D]`` (``[B, 2 D]`` for ``"both"``).
        """
        branch = branch or self.embedding_branch
        if branch not in BRANCHES:
            raise ValueError(f"branch={branch!r}; expected one of {BRANCHES}")
        src = self.modules if modules is None else modules
        feats = src["mean_var_norm"](src["compute_features"](wavs), lens)
        x = src["embedding_model"](feats, lens)
        x = x.reshape(x.shape[0], -1)
        if branch == "initial":
            return x
        x_s, x_d = src["decoupling"](x)
        if branch == "speaker":
            return x_s
        if branch == "device":
            return x_d
        return torch.cat([x_s, x_d], dim=-1)

    def inference_encoder(self, branch=None):
        """``encoder_fn(wavs, lens) -> [B, D]`` on the bare modules, without
        gradients (put them in eval mode first: :meth:`eval_mode`).

        Arguments
        ---------
        branch : str | None
            See :meth:`encode`.

        Returns
        -------
        callable
            The encoder function.
        """
        modules = {k: unwrap(self.modules[k]) for k in self.encoder_keys}
        branch = branch or self.embedding_branch

        @torch.no_grad()
        def encoder_fn(wavs, lens):
            """Embeddings of a padded batch from ``branch``, on the Brain's device."""
            return self.encode(
                wavs.to(self.device), lens.to(self.device), modules, branch
            )

        return encoder_fn

    @contextlib.contextmanager
    def eval_mode(self, keys=None):
        """Put modules (default: the encoder's) in eval mode for a block.

        Arguments
        ---------
        keys : sequence | None
            Module keys.

        Yields
        ------
        None
        """
        keys = self.encoder_keys if keys is None else keys
        modes = {k: unwrap(self.modules[k]).training for k in keys}
        for k in keys:
            unwrap(self.modules[k]).eval()
        try:
            yield
        finally:
            for k, mode in modes.items():
                unwrap(self.modules[k]).train(mode)

    def verify_initial_embedding(self, out_dir):
        """Score the trial list with the front-end's initial embedding ``x``
        (Table I, row 1: the pre-trained front-end without fine-tuning).

        Arguments
        ---------
        out_dir : str
            Output folder.

        Returns
        -------
        dict | None
            Metrics on the main process.
        """
        previous = self.embedding_branch
        self.embedding_branch = "initial"
        try:
            return self.verify(out_dir, model_tag="initial-embedding")
        finally:
            self.embedding_branch = previous

    # --------------------------------------------------------------- forward
    def compute_forward(self, batch, stage):
        """Augment (training), embed, split, classify.

        Arguments
        ---------
        batch : PaddedBatch
            ``sig``, ``spk_id_encoded``, ``device_encoded``.
        stage : sb.Stage
            The stage.

        Returns
        -------
        dict
            ``x_s``, ``x_d`` (``[B, D]``), ``spk_logits``, ``dev_logits``
            (``[B, 1, C]``), ``y_s``, ``y_d`` (``[B]`` labels).
        """
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        y_s = batch.spk_id_encoded[0].reshape(-1)
        y_d = batch.device_encoded[0].reshape(-1)
        augment = self.hparams.wav_augment
        if stage == sb.Stage.TRAIN and augment is not None:
            n = wavs.shape[0]
            wavs, lens = augment(wavs, lens)
            if wavs.shape[0] != n:
                raise HparamsError(
                    "wav_augment",
                    f"turned a batch of {n} into {wavs.shape[0]}; the speaker "
                    "pairs of the AP term need one output per input "
                    "(parallel_augment: False, concat_original: False)",
                )
        feats = self.modules.mean_var_norm(
            self.modules.compute_features(wavs), lens
        )
        x = self.modules.embedding_model(feats, lens)
        x_s, x_d = self.modules.decoupling(x.reshape(x.shape[0], -1))
        return {
            "x_s": x_s,
            "x_d": x_d,
            "spk_logits": self.modules.spk_classifier(x_s.unsqueeze(1)),
            "dev_logits": self.modules.dev_classifier(x_d.unsqueeze(1)),
            "y_s": y_s,
            "y_d": y_d,
        }

    def trained_estimators(self):
        """Estimators updated in the inner loop: those whose term is on, and
        all of them with ``train_idle_estimators``.

        Returns
        -------
        list of str
            Module keys.
        """
        idle = self.hparams.train_idle_estimators
        return [
            k
            for k, (term, _, _) in ESTIMATORS.items()
            if idle or self.weights[term] > 0
        ]

    @staticmethod
    def _estimator_pairs(out):
        return {
            key: (out[x_name], out[y_name])
            for key, (_, x_name, y_name) in ESTIMATORS.items()
        }

    def update_estimators(self, out):
        """Algorithm 1's inner loop: ``M`` updates of every trained estimator
        on its negative log-likelihood (Eq. 14, 17, 20), on detached
        embeddings, each with its own optimizer.

        The three losses are summed for one backward pass: their parameter
        sets are disjoint, so each estimator gets exactly its own gradient.
        Under DDP the gradients are averaged over ranks before the steps.

        Arguments
        ---------
        out : dict
            Output of :meth:`compute_forward`.

        Returns
        -------
        dict
            ``nll_<estimator>``: the last step's loss of each, detached.
        """
        keys = self.trained_estimators()
        if not keys:
            return {}
        detached = {
            k: v.detach().float() if v.is_floating_point() else v.detach()
            for k, v in out.items()
            if k in ("x_s", "x_d", "y_s", "y_d")
        }
        pairs = self._estimator_pairs(detached)
        steps = int(self.hparams.estimator_steps)
        if steps < 1:
            raise HparamsError("estimator_steps", f"is {steps}; expected >= 1")
        params = [p for k in keys for p in self.modules[k].parameters()]
        for k in keys:
            self.modules[k].train()
        with torch.autocast(device_type=self.device_type, enabled=False):
            for _ in range(steps):
                for k in keys:
                    self.estimator_optimizers[k].zero_grad(set_to_none=True)
                nll = {
                    k: self.modules[k].learning_loss(*pairs[k]) for k in keys
                }
                torch.stack(list(nll.values())).sum().backward()
                self._all_reduce_grads(params)
                for k in keys:
                    if self.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(
                            self.modules[k].parameters(), self.max_grad_norm
                        )
                    self.estimator_optimizers[k].step()
        for k in keys:
            self.estimator_optimizers[k].zero_grad(set_to_none=True)
        return {f"nll_{k}": v.detach() for k, v in nll.items()}

    def _all_reduce_grads(self, params):
        """Average the estimators' gradients over DDP ranks (one flat
        all-reduce; missing gradients count as zeros so every rank sends
        the same sizes)."""
        if not (
            self.distributed_launch
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            return
        grads = [
            p.grad if p.grad is not None else torch.zeros_like(p)
            for p in params
        ]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= torch.distributed.get_world_size()
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def loss_terms(self, out, stage):
        """The unweighted terms of Eq. 21 (and their parts).

        The MI bounds are computed in fp32 inside :func:`frozen`, so their
        gradients reach the embeddings only. A term whose weight is 0 is
        computed without a graph (for the logs) or, for an untrained
        estimator, not at all.

        Arguments
        ---------
        out : dict
            Output of :meth:`compute_forward`.
        stage : sb.Stage
            TRAIN adds the AP part of ``cls_s`` (Eq. 9-10).

        Returns
        -------
        dict
            ``cls_s``, ``cls_s_aam``, ``cls_s_ap`` (TRAIN), ``cls_d``,
            ``mi_s_d``, ``mi_d_ys``, ``mi_s_yd`` (scalar tensors, or
            ``None`` when not computed).
        """
        cost = self.hparams.compute_cost
        y_s, y_d = out["y_s"], out["y_d"]

        def graph_if(on):
            """A context that builds the autograd graph only when ``on`` (and grad is enabled)."""
            on = on and torch.is_grad_enabled()
            return contextlib.nullcontext() if on else torch.no_grad()

        terms = {}
        with graph_if(self.weights["cls_s"] > 0):
            aam = cost(out["spk_logits"], y_s.unsqueeze(1))
            terms["cls_s_aam"] = aam
            if stage == sb.Stage.TRAIN:
                x_s = out["x_s"]
                self._check_pairs(y_s)
                ap = ap_over_pairs(
                    x_s[0::2], x_s[1::2], scale=self.modules.ap_scale
                )
                terms["cls_s_ap"] = ap
                terms["cls_s"] = aam + ap
            else:
                terms["cls_s"] = aam
        with graph_if(self.weights["cls_d"] > 0):
            terms["cls_d"] = cost(out["dev_logits"], y_d.unsqueeze(1))

        trained = set(self.trained_estimators())
        pairs = self._estimator_pairs(out)
        estimators = [self.modules[k] for k in self.estimator_keys]
        with frozen(*estimators):
            with torch.autocast(device_type=self.device_type, enabled=False):
                for key, (term, _, _) in ESTIMATORS.items():
                    if self.weights[term] <= 0 and key not in trained:
                        terms[term] = None
                        continue
                    x, y = pairs[key]
                    y = y.float() if y.is_floating_point() else y
                    with graph_if(self.weights[term] > 0):
                        terms[term] = self.modules[key].mi_upper_bound(
                            x.float(), y
                        )
        return terms

    @staticmethod
    def _check_pairs(y_s):
        n = y_s.shape[0]
        if n % 2 or not bool((y_s[0::2] == y_s[1::2]).all()):
            raise SSVInputError(
                "training batch",
                "is not laid out in speaker pairs [a1, b1, a2, b2, ...]; "
                "train with speechbrain_ssv.data.samplers.SpeakerPairSampler "
                "as the batch_sampler",
            )

    def compute_objectives(self, predictions, batch, stage):
        """Eq. 21 with the run's weights; error rates on VALID/TEST.

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
            The weighted total.
        """
        terms = self.loss_terms(predictions, stage)
        total = disentangle_total(terms, self.weights)["total"]
        self._accumulate(terms)
        self._accumulate({"total": total})
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(
                batch.id,
                predictions["spk_logits"],
                predictions["y_s"].unsqueeze(1),
            )
            self.device_error_metrics.append(
                batch.id,
                predictions["dev_logits"],
                predictions["y_d"].unsqueeze(1),
            )
        return total

    # --------------------------------------------------------------- training
    def fit_batch(self, batch):
        """One iteration of Algorithm 1: embed, ``M`` estimator updates on
        detached embeddings, then the main update with the estimators
        frozen.

        Arguments
        ---------
        batch : PaddedBatch
            A :class:`~speechbrain_ssv.data.samplers.SpeakerPairSampler`
            batch.

        Returns
        -------
        torch.Tensor
            The main loss (detached, CPU).
        """
        self.on_fit_batch_start(batch, True)
        with self.training_ctx:
            out = self.compute_forward(batch, sb.Stage.TRAIN)
        self._accumulate(self.update_estimators(out))
        with self.training_ctx:
            loss = self.compute_objectives(out, batch, sb.Stage.TRAIN)
        scaled = self.scaler.scale(loss)
        self.check_loss_isfinite(scaled)
        scaled.backward()
        self.optimizers_step()
        self.on_fit_batch_end(batch, out, loss, True)
        return loss.detach().cpu()

    def on_fit_start(self):
        """Refuse gradient accumulation (the estimators step every batch,
        Algorithm 1 alternates one main step with ``M`` estimator steps),
        then wrap, build the optimizers and recover."""
        if self.grad_accumulation_factor != 1:
            raise HparamsError(
                "grad_accumulation_factor",
                f"is {self.grad_accumulation_factor}; DisentangleBrain "
                "alternates estimator and main steps on every batch and "
                "supports only 1 (use larger batch_speakers instead)",
            )
        super().on_fit_start()

    def _wrap_distributed(self):
        """DDP-wrap the main modules only; the estimators stay bare (their
        gradients are all-reduced in :meth:`update_estimators`; under
        DataParallel they run on one device, being small)."""
        if not (
            self.distributed_launch
            or getattr(self, "data_parallel_backend", False)
        ):
            return
        w = self.weights
        if (w["cls_s"] <= 0 or w["cls_d"] <= 0) and not (
            self.find_unused_parameters
        ):
            # Row 2 trains no device branch: DDP must not wait for its
            # gradients.
            logger.info(
                "Some Eq. 21 terms are off; DDP runs with "
                "find_unused_parameters=True"
            )
            self.find_unused_parameters = True
        held = {k: self.modules[k] for k in self.estimator_keys}
        for k in held:
            del self.modules[k]
        try:
            super()._wrap_distributed()
        finally:
            for k, module in held.items():
                self.modules[k] = module

    def init_optimizers(self):
        """The main optimizer over the main networks (``opt_class``) and one
        optimizer per estimator (``estimator_opt_class``), all checkpointed.
        """
        est_ids = {
            id(p)
            for k in self.estimator_keys
            for p in self.modules[k].parameters()
        }
        main = [
            p
            for p in self.modules.parameters()
            if p.requires_grad and id(p) not in est_ids
        ]
        if self.opt_class is None:
            raise HparamsError("opt_class", "is missing; pass it to the Brain")
        if self.hparams.estimator_opt_class is None:
            raise HparamsError(
                "estimator_opt_class",
                "is missing; give a partial optimizer (e.g. "
                "!name:torch.optim.Adam) for the CLUB estimators",
            )
        self.optimizer = self.opt_class(main)
        # Brain's zero_grad/optimizers_step act on optimizers_dict: the main
        # optimizer only; the estimators step in update_estimators.
        self.optimizers_dict = {"opt_class": self.optimizer}
        self.estimator_optimizers = {
            k: self.hparams.estimator_opt_class(self.modules[k].parameters())
            for k in self.estimator_keys
        }
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            for k, opt in self.estimator_optimizers.items():
                self.checkpointer.add_recoverable(f"optimizer_{k}", opt)

    # ---------------------------------------------------------------- logging
    def _accumulate(self, values):
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                value = value.detach()
            total, count = self._stats.get(name, (0.0, 0))
            self._stats[name] = (total + float(value), count + 1)

    def epoch_means(self):
        """Means of the accumulated terms since the stage started.

        Returns
        -------
        dict
            Name -> mean (``cls_*``, ``mi_*`` unweighted, ``nll_*``,
            ``total``).
        """
        return {k: t / max(c, 1) for k, (t, c) in sorted(self._stats.items())}

    def _label_bounds(self, stats, stage):
        """Rename the MI terms for the log: they are vCLUB *bounds*, and
        where they were measured matters. In TRAIN each batch's bound is
        read right after the estimator fitted that batch ``M`` times (it
        reads high: over-fitted); VALID batches are held out (never
        fitted). The categorical bounds can exceed ``log C``, the ceiling
        of the true MI, which is logged beside them."""
        where = "fitted" if stage == sb.Stage.TRAIN else "heldout"
        out = {}
        for name, value in stats.items():
            if name.startswith("mi_"):
                out[f"{name}_bound_{where}"] = value
            else:
                out[name] = value
        if stage != sb.Stage.TRAIN:
            for key, (term, _, _) in ESTIMATORS.items():
                est = unwrap(self.modules[key])
                n_classes = getattr(est, "n_classes", None)
                if n_classes and f"{term}_bound_{where}" in out:
                    out[f"{term}_ceiling_log_C"] = math.log(n_classes)
        return out

    def head_bn_weight_norms(self):
        """L2 norms of the BatchNorm weights of the decoupling block's
        speaker and device heads: a shrinking device head is how a raw
        (not scale-free) Gaussian bound is lowered without disentangling.

        Returns
        -------
        dict
            ``bn_w_speaker_head``, ``bn_w_device_head`` (absent when a head
            has no BatchNorm).
        """
        block = unwrap(self.modules.decoupling)
        norms = {}
        for name in ("speaker", "device"):
            head = getattr(block, f"{name}_head", None)
            if head is None:
                continue
            weights = [
                m.weight
                for m in head.modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                and m.weight is not None
            ]
            if weights:
                norms[f"bn_w_{name}_head"] = float(
                    torch.cat([w.detach().reshape(-1) for w in weights]).norm()
                )
        return norms

    def on_stage_start(self, stage, epoch=None):
        """Reset the term accumulators and (VALID/TEST) the error trackers.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        epoch : int | None
            The epoch.
        """
        self._stats = {}
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()
            self.device_error_metrics = self.hparams.error_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log every term, the estimators' NLLs and the MI bounds; verify
        when due; checkpoint (best by speaker ``ErrorRate`` on dev).

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        stage_loss : float
            Average loss of the stage.
        epoch : int | None
            The epoch.
        """
        stats = {"loss": stage_loss, **self.epoch_means()}
        stats.pop("total", None)
        stats = self._label_bounds(stats, stage)
        if stage == sb.Stage.TRAIN:
            stats.update(self.head_bn_weight_norms())
            self.train_stats = stats
            return
        stats["ErrorRate"] = self.error_metrics.summarize("average")
        stats["DeviceErrorRate"] = self.device_error_metrics.summarize(
            "average"
        )
        if stage == sb.Stage.VALID:
            stats.update(self.verification_stats(epoch))
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.current_lr()},
                train_stats=getattr(self, "train_stats", None),
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
