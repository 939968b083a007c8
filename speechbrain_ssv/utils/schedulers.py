"""Learning-rate schedules that SpeechBrain does not ship, and the clocks
they follow.

SpeechBrain has warm-up + exponential decay and Noam-style schedules, but no
linear warm-up followed by a cosine decay to a floor, which the SDPN paper and
most self-supervised recipes use. Every schedule here is a pure function of
its clock: the optimizer step (:data:`STEP_CLOCK`) or the number of finished
training epochs (:data:`EPOCH_CLOCK`). Brain checkpoints both (its
``optimizer_step`` and the epoch counter), so a resumed run continues the
schedule exactly with no state of its own. A recipe names its schedule as
``lr_annealing: !new:...``; the Brains apply it in one place,
:class:`speechbrain_ssv.brains.base.LRAnnealingMixin`.

Authors
 * speechbrain-ssv developers 2026
"""

import math

#: Clock of a schedule set before every optimizer step from the number of
#: optimizer steps done so far (``Brain.optimizer_step``).
STEP_CLOCK = "step"
#: Clock of a schedule set for a whole training epoch from the number of
#: epochs finished before it (``epoch - 1`` during epoch ``epoch``).
EPOCH_CLOCK = "epoch"


class StepSchedule:
    """Base of the schedules here: a pure function ``lr_at(t)`` of the
    schedule's clock ``t`` (attribute :attr:`clock`), applied to every param
    group by calling the object.

    The ``repr`` lists the settings, so that the stage records that include
    a schedule (:mod:`speechbrain_ssv.utils.stages`) are the same from one
    run to the next.

    Example
    -------
    >>> class Halving(StepSchedule):
    ...     def __init__(self, lr):
    ...         self.lr = lr
    ...     def lr_at(self, step):
    ...         return self.lr / 2**step
    >>> Halving(1.0)
    Halving(lr=1.0)
    >>> Halving(1.0).clock
    'step'
    """

    #: What ``t`` counts: :data:`STEP_CLOCK` or :data:`EPOCH_CLOCK`.
    clock = STEP_CLOCK

    def lr_at(self, step):
        """Learning rate at clock value ``step`` (defined by subclasses).

        Arguments
        ---------
        step : int
            Optimizer steps done so far (:data:`STEP_CLOCK`) or training
            epochs finished (:data:`EPOCH_CLOCK`).

        Returns
        -------
        float
            The learning rate.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must define lr_at(step)"
        )

    def __call__(self, optimizer, step):
        """Set every param group's learning rate for clock value ``step``.

        Arguments
        ---------
        optimizer : torch.optim.Optimizer
            The optimizer to update.
        step : int
            Optimizer steps done so far (:data:`STEP_CLOCK`) or training
            epochs finished (:data:`EPOCH_CLOCK`).

        Returns
        -------
        float
            The learning rate that was set.
        """
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


class WarmupCosineScheduler(StepSchedule):
    """Linear warm-up from ``start_lr`` to ``lr`` over ``warmup_steps``, then
    cosine decay to ``final_lr`` at ``total_steps`` (constant afterwards).

    Arguments
    ---------
    lr : float
        Peak learning rate.
    warmup_steps : int
        Number of warm-up optimizer steps.
    total_steps : int
        Step at which the cosine reaches ``final_lr``.
    final_lr : float
        Floor of the cosine.
    start_lr : float
        Learning rate at step 0.

    Example
    -------
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    >>> sched = WarmupCosineScheduler(1.0, 10, 110, final_lr=0.0)
    >>> sched.lr_at(5)
    0.5
    >>> sched.lr_at(60)
    0.5
    >>> sched(opt, 110)
    0.0
    >>> opt.param_groups[0]["lr"]
    0.0
    """

    def __init__(
        self, lr, warmup_steps, total_steps, final_lr=1e-5, start_lr=0.0
    ):
        # total_steps 0: a run that trains nothing (--number_of_epochs 0,
        # which evaluates and exports the initial encoder, e.g. the
        # untrained baseline of the READMEs).
        if total_steps != 0 and total_steps <= warmup_steps:
            raise ValueError(
                f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})"
            )
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.final_lr = final_lr
        self.start_lr = start_lr

    def lr_at(self, step):
        """Learning rate at optimizer step ``step``.

        Arguments
        ---------
        step : int
            Number of optimizer steps done so far.

        Returns
        -------
        float
            The learning rate.
        """
        if step < self.warmup_steps:
            return (
                self.start_lr
                + (self.lr - self.start_lr) * step / self.warmup_steps
            )
        progress = min(
            1.0,
            (step - self.warmup_steps) / (self.total_steps - self.warmup_steps),
        )
        cos = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_lr + (self.lr - self.final_lr) * cos


class EpochDecayScheduler(StepSchedule):
    """Exponential decay by ``gamma`` once per epoch: ``lr * gamma ** k``
    after ``k`` finished periods (never below ``final_lr``).

    With ``steps_per_epoch`` null the period is a training epoch and the
    schedule follows :data:`EPOCH_CLOCK`: the rate of epoch ``e`` is
    ``lr * gamma ** (e - 1)`` whatever the number of batches (the
    clustering model: SGD 0.01 x 0.996 per epoch; the l-mix VAE). With a
    number the period is that many optimizer steps on :data:`STEP_CLOCK`:
    the i-mix/l-mix paper (Adam 1e-3, x0.95 per epoch) and
    voxceleb_unsupervised (x0.95 every 5 epochs: ``steps_per_epoch`` = 5
    epochs' steps). A pure function of its clock either way, so a resumed
    run continues it exactly.

    Arguments
    ---------
    lr : float
        Initial learning rate.
    gamma : float
        Decay factor per period (1: constant).
    steps_per_epoch : int | None
        Optimizer steps per decay period, or ``None`` for one training epoch.
    final_lr : float
        Floor.

    Example
    -------
    >>> sched = EpochDecayScheduler(1.0, 0.5, steps_per_epoch=10)
    >>> sched.clock, sched.lr_at(9), sched.lr_at(10), sched.lr_at(25)
    ('step', 1.0, 0.5, 0.25)
    >>> per_epoch = EpochDecayScheduler(0.01, 0.996, steps_per_epoch=None)
    >>> per_epoch.clock, per_epoch.lr_at(0), per_epoch.lr_at(2) == 0.01 * 0.996**2
    ('epoch', 0.01, True)
    """

    def __init__(self, lr, gamma, steps_per_epoch, final_lr=0.0):
        if steps_per_epoch is not None and steps_per_epoch <= 0:
            raise ValueError(
                f"steps_per_epoch must be > 0 or None (one decay per "
                f"training epoch), got {steps_per_epoch}"
            )
        self.lr = lr
        self.gamma = gamma
        self.steps_per_epoch = (
            None if steps_per_epoch is None else int(steps_per_epoch)
        )
        self.final_lr = final_lr

    @property
    def clock(self):
        """:data:`EPOCH_CLOCK` without ``steps_per_epoch``, else
        :data:`STEP_CLOCK`."""
        return EPOCH_CLOCK if self.steps_per_epoch is None else STEP_CLOCK

    def lr_at(self, step):
        """Learning rate after ``step`` optimizer steps, or ``step``
        finished epochs when ``steps_per_epoch`` is ``None``.

        Arguments
        ---------
        step : int
            The clock value.

        Returns
        -------
        float
            The learning rate.
        """
        periods = (
            step
            if self.steps_per_epoch is None
            else step // self.steps_per_epoch
        )
        return max(self.final_lr, self.lr * self.gamma**periods)


class CosineRestartScheduler(StepSchedule):
    """Cosine annealing with warm restarts (SGDR, Loshchilov and Hutter,
    ICLR 2017), as Mun, Han et al. (FFSVC 2022, Sec. IV-D) schedule both
    training phases: each cycle of ``cycle_steps`` starts at a peak and
    follows a half cosine down to ``final_lr``; the peak of cycle ``c``
    (from 0) is ``lr * decay ** c``; after ``n_cycles`` the rate stays at
    ``final_lr``. The paper's pre-training: 25-epoch cycles, peak 1e-3,
    decay 0.8, two cycles; fine-tuning: one 4-epoch cycle from 1e-5 to 1e-8.

    A pure function of the optimizer step, like
    :class:`WarmupCosineScheduler`, so a resumed run continues it exactly.

    Arguments
    ---------
    lr : float
        Peak of the first cycle.
    cycle_steps : int
        Optimizer steps per cycle.
    n_cycles : int
        Number of cycles.
    decay : float
        Factor applied to the peak at each restart.
    final_lr : float
        Bottom of every cycle (and the rate after the last one).

    Example
    -------
    >>> sched = CosineRestartScheduler(1.0, 10, n_cycles=2, decay=0.5, final_lr=0.0)
    >>> sched.lr_at(0), sched.lr_at(5), sched.lr_at(10), sched.lr_at(15), sched.lr_at(20)
    (1.0, 0.5, 0.5, 0.25, 0.0)
    """

    def __init__(self, lr, cycle_steps, n_cycles=1, decay=1.0, final_lr=0.0):
        if cycle_steps <= 0:
            raise ValueError(f"cycle_steps must be > 0, got {cycle_steps}")
        if n_cycles < 1:
            raise ValueError(f"n_cycles must be >= 1, got {n_cycles}")
        self.lr = lr
        self.cycle_steps = int(cycle_steps)
        self.n_cycles = int(n_cycles)
        self.decay = decay
        self.final_lr = final_lr

    def lr_at(self, step):
        """Learning rate at optimizer step ``step``.

        Arguments
        ---------
        step : int
            Number of optimizer steps done so far.

        Returns
        -------
        float
            The learning rate.
        """
        cycle, pos = divmod(int(step), self.cycle_steps)
        if cycle >= self.n_cycles:
            return self.final_lr
        peak = self.lr * self.decay**cycle
        cos = 0.5 * (1.0 + math.cos(math.pi * pos / self.cycle_steps))
        return self.final_lr + (peak - self.final_lr) * cos
