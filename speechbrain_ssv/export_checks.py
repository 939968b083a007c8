"""Checks of an export folder: the sha256 and size of every file recorded in
``export_info.json``, a bit-identical re-load with ``EncoderClassifier`` and
a finite embedding of a probe signal, and the refusal of non-finite weights
before anything is written (split from :mod:`speechbrain_ssv.export`, which
re-exports these names).

Authors
 * speechbrain-ssv developers 2026
"""

import json
import os
import tempfile

import torch
from speechbrain.inference.speaker import EncoderClassifier

from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import file_digest
from speechbrain_ssv.utils.precision import first_nonfinite_key

EXPORT_MARKER = "export_info.json"
PROBE_SECONDS = 1.0
PROBE_SAMPLE_RATE = 16000


class ExportError(SSVInputError, RuntimeError):
    """An export folder that does not hold what ``export_info.json`` says,
    or does not load as the model that was exported.

    It is an :class:`SSVInputError` so the command line prints it without a
    traceback, and a ``RuntimeError`` as :func:`verify_export` raised before.

    Example
    -------
    >>> err = ExportError("a/embedding_model.ckpt", "is missing")
    >>> isinstance(err, SSVInputError), isinstance(err, RuntimeError)
    (True, True)
    """


def _file_records(folder, names):
    """``{name: {"sha256", "bytes"}}`` of the files ``names`` in ``folder``."""
    return {
        name: {
            "sha256": file_digest(os.path.join(folder, name), "sha256"),
            "bytes": os.path.getsize(os.path.join(folder, name)),
        }
        for name in sorted(names)
    }


def verify_checksums(folder):
    """Check every file ``export_info.json`` lists against its recorded
    size and sha256.

    Arguments
    ---------
    folder : str
        An export folder.

    Returns
    -------
    list
        The names of the files checked.

    Raises
    ------
    ExportError
        Naming the first file that is missing, has another size or another
        sha256, or ``export_info.json`` when it is unreadable or records no
        checksums.

    Example
    -------
    >>> d = getfixture("tmpdir")
    >>> p = os.path.join(d, "w.ckpt")
    >>> with open(p, "wb") as f:
    ...     _ = f.write(bytes(8))
    >>> with open(os.path.join(d, EXPORT_MARKER), "w") as f:
    ...     json.dump({"files": _file_records(d, ["w.ckpt"])}, f)
    >>> verify_checksums(d)
    ['w.ckpt']
    >>> with open(p, "r+b") as f:
    ...     _ = f.write(bytes([1]))
    >>> verify_checksums(d)
    Traceback (most recent call last):
    ...
    speechbrain_ssv.export_checks.ExportError: ...w.ckpt: sha256 ... does not match export_info.json (...): the file changed after export (bit flip, partial copy?)
    """
    folder = os.fspath(folder)
    marker = os.path.join(folder, EXPORT_MARKER)
    try:
        with open(marker, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ExportError(
            folder,
            f"has no {EXPORT_MARKER}; it is not a speechbrain_ssv export",
        ) from None
    except (OSError, ValueError) as err:
        raise ExportError(marker, f"cannot be read as JSON ({err})") from err
    files = info.get("files") if isinstance(info, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(rec, dict) and "sha256" in rec and "bytes" in rec
        for rec in files.values()
    ):
        raise ExportError(
            marker,
            "records no sha256 checksums (exported by an older "
            "speechbrain-ssv); re-export the checkpoint to be able to "
            "verify it",
        )
    for name, rec in sorted(files.items()):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ExportError(
                path,
                f"is missing; {EXPORT_MARKER} lists it ({rec['bytes']} "
                "bytes): an incomplete copy of the export?",
            )
        size = os.path.getsize(path)
        if size != rec["bytes"]:
            raise ExportError(
                path,
                f"is {size} bytes, {EXPORT_MARKER} says {rec['bytes']}: "
                "the file changed after export (truncated or partial copy?)",
            )
        digest = file_digest(path, "sha256")
        if digest != rec["sha256"]:
            raise ExportError(
                path,
                f"sha256 {digest} does not match {EXPORT_MARKER} "
                f"({rec['sha256']}): the file changed after export (bit "
                "flip, partial copy?)",
            )
    return sorted(files)


def check_export(folder, device="cpu"):
    """Everything ``python -m speechbrain_ssv.export verify`` checks: the
    files' checksums (:func:`verify_checksums`), then that the folder loads
    bit-identically and embeds a probe signal to finite values
    (:func:`verify_export`).

    Arguments
    ---------
    folder : str
        An export folder.
    device : str
        Where to load it.

    Returns
    -------
    speechbrain.inference.speaker.EncoderClassifier
        The loaded model.
    """
    # Checksums first: a flipped bit in a weight file may still load (and
    # even embed to finite values), so only the checksum names the cause.
    verify_checksums(folder)
    return verify_export(folder, device=device)


def _check_finite(state, path):
    """Refuse a state dict with a NaN/Inf in any floating tensor."""
    key = first_nonfinite_key(state)
    if key is not None:
        raise SSVInputError(
            path,
            f"tensor '{key}' has NaN/Inf values: training diverged "
            "before this checkpoint was saved; export an earlier one "
            "(a CKPT+... folder, or --min-key/--max-key)",
        )


def verify_export(folder, device="cpu"):
    """Load ``folder`` with ``EncoderClassifier``, check that every saved
    tensor came back bit-identical and that a probe signal (1 s of seeded
    noise) embeds to finite values.

    Arguments
    ---------
    folder : str
        An export folder.
    device : str
        Where to load it.

    Returns
    -------
    speechbrain.inference.speaker.EncoderClassifier
        The loaded model.

    Raises
    ------
    ExportError
        Naming the file whose tensors did not load, or the folder when the
        probe's embedding is not finite.
    """
    with tempfile.TemporaryDirectory() as savedir:
        model = EncoderClassifier.from_hparams(
            source=folder, savedir=savedir, run_opts={"device": device}
        )
        for name in ("embedding_model", "classifier"):
            path = os.path.join(folder, f"{name}.ckpt")
            if not os.path.isfile(path):
                continue
            saved = torch.load(path, map_location="cpu", weights_only=True)
            loaded = model.mods[name].state_dict()
            missing = sorted(set(saved) ^ set(loaded))
            if missing:
                raise ExportError(
                    path,
                    "keys differ from the model built by hyperparams.yaml: "
                    f"{missing[:5]}",
                )
            for key, tensor in saved.items():
                if not torch.equal(tensor, loaded[key].cpu()):
                    raise ExportError(
                        path, f"'{key}' did not load bit-identically"
                    )
        path = os.path.join(folder, "mean_var_norm.ckpt")
        if os.path.isfile(path):
            # Statistics are not in state_dict(): SpeechBrain loads them
            # with a custom hook, which a yaml mismatch would skip silently.
            saved = torch.load(path, map_location="cpu", weights_only=True)
            norm = model.mods["mean_var_norm"]
            for key in ("glob_mean", "glob_std"):
                if key in saved and not torch.equal(
                    torch.as_tensor(saved[key]).cpu(),
                    torch.as_tensor(getattr(norm, key, torch.empty(0))).cpu(),
                ):
                    raise ExportError(
                        path, f"'{key}' did not load bit-identically"
                    )
        # Finite weights can still embed to NaN (e.g. a zero std in the
        # normaliser statistics); a seeded probe makes the check repeatable.
        gen = torch.Generator().manual_seed(0)
        probe = 0.1 * torch.randn(
            1, int(PROBE_SECONDS * PROBE_SAMPLE_RATE), generator=gen
        )
        with torch.no_grad():
            emb = model.encode_batch(probe.to(device))
        if not torch.isfinite(emb).all():
            raise ExportError(
                folder,
                f"the embedding of a {PROBE_SECONDS:g} s noise probe has "
                "NaN/Inf values although the folder loads: the weights or "
                "the normaliser statistics (mean_var_norm.ckpt) are not "
                "finite (training diverged?)",
            )
    return model
