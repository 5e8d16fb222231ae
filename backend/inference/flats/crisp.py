"""Crisp colour: the model's colour, upsampled to the canvas, kept inside the line art's regions.

The model colours a canvas shrunk to a few hundred pixels, so once resized to full size its colour bleeds
a few model pixels across every line (and the lines it paints dark smear into the areas beside them). The
regions of the line art (segment()) know where each area stops. Away from the lines ("core" pixels: more
than `margin` px from any ink and from any border between regions) the smooth model colour is kept, so
its shading survives; every other pixel takes the colour of the nearest core pixel of its OWN region (one
distance transform with labels, no loop), or, where the nearest core belongs to another region or its
region has no core at all (narrow areas), the region's flat colour (its median, fill()).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .config import check_image, check_uint8
from .fills import _in_parallel

MARGIN_MODEL_PIXELS = 1.5  # core pixels lie this many model pixels (scaled to the canvas) from lines...
MIN_MARGIN = 2  # ... and at least this many canvas px


def crisp_margin(canvas: tuple[int, int], model: tuple[int, int]) -> int:
    """The margin (canvas px) around lines and region borders whose colour is taken from the cores: the
    reach of the resize's and the model's bleed, which grows with the upscale factor."""
    factor = max(canvas[0] / max(1, model[0]), canvas[1] / max(1, model[1]))
    return max(MIN_MARGIN, math.ceil(MARGIN_MODEL_PIXELS * factor))


def crisp(color: np.ndarray, labels: np.ndarray, flat: np.ndarray, margin: int,
          ink: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 colour upsampled from the model, with each region's colour carried up to its lines.

    labels: (H, W) integer regions (segment()); flat: (H, W, 3) uint8 fill(labels, color), each region's
    median; margin: px around the borders between regions (and the ink) whose colour is replaced; ink:
    optional (H, W) bool ink mask (find_ink().mask), so thick lines are replaced too. Returns a new array.

    The nearest core is found at full size: on a coarser grid a pixel beside a line can map to a grid point
    across it, and then loses its own region's colour. The painting runs in two bands of rows at once."""
    check_image(color, "color", 3)
    check_uint8(color, "color")
    check_uint8(flat, "flat")
    H, W = color.shape[:2]
    if labels.shape != (H, W) or flat.shape != color.shape or (ink is not None and ink.shape != (H, W)):
        raise ValueError(f"labels {labels.shape}, flat {flat.shape} and ink must match the colour {color.shape}")
    if margin < 1:
        raise ValueError(f"margin must be >= 1, got {margin}")
    walls = np.zeros((H, W), np.uint8)
    across = labels[:, 1:] != labels[:, :-1]
    walls[:, 1:] |= across
    walls[:, :-1] |= across
    del across
    down = labels[1:] != labels[:-1]
    walls[1:] |= down
    walls[:-1] |= down
    del down
    if ink is not None:
        walls |= ink
    rim = cv2.dilate(walls, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1)))
    del walls
    cores = np.flatnonzero(rim.ravel() == 0)
    if len(cores) == rim.size:  # no line and no border: nothing bleeds
        return color.copy()
    if len(cores) == 0:  # no core anywhere: every region flat near its lines
        return flat.copy()
    # Nearest core of every pixel: OpenCV numbers the zero (core) pixels 1.. in raster order.
    _, nearest = cv2.distanceTransformWithLabels(rim, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    # OpenCV's label k is cores[k - 1]: one entry in front, and plain indexing (much faster than np.take
    # with int32 indices)
    cores = np.concatenate([np.zeros(1, np.intp), cores]).astype(np.int32 if H * W < 1 << 31 else np.int64)
    color32, flat32 = (cv2.cvtColor(c, cv2.COLOR_RGB2RGBA).view(np.uint32)[..., 0] for c in (color, flat))
    flat_labels = labels.ravel()
    out = np.empty_like(color)

    def paint(rows: slice) -> None:
        source = cores[nearest[rows]]
        own = flat_labels[source] == labels[rows]
        picked = np.where(own, color32.ravel()[source], flat32[rows])
        kept = np.where(rim[rows].view(bool), picked, color32[rows])
        cv2.cvtColor(kept.view(np.uint8).reshape(*kept.shape, 4), cv2.COLOR_RGBA2RGB, dst=out[rows])

    _in_parallel(paint, [slice(0, H // 2), slice(H // 2, H)] if H > 1 else [slice(0, H)])
    return out
