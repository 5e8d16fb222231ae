"""What keyframe matching knows about each closed region of a line art: where it sits relative to the
figure, how big and what shape it is, which regions it touches, and (for a keyframe) its colour.

Everything is measured once per line art, with whole-canvas label operations (no loop over regions). The
positions, shapes and neighbours are measured on a grid of every `stride`-th pixel on large canvases (a
2048 px frame: every 4th pixel of every 4th row), which moves a region's centre by well under a pixel of the grid;
the regions the grid misses (tiny ones) are measured on their own full-resolution pixels."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

GRID_SIDE = 512  # the grid keeps about this many pixels along the long side


@dataclass(frozen=True, eq=False)
class Regions:
    """One line art's regions, labels 1..K (index 0 of every per-region array is unused)."""

    labels: np.ndarray  # (H, W) int32, every pixel in a region (the flats segmentation)
    grid: np.ndarray  # labels[::stride, ::stride]
    stride: int
    area: np.ndarray  # (K+1,) pixels at full resolution
    centre: np.ndarray  # (K+1, 2) x, y in full-resolution pixels
    axes: np.ndarray  # (K+1, 2) standard deviations along the major and minor axis (px)
    angle: np.ndarray  # (K+1,) the major axis's direction, radians in [0, pi)
    edge: np.ndarray  # (K+1,) bool: touches the canvas's edge (the background, a figure cut by the frame)
    pairs: np.ndarray  # (E, 2) neighbouring labels (both orders)
    border: np.ndarray  # (E,) how much border each pair shares (grid pixels)
    origin: np.ndarray  # (2,) the ink's centre: where the figure is
    scale: float  # the ink's RMS distance from its centre (px): how big the figure is

    @property
    def count(self) -> int:
        return len(self.area) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape


def grid_stride(height: int, width: int) -> int:
    return max(1, round(max(height, width) / GRID_SIDE))


def describe(labels: np.ndarray, ink: np.ndarray) -> Regions:
    """labels (H, W) 1..K from the flats segmentation and its ink mask (H, W) bool -> Regions."""
    labels = np.ascontiguousarray(labels, dtype=np.int32) if labels.dtype != np.int32 else labels
    H, W = labels.shape
    k = int(labels.max())
    s = grid_stride(H, W)
    grid = labels[::s, ::s]
    gy, gx = np.mgrid[0:grid.shape[0], 0:grid.shape[1]].astype(np.float64) * s
    flat = grid.ravel()
    n = np.bincount(flat, minlength=k + 1).astype(np.float64)
    sums = [np.bincount(flat, weights=w.ravel(), minlength=k + 1) for w in (gx, gy, gx * gx, gx * gy, gy * gy)]
    missed = np.flatnonzero(n[1:] == 0) + 1
    if missed.size:  # regions the grid does not reach: their own pixels at full resolution
        lut = np.zeros(k + 1, bool)
        lut[missed] = True
        at = np.flatnonzero(lut[labels.ravel()])
        y, x = np.divmod(at, W)
        x, y = x.astype(np.float64), y.astype(np.float64)
        lab = labels.ravel()[at]
        n += np.bincount(lab, minlength=k + 1)
        for i, w in enumerate((x, y, x * x, x * y, y * y)):
            sums[i] += np.bincount(lab, weights=w, minlength=k + 1)
    nn = np.maximum(n, 1)
    mx, my = sums[0] / nn, sums[1] / nn
    cxx = sums[2] / nn - mx * mx + s * s / 12  # + the grid cell's own spread, so a 1-cell region has a size
    cxy = sums[3] / nn - mx * my
    cyy = sums[4] / nn - my * my + s * s / 12
    half = np.sqrt(np.maximum(((cxx - cyy) / 2) ** 2 + cxy ** 2, 0))
    mean = (cxx + cyy) / 2
    axes = np.sqrt(np.maximum(np.stack([mean + half, mean - half], 1), 0.25))
    angle = np.mod(0.5 * np.arctan2(2 * cxy, cxx - cyy), math.pi)
    area = np.bincount(labels.ravel(), minlength=k + 1).astype(np.float64)

    edge = np.zeros(k + 1, bool)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        edge[side] = True

    pairs, border = _neighbours(grid, k)
    ig = ink[::s, ::s]
    iy, ix = np.nonzero(ig)
    if ix.size:
        origin = np.array([ix.mean(), iy.mean()]) * s
        scale = float(np.sqrt(((ix * s - origin[0]) ** 2 + (iy * s - origin[1]) ** 2).mean()))
    else:
        origin, scale = np.array([W / 2, H / 2]), 0.0
    scale = max(scale, 0.05 * max(H, W))  # a speck of ink says nothing about the figure's size
    return Regions(labels=labels, grid=grid, stride=s, area=area, centre=np.stack([mx, my], 1), axes=axes,
                   angle=angle, edge=edge, pairs=pairs, border=border, origin=origin, scale=scale)


def _neighbours(grid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Label pairs that meet between horizontally or vertically adjacent grid pixels, and how often."""
    a = np.concatenate([grid[:, :-1].ravel(), grid[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([grid[:, 1:].ravel(), grid[1:, :].ravel()]).astype(np.int64)
    differ = a != b
    a, b = a[differ], b[differ]
    codes = np.concatenate([a * (k + 1) + b, b * (k + 1) + a])
    uniq, counts = np.unique(codes, return_counts=True)
    return np.stack(np.divmod(uniq, k + 1), 1), counts.astype(np.float64)


def region_colours(labels: np.ndarray, colouring: np.ndarray, voters: np.ndarray | None = None) -> np.ndarray:
    """(K+1, 3) uint8: each region's most common colour in `colouring` (H, W, 3) uint8, over the `voters`
    (H, W) bool where a region has any (the paper, not the ink), else over all its pixels. The most common
    colour, not a median: on a flats layer it is the region's fill exactly; on a shaded picture, its base
    tone (the largest)."""
    k = int(labels.max())
    rgb = colouring.astype(np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    out = np.zeros((k + 1, 3), np.uint8)
    lab = labels.ravel().astype(np.int64)
    code = code.ravel()
    done = np.zeros(k + 1, bool)
    for select in ((voters.ravel() if voters is not None else None), None):
        take = ~done[lab] if select is None else select & ~done[lab]
        if not take.any():
            continue
        keys, counts = np.unique((lab[take] << 24) | code[take], return_counts=True)
        region = keys >> 24
        order = np.lexsort((-counts, region))  # per region, the most common colour first
        first = np.ones(len(order), bool)
        first[1:] = region[order][1:] != region[order][:-1]
        best = keys[order][first]
        r = best >> 24
        c = best & 0xFFFFFF
        out[r] = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], 1).astype(np.uint8)
        done[r] = True
    return out


def paint(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(H, W) labels + (K+1, 3) uint8 colours -> (H, W, 3) uint8: one 32-bit gather, several times faster
    than gathering three channels."""
    lut = np.zeros((len(colours), 4), np.uint8)
    lut[:, :3] = colours
    packed = np.take(lut.view(np.uint32).reshape(-1), labels)
    return cv2.cvtColor(packed.view(np.uint8).reshape(*labels.shape, 4), cv2.COLOR_RGBA2RGB)
