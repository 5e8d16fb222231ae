"""Irodori backend: the model, the inference pipeline, the ZeroMQ service and the CLI."""

import ctypes
import os
import sys

# torch's OpenMP threads spin while they wait by default; on a shared or busy CPU that starves the real work
# (docs/performance.md has the measurement). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def _libc() -> "ctypes.CDLL | None":
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc, not musl
    except OSError:
        return None


def _keep_freed_memory() -> bool:
    """Let glibc keep freed activations for the next call instead of handing them back to the kernel.

    By default every block over 128 KiB..32 MiB is a fresh mmap, so each of the generator's activations is
    page-faulted and zeroed again on every call, a third of a 512 px forward on a CPU (docs/performance.md).
    The price
    is up to 1 GiB of freed memory kept between calls; the server gives it back when idle
    (`release_freed_memory`). A user's own glibc malloc settings (MALLOC_* or GLIBC_TUNABLES) win."""
    if os.environ.get("GLIBC_TUNABLES", "").find("glibc.malloc") >= 0 or any(
            k.startswith("MALLOC_") for k in os.environ):
        return False
    libc = _libc()
    if libc is None:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_arena_max = -1, -2, -3, -8
    ok = libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_top_pad, 64 << 20)
    ok = ok and libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest; bigger blocks still use mmap
    ok = ok and libc.mallopt(m_arena_max, 1)  # one heap shared by all threads: the model thread's reuse it
    return bool(ok)


def release_freed_memory() -> None:
    """Give freed memory kept by `_keep_freed_memory` back to the kernel (the server calls this when idle)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


KEEPS_FREED_MEMORY = _keep_freed_memory()
