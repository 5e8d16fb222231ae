"""Deterministic synthetic line art for the benchmark (`irodori bench --sections flats`) and the tests."""
from __future__ import annotations

import numpy as np


def bench_images(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic synthetic line art (overlapping outlines, some with small gaps) and a noisy colour.

    The line width scales with the canvas (1 px per 512 px, at least 1) like a drawing scanned larger.
    """
    from PIL import Image, ImageDraw

    if not 16 <= size <= 8192:
        raise ValueError(f"size must be in 16..8192, got {size}")
    rng = np.random.default_rng(seed)
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    width = max(1, size // 512)
    for _ in range(80):
        x, y = rng.integers(0, size, 2)
        rx, ry = rng.integers(size // 60 + 2, size // 6 + 3, 2)
        start = float(rng.integers(0, 360))
        sweep = 360.0 if rng.random() < 0.8 else 359.0  # some outlines with a small gap
        draw.arc([x - rx, y - ry, x + rx, y + ry], start, start + sweep, fill=0, width=width)
    for _ in range(60):
        p = tuple(int(v) for v in rng.integers(0, size, 2))
        q = tuple(int(v) for v in rng.integers(0, size, 2))
        draw.line([p, q], fill=0, width=width)
    line = np.asarray(img)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    color = np.stack([200 * xx + 30, 180 * yy + 40, 120 * (xx + yy) / 2 + 60], axis=-1)
    color += rng.normal(0, 6, color.shape).astype(np.float32)
    color = np.clip(color, 0, 255).astype(np.uint8)
    color[line < 128] = 20  # the model draws the lines dark too
    return line, color
