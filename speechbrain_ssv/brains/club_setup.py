"""What a CLUB run (:mod:`speechbrain_ssv.brains.club`) settles from its
hparams before training: the weights of Eq. 21 it trains with
(:func:`resolve_weights`: ``table1_row`` and ``loss_weights``) and the
pre-trained front-end it starts from (:func:`load_pretrained_frontend`:
``pretrained_frontend``).

Authors
 * speechbrain-ssv developers 2026
"""

import os

from speechbrain_ssv.brains.base import unwrap
from speechbrain_ssv.losses.club import PAPER_WEIGHTS, table1_weights
from speechbrain_ssv.utils.checkpoints import find_checkpoint
from speechbrain_ssv.utils.errors import HparamsError, SSVInputError
from speechbrain_ssv.utils.pretrained import (
    PretrainedWeightsError,
    StrictTransfer,
    strict_pretrainer,
)

__all__ = [
    "load_pretrained_frontend",
    "resolve_weights",
]


def resolve_weights(table1_row=None, loss_weights=None):
    """The weights of Eq. 21 a run trains with.

    Arguments
    ---------
    table1_row : int | None
        A fine-tuned row of Table I (2-6): its terms on, with the weights of
        ``loss_weights``, the others 0. ``None``: ``loss_weights`` as given.
    loss_weights : dict | None
        ``cls_s``, ``cls_d``, ``mi_s_d``, ``mi_d_ys``, ``mi_s_yd``
        (default :data:`~speechbrain_ssv.losses.club.PAPER_WEIGHTS`: 5, 10,
        0.5, 0.1, 0.1).

    Returns
    -------
    dict
        The five weights.

    Example
    -------
    >>> resolve_weights(3)
    {'cls_s': 5.0, 'cls_d': 10.0, 'mi_s_d': 0.0, 'mi_d_ys': 0.0, 'mi_s_yd': 0.0}
    >>> resolve_weights(None, {"cls_s": 1, "cls_d": 0, "mi_s_d": 0, "mi_d_ys": 0, "mi_s_yd": 0})["cls_s"]
    1.0
    """
    weights = dict(PAPER_WEIGHTS if loss_weights is None else loss_weights)
    unknown = sorted(set(weights) - set(PAPER_WEIGHTS))
    missing = sorted(set(PAPER_WEIGHTS) - set(weights))
    if unknown or missing:
        raise HparamsError(
            "loss_weights",
            f"unknown term(s) {unknown}, missing term(s) {missing}; expected "
            f"exactly {list(PAPER_WEIGHTS)}",
        )
    for name, value in weights.items():
        if float(value) < 0:
            raise HparamsError(
                f"loss_weights: {name}", f"is {value}; expected >= 0"
            )
    if table1_row is None:
        return {k: float(weights[k]) for k in PAPER_WEIGHTS}
    try:
        return table1_weights(int(table1_row), weights)
    except (SSVInputError, ValueError, TypeError):
        raise HparamsError(
            "table1_row",
            f"is {table1_row!r}; expected 2-6 (the fine-tuned rows of Table "
            "I) or null to use loss_weights as given; row 1 (no fine-tuning) "
            "is the 'initial_embedding' result of any run with "
            "pretrained_frontend",
        ) from None


def _frontend_state_file(path):
    """The ``.ckpt`` file of a front-end given as a file or a folder."""

    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise HparamsError(
            f"pretrained_frontend: {path}", "is neither a file nor a folder"
        )
    direct = os.path.join(path, "embedding_model.ckpt")
    if os.path.isfile(direct):  # an export folder or a CKPT+ folder
        return direct
    try:  # a recipe save folder: the best checkpoint by ErrorRate
        ckpt = find_checkpoint(path, min_key="ErrorRate")
    except SSVInputError:
        ckpt = find_checkpoint(path)
    found = os.path.join(ckpt, "embedding_model.ckpt")
    if not os.path.isfile(found):
        raise HparamsError(
            f"pretrained_frontend: {path}",
            f"checkpoint {ckpt} has no embedding_model.ckpt",
        )
    return found


def load_pretrained_frontend(module, path):
    """Initialise the front-end from a pre-training run (strictly).

    ``path`` may be a ``.ckpt`` state dict, an export folder
    (:mod:`speechbrain_ssv.export`) or a ``CKPT+...`` folder (their
    ``embedding_model.ckpt``), or a recipe ``save`` folder (the checkpoint
    with the lowest ``ErrorRate``, else the latest). DDP's ``module.``
    prefix is stripped, and so is ``frontend.`` (an export of this recipe,
    whose encoder wraps front-end and decoupling block; only the front-end
    is taken). The file is loaded by SpeechBrain's ``Pretrainer`` with the
    strict hook of :mod:`speechbrain_ssv.utils.pretrained`: SpeechBrain's
    own non-strict transfer would leave a mis-keyed model random with only
    a warning.

    Arguments
    ---------
    module : torch.nn.Module
        The front-end (``embedding_model``).
    path : str
        See above.

    Returns
    -------
    str
        The file that was loaded.

    Raises
    ------
    HparamsError
        Naming ``pretrained_frontend`` and the file: no such file or
        folder, not a state dict, or a file that does not fit ``module``.

    Example
    -------
    >>> import torch
    >>> src, dst = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> p = os.path.join(getfixture("tmpdir"), "f.ckpt")
    >>> torch.save({"module." + k: v for k, v in src.state_dict().items()}, p)
    >>> load_pretrained_frontend(dst, p) == p, torch.equal(dst.weight, src.weight)
    (True, True)
    >>> load_pretrained_frontend(torch.nn.Linear(2, 3), p)
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: pretrained_frontend: ...f.ckpt: does not fit this Linear: shape mismatches (2): [...]; pre-train with the same front-end settings ...
    """
    path = os.fspath(path)
    state_file = _frontend_state_file(path)
    hook = StrictTransfer(
        prefix="frontend.",
        hint="pre-train with the same front-end settings (e.g. "
        "recipes/VoxCeleb/Supervised/hparams/mfa_conformer_minivox.yaml "
        "for club_minivox.yaml)",
    )
    pretrainer = strict_pretrainer(
        {"embedding_model": unwrap(module)},
        {"embedding_model": state_file},
        hook=hook,
    )
    try:
        pretrainer.collect_files()
        pretrainer.load_collected()
    except PretrainedWeightsError as err:
        raise HparamsError(
            f"pretrained_frontend: {err.where}", err.problem
        ) from None
    return state_file
