"""Measuring tools shared by the benchmark sections: timers, peak memory, the test images, the machine."""
from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], repeats: int, device, warmup: int = 1, cpu: list | None = None) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls after `warmup` untimed ones (GPU work synchronised).

    `cpu`, when given, receives this process's CPU milliseconds per call (all threads): unlike wall time it
    does not grow while other processes hold the cores, so CPU-time rates survive a busy shared machine."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
        if cpu is not None:
            cpu.append((time.process_time() - c0) * 1e3)
    return out


def rate(fn: Callable[[], Any], flop: float, repeats: int, device, min_ms: float) -> tuple[float, float | None]:
    """Median GFLOP/s of `fn` by wall time and by CPU time; short kernels are looped to last >= min_ms."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    loops = max(1, math.ceil(min_ms / max(1e-3, (time.perf_counter() - t0) * 1e3)))

    def many():
        for _ in range(loops):
            fn()

    cpu: list[float] = []
    wall = time_ms(many, repeats, device, warmup=0, cpu=cpu)
    per_cpu = loops * flop / median(cpu) / 1e6 if device.type == "cpu" and median(cpu) > 0 else None
    return loops * flop / median(wall) / 1e6, per_cpu


def status_kib(field: str, pid: int | str = "self") -> int | None:
    """A line of /proc/PID/status in KiB (Linux), e.g. VmHWM = peak resident set."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    kib = status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS), never reset
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = r // 1024 if sys.platform == "darwin" else r
    return kib / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5), so a peak after set-up is the requests' own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def line_art_rgba(size: int, seed: int = 0):
    """Deterministic black strokes on a transparent layer, as Krita or GIMP hand over a line-art layer."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("L", (size, size), 0)  # ink coverage
    draw = ImageDraw.Draw(img)
    width = max(1, size // 512)
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        rx, ry = (int(v) for v in rng.integers(size // 40 + 2, size // 5 + 3, 2))
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], outline=255, width=width)
    for _ in range(40):
        draw.line([tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2)], fill=255, width=width)
    out = np.zeros((size, size, 4), np.uint8)
    out[..., 3] = np.asarray(img)
    return out


def reference_rgb(size: int = 512, seed: int = 1):
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([200 * xx + 40, 160 * yy + 60, 120 * (1 - xx) + 80], -1)
    for _ in range(8):
        x, y, r = rng.integers(0, size, 3) // 2 + size // 8
        img[(yy * size - y) ** 2 + (xx * size - x) ** 2 < r * r] = rng.integers(0, 256, 3)
    return img.clip(0, 255).astype(np.uint8)


def _cpuinfo(key: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with `key` (Linux), else None."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    flags = (_cpuinfo("flags") or "").split()
    return [f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2"))]


def bf16_supported(device) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def machine_info(device, threads: int) -> dict:
    import numpy as np
    import torch

    info = {
        "cpu": _cpu_name(), "logical_cores": os.cpu_count(), "cpu_flags": _cpu_flags(),
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(), "threads_flag": threads, "device": str(device),
        "bf16": bf16_supported(device), "load_avg_start": list(os.getloadavg()),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ},
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["tf32_conv"] = torch.backends.cudnn.allow_tf32
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info

