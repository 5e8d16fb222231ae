"""The hints row: what colour hints add to a request (issue 22's target: at most 5% at 2048x2048 on the CPU).

One model that takes hints (the bench's checkpoint when it does, else an untrained one of the same
architecture with hint_channels 4: the timing does not depend on the weights), the same line art and
reference, requests without and with hints interleaved in one process so both see the same machine load.
Both start from an empty regions cache: hints paint whole regions, and a new line art is the costly case.
"""
from __future__ import annotations

import time

import numpy as np

from .measure import line_art_rgba, median, reference_rgb

HINT_DOTS = 24  # strokes a person might dab on a page


def hint_dots(size: int, dots: int = HINT_DOTS, seed: int = 0) -> np.ndarray:
    """(size, size, 4) RGBA: `dots` opaque squares of random colours (about size/128 px a side) on transparent."""
    rng = np.random.default_rng(seed)
    out = np.zeros((size, size, 4), np.uint8)
    side = max(1, size // 128)
    for y, x in rng.integers(0, size - side, (dots, 2)):
        out[y:y + side, x:x + side, :3] = rng.integers(0, 256, 3)
        out[y:y + side, x:x + side, 3] = 255
    return out


def hint_checkpoint(checkpoint: str | None, folder: str) -> str:
    """`checkpoint` if it takes hints; else an untrained model like it (or like the default) with hints."""
    import dataclasses

    from backend.inference.pipeline import default_checkpoint, untrained_checkpoint
    from backend.model.checkpoint import read_config, save_checkpoint
    from backend.model.config import ModelConfig, from_dict

    base = checkpoint or default_checkpoint()
    config = from_dict(ModelConfig, read_config(base)["model"]) if base else ModelConfig()
    if config.hint_channels:
        return str(base)
    ckpt = untrained_checkpoint(dataclasses.replace(config, hint_channels=4))
    return str(save_checkpoint(f"{folder}/hints", ckpt.generator, ckpt.style_sha256, meta=ckpt.meta))


def child_hints(spec: dict) -> dict:
    """Colorizer.colorize at spec["size"] without and with hints, `rounds` times each, interleaved."""
    import tempfile
    import warnings

    from backend.inference import pipeline

    with tempfile.TemporaryDirectory(prefix="irodori-bench-hints-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        colorizer = pipeline.Colorizer(hint_checkpoint(spec.get("checkpoint"), folder), device=spec["device"])
    size = spec["size"]
    lineart, ref, hints = line_art_rgba(size), reference_rgb(), hint_dots(size)
    outputs = ("color", "flats")
    times: dict[str, list[float]] = {"plain": [], "hints": []}
    cpu: dict[str, list[float]] = {"plain": [], "hints": []}  # CPU time, all threads: less skewed by other load
    colorizer.colorize(lineart, ref, outputs, hints=hints)  # warm-up, untimed
    for _ in range(spec["rounds"]):
        for name, given in (("plain", None), ("hints", hints)):
            pipeline._segment_cache.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            colorizer.colorize(lineart, ref, outputs, hints=given)
            times[name].append((time.perf_counter() - t0) * 1e3)
            cpu[name].append((time.process_time() - c0) * 1e3)
    plain, hinted = median(times["plain"]), median(times["hints"])
    plain_cpu, hinted_cpu = median(cpu["plain"]), median(cpu["hints"])
    return {"size": size, "rounds": spec["rounds"], "dots": HINT_DOTS, "outputs": list(outputs),
            "model": colorizer.name, "plain_ms": plain, "hints_ms": hinted,
            "added_pct": 100 * (hinted - plain) / plain, "plain_cpu_ms": plain_cpu, "hints_cpu_ms": hinted_cpu,
            "added_cpu_pct": 100 * (hinted_cpu - plain_cpu) / plain_cpu}
