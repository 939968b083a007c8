"""Float32 islands for losses in mixed-precision training.

Recipes may run under SpeechBrain's ``--precision bf16`` or ``fp16``, i.e.
inside ``torch.autocast``. Autocast runs matrix products in the low
precision, and a bfloat16 tensor holds about 3 significant digits: enough
for the encoder, not for the losses, where cosines are divided by small
temperatures (0.04 turns a 0.002 rounding error into 0.05 of a logit), where
softmaxes, log-sum-exps and entropies subtract nearly equal numbers, and
where Sinkhorn or a VAT power iteration repeat their rounding. Which ops
autocast keeps in float32 also differs by device (on CPU, ``softmax`` of a
bfloat16 tensor stays bfloat16). :func:`float32_loss` makes a loss float32
by design, whatever the caller's autocast state and input dtypes.

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import functools

import torch

__all__ = ["float32_loss", "to_float32"]

# Device types whose autocast state is checked (and switched off while a
# wrapped loss runs); only those actually enabled are touched.
_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


def to_float32(obj):
    """Cast the low-precision floating-point tensors in ``obj`` to float32.

    Tensors of float16, bfloat16 (or narrower) become float32, also inside
    lists, tuples (named tuples included) and dicts, recursively. The cast
    is differentiable, so gradients still reach a low-precision producer.
    float32 tensors are returned as they are (no copy, so in-place updates
    and ``requires_grad`` leaves are kept) and float64 ones are left alone:
    casting them down would lose precision that the caller asked for.
    Everything else (integers, booleans, modules, callables, None) passes
    through unchanged.

    Arguments
    ---------
    obj : object
        A tensor, a container of them, or anything else.

    Returns
    -------
    object
        ``obj`` with its low-precision floating-point tensors cast.

    Example
    -------
    >>> x = torch.ones(2, dtype=torch.bfloat16)
    >>> out = to_float32({"x": [x, torch.ones(1, dtype=torch.float64)], "n": 3})
    >>> out["x"][0].dtype, out["x"][1].dtype, out["n"]
    (torch.float32, torch.float64, 3)
    """
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and obj.dtype.itemsize < 4:
            return obj.float()
        return obj
    if isinstance(obj, dict):
        return type(obj)((k, to_float32(v)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # named tuple
        return type(obj)(*(to_float32(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_float32(v) for v in obj)
    return obj


@contextlib.contextmanager
def _autocast_disabled():
    # Autocast state is per device type: switch off each one that is on.
    with contextlib.ExitStack() as stack:
        for device_type in _AUTOCAST_DEVICES:
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def float32_loss(fn):
    """Decorator: run ``fn`` in float32, outside autocast.

    The wrapped function sees its floating-point tensor arguments cast to
    float32 (see :func:`to_float32`; float64 ones are kept) and runs with
    autocast disabled on every device type, so each op inside it, matrix
    products included, computes in float32 and the result is float32. The
    gradient flows back through the cast to low-precision inputs. Outside
    autocast and with float32 inputs the function is unchanged. Modules and
    callables passed as arguments (e.g. the model of a VAT loss) also run
    in float32 inside it. For an ``nn.Module``, decorate its ``forward`` (or
    the method that computes the loss).

    Arguments
    ---------
    fn : callable
        A loss (or any function of tensors).

    Returns
    -------
    callable
        The wrapped function, with ``fn``'s name, docstring and signature.

    Example
    -------
    >>> @float32_loss
    ... def sq_norm(x):
    ...     return (x @ x.t()).trace()
    >>> x = torch.full((2, 3), 1.01, dtype=torch.bfloat16)
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     loss = sq_norm(x)
    >>> loss.dtype
    torch.float32
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        """``fn`` on float32 arguments with autocast off."""
        args = to_float32(args)
        kwargs = to_float32(kwargs)
        with _autocast_disabled():
            return fn(*args, **kwargs)

    return wrapper


def first_nonfinite_key(state):
    """Key of the first floating (or complex) tensor of a state dict that
    holds NaN/Inf, or None: the one check behind the export's refusal of
    diverged weights and the Brain's divergence error.

    Arguments
    ---------
    state : mapping
        A state dict (other values are ignored).

    Returns
    -------
    str | None
        The key.

    Example
    -------
    >>> first_nonfinite_key({"w": torch.ones(2), "n": 3}) is None
    True
    >>> first_nonfinite_key({"w": torch.tensor([1.0, float("inf")])})
    'w'
    """
    for key, tensor in state.items():
        if (
            torch.is_tensor(tensor)
            and (tensor.is_floating_point() or tensor.is_complex())
            and not bool(torch.isfinite(tensor).all())
        ):
            return key
    return None
