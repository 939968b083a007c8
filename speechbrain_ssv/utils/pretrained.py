"""One strict loader for pretrained weights, usable on its own or as a
SpeechBrain ``Pretrainer`` hook.

SpeechBrain 1.1.2 transfers pretrained parameters into an ``nn.Module`` with
``speechbrain.utils.checkpoints.torch_parameter_transfer``:
``load_state_dict(strict=False)``, and a missing or unexpected key is only
logged as a warning. A file written for another architecture, or with a
``module.`` (DDP) or ``frontend.`` (wrapper) prefix on its keys, then loads
*nothing* into the affected layers and training goes on from a half-random
model. This module refuses such a file with one error that names the file,
the model, the first few offending keys and how many there are.

- :func:`read_state_dict` reads a ``state_dict`` file with
  ``torch.load(weights_only=True)`` (no arbitrary pickles), with a clear
  error for a missing file, an unreadable one, or one that holds something
  else than a dict of tensors.
- :func:`load_strict` loads it into a module, strictly (keys, shapes and,
  on request, the values of integer buffers), stripping DDP's ``module.``
  prefix and optionally selecting one sub-module's keys (``frontend.``).
- :class:`StrictTransfer` is the same loading as a ``Pretrainer`` custom
  hook (``custom_hooks={"name": StrictTransfer()}``), also from a yaml;
  :func:`strict_pretrainer` builds a ``Pretrainer`` with it for every
  loadable.

Upstream note: SpeechBrain could offer this as an option of
``torch_parameter_transfer`` (``strict=True``, collecting the problems into
one error); the non-strict default suits partial transfers (e.g. an encoder
out of a full ASR model) but is a silent trap for the full-model case.

Authors
 * speechbrain-ssv developers 2026
"""

import os
import pickle

import torch
from speechbrain.utils.checkpoints import hook_on_loading_state_dict_checkpoint
from speechbrain.utils.fetching import FetchFrom, FetchSource
from speechbrain.utils.parameter_transfer import Pretrainer

from speechbrain_ssv.utils.errors import SSVInputError

__all__ = [
    "PretrainedWeightsError",
    "StrictTransfer",
    "load_strict",
    "read_state_dict",
    "strict_pretrainer",
]

#: How many offending keys an error lists per kind of problem.
SHOWN = 3

#: The prefix DDP's ``DistributedDataParallel`` puts on every key of the
#: module it wraps (a file saved from the wrapper instead of the bare module).
DDP_PREFIX = "module."


class PretrainedWeightsError(SSVInputError):
    """A pretrained-weights file that is missing, unreadable, not a
    ``state_dict``, or does not fit the model it is loaded into.

    Example
    -------
    >>> str(PretrainedWeightsError("a.ckpt", "does not exist"))
    'a.ckpt: does not exist'
    """


def read_state_dict(path):
    """Read a ``state_dict`` file (a dict of tensors), on the CPU, with
    ``torch.load(weights_only=True)``.

    SpeechBrain's key renames for files of older versions
    (``hook_on_loading_state_dict_checkpoint``) are applied, as its own
    loaders do.

    Arguments
    ---------
    path : str | os.PathLike
        The file.

    Returns
    -------
    dict
        Parameter and buffer names to tensors.

    Raises
    ------
    PretrainedWeightsError
        The file does not exist, cannot be read by ``torch.load``
        (damaged, or a pickle of arbitrary objects), or does not hold a
        dict of tensors.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "w.ckpt")
    >>> torch.save({"weight": torch.ones(2)}, p)
    >>> read_state_dict(p)
    {'weight': tensor([1., 1.])}
    >>> torch.save([torch.ones(2)], p)
    >>> read_state_dict(p)
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.pretrained.PretrainedWeightsError: ...w.ckpt: is not a state_dict (a dict of named tensors); it holds a list
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PretrainedWeightsError(
            path, "pretrained weights file does not exist"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page of advice; its reason is one line.
        lines = str(err).splitlines()
        reason = next((ln for ln in lines if "Unsupported" in ln), lines[0])
        raise PretrainedWeightsError(
            path,
            "holds more than tensors, which torch.load(weights_only=True) "
            f"refuses to unpickle ({reason.strip()}); expected a state_dict",
        ) from None
    except (RuntimeError, EOFError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise PretrainedWeightsError(
            path,
            f"cannot be read by torch.load (a damaged or truncated file, or "
            f"not a torch file): {first}",
        ) from None
    if not isinstance(state, dict):
        raise PretrainedWeightsError(
            path,
            "is not a state_dict (a dict of named tensors); it holds a "
            f"{type(state).__name__}",
        )
    odd = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise PretrainedWeightsError(
            path,
            f"is not a state_dict (a dict of named tensors): {len(odd)} "
            f"entries are not tensors, e.g. {odd[:SHOWN]}",
        )
    return hook_on_loading_state_dict_checkpoint(state)


def _select(state, prefix):
    """``state`` without DDP's prefix and, when ``prefix`` is given and
    some key is under it, only the keys under it, without it; and whether
    that selection was made."""
    state = {k.removeprefix(DDP_PREFIX): v for k, v in state.items()}
    if not prefix or not any(k.startswith(prefix) for k in state):
        return state, False
    selected = {
        k.removeprefix(prefix): v
        for k, v in state.items()
        if k.startswith(prefix)
    }
    return selected, True


def _listing(what, items):
    """``"missing keys (2): [a; b]"``, with at most :data:`SHOWN` items."""
    shown = "; ".join(items[:SHOWN])
    more = "; ..." if len(items) > SHOWN else ""
    return f"{what} ({len(items)}): [{shown}{more}]"


def _mismatches(state, own, check_integer_buffers):
    """The problems of loading ``state`` into a module whose own
    ``state_dict`` is ``own``, as phrases (none: it fits)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    common = [k for k in own if k in state]
    shapes = [
        f"{k} {list(state[k].shape)} in the file, {list(own[k].shape)} "
        "in the model"
        for k in common
        if state[k].shape != own[k].shape
    ]
    values = []
    if check_integer_buffers:
        values = [
            f"{k} {state[k].tolist()} in the file, {own[k].tolist()} in "
            "the model"
            for k in common
            if state[k].shape == own[k].shape
            and not own[k].is_floating_point()
            and not torch.equal(state[k], own[k])
        ]
    problems = []
    if missing:
        problems.append(_listing("missing keys", missing))
    if unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if shapes:
        problems.append(_listing("shape mismatches", shapes))
    if values:
        problems.append(_listing("integer buffers differing", values))
    return problems


def load_strict(
    module, path, prefix=None, check_integer_buffers=False, hint=None
):
    """Load a ``state_dict`` file into ``module``, all of it or nothing.

    Every parameter and buffer of the module must be in the file with its
    shape, and the file must hold nothing else; otherwise nothing is loaded
    and one :class:`PretrainedWeightsError` names the file, the model's
    class, and the first few missing keys, unexpected keys and shape
    mismatches with their counts.

    Arguments
    ---------
    module : torch.nn.Module
        The bare module (not a DDP or ``torch.compile`` wrapper).
    path : str | os.PathLike
        The ``state_dict`` file. A DDP ``module.`` prefix on its keys is
        stripped.
    prefix : str | None
        A sub-module's name with its dot (``"frontend."``): when some key
        of the file is under it, only those keys are loaded, without it (a
        wrapper's file into the sub-module); a file with no key under it is
        loaded whole (the sub-module's own file).
    check_integer_buffers : bool
        Also refuse integer buffers whose values differ (for models whose
        integer buffers record their architecture, e.g. the time strides
        of :class:`~speechbrain_ssv.lobes.vae.ConvVAE`; not for counters
        such as BatchNorm's ``num_batches_tracked``).
    hint : str | None
        What to do about a mismatch, appended to its error.

    Returns
    -------
    str
        The file that was loaded.

    Raises
    ------
    PretrainedWeightsError
        See :func:`read_state_dict`, and a file that does not fit.

    Example
    -------
    >>> src, dst = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    >>> p = os.path.join(getfixture("tmpdir"), "lin.ckpt")
    >>> torch.save({"module." + k: v for k, v in src.state_dict().items()}, p)
    >>> load_strict(dst, p) == p, torch.equal(dst.weight, src.weight)
    (True, True)
    >>> load_strict(torch.nn.Linear(2, 4), p, hint="use out_features=3")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.pretrained.PretrainedWeightsError: ...lin.ckpt: does not fit this Linear: shape mismatches (2): [weight [3, 2] in the file, [4, 2] in the model; bias [3] in the file, [4] in the model]; use out_features=3
    """
    path = os.fspath(path)
    state, selected = _select(read_state_dict(path), prefix)
    own = module.state_dict()
    problems = _mismatches(state, own, check_integer_buffers)
    if problems:
        where = f" (the file's keys under {prefix!r})" if selected else ""
        raise PretrainedWeightsError(
            path,
            f"does not fit this {type(module).__name__}{where}: "
            + ", ".join(problems)
            + (f"; {hint}" if hint else ""),
        )
    module.load_state_dict(state, strict=True)
    return path


class StrictTransfer:
    """:func:`load_strict` as a SpeechBrain ``Pretrainer`` custom hook
    (called as ``hook(obj, path)``), in place of its non-strict default.

    Arguments
    ---------
    prefix : str | None
        See :func:`load_strict`.
    check_integer_buffers : bool
        See :func:`load_strict`.
    hint : str | None
        See :func:`load_strict`.

    Example
    -------
    >>> src, dst = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> p = os.path.join(getfixture("tmpdir"), "model.ckpt")
    >>> torch.save({"frontend." + k: v for k, v in src.state_dict().items()}, p)
    >>> pretrainer = Pretrainer(
    ...     loadables={"model": dst},
    ...     paths={"model": p},
    ...     custom_hooks={"model": StrictTransfer(prefix="frontend.")},
    ... )
    >>> _ = pretrainer.collect_files()
    >>> pretrainer.load_collected()
    >>> torch.equal(dst.weight, src.weight)
    True

    In a yaml: ``custom_hooks: {model:
    !new:speechbrain_ssv.utils.pretrained.StrictTransfer}``.
    """

    def __init__(self, prefix=None, check_integer_buffers=False, hint=None):
        self.prefix = prefix
        self.check_integer_buffers = check_integer_buffers
        self.hint = hint

    def __call__(self, obj, path):
        """Load the file ``path`` into the module ``obj`` strictly."""
        load_strict(
            obj,
            path,
            prefix=self.prefix,
            check_integer_buffers=self.check_integer_buffers,
            hint=self.hint,
        )


def strict_pretrainer(loadables, paths, hook=None, collect_in=None):
    """A SpeechBrain ``Pretrainer`` that loads every loadable with a
    :class:`StrictTransfer` hook.

    Arguments
    ---------
    loadables : dict
        Names to bare modules.
    paths : dict
        Names to their local files. They are given to the ``Pretrainer`` as
        local sources: a missing one is reported as missing, never looked
        up on the HuggingFace hub (SpeechBrain's guess for a path whose
        folder does not exist).
    hook : StrictTransfer | None
        The hook for every loadable (default: ``StrictTransfer()``).
    collect_in : str | None
        Where the ``Pretrainer`` links the files (``None``: loaded where
        they are).

    Returns
    -------
    speechbrain.utils.parameter_transfer.Pretrainer
        Call ``collect_files()`` then ``load_collected()``.

    Example
    -------
    >>> src, dst = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> p = os.path.join(getfixture("tmpdir"), "lin.ckpt")
    >>> torch.save(src.state_dict(), p)
    >>> pretrainer = strict_pretrainer({"lin": dst}, {"lin": p})
    >>> _ = pretrainer.collect_files()
    >>> pretrainer.load_collected()
    >>> torch.equal(dst.bias, src.bias)
    True
    """
    hook = StrictTransfer() if hook is None else hook
    return Pretrainer(
        collect_in=collect_in,
        loadables=loadables,
        paths={
            name: FetchSource(FetchFrom.LOCAL, os.fspath(path))
            for name, path in paths.items()
        },
        custom_hooks=dict.fromkeys(loadables, hook),
    )
