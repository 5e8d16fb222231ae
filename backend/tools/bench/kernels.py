"""(a) the machine's limit (dense matmul and conv throughput) and (b) the generator against it."""
from __future__ import annotations

import copy
import time
from typing import Any

from .measure import bf16_supported, median, rate, time_ms
from .plan import Plan


def bench_peak(device, plan: Plan) -> dict:
    """Dense matmul and 3x3 conv throughput per dtype; `peak_gflops` is the best of them.

    The *_cpu figures divide by this process's CPU time instead of wall time (CPU only): GFLOP per
    CPU-second times the thread count, i.e. what the kernels reach while they actually hold the cores."""
    import torch
    import torch.nn.functional as F

    dtypes = {"fp32": torch.float32}
    if bf16_supported(device):
        dtypes["bf16"] = torch.bfloat16
    out = {}
    n = plan.matmul_n
    c, s = plan.conv
    conv_flop = 2 * c * c * 9 * s * s
    threads = torch.get_num_threads()
    with torch.inference_mode():
        for name, dt in dtypes.items():
            a = torch.randn(n, n, device=device, dtype=dt)
            b = torch.randn(n, n, device=device, dtype=dt)
            x = torch.randn(1, c, s, s, device=device, dtype=dt)
            w = torch.randn(c, c, 3, 3, device=device, dtype=dt)
            xl, wl = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
            r: dict[str, Any] = {"matmul": f"{n}x{n}x{n}", "conv": f"3x3 {c}->{c} on {s}x{s}"}
            for key, fn, flop in (("matmul", lambda: a @ b, 2 * n**3),
                                  ("conv", lambda: F.conv2d(x, w, padding=1), conv_flop),
                                  ("conv_channels_last", lambda: F.conv2d(xl, wl, padding=1), conv_flop)):
                wall, per_cpu = rate(fn, flop, plan.peak_repeats, device, plan.peak_min_ms)
                r[f"{key}_gflops"] = wall
                r[f"{key}_cpu_gflops"] = per_cpu * threads if per_cpu else None
            r["peak_gflops"] = max(r[f"{k}_gflops"] for k in ("matmul", "conv", "conv_channels_last"))
            cpu = [r[f"{k}_cpu_gflops"] for k in ("matmul", "conv", "conv_channels_last")]
            r["peak_cpu_gflops"] = max(cpu) if all(cpu) else None
            out[name] = r
    return out


def count_flops(model, *inputs) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(*inputs)
    return int(counter.get_total_flops())


def bench_generator(device, plan: Plan, peak: dict) -> list[dict]:
    """The default-config generator at each size: NCHW (what a plain module does), channels_last (what the
    pipeline runs), bf16 autocast where the device has bf16 (Colorizer(bf16=True)), and, in the full run,
    torch.compile of the channels_last model, fp32 and bf16 autocast (inductor with weight freezing)."""
    import torch

    from backend.model.config import ModelConfig
    from backend.model.networks import Generator

    torch.manual_seed(0)
    nchw = Generator(ModelConfig()).eval().requires_grad_(False).to(device)
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    variants: list[tuple[str, str, Any, bool]] = [("fp32 NCHW", "fp32", nchw, False),
                                                  ("fp32 channels_last", "fp32", cl, False)]
    if "bf16" in peak:
        variants.append(("bf16 autocast channels_last", "bf16", cl, True))
    if plan.gen_compile:
        variants.append(("fp32 channels_last compiled", "fp32", "compile", False))
        if "bf16" in peak:
            variants.append(("bf16 autocast channels_last compiled", "bf16", "compile", True))
    threads = torch.get_num_threads()
    rows = []
    style = torch.randn(1, 4096, device=device)
    for size in plan.gen_sizes:
        sketch = torch.rand(1, 1, size, size, device=device).contiguous(memory_format=torch.channels_last)
        flops = count_flops(nchw, sketch, style)
        for name, dtype, model, bf16 in variants:
            row: dict[str, Any] = {"size": size, "variant": name, "dtype": dtype, "gflop": flops / 1e9}
            if model == "compile":  # one compile per size (static shapes, as a server sees few sizes)
                import torch._inductor.config as inductor

                torch._dynamo.reset()  # a fresh static-shape compile per size, nothing carried over
                t0 = time.perf_counter()
                try:
                    with inductor.patch(freezing=True), torch.inference_mode(), \
                            torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                        model = torch.compile(copy.deepcopy(cl), dynamic=False)
                        model(sketch, style)
                except Exception as exc:  # no C++ compiler, unsupported platform...
                    rows.append({**row, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                    continue
                row["compile_s"] = time.perf_counter() - t0

            def run():
                with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                    model(sketch, style)

            cpu: list[float] = []
            ms = median(time_ms(run, plan.gen_repeats, device, cpu=cpu))
            gflops = flops / ms / 1e6
            row.update(median_ms=ms, gflops=gflops, fraction_of_peak=gflops / peak[dtype]["peak_gflops"])
            if cpu and peak[dtype].get("peak_cpu_gflops"):
                row["cpu_ms"] = median(cpu)
                row["cpu_gflops"] = flops / row["cpu_ms"] / 1e6 * threads
                row["cpu_fraction_of_peak"] = row["cpu_gflops"] / peak[dtype]["peak_cpu_gflops"]
            rows.append(row)
    return rows

