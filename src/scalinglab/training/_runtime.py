"""Process-level tuning for training speed, applied once per process, and what this machine computes fast.

glibc serves allocations above M_MMAP_THRESHOLD (adaptive, up to 32 MB) with fresh mmap()s and returns freed
heap tops to the OS. A training step allocates and frees the same large activation and logits buffers every
step, so each step pays tens of thousands of page faults zero-filling fresh pages (measured: ~60k faults per
step for a 64 MB logits buffer). Telling the allocator to keep freed memory makes the buffers be reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_done = False


def machine_memory_bytes() -> int | None:
    """The memory this process may use: the machine's physical memory, or its container's limit (cgroup v2 or
    v1) when that is lower. None where neither can be read."""
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


# ------------------------------------------------------------------------------------------------------- precision
# CPU feature flags (Linux /proc/cpuinfo) that mean native bfloat16 matrix products: x86 AVX512-BF16 and AMX-BF16
# (oneDNN's bf16 kernels), Arm's BF16 extension. Without them a bf16 product is emulated and slower than fp32.
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def native_bf16_in(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text lists a native bfloat16 feature in its x86 'flags' or Arm 'Features' lines."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & _BF16_FLAGS)


@functools.cache
def cpu_native_bf16() -> bool:
    """Whether this machine's CPU multiplies bfloat16 matrices natively (read from /proc/cpuinfo once per process;
    False where that file does not exist: other systems train in float32 unless a config asks for bf16)."""
    try:
        with open("/proc/cpuinfo") as f:
            return native_bf16_in(f.read())
    except OSError:
        return False


def cuda_present() -> bool:
    """Whether device 'auto' will find a CUDA GPU, judged without importing torch (the NVIDIA driver is loaded and
    CUDA_VISIBLE_DEVICES does not hide every device): a config's precision is resolved by commands that never
    import torch, and must come out the same in every process of a study."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/proc/driver/nvidia/version")


# On a CPU, 'auto' means bf16 only from this model width up: below it autocast's casts cost more than the bfloat16
# products save. Measured side by side, steps alternating in one process (benchmarks/train_throughput.py
# --precision, AMD EPYC with avx512_bf16, 2 threads): bf16/fp32 step 0.96x at d_model 32, 0.42x at 64 and 0.59x at
# 96 (n_ctx 64, vocab 2048: the smoke preset's shapes); 1.39x at d_model 64 with n_ctx 128 and vocab 4096, 1.91x at
# 128 and 1.76x at 384 (the benchmark's shapes a-c). This project's choice: 128, where every measured shape gained.
CPU_BF16_MIN_D_MODEL = 128


def auto_precision(device: str, d_model: int | None = None) -> str:
    """What precision 'auto' means on this machine for a run on `device` ('auto', 'cpu', 'cuda', 'cuda:K') of
    width `d_model`: 'bf16' on a GPU (bf16 autocast is how GPUs train) and on a CPU with native bfloat16 products
    for models at least CPU_BF16_MIN_D_MODEL wide, else 'fp32'."""
    on_gpu = device.startswith("cuda") or (device == "auto" and cuda_present())
    if on_gpu:
        return "bf16"
    wide = d_model is None or d_model >= CPU_BF16_MIN_D_MODEL
    return "bf16" if cpu_native_bf16() and wide else "fp32"
