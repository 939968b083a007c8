"""Atomic file writes: write to a temporary file beside the target, then
rename, so an interrupted run never leaves a truncated file behind.

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np
import soundfile as sf
import torch

from speechbrain_ssv.utils.errors import OutputWriteError

# A full disk and an exhausted quota look the same to the user: free space.
_NO_SPACE_ERRNOS = {errno.ENOSPC} | (
    {errno.EDQUOT} if hasattr(errno, "EDQUOT") else set()
)
# Errors that can only come from writing, whichever file they name.
_WRITE_ERRNOS = _NO_SPACE_ERRNOS | {errno.EFBIG, errno.EROFS}
# torch.save reports a failed write(2) as a RuntimeError from its zip writer
# (inline_container.cc), without the errno.
_TORCH_WRITER_MARKERS = ("PytorchStreamWriter", "inline_container")
# Below this much free space a failed torch write is taken for a full disk:
# the chunk that did not fit can be larger than what is left.
_LOW_FREE_BYTES = 64 * 2**20


def current_umask():
    """The process's umask (read without changing it for other threads
    longer than the two calls take).

    Returns
    -------
    int
        The mask, e.g. ``0o022``.

    Example
    -------
    >>> 0 <= current_umask() <= 0o777
    True
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(prefix, parent):
    """``tempfile.mkdtemp`` with the mode an ordinary ``os.makedirs`` would
    give (``0o777 & ~umask``): mkdtemp always makes 0700 folders, which
    would leave a renamed-into-place result unreadable to the other users
    of a shared machine.

    Arguments
    ---------
    prefix : str
        Name prefix.
    parent : str
        Folder to create it in.

    Returns
    -------
    str
        The new folder.

    Example
    -------
    >>> d = make_temp_dir(".x.", getfixture("tmpdir"))
    >>> oct(os.stat(d).st_mode & 0o777) == oct(0o777 & ~current_umask())
    True
    """
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(path, 0o777 & ~current_umask())
    return path


def _human_bytes(n):
    """``n`` bytes as a short human-readable size ("0 B", "12.0 MiB")."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover (the loop always returns)


def free_bytes(folder):
    """Free space, in bytes, on the file system holding ``folder``.

    Arguments
    ---------
    folder : str | os.PathLike
        An existing folder.

    Returns
    -------
    int | None
        The free bytes, or ``None`` when they cannot be read.

    Example
    -------
    >>> free_bytes(getfixture("tmpdir")) > 0
    True
    """
    try:
        return shutil.disk_usage(os.fspath(folder)).free
    except OSError:
        return None


def _names_any(err, paths):
    """Whether the OSError ``err`` is about one of ``paths``."""
    wanted = {os.path.abspath(os.fspath(p)) for p in paths}
    for name in (err.filename, err.filename2):
        if name is None:
            continue
        with contextlib.suppress(TypeError, ValueError):
            if os.path.abspath(os.fsdecode(name)) in wanted:
                return True
    return False


def output_write_error(path, err, temp_paths=(), any_os_error=True):
    """The :class:`OutputWriteError` to raise for ``err``, a failure while
    writing ``path``, or ``None`` when ``err`` is not a write failure.

    Call it *before* removing the partial file, so the free space it reports
    is the space the failed write saw.

    Arguments
    ---------
    path : str | os.PathLike
        The final destination (named in the message, not the temporary one).
    err : BaseException
        What the write raised.
    temp_paths : sequence of str | os.PathLike
        Temporary names the data was written under.
    any_os_error : bool
        When ``False``, an ``OSError`` counts only if it can only come from
        writing (no space, quota, file too large, read-only file system) or
        names ``path`` or one of ``temp_paths``: a block that also *reads*
        (audio it decodes into a cache) must keep its own errors.

    Returns
    -------
    OutputWriteError | None
        The error to raise ``from err``.

    Example
    -------
    >>> e = output_write_error("out/a.ckpt", OSError(errno.ENOSPC, "No space left"))
    >>> str(e).startswith("no space left on device while writing out/a.ckpt")
    True
    >>> output_write_error("out/a.ckpt", ValueError("bad")) is None
    True
    """
    path = os.fspath(path)
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    if isinstance(err, OSError):
        if not (
            any_os_error
            or err.errno in _WRITE_ERRNOS
            or _names_any(err, [path, *temp_paths])
        ):
            return None
        no_space = err.errno in _NO_SPACE_ERRNOS
        # strerror drops the temporary file name the OS message would show.
        detail = err.strerror or str(err)
    elif isinstance(err, RuntimeError) and any(
        marker in str(err) for marker in _TORCH_WRITER_MARKERS
    ):
        cause = err.__cause__ or err.__context__
        no_space = (
            isinstance(cause, OSError) and cause.errno in _NO_SPACE_ERRNOS
        ) or (free is not None and free < _LOW_FREE_BYTES)
        detail = str(err)
    else:
        return None
    free_note = (
        ""
        if free is None
        else f" ({_human_bytes(free)} free on its file system)"
    )
    if no_space:
        quota = (
            " (disk quota exceeded)"
            if isinstance(err, OSError) and err.errno != errno.ENOSPC
            else ""
        )
        return OutputWriteError(
            path,
            f"no space left on device{quota} while writing {path}{free_note}; "
            "the new file was not saved. Free some space or write elsewhere, "
            "then run again.",
        )
    return OutputWriteError(
        path,
        f"could not write {path}: {detail}{free_note}; the new file was not saved.",
    )


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` when
    the block succeeds, delete it when the block raises.

    A failure to write (a full disk, a read-only folder, torch's zip writer
    failing) is raised as one :class:`OutputWriteError` naming ``path``,
    after the temporary file is removed; other errors of the block pass
    through unchanged.

    Arguments
    ---------
    path : str | os.PathLike
        The final destination.

    Yields
    ------
    str
        A temporary file name in the same folder (same file system, so the
        final ``os.replace`` is atomic).

    Raises
    ------
    OutputWriteError
        When the file cannot be written or renamed into place.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> target = os.path.join(tmp, "x.txt")
    >>> with atomic_path(target) as t:
    ...     _ = open(t, "w").write("hello")
    >>> open(target).read()
    'hello'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    # Keep the real extension last: soundfile picks the format from it.
    stem, ext = os.path.splitext(base)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{stem}.", suffix=f".tmp{ext}", dir=folder
        )
    except OSError as err:
        raise output_write_error(path, err) from err
    try:
        os.close(fd)
        # mkstemp creates 0600 files; a plain open() would give 0666 & ~umask,
        # which is what users of a shared machine expect of corpora,
        # manifests, results and exports.
        os.chmod(tmp, 0o666 & ~current_umask())
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        # Classified before the removal, which frees the space it reports.
        wrapped = (
            output_write_error(path, err, [tmp], any_os_error=False)
            if isinstance(err, Exception)
            else None
        )
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if wrapped is None:
            raise
        raise wrapped from err


def write_text(path, text):
    """Write a text file atomically.

    Arguments
    ---------
    path : str
        Destination.
    text : str
        Content.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "a.txt")
    >>> write_text(p, "abc")
    >>> open(p).read()
    'abc'
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path, obj):
    """Write ``obj`` as indented JSON atomically.

    Arguments
    ---------
    path : str
        Destination.
    obj : object
        Anything ``json.dumps`` accepts.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "a.json")
    >>> write_json(p, {"eer": 0.1})
    >>> json.load(open(p))
    {'eer': 0.1}
    """
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_wav(path, signal, sample_rate):
    """Write a mono 16-bit PCM wav atomically.

    Arguments
    ---------
    path : str
        Destination ``.wav``.
    signal : numpy.ndarray | torch.Tensor
        1-D float signal in [-1, 1] (clipped if outside).
    sample_rate : int
        Sampling rate in Hz.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "a.wav")
    >>> write_wav(p, np.zeros(160), 16000)
    >>> sf.info(p).frames
    160
    """
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().cpu().numpy()
    signal = np.clip(np.asarray(signal, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, signal, sample_rate, subtype="PCM_16", format="WAV")


def save_torch(path, obj):
    """``torch.save`` atomically.

    Any ``OSError`` of the save, and the ``RuntimeError`` torch's zip writer
    raises when a write fails (a full disk), becomes one
    :class:`OutputWriteError` naming ``path``; no partial file is left.

    Arguments
    ---------
    path : str
        Destination.
    obj : object
        Anything ``torch.save`` accepts.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "a.pt")
    >>> save_torch(p, {"w": torch.ones(2)})
    >>> torch.load(p)["w"].tolist()
    [1.0, 1.0]
    """
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except (OSError, RuntimeError) as err:
            # Only the temporary file is written here, so every OSError is a
            # write failure (atomic_path alone would let an EIO through).
            wrapped = output_write_error(path, err, [tmp])
            if wrapped is None:
                raise
            raise wrapped from err


def file_digest(path, algorithm="sha1", chunk_bytes=1 << 22):
    """Hex digest of a file's content, read in chunks (stage bookkeeping
    uses SHA-1, export checksums SHA-256).

    Arguments
    ---------
    path : str
        The file.
    algorithm : str
        A :mod:`hashlib` algorithm name.
    chunk_bytes : int
        Read size.

    Returns
    -------
    str
        Hex digest.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "a.txt")
    >>> write_text(p, "abc")
    >>> file_digest(p)
    'a9993e364706816aba3e25717850c26c9cd0d89d'
    >>> file_digest(p, "sha256")[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()
