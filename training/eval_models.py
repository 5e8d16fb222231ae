"""The colouring functions an evaluation compares, all behind one interface (ColorFn): the model through the
real pipeline, the same model given a flat grey reference, and Reinhard's classical colour transfer."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from backend.inference.colour import lab_to_rgb, rgb_to_lab
from training.eval_metrics import flatten

NEUTRAL_GREY = 128  # the flat reference of "ignores reference" and the fill Reinhard transfers from

# (sketches (S,S) uint8, references (h,w,3) uint8) -> colour images (S,S,3) uint8 RGB, one per pair
ColorFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], list[np.ndarray]]


def reinhard_transfer(line: np.ndarray, reference: np.ndarray, grey: int = NEUTRAL_GREY) -> np.ndarray:
    """Reinhard et al. 2001 global transfer in CIELAB: a flat grey fill with the sketch's ink multiplied in,
    each channel shifted and scaled to the reference's mean and standard deviation. (S,S,3) uint8 RGB."""
    source = np.full((*line.shape, 3), grey, np.uint8)
    src = rgb_to_lab(flatten(source, line)).reshape(-1, 3)
    ref = rgb_to_lab(np.asarray(reference)[..., :3]).reshape(-1, 3)
    mu_s, sd_s = src.mean(0), src.std(0)
    mu_r, sd_r = ref.mean(0), ref.std(0)
    scale = np.where(sd_s > 1e-6, sd_r / np.maximum(sd_s, 1e-6), 1.0)  # no spread: take the reference's mean
    out = (src - mu_s) * scale + mu_r
    return lab_to_rgb(out).reshape(*line.shape, 3)


def reinhard_fn(lines: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Reinhard transfer as a ColorFn."""
    return [reinhard_transfer(line, ref) for line, ref in zip(lines, references)]


def neutral_reference(size: int = 64) -> np.ndarray:
    """A flat grey picture: a reference that carries no colours."""
    return np.full((size, size, 3), NEUTRAL_GREY, np.uint8)


def ignoring_reference(model: ColorFn) -> ColorFn:
    """The model with every reference replaced by the same neutral grey image (each sketch run once)."""
    grey = neutral_reference()

    def fn(lines: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> list[np.ndarray]:
        distinct: dict[int, np.ndarray] = {}  # the same sketch object appears once per reference
        for line in lines:
            distinct.setdefault(id(line), line)
        outs = dict(zip(distinct, model(list(distinct.values()), [grey] * len(distinct))))
        return [outs[id(line)] for line in lines]

    return fn


def colorizer_fn(colorizer, size: int, batch: int = 8) -> ColorFn:
    """A Colorizer as a ColorFn: the real pipeline, `batch` requests per colorize_batch call."""

    def fn(lines: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> list[np.ndarray]:
        requests = [(line, ref, ("color",), size) for line, ref in zip(lines, references)]
        out: list[np.ndarray] = []
        for start in range(0, len(requests), batch):
            out += [r["color"] for r in colorizer.colorize_batch(requests[start:start + batch])]
        return out

    return fn
