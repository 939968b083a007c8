"""Peak resident memory of the current process (Linux ``/proc``), shared by
the benchmarks that report memory.

Authors
 * speechbrain-ssv developers 2026
"""

import ctypes

__all__ = ["reset_peak", "rss_kb"]


def rss_kb(field):
    """``VmRSS`` / ``VmHWM`` (or any ``/proc/self/status`` field) in kB.

    Arguments
    ---------
    field : str
        Field name, e.g. ``"VmHWM"``.

    Returns
    -------
    int
        The value in kB.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak():
    """Return freed heap pages to the OS, so the baseline holds only live
    data, then reset the peak RSS (``VmHWM``) to the current RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    # Linux: writing 5 to clear_refs resets VmHWM
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
