"""Self-distillation with prototypes (SDPN) and its DINO baseline.

A teacher (EMA of the student) embeds the clean global view of each
utterance; the student embeds augmented local views; the student learns to
predict the teacher's (Sinkhorn-normalised) assignment of the global view to
shared learnable prototypes (SDPN) or its centred, sharpened output (DINO).
No speaker label is used: the training dataset does not even provide one.

Authors
 * speechbrain-ssv developers 2026
"""

import logging
import math

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from speechbrain_ssv.brains.base import (
    VerificationBrain,
    check_method_hparams,
    unwrap,
)
from speechbrain_ssv.lobes.teacher import cosine_momentum
from speechbrain_ssv.losses.sdpn import (
    all_reduce_sum,
    dino_loss,
    linear_warmup,
    sdpn_loss,
)

logger = logging.getLogger(__name__)

#: Settings only one of the two methods reads (the other's yaml need not
#: list them); every other key the Brain reads is required in both.
METHOD_HPARAMS = {
    "sdpn": (
        "sharpen_temp", "sinkhorn_iters", "memax_weight", "koleo_weight",
        "koleo_reduction", "pair_reduction", "clip_prototypes",
    ),
    "dino": (
        "warmup_teacher_temp", "warmup_teacher_temp_steps",
        "freeze_last_layer_steps",
    ),
}  # fmt: skip


class SDPNBrain(VerificationBrain):
    """SDPN (``method: sdpn``) or DINO (``method: dino``) training.

    Modules: ``compute_features``, ``mean_var_norm`` (shared, parameter
    free), the student ``embedding_model`` and ``projector``, the teacher
    ``teacher_embedding_model`` and ``teacher_projector`` (frozen, updated
    by EMA, not DDP-wrapped since they have no trainable parameter), and
    ``prototypes`` (SDPN) or ``center`` (DINO).

    Hparams it reads: ``method``, ``n_global``, ``n_local``, ``teacher``
    (:class:`~speechbrain_ssv.lobes.teacher.EMATeacher` over the student and
    teacher networks), ``ema_base``, ``ema_final``, ``total_steps``,
    ``wav_augment`` (per-utterance, e.g. UtteranceAugment; or null), ``augment_global`` (the authors'
    SDPN feeds the teacher the clean view: False), ``student_global_views``
    (RDINO: the student also embeds the global views and same-view pairs
    are skipped; the SDPN authors: False), ``time_mask``,
    ``freq_mask`` (SpectrogramDrop or null), ``spec_augment_prob``,
    ``grad_clip_per_tensor``, ``clip_prototypes``, the loss settings
    (``teacher_temp``, ``student_temp``; SDPN: ``sharpen_temp``,
    ``sinkhorn_iters``, ``memax_weight``, ``koleo_weight``,
    ``koleo_reduction``, ``pair_reduction``; DINO:
    ``warmup_teacher_temp``, ``warmup_teacher_temp_steps``,
    ``freeze_last_layer_steps``), the collapse thresholds
    ``collapse_min_perplexity`` and ``collapse_min_std``, ``train_logger``,
    ``epoch_counter``, ``lr_annealing`` and the verification keys of
    :class:`VerificationBrain`. Verification uses the teacher encoder.
    """

    encoder_keys = (
        "compute_features",
        "mean_var_norm",
        "teacher_embedding_model",
    )
    student_keys = ("embedding_model", "projector")
    teacher_keys = ("teacher_embedding_model", "teacher_projector")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_method_hparams(self.hparams, METHOD_HPARAMS)
        self._reset_monitor()

    # ------------------------------------------------------------------ views
    def _stack_views(self, batch, prefix, count, augment):
        wavs, lens = [], []
        for i in range(count):
            wav, wav_lens = getattr(batch, f"{prefix}{i}")
            wavs.append(wav)
            lens.append(wav_lens)
        wavs, lens = torch.cat(wavs), torch.cat(lens)
        if augment is not None:
            # One call on all views at once (fewer, larger kernels on a
            # GPU): the augmentation draws per utterance, so every view of
            # every utterance still gets its own condition, noise and RIR.
            wavs, lens = augment(wavs, lens)
        return wavs, lens

    def _features(self, wavs, lens):
        feats = self.modules.compute_features(wavs)
        return self.modules.mean_var_norm(feats, lens)

    def _spec_augment(self, feats):
        masks = [
            m
            for m in (
                self.hparams.time_mask,
                self.hparams.freq_mask,
            )
            if m is not None
        ]
        prob = self.hparams.spec_augment_prob
        if not masks or prob <= 0:
            return feats
        masked = feats
        for mask in masks:
            masked = mask(masked)
        if prob >= 1:
            return masked
        chosen = torch.rand(feats.shape[0], 1, 1, device=feats.device) < prob
        return torch.where(chosen, masked, feats)

    def compute_forward(self, batch, stage):
        """Teacher on the global views, student on the augmented local views.

        Arguments
        ---------
        batch : PaddedBatch
            With ``global0..`` and ``local0..`` waveforms (no labels).
        stage : sb.Stage
            Only TRAIN is used by the recipe.

        Returns
        -------
        dict
            ``teacher_emb`` ``[G*B, D]``, ``teacher_out`` ``[G*B, P]``,
            ``student_emb`` ``[L*B, D]``, ``student_out`` ``[L*B, P]``.
        """
        batch = batch.to(self.device)
        training = stage == sb.Stage.TRAIN
        augment = self.hparams.wav_augment if training else None
        g_augment = augment if self.hparams.augment_global else None
        g_wavs, g_lens = self._stack_views(
            batch, "global", self.hparams.n_global, g_augment
        )
        with torch.no_grad():
            t_emb = self.modules.teacher_embedding_model(
                self._features(g_wavs, g_lens), g_lens
            )
            t_emb = t_emb.reshape(t_emb.shape[0], -1)
            t_out = self.modules.teacher_projector(t_emb)
        l_wavs, l_lens = self._stack_views(
            batch, "local", self.hparams.n_local, augment
        )
        student_views = [(l_wavs, l_lens)]
        if self.hparams.student_global_views:
            # DINO / RDINO: the student also sees the teacher's (augmented)
            # global views, which come first; the loss skips same-view pairs.
            student_views.insert(0, (g_wavs, g_lens))
        s_emb = []
        for wavs, lens in student_views:
            feats = self._features(wavs, lens)
            if training:
                feats = self._spec_augment(feats)
            emb = self.modules.embedding_model(feats, lens)
            s_emb.append(emb.reshape(emb.shape[0], -1))
        s_emb = torch.cat(s_emb)
        s_out = self.modules.projector(s_emb)
        return {
            "teacher_emb": t_emb,
            "teacher_out": t_out,
            "student_emb": s_emb,
            "student_out": s_out,
        }

    # ------------------------------------------------------------------- loss
    def compute_objectives(self, predictions, batch, stage):
        """SDPN (Eq. 5 + mean-entropy term) or DINO loss; collects the
        collapse statistics.

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
        g = self.hparams.n_global
        skip = self.hparams.student_global_views
        # Student views: the locals, after the globals when it sees those.
        n_loc = self.hparams.n_local + (g if skip else 0)
        b = predictions["teacher_out"].shape[0] // g
        if self.hparams.method == "sdpn":
            with torch.no_grad():
                t_scores = self.modules.prototypes(predictions["teacher_out"])
            s_scores = self.modules.prototypes(predictions["student_out"])
            k = t_scores.shape[-1]
            out = sdpn_loss(
                t_scores.reshape(g, b, k),
                s_scores.reshape(n_loc, b, k),
                predictions["student_emb"].reshape(n_loc, b, -1),
                teacher_temp=self.hparams.teacher_temp,
                sharpen_temp=self.hparams.sharpen_temp,
                student_temp=self.hparams.student_temp,
                sinkhorn_iters=self.hparams.sinkhorn_iters,
                memax_weight=self.hparams.memax_weight,
                koleo_weight=self.hparams.koleo_weight,
                koleo_reduction=self.hparams.koleo_reduction,
                pair_reduction=self.hparams.pair_reduction,
                skip_same_view=skip,
            )
            t_temp = self.hparams.teacher_temp
        else:
            t_scores = predictions["teacher_out"]
            k = t_scores.shape[-1]
            t_temp = self.dino_teacher_temp()
            center = unwrap(self.modules.center)
            out = dino_loss(
                t_scores.reshape(g, b, k),
                predictions["student_out"].reshape(n_loc, b, k),
                center.center,
                teacher_temp=t_temp,
                student_temp=self.hparams.student_temp,
                skip_same_view=skip,
            )
            if stage == sb.Stage.TRAIN:
                center.update(t_scores)
        if stage == sb.Stage.TRAIN:
            self._accumulate(out, t_scores, t_temp, predictions["teacher_emb"])
        return out["loss"]

    def dino_teacher_temp(self):
        """DINO teacher temperature at the current step (linear warm-up).

        Returns
        -------
        float
            The temperature.
        """
        return linear_warmup(
            self.optimizer_step,
            self.hparams.warmup_teacher_temp,
            self.hparams.teacher_temp,
            self.hparams.warmup_teacher_temp_steps,
        )

    # --------------------------------------------------------------- monitor
    def _reset_monitor(self):
        # Sums stay on the device and are read once, in collapse_stats: a
        # float() per statistic and step would make every training step
        # wait for the GPU (issue #14).
        self._mon = {"n": 0, "usage": None, "sums": {}}

    @torch.no_grad()
    def _accumulate(self, out, t_scores, t_temp, t_emb):
        mon = self._mon
        probs = torch.softmax(t_scores.float() / t_temp, dim=-1)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
        # Argmax counts by comparison, not torch.bincount: on CUDA bincount
        # reads the largest index back to size its output (a host sync).
        k = t_scores.shape[-1]
        protos = torch.arange(k, device=t_scores.device)
        hits = t_scores.argmax(-1).unsqueeze(-1) == protos
        usage = hits.sum(0, dtype=torch.float64)
        mon["usage"] = usage if mon["usage"] is None else mon["usage"] + usage
        emb = torch.nn.functional.normalize(t_emb.float(), dim=-1)
        # Scaled so that isotropic unit vectors give ~1 and a collapse 0.
        std = emb.std(dim=0).mean() * math.sqrt(emb.shape[-1])
        values = {"teacher_entropy": entropy, "emb_std": std}
        values.update(
            {key: out[key] for key in ("ce", "memax", "koleo") if key in out}
        )
        for key, value in values.items():
            # float64, summed in step order: the same sums as the Python
            # floats these used to be.
            value = torch.as_tensor(value, device=t_scores.device)
            value = value.detach().to(torch.float64)
            total = mon["sums"].get(key)
            mon["sums"][key] = value if total is None else total + value
        mon["n"] += 1

    def collapse_stats(self):
        """Epoch statistics that reveal a collapse: the teacher's mean
        output entropy (nats; ``log K`` is uniform, 0 one-hot), the perplexity
        of the prototype usage (argmax counts, summed over ranks; 1 means
        every utterance lands on the same prototype) and the spread of the
        teacher's normalised embeddings (``std * sqrt(D)``: about 1 when
        isotropic, 0 when all embeddings coincide).

        The training steps only add device tensors; this reads them back,
        once.

        Returns
        -------
        dict
            ``teacher_entropy``, ``proto_perplexity``, ``emb_std`` and the
            mean loss terms, or ``{}`` before any batch.
        """
        mon = self._mon
        if not mon["n"]:
            return {}
        counts = all_reduce_sum(mon["usage"].to(self.device)).cpu()
        freq = counts / counts.sum()
        perplexity = float(
            torch.exp(-(freq * torch.log(freq.clamp_min(1e-12))).sum())
        )
        names = list(mon["sums"])
        sums = torch.stack([mon["sums"][key] for key in names]).cpu().tolist()
        means = {key: total / mon["n"] for key, total in zip(names, sums)}
        stats = {
            "teacher_entropy": means.pop("teacher_entropy"),
            "proto_perplexity": perplexity,
            "emb_std": means.pop("emb_std"),
        }
        stats.update(means)
        return stats

    def warn_if_collapsed(self, stats, epoch):
        """Log a warning when the collapse statistics cross the thresholds.

        Arguments
        ---------
        stats : dict
            Output of :meth:`collapse_stats`.
        epoch : int
            For the message.

        Returns
        -------
        bool
            Whether a collapse was detected.
        """
        reasons = []
        if (
            stats.get("proto_perplexity", math.inf)
            < self.hparams.collapse_min_perplexity
        ):
            reasons.append(
                f"prototype-usage perplexity {stats['proto_perplexity']:.2f} < {self.hparams.collapse_min_perplexity}"
            )
        if stats.get("emb_std", math.inf) < self.hparams.collapse_min_std:
            reasons.append(
                f"teacher embedding spread {stats['emb_std']:.3f} < {self.hparams.collapse_min_std}"
            )
        if reasons and if_main_process():
            logger.warning(
                "COLLAPSE SUSPECTED at epoch %s: %s. The teacher maps different utterances to the "
                "same output; check augmentation, the EMA momentum, the temperatures, the "
                "KoLeo/mean-entropy weights and the learning rate.",
                epoch,
                "; ".join(reasons),
            )
        return bool(reasons)

    # ------------------------------------------------------------- training
    def init_optimizers(self):
        """One optimizer over the trainable parameters in three groups:
        weights (weight decay), biases and norm parameters (none),
        prototypes (none), as in the authors' code. The learning-rate
        schedule sets every group."""
        if self.opt_class is None:
            return
        proto_ids = set()
        if "prototypes" in self.modules:
            proto_ids = {id(p) for p in self.modules.prototypes.parameters()}
        decay, no_decay, protos = [], [], []
        for p in self.modules.parameters():
            if not p.requires_grad:
                continue
            if id(p) in proto_ids:
                protos.append(p)
            elif p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [{"params": decay}]
        groups += [
            {"params": ps, "weight_decay": 0.0}
            for ps in (no_decay, protos)
            if ps
        ]
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def clip_gradients(self):
        """Clip each parameter tensor's gradient to L2 norm
        ``grad_clip_per_tensor`` (DINO/SDPN style; SpeechBrain's default
        clips the first param group by its total norm), optionally sparing
        the prototypes, and drop DINO's last-layer gradients during the
        first ``freeze_last_layer_steps`` steps."""
        clip = self.hparams.grad_clip_per_tensor
        skip = set()
        if "prototypes" in self.modules and not self.hparams.clip_prototypes:
            skip = {id(p) for p in self.modules.prototypes.parameters()}
        if clip:
            grads = [
                p.grad.detach()
                for p in self.modules.parameters()
                if p.grad is not None and id(p) not in skip
            ]
            if grads:
                # No `if norm > clip` per tensor: each such test is a
                # device-to-host sync (about 150 per step on a GPU). The
                # scale min(1, clip / norm) does the same on the device.
                norms = torch._foreach_norm(grads)
                scales = [
                    torch.clamp(clip / (n + 1e-6), max=1.0) for n in norms
                ]
                torch._foreach_mul_(grads, scales)
        if (
            self.hparams.method == "dino"
            and self.optimizer_step < self.hparams.freeze_last_layer_steps
        ):
            last = unwrap(self.modules.projector).last_layer
            if last is not None:
                for p in last.parameters():
                    p.grad = None

    def optimizers_step(self):
        """Unscale, clip per tensor, skip non-finite gradients, step."""
        opt = self.optimizer
        self.scaler.unscale_(opt)
        self.clip_gradients()
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        self.scaler.step(opt)
        self.scaler.update()
        opt.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def ema_momentum(self, step=None):
        """Teacher momentum at ``step`` (default: the current step).

        Arguments
        ---------
        step : int | None
            Optimizer step.

        Returns
        -------
        float
            The momentum.
        """
        step = self.optimizer_step if step is None else step
        return cosine_momentum(
            step,
            self.hparams.total_steps,
            self.hparams.ema_base,
            self.hparams.ema_final,
        )

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """After an optimizer step: schedulers, then the teacher's EMA step.

        Arguments
        ---------
        batch : PaddedBatch
            The batch.
        outputs : dict
            Forward outputs.
        loss : torch.Tensor
            The loss.
        should_step : bool
            Whether the optimizer stepped.
        """
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if should_step:
            student = [unwrap(self.modules[k]) for k in self.student_keys]
            self.hparams.teacher.update(
                student, self.ema_momentum(self.optimizer_step - 1)
            )

    def on_stage_start(self, stage, epoch=None):
        """Reset the collapse monitor at the start of training epochs.

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
        """Collapse monitoring, verification when due, log, checkpoint.

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
        monitor = self.collapse_stats()
        stats.update(monitor)
        self.warn_if_collapsed(monitor, epoch)
        stats.update(self.verification_stats(epoch))
        meta = {
            "epoch": epoch,
            "lr": self.current_lr(),
            "ema_momentum": round(self.ema_momentum(), 6),
        }
        if self.hparams.method == "dino":
            meta["teacher_temp"] = self.dino_teacher_temp()
        self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=stats)
        self.checkpointer.save_and_keep_only(meta=stats, num_to_keep=2)
