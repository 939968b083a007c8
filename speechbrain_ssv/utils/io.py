"""Atomic file writes: write to a temporary file beside the target, then
rename, so an interrupted run never leaves a truncated file behind.

Authors
 * speechbrain-ssv developers 2026
"""

import contextlib
import json
import os
import tempfile

import numpy as np
import soundfile as sf
import torch


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


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` when
    the block succeeds, delete it when the block raises.

    Arguments
    ---------
    path : str | os.PathLike
        The final destination.

    Yields
    ------
    str
        A temporary file name in the same folder (same file system, so the
        final ``os.replace`` is atomic).

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
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    # Keep the real extension last: soundfile picks the format from it.
    stem, ext = os.path.splitext(base)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{stem}.", suffix=f".tmp{ext}", dir=folder
    )
    os.close(fd)
    # mkstemp creates 0600 files; a plain open() would give 0666 & ~umask,
    # which is what users of a shared machine expect of corpora, manifests,
    # results and exports.
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


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
        torch.save(obj, tmp)
