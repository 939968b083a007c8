"""Exponential-moving-average teacher for self-distillation (SDPN, DINO).

Authors
 * speechbrain-ssv developers 2026
"""

import copy
import math

import torch


def cosine_momentum(step, total_steps, base=0.996, final=1.0):
    """Teacher EMA momentum, cosine from ``base`` at step 0 to ``final`` at
    ``total_steps`` (DINO/SDPN: 0.996 -> 1 over the whole training):
    ``m = final - (final - base) (1 + cos(pi t / T)) / 2``.

    A pure function of the optimizer step, so a resumed run continues it.

    Arguments
    ---------
    step : int
        Optimizer steps done.
    total_steps : int
        Length of the schedule (constant ``final`` afterwards).
    base, final : float
        Momentum at the start and at the end.

    Returns
    -------
    float
        The momentum.

    Example
    -------
    >>> cosine_momentum(0, 100), cosine_momentum(50, 100), cosine_momentum(100, 100)
    (0.996, 0.998, 1.0)
    """
    progress = min(1.0, step / max(1, total_steps))
    return final - (final - base) * (1.0 + math.cos(math.pi * progress)) / 2.0


class EMATeacher(torch.nn.Module):
    """A frozen copy of the student networks, updated as
    ``theta_t <- m theta_t + (1 - m) theta_s`` (parameters only; like the
    authors' code the teacher keeps its own BatchNorm statistics).

    The teacher networks are either given (so that a recipe can name the
    teacher's encoder as its own top-level object, e.g. for export) and then
    initialised from the student, or deep copies of the student.

    Arguments
    ---------
    student : sequence of torch.nn.Module
        The student networks (e.g. ``[encoder, head]``).
    teacher : sequence of torch.nn.Module | None
        Networks of the same architecture to hold the teacher; ``None`` deep
        copies ``student``.

    Example
    -------
    >>> student = [torch.nn.Linear(2, 2)]
    >>> teacher = EMATeacher(student)
    >>> torch.equal(teacher.networks[0].weight, student[0].weight)
    True
    >>> any(p.requires_grad for p in teacher.parameters())
    False
    """

    def __init__(self, student, teacher=None):
        super().__init__()
        student = list(student)
        if teacher is None:
            teacher = [copy.deepcopy(s) for s in student]
        else:
            teacher = list(teacher)
            if len(teacher) != len(student):
                raise ValueError(
                    f"{len(teacher)} teacher networks for {len(student)} student networks"
                )
            for t, s in zip(teacher, student):
                t.load_state_dict(s.state_dict())
        self.networks = torch.nn.ModuleList(teacher)
        for p in self.networks.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student, momentum):
        """One EMA step towards the student's current parameters.

        Arguments
        ---------
        student : sequence of torch.nn.Module
            The student networks, in the order given at construction (bare,
            not DDP-wrapped).
        momentum : float
            ``m``; 1 leaves the teacher unchanged.
        """
        student = list(student)
        if len(student) != len(self.networks):
            raise ValueError(
                f"{len(student)} student networks for {len(self.networks)} teacher networks"
            )
        for t_net, s_net in zip(self.networks, student):
            t_params = list(t_net.parameters())
            s_params = list(s_net.parameters())
            if len(t_params) != len(s_params):
                raise ValueError("teacher and student architectures differ")
            torch._foreach_mul_(t_params, momentum)
            torch._foreach_add_(
                t_params, [s.detach() for s in s_params], alpha=1.0 - momentum
            )

    def forward(self, *args, index=0, **kwargs):
        """Run one of the teacher networks without gradient.

        Arguments
        ---------
        *args, **kwargs
            Passed to the network.
        index : int
            Which network.

        Returns
        -------
        object
            The network's output.
        """
        with torch.no_grad():
            return self.networks[index](*args, **kwargs)
