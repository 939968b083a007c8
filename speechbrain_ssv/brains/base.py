"""Shared Brain behaviour: embedding waveforms with the recipe's encoder and
periodic verification on a trial list.

Every method recipe names its encoder pipeline with the same three module
keys (``compute_features``, ``mean_var_norm``, ``embedding_model``), which is
also what :mod:`speechbrain_ssv.export` writes for ``EncoderClassifier``.

Authors
 * speechbrain-ssv developers 2026
"""

import hashlib
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from torch.nn.parallel import DistributedDataParallel

from speechbrain_ssv.eval.report import method_label, plot_title
from speechbrain_ssv.eval.verification import (
    evaluate_verification,
    utt_to_wav_from_csv,
)
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.precision import first_nonfinite_key
from speechbrain_ssv.utils.schedulers import EPOCH_CLOCK, StepSchedule


def unwrap(module):
    """Return the module inside DDP / DataParallel and ``torch.compile``
    wrappers (SpeechBrain's ``--compile`` compiles first, then DDP-wraps).

    A compiled module forwards attribute access to the original, but its
    ``state_dict`` names carry an ``_orig_mod.`` prefix and a compiled
    container (``ModuleDict``) supports neither ``in`` nor indexing;
    checkpoints, exports, fingerprints and the EMA teacher must see the
    original.

    Arguments
    ---------
    module : torch.nn.Module
        Possibly wrapped module.

    Returns
    -------
    torch.nn.Module
        The bare module.

    Example
    -------
    >>> lin = torch.nn.Linear(2, 2)
    >>> unwrap(lin) is lin
    True
    """
    while True:
        # torch.compile's OptimizedModule keeps the original in _orig_mod;
        # on a bare module the lookup raises AttributeError: default None.
        inner = getattr(module, "_orig_mod", None)
        if inner is None:
            inner = getattr(module, "module", None)
        if inner is None or inner is module:
            return module
        module = inner


def weights_fingerprint(modules):
    """Short hash of the parameters and buffers of some modules.

    The embedding cache of an evaluation is keyed by a model tag; adding this
    hash makes the tag change whenever the weights do, so a re-trained model
    written to the same output folder after the same number of steps never
    reuses the embeddings of the previous one.

    Arguments
    ---------
    modules : iterable of torch.nn.Module
        The modules (bare or wrapped).

    Returns
    -------
    str
        12 hex digits.

    Example
    -------
    >>> lin = torch.nn.Linear(2, 2)
    >>> a = weights_fingerprint([lin])
    >>> a == weights_fingerprint([lin])
    True
    >>> with torch.no_grad():
    ...     _ = lin.weight.add_(1.0)
    >>> a == weights_fingerprint([lin])
    False
    """
    h = hashlib.sha1()
    for module in modules:
        for name, tensor in unwrap(module).state_dict().items():
            h.update(name.encode())
            if isinstance(tensor, torch.Tensor):
                t = tensor.detach().cpu().contiguous()
                # view as bytes: works for every dtype, bfloat16 included.
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def first_nonfinite(modules):
    """Name of the first parameter or buffer holding NaN/inf, or None.

    Arguments
    ---------
    modules : iterable or dict of torch.nn.Module
        The modules (bare or wrapped), named by a dict's keys or by their
        position.

    Returns
    -------
    str | None
        ``"<key or index>.<name>"`` of the first non-finite tensor.

    Example
    -------
    >>> lin = torch.nn.Linear(2, 2)
    >>> first_nonfinite([lin]) is None
    True
    >>> with torch.no_grad():
    ...     lin.bias[0] = float("nan")
    >>> first_nonfinite([lin])
    '0.bias'
    """
    items = modules.items() if isinstance(modules, dict) else enumerate(modules)
    for i, module in items:
        key = first_nonfinite_key(unwrap(module).state_dict())
        if key is not None:
            return f"{i}.{key}"
    return None


def check_method_hparams(hparams, method_hparams):
    """Check the yaml's ``method`` and the settings only that method reads.

    A Brain that runs one of several methods (SDPN or DINO; AP, i-AP or
    l-AP) reads some settings in one method only: the yaml of that method
    lists them, the others need not (the import test
    ``test_every_hparams_key_read_is_in_the_yaml`` reads this table too).
    Checking them when the Brain is built turns a forgotten key into one
    error naming it, not an ``AttributeError`` hours into training.

    Arguments
    ---------
    hparams : types.SimpleNamespace | dict
        The Brain's hparams.
    method_hparams : dict
        ``method -> tuple of the keys only that method reads``.

    Returns
    -------
    str
        The method.

    Example
    -------
    >>> table = {"sdpn": ("sharpen_temp",), "dino": ()}
    >>> check_method_hparams({"method": "dino"}, table)
    'dino'
    >>> check_method_hparams({"method": "sdpn"}, table)
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: sharpen_temp: missing; method 'sdpn' reads it (list it in the yaml)
    """
    keys = hparams if isinstance(hparams, dict) else vars(hparams)
    method = keys.get("method")
    if method not in method_hparams:
        raise HparamsError(
            "method", f"is {method!r}; expected one of {tuple(method_hparams)}"
        )
    missing = [k for k in method_hparams[method] if k not in keys]
    if missing:
        raise HparamsError(
            ", ".join(missing),
            f"missing; method {method!r} reads "
            f"{'it' if len(missing) == 1 else 'them'} (list "
            f"{'it' if len(missing) == 1 else 'them'} in the yaml)",
        )
    return method


class TrainingDivergedError(RuntimeError):
    """The model's weights became NaN/inf during training."""


class LoaderOptionsMixin:
    """``make_dataloader`` that adapts the yaml's loader options to the run
    (mixed into every Brain of the package, before ``sb.Brain``)."""

    #: DataLoader options that torch refuses without worker processes.
    worker_only_options = ("persistent_workers", "prefetch_factor")

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's ``make_dataloader``, except that the worker-only
        options (``persistent_workers``, ``prefetch_factor``) set in a yaml's
        ``dataloader_options`` are dropped when ``num_workers`` is 0, so
        ``--num_workers 0`` (tests, debugging) works with any yaml instead of
        failing inside torch's DataLoader, and ``pin_memory`` is dropped off
        CUDA.

        Arguments
        ---------
        dataset : Dataset
            As for :meth:`speechbrain.Brain.make_dataloader`.
        stage : sb.Stage
            The stage.
        ckpt_prefix : str | None
            Checkpoint name prefix of the loader.
        **loader_kwargs : dict
            DataLoader options.

        Returns
        -------
        DataLoader
            The loader.
        """
        if not loader_kwargs.get("num_workers"):
            for key in self.worker_only_options:
                loader_kwargs.pop(key, None)
        if not str(self.device).startswith("cuda"):
            # Pinned host memory only speeds up copies to a GPU; elsewhere
            # torch warns on every loader it builds.
            loader_kwargs.pop("pin_memory", None)
        return super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )


class LRAnnealingMixin:
    """Applies the recipe's learning-rate schedule, ``hparams.lr_annealing``
    (mixed into every Brain of the package that trains with one optimizer,
    before ``sb.Brain``): the one place a learning rate is scheduled.

    ``lr_annealing`` is a required key. It is one of:

    * a :class:`~speechbrain_ssv.utils.schedulers.StepSchedule` following
      the step clock: set before every optimizer step from
      ``optimizer_step``;
    * a ``StepSchedule`` following the epoch clock (e.g.
      ``EpochDecayScheduler`` without ``steps_per_epoch``): set for the whole
      training epoch ``e`` from ``e - 1`` finished epochs, read from
      ``hparams.epoch_counter``;
    * a SpeechBrain per-batch scheduler (an ``on_batch_end(optimizer)``
      method, e.g. ``CyclicLRScheduler``): stepped after every optimizer
      step; its own counter resumes when it is among the checkpointer's
      recoverables, as the recipe yamls list it;
    * ``null``: no schedule, the optimizer keeps the rate of ``opt_class``.

    Brain checkpoints ``optimizer_step`` and the recipes the epoch counter,
    so the first two are pure functions of checkpointed state and a resumed
    run continues them exactly.

    Example
    -------
    >>> from speechbrain.utils.epoch_loop import EpochCounter
    >>> from speechbrain_ssv.utils.schedulers import EpochDecayScheduler
    >>> class Tiny(LRAnnealingMixin, sb.Brain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.lin(batch)
    ...     def compute_objectives(self, out, batch, stage):
    ...         self.lrs.append(self.optimizer.param_groups[0]["lr"])
    ...         return out.pow(2).mean()
    >>> counter = EpochCounter(3)
    >>> brain = Tiny(
    ...     {"lin": torch.nn.Linear(1, 1)},
    ...     lambda params: torch.optim.SGD(params, lr=0.1),
    ...     hparams={
    ...         "lr_annealing": EpochDecayScheduler(0.1, 0.5, steps_per_epoch=None),
    ...         "epoch_counter": counter,
    ...     },
    ...     run_opts={"noprogressbar": True},
    ... )
    >>> brain.lrs = []
    >>> brain.fit(counter, [torch.ones(1)] * 2)
    >>> brain.lrs
    [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    >>> Tiny({}, hparams={"kl_beta": 1.0}).lr_schedule()
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: lr_annealing: missing; ...
    """

    def lr_schedule(self):
        """The validated ``hparams.lr_annealing``.

        Returns
        -------
        StepSchedule | object | None
            The schedule (``None``: the optimizer's own rate throughout).

        Raises
        ------
        HparamsError
            When the key is missing or names something that is no schedule.
        """
        try:
            sched = self.hparams.lr_annealing
        except AttributeError:
            raise HparamsError(
                "lr_annealing",
                "missing; expected the learning-rate schedule in the recipe "
                "yaml (lr_annealing: !new:speechbrain_ssv.utils.schedulers."
                "WarmupCosineScheduler, EpochDecayScheduler, "
                "CosineRestartScheduler, or a SpeechBrain scheduler with "
                "on_batch_end such as CyclicLRScheduler), or null for the "
                "optimizer's own learning rate",
            ) from None
        if sched is None or isinstance(sched, StepSchedule):
            return sched
        if not callable(getattr(sched, "on_batch_end", None)):
            raise HparamsError(
                "lr_annealing",
                f"is a {type(sched).__name__}, which is neither a "
                "speechbrain_ssv.utils.schedulers.StepSchedule nor a "
                "per-batch scheduler with on_batch_end(optimizer); epoch "
                "schedules are EpochDecayScheduler(steps_per_epoch=null)",
            )
        return sched

    def epochs_finished(self):
        """Training epochs finished before the current one (the epoch
        clock).

        The epoch is read from the counter rather than passed down from
        ``on_stage_start``, which every Brain overrides for its own
        bookkeeping.

        Returns
        -------
        int
            ``epoch_counter.current - 1`` during a training epoch.
        """
        try:
            counter = self.hparams.epoch_counter
        except AttributeError:
            raise HparamsError(
                "epoch_counter",
                "missing; an lr_annealing on the epoch clock reads the "
                "current epoch from it",
            ) from None
        return max(int(counter.current) - 1, 0)

    def on_fit_start(self):
        """Check ``lr_annealing`` before anything is built or recovered."""
        self.lr_schedule()
        super().on_fit_start()

    def on_fit_batch_start(self, batch, should_step):
        """Set the learning rate of the batch about to be trained on.

        Arguments
        ---------
        batch : PaddedBatch
            The batch.
        should_step : bool
            Whether the optimizer steps after this batch.
        """
        sched = self.lr_schedule()
        if not isinstance(sched, StepSchedule):
            return
        if sched.clock == EPOCH_CLOCK:
            sched(self.optimizer, self.epochs_finished())
        elif should_step:
            sched(self.optimizer, self.optimizer_step)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Step a SpeechBrain per-batch scheduler after an optimizer step.

        Arguments
        ---------
        batch : PaddedBatch
            The batch.
        outputs : object
            Forward outputs.
        loss : torch.Tensor
            The loss.
        should_step : bool
            Whether the optimizer stepped.
        """
        sched = self.lr_schedule()
        if (
            should_step
            and sched is not None
            and not isinstance(sched, StepSchedule)
        ):
            sched.on_batch_end(self.optimizer)


class VerificationBrain(LRAnnealingMixin, LoaderOptionsMixin, sb.Brain):
    """Base Brain with an ``encode`` pipeline and trial-list evaluation.

    Hparams it reads, all required (the recipe yaml lists each; there are
    no code defaults): ``verification_file`` (trial list; empty or ``null``
    disables the periodic evaluation), ``test_annotation`` (CSV of the
    trial utterances), ``verify_every`` (epochs between evaluations; 0
    disables), ``verify_batch_size``, ``output_folder``, ``epoch_counter``
    and ``lr_annealing`` (:class:`LRAnnealingMixin`).
    """

    #: Module keys that form the inference encoder, in order.
    encoder_keys = ("compute_features", "mean_var_norm", "embedding_model")

    def encode(self, wavs, lens, modules=None):
        """Waveforms -> embeddings ``[B, D]`` through features, normalisation
        and the embedding model (gradients flow if enabled by the caller).

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` waveforms.
        lens : torch.Tensor
            ``[B]`` relative lengths.
        modules : dict-like | None
            Where to find the modules named by ``encoder_keys`` (features,
            normalisation, embedding model, in that order); defaults to
            ``self.modules``.

        Returns
        -------
        torch.Tensor
            ``[B, D]`` embeddings.
        """
        source = self.modules if modules is None else modules
        features, norm, embedder = (source[k] for k in self.encoder_keys)
        feats = norm(features(wavs), lens)
        emb = embedder(feats, lens)
        return emb.reshape(emb.shape[0], -1)

    def inference_encoder(self):
        """Return an ``encoder_fn(wavs, lens) -> [B, D]`` on the bare
        (unwrapped) modules in eval mode, for evaluation code.

        Returns
        -------
        callable
            The encoder function.
        """
        modules = {k: unwrap(self.modules[k]) for k in self.encoder_keys}

        @torch.no_grad()
        def encoder_fn(wavs, lens):
            """Embeddings of a padded batch, on the Brain's device."""
            return self.encode(
                wavs.to(self.device), lens.to(self.device), modules
            )

        return encoder_fn

    def should_verify(self, epoch):
        """True when the trial list should be scored at the end of ``epoch``.

        Arguments
        ---------
        epoch : int
            The epoch that just finished.

        Returns
        -------
        bool
            Whether to run verification now.
        """
        every = self.hparams.verify_every
        if not every or every <= 0 or not self.hparams.verification_file:
            return False
        last = epoch == self.hparams.epoch_counter.limit
        return last or epoch % every == 0

    def verify(self, out_dir, model_tag, title=None):
        """Score the trial list with the current encoder (main process only).

        Arguments
        ---------
        out_dir : str
            Where scores, metrics and plots go.
        model_tag : str
            Names the weights in logs and ``metrics.json``; a hash of the
            encoder weights is appended, so cached embeddings of other
            weights are never reused.
        title : str | None
            Names the model in the plot titles, e.g. ``"SDPN (teacher),
            epoch 8"`` (the EER is appended); default: the method.

        Returns
        -------
        dict | None
            Metrics (``eer``, ``min_dcf@0.01``, ...) on the main process,
            ``None`` elsewhere.
        """
        if not if_main_process():
            return None
        encoder = [self.modules[k] for k in self.encoder_keys]
        bad = first_nonfinite({k: self.modules[k] for k in self.encoder_keys})
        if bad is not None:
            # Otherwise the first NaN embedding would be reported "for" an
            # audio file, blaming the data for a diverged model.
            raise TrainingDivergedError(
                f"the encoder's tensor {bad} (parameter or buffer) is NaN/inf after "
                f"{self.optimizer_step} optimizer steps: training diverged "
                "(lower the learning rate, or resume from an earlier "
                "checkpoint); no trial was scored"
            )
        model_tag = f"{model_tag}-w{weights_fingerprint(encoder)}"
        was_training = {
            k: unwrap(self.modules[k]).training for k in self.encoder_keys
        }
        for k in self.encoder_keys:
            unwrap(self.modules[k]).eval()
        try:
            metrics = evaluate_verification(
                self.inference_encoder(),
                self.test_utterances(),
                self.hparams.verification_file,
                out_dir,
                model_tag=model_tag,
                title=title or method_label(self),
                batch_size=self.hparams.verify_batch_size,
                device=self.device,
                progress=not getattr(self, "noprogressbar", False),
            )
        finally:
            for k, mode in was_training.items():
                unwrap(self.modules[k]).train(mode)
        return metrics

    def test_utterances(self):
        """Map utterance id -> wav path for the trial list's utterances.

        Returns
        -------
        dict
            ``{utt_id: wav_path}`` read from ``hparams.test_annotation``.
        """

        if not hasattr(self, "_test_utts"):
            self._test_utts = utt_to_wav_from_csv(self.hparams.test_annotation)
        return self._test_utts

    def verification_stats(self, epoch):
        """Run verification if due and return stats to log (EER in percent,
        as SpeechBrain's recipes log it; minDCF normalised, 0-1).

        Arguments
        ---------
        epoch : int
            The epoch that just finished.

        Returns
        -------
        dict
            Possibly empty dict of stats.
        """
        if not self.should_verify(epoch):
            return {}
        out_dir = os.path.join(
            self.hparams.output_folder, "verification", f"epoch{epoch}"
        )
        metrics = self.verify(
            out_dir,
            model_tag=f"epoch{epoch}-step{self.optimizer_step}",
            title=plot_title(method_label(self), epoch),
        )
        if metrics is None:
            return {}
        return {
            "EER": 100 * metrics["eer"],
            "minDCF": metrics["min_dcf@0.01"],
        }

    def _wrap_distributed(self):
        """DDP-wrap the trainable modules; on CPU (``gloo``) without
        SyncBatchNorm.

        SpeechBrain always converts BatchNorm to SyncBatchNorm under torchrun,
        which has no CPU kernel ("SyncBatchNorm layers only work with GPU
        modules"), so CPU DDP would fail at start. On CPU each rank keeps its
        own BatchNorm statistics; on GPU SpeechBrain's behaviour is kept.
        """
        if self.distributed_launch and torch.device(self.device).type == "cpu":
            for name, module in self.modules.items():
                if any(p.requires_grad for p in module.parameters()):
                    self.modules[name] = DistributedDataParallel(
                        module,
                        find_unused_parameters=self.find_unused_parameters,
                    )
            return
        super()._wrap_distributed()

    def current_lr(self):
        """Learning rate of the first param group (for logs).

        Returns
        -------
        float
            The learning rate.
        """
        return self.optimizer.param_groups[0]["lr"]
