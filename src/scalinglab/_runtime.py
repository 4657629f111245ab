"""Process-level tuning for training speed, applied once per process.

glibc serves allocations above M_MMAP_THRESHOLD (adaptive, up to 32 MB) with fresh mmap()s and returns freed
heap tops to the OS. A training step allocates and frees the same large activation and logits buffers every
step, so each step pays tens of thousands of page faults zero-filling fresh pages (measured: ~60k faults per
step for a 64 MB logits buffer). Telling the allocator to keep freed memory makes the buffers be reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_done = False


def machine_memory_bytes() -> int | None:
    """The memory this process may use: the machine's physical memory, or its container's limit (cgroup v2 or
    v1) when that is lower. None where neither can be read."""
    import os

    found = []
    try:
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit() and int(text) < 2**60:
                found.append(int(text))
        except OSError:
            pass
    return min(found) if found else None


def keep_freed_memory() -> bool:
    """Ask glibc not to give freed memory back to the OS. Returns False where this does not apply."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to do
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0)  # large blocks from the heap, not from fresh mmaps
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # never trim the heap top
    ok &= mallopt(_M_TOP_PAD, 256 << 20)  # grow the heap in large steps
    _done = bool(ok)
    return _done


def kill_with_parent() -> None:
    """For subprocess preexec_fn: the child gets SIGKILL when the process that started it dies, so a killed
    scalinglab leaves no orphan (a `pip download` still writing into a temporary cache directory, say)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
        except (OSError, AttributeError):
            pass
