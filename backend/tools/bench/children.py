"""(c) the pipeline and the flats, each in a fresh interpreter so that its peak memory is its own.

The parent runs `python -m backend.tools.bench CHILD_JSON` (run_child); the child (child_main) runs the one
scenario the JSON names and prints its result on a line starting with RESULT_MARK.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from backend.tools.launcher import ROOT, child_env

from .hints import child_hints
from .measure import line_art_rgba, median, peak_rss_mib, reference_rgb, reset_peak_rss, status_kib, time_ms

if TYPE_CHECKING:
    from backend.inference.flats import FlatsConfig

RESULT_MARK = "IRODORI-BENCH-RESULT "


def bench_env(threads: int) -> dict[str, str]:
    """What every benchmark subprocess gets on top of the parent's environment: --threads, and no warnings."""
    env = {"PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_child(spec: dict, threads: int, timeout: float = 1800.0) -> dict:
    """Run one scenario in a fresh interpreter (its own peak RSS) and return its result dict."""
    proc = subprocess.run([sys.executable, "-m", "backend.tools.bench", json.dumps(spec)], capture_output=True,
                          text=True, env=child_env(bench_env(threads)), timeout=timeout, cwd=str(ROOT))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"benchmark child {spec.get('kind')} failed (exit {proc.returncode}):\n"
                       f"{proc.stderr[-3000:]}")


def load_colorizer(spec: dict):
    """The Colorizer a spec names, quietly: an untrained model is expected here."""
    import warnings

    from backend.inference.pipeline import Colorizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Colorizer(spec.get("checkpoint"), device=spec["device"])


def child_pipeline(spec: dict) -> dict:
    """One Colorizer, one line-art size: set-up peak, then the requests' own peak and timings."""
    import torch
    import torch.nn.functional as F  # noqa: F401  (imported by the pipeline anyway)

    from backend.inference.pipeline import colour_layer, model_size, to_grey
    from backend.model.preprocess import resize as resize_image

    colorizer = load_colorizer(spec)
    size = colorizer.config.resolution if spec["size"] == "model" else int(spec["size"])
    repeats = spec["repeats"]
    device = colorizer.device
    lineart, ref = line_art_rgba(size), reference_rgb()
    setup_peak = peak_rss_mib()
    rss_before = (status_kib("VmRSS") or 0) / 1024
    reset = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    parts: list[dict] = []

    def run():
        timings: dict = {}
        colorizer.colorize(lineart, ref, ("color",), timings=timings)
        parts.append(timings)

    cpu: list[float] = []
    ms = time_ms(run, repeats, device, cpu=cpu)
    request_peak = peak_rss_mib()
    parts = parts[1:]  # drop the warm-up
    # the resize work alone, as the pipeline does it: line art down to the model's size, the colour layer
    # back up to full size (colour_layer: rounded to 8 bits and resized in 8 bits on the CPU)
    h, w = model_size(size, size, colorizer.config.resolution)
    grey = torch.from_numpy(to_grey(lineart))[None, None].to(device)
    colour = torch.rand(1, 3, h, w, device=device)
    with torch.inference_mode():
        resize = time_ms(lambda: (resize_image(grey, (h, w)), colour_layer(colour, (size, size))), repeats, device)
    out = {
        "size": size, "repeats": repeats, "median_ms": median(ms), "cpu_ms": median(cpu),
        **{k: median([p[k] for p in parts]) for k in ("prepare_ms", "model_ms", "finish_ms")},
        "resize_ms": median(resize), "model_resolution": colorizer.config.resolution,
        "model": colorizer.name, "untrained": colorizer.untrained,
        "setup_peak_rss_mib": setup_peak, "rss_after_setup_mib": rss_before,
        "request_peak_rss_mib": request_peak if reset else None,
        "peak_rss_mib": max(setup_peak, request_peak),
    }
    if device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def bench_flats(size: int, repeats: int = 3, config: FlatsConfig | None = None) -> dict:
    """Time flats() on a size x size synthetic canvas (median of `repeats` runs) and measure peak memory.

    Peak memory is measured in a separate run under tracemalloc (numpy's and scipy's array buffers are
    traced), so the tracing overhead does not skew the timings. Returns seconds and MiB. The imports are
    local so that only the child that runs this loads OpenCV.
    """
    import resource
    import tracemalloc

    import numpy as np

    from backend.inference.flats import FlatsConfig, bench_images, fill, flats, regions_and_votes, shading

    config = config or FlatsConfig()
    if not 1 <= repeats <= 100:
        raise ValueError(f"repeats must be in 1..100, got {repeats}")
    line, color = bench_images(size)
    seg_s, fill_s, shade_s, cpu_s = [], [], [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        labels, votes, _ = regions_and_votes(line, config)  # what the pipeline works out beside the model
        t1 = time.perf_counter()
        out = fill(labels, color, votes=votes)
        t2 = time.perf_counter()
        cpu_s.append(time.process_time() - c0)
        shading(color, out)
        t3 = time.perf_counter()
        seg_s.append(t1 - t0)
        fill_s.append(t2 - t1)
        shade_s.append(t3 - t2)
    total = [a + b for a, b in zip(seg_s, fill_s)]

    tracemalloc.start()
    tracemalloc.reset_peak()
    flats(line, color, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "size": size,
        "regions": int(labels.max()),
        "segment_s": float(np.median(seg_s)),
        "fill_s": float(np.median(fill_s)),
        "flats_s": float(np.median(total)),  # segment + fill, what the pipeline pays for `flats`
        "flats_cpu_s": float(np.median(cpu_s)),  # the same in CPU time: less skewed by other processes
        "shading_s": float(np.median(shade_s)),
        "peak_mib": peak / 2**20,  # extra memory flats() allocates above its inputs
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # whole process, Linux KiB
        "repeats": repeats,
    }


def child_flats(spec: dict) -> dict:
    """Flats in a process of their own: bench_flats alone (time, memory), then what they add to a real
    request: Colorizer.colorize with outputs ("color",) and ("color", "flats"), interleaved so both see the
    same machine load. The pipeline segments the line art while the model runs (backend/inference/pipeline.py)."""
    r = bench_flats(spec["size"], repeats=spec["repeats"])
    r["peak_rss_mib"] = peak_rss_mib()  # before torch is imported: numpy, OpenCV and the flats' own arrays
    from backend.inference import pipeline

    colorizer = load_colorizer(spec)
    lineart, ref = line_art_rgba(spec["size"]), reference_rgb()
    times: dict[str, list[float]] = {"plain": [], "cold": [], "warm": []}
    for outputs in (("color",), ("color", "flats")):  # warm-up, untimed
        colorizer.colorize(lineart, ref, outputs)
    for _ in range(spec["rounds"]):
        # plain and cold: a line art never seen (the segmentation cache emptied: the colour layer needs the
        # regions too, to keep each area's colour up to its lines); warm: the same line art again
        for name, outputs in (("plain", ("color",)), ("cold", ("color", "flats")), ("warm", ("color", "flats"))):
            if name in ("plain", "cold"):
                pipeline._segment_cache.clear()
            t0 = time.perf_counter()
            colorizer.colorize(lineart, ref, outputs)
            times[name].append((time.perf_counter() - t0) * 1e3)
    r["pipeline_ms"], r["pipeline_flats_ms"], r["pipeline_flats_warm_ms"] = (
        median(times["plain"]), median(times["cold"]), median(times["warm"]))
    r["added_pct"] = 100 * (r["pipeline_flats_ms"] - r["pipeline_ms"]) / r["pipeline_ms"]
    r["added_warm_pct"] = 100 * (r["pipeline_flats_warm_ms"] - r["pipeline_ms"]) / r["pipeline_ms"]
    return r


CHILDREN = {"pipeline": child_pipeline, "flats": child_flats, "hints": child_hints}


def child_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    result = CHILDREN[spec["kind"]](spec)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0
