"""Fill: one flat colour per region, the median of the model's colour over the region in CIE Lab, and
the shading layer (the colour minus the flats).

fill() takes each region's per-channel median of the model's colour in CIE Lab (robust to stray pixels,
unlike the mean), found with one sort of (label, value) keys per channel. flats() lets only the paper
pixels vote, so the dark lines the model also paints do not darken small regions. Hard edges and exactly
one colour per region mean a bucket fill or select-by-colour in Krita/GIMP picks a whole region.
"""
from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from ..colour import lab_to_rgb, rgb_to_lab_planes
from .config import FlatsConfig, check_image, check_uint8
from .lines import Ink, find_ink
from .regions import segment

# Lab values are quantised to 16 bits for the sort keys: L in [0, 100], a and b in [-128, 128).
# Steps of 0.0016 (L) and 0.004 (a, b) are far below what the eye or the uint8 round trip can see.
_Q = 1 << 16
_LAB_RANGE = ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0))
_CHUNK = 1 << 18  # pixels per Lab conversion step
SAMPLE_PIXELS = 1 << 18  # big regions vote on a grid of about this many points over the canvas (see fill())
MIN_SAMPLES = 16  # ... when that leaves them at least this many voters; smaller regions vote with all pixels


@functools.lru_cache(maxsize=1)
def _fill_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="irodori-fill")


def _in_parallel(work: Callable[[Any], Any], items: Iterable) -> list:
    """work(item) for every item on two threads. fill() runs after the model, when the model's cores are
    free again, and numpy and OpenCV release the GIL in these loops (docs/performance.md)."""
    items = list(items)
    if len(items) < 2:
        return [work(item) for item in items]
    return list(_fill_threads().map(work, items))


def sample_stride(height: int, width: int) -> int:
    """Grid step for fill()'s voters: 1 up to 512x512 px, 4 at 2048x2048, 8 at 4096x4096."""
    return max(1, math.isqrt(height * width // SAMPLE_PIXELS))


@dataclass(frozen=True)
class Votes:
    """Which pixels vote for each region's colour in fill(), and where each region's median will sit.

    It depends on the labels and the voting mask alone (the line art), not on the model's colour, so the
    pipeline works it out beside the segmentation while the model runs (and keeps it with the regions);
    fill() is then a gather, a Lab conversion, three sorts and the painting."""

    index: np.ndarray  # (N,) flat pixel indices of the voters
    keys: np.ndarray  # (N,) uint32/uint64: the voter's label << 16, ready to OR with a 16-bit value
    used: np.ndarray  # labels with at least one voter
    mid: np.ndarray  # for each used label: the position of its lower median among the sorted keys
    regions: int  # labels are 0..regions-1
    shape: tuple[int, int]


def plan_votes(labels: np.ndarray, vote: np.ndarray | None = None, stride: int | None = None) -> Votes:
    """The voters of fill() (see there) for `labels` (H, W) and the optional `vote` mask (H, W) bool."""
    check_image(labels, "labels", None)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    lowest, highest = int(labels.min()), int(labels.max())  # one pass each over the canvas, not one per use
    if lowest < 0 or highest > labels.size:
        raise ValueError("labels must be in 0..H*W; pass segment()'s output or relabel consecutively")
    if vote is not None and (not isinstance(vote, np.ndarray) or vote.shape != labels.shape or vote.dtype != bool):
        raise ValueError(f"vote must be a bool array of shape {labels.shape}")
    labels = labels.astype(np.int64 if highest >= 1 << 31 else np.int32, copy=False)
    n = highest + 1  # labels 0..n-1
    H, W = labels.shape

    # Which pixels vote: the strided grid's voters in regions big enough, every pixel elsewhere.
    s = sample_stride(H, W) if stride is None else stride
    if s < 1:
        raise ValueError(f"stride must be >= 1, got {s}")
    grid_labels = np.ascontiguousarray(labels[::s, ::s])
    grid_vote = np.ascontiguousarray(vote[::s, ::s]) if vote is not None else np.ones(grid_labels.shape, bool)
    sparse = np.bincount(grid_labels[grid_vote], minlength=n) >= MIN_SAMPLES
    on_grid = grid_vote & np.take(sparse, grid_labels)
    gy, gx = np.divmod(np.flatnonzero(on_grid), grid_labels.shape[1])
    grid_index = gy * (s * W) + gx * s
    # The other regions' pixels; everything after works on them alone. segment() numbers the regions from
    # the largest down, so they are (nearly) all the labels from the first small one up: one comparison
    # finds them, with a few pixels of big regions that a lookup then drops. Else a lookup per pixel.
    dense_label = ~sparse
    dense_label[:lowest] = False  # labels below the lowest are absent
    first = int(np.argmax(dense_label))  # the lowest small region's label
    grid_counts = np.bincount(grid_labels.ravel(), minlength=n)
    big_after = int(grid_counts[first:][sparse[first:]].sum())  # grid points of big regions above `first`
    if not dense_label.any():
        dense = np.zeros(0, np.intp)
        dense_labels = np.zeros(0, labels.dtype)
    elif big_after * 8 <= grid_labels.size:  # the candidates hold at most ~1/8 of the canvas in big regions
        dense = np.flatnonzero(labels >= first)
        dense_labels = np.take(labels, dense)
        if big_after:
            keep = np.take(dense_label, dense_labels)
            dense, dense_labels = dense[keep], dense_labels[keep]
    else:
        dense = np.flatnonzero(np.take(dense_label, labels))
        dense_labels = np.take(labels, dense)
    if vote is not None:
        voting = np.take(vote, dense)
        voteless = (np.bincount(dense_labels, minlength=n) > 0) & (np.bincount(dense_labels[voting], minlength=n) == 0)
        keep = (voting | np.take(voteless, dense_labels)) if voteless.any() else voting
        dense, dense_labels = dense[keep], dense_labels[keep]
    sample_labels = np.concatenate([grid_labels[on_grid], dense_labels])
    counts = np.bincount(sample_labels, minlength=n)
    used = np.flatnonzero(counts)
    mid = (np.cumsum(counts) - counts)[used] + (counts[used] - 1) // 2  # lower median's position
    key_dtype = np.uint32 if n < 1 << 16 else np.uint64  # room for label * 2^16 + value
    keys = sample_labels.astype(key_dtype) << key_dtype(16)
    return Votes(np.concatenate([grid_index, dense]), keys, used, mid, n, (H, W))


def fill(labels: np.ndarray, color: np.ndarray, vote: np.ndarray | None = None,
         stride: int | None = None, votes: Votes | None = None) -> np.ndarray:
    """Fill every region with one colour: the per-channel median of `color` over the region, in CIE Lab.

    labels: (H, W) integer labels >= 0 (from segment(): 1..K). color: (H, W, 3) uint8 RGB model output at
    full size. vote: optional (H, W) bool, the pixels whose colour counts; flats() passes the paper so the
    model's dark line pixels do not turn small regions black (a region with no voting pixel uses all of
    its pixels). Returns (H, W, 3) uint8. The median ignores up to half the pixels of a region being stray
    colours (line bleed, speckles) where a mean would smear them in. It is the lower median of the
    quantised Lab values, found by sorting packed (label, value) integer keys, one sort per channel.

    A region with at least MIN_SAMPLES voting pixels on the grid of every `stride`-th row and column
    (default sample_stride(): about SAMPLE_PIXELS grid points) votes with those grid pixels only: the
    model's output is a smooth upscale of a few hundred pixels a side, so the median barely moves, while
    the Lab conversion and the sorts shrink by stride^2. A smaller region votes with all
    of its pixels. `votes`: plan_votes(labels, vote, stride) worked out beforehand for these same labels
    (then vote and stride are not used).
    """
    check_image(color, "color", 3)
    check_uint8(color, "color")
    if not isinstance(labels, np.ndarray) or labels.shape != color.shape[:2]:
        raise ValueError(f"labels must be a numpy array of shape {color.shape[:2]} (the colour's H, W), "
                         f"got {getattr(labels, 'shape', type(labels).__name__)}")
    if votes is None:
        votes = plan_votes(labels, vote, stride)
    elif votes.shape != labels.shape:
        raise ValueError(f"votes were planned for {votes.shape}, the labels are {labels.shape}")
    H, W = labels.shape

    # Quantised Lab per channel, converted in chunks so the float temporaries stay small and in cache.
    rgb = np.take(color.reshape(-1, 3), votes.index, axis=0)  # faster than color.reshape(-1, 3)[index]
    q = np.empty((3, len(rgb)), np.uint16)
    lo = np.array([r[0] for r in _LAB_RANGE], np.float32)
    step = np.array([(r[1] - r[0]) / _Q for r in _LAB_RANGE], np.float32)

    def to_lab(i: int) -> None:
        for c, channel in enumerate(rgb_to_lab_planes(rgb[i:i + _CHUNK])):
            q[c, i:i + _CHUNK] = np.clip((channel - lo[c]) / step[c], 0, _Q - 1)

    def median(c: int) -> np.ndarray:
        keys = votes.keys | q[c]
        keys.sort()
        value = (keys[votes.mid] & keys.dtype.type(_Q - 1)).astype(np.float64)
        return lo[c] + (value + 0.5) * float(step[c])

    _in_parallel(to_lab, range(0, len(rgb), _CHUNK))
    medians = _in_parallel(median, range(3))
    del q
    # Paint: one 4-byte palette entry per region (a 1-D gather is faster than gathering 3-byte rows),
    # then OpenCV drops the padding byte; in two bands of rows at once.
    palette = np.zeros((votes.regions, 4), np.uint8)  # votes were planned for these labels: 0..regions-1
    palette[votes.used, :3] = lab_to_rgb(np.stack(medians, axis=-1))
    palette32 = palette.view(np.uint32).ravel()
    out = np.empty((H, W, 3), np.uint8)

    def paint(rows: slice) -> None:
        painted = np.take(palette32, labels[rows])
        cv2.cvtColor(painted.view(np.uint8).reshape(*painted.shape, 4), cv2.COLOR_RGBA2RGB, dst=out[rows])

    _in_parallel(paint, [slice(0, H // 2), slice(H // 2, H)] if H > 1 else [slice(0, H)])
    return out




def shading(color: np.ndarray, flats: np.ndarray) -> np.ndarray:
    """The model's shading as a separate layer: (color - flats) per channel, stored as 128 + difference.

    Encoding: uint8 (H, W, 3), value = clip(128 + color - flats, 0, 255), so 128 = no change. Put it over
    the flats with the "Grain merge" blend mode (Krita's, or GIMP's non-linear one, which blends in
    perceptual sRGB: result = flats + layer - 128); that gives back `color` exactly wherever the difference
    is within -128..+127. Larger differences (mostly the dark line pixels, which the line art layer covers
    anyway) are clipped to that range.
    """
    check_image(color, "color", 3)
    check_image(flats, "flats", 3)
    check_uint8(color, "color")
    check_uint8(flats, "flats")
    if color.shape != flats.shape:
        raise ValueError(f"color {color.shape} and flats {flats.shape} must have the same shape")
    diff = color.astype(np.int16) - flats.astype(np.int16) + 128
    return np.clip(diff, 0, 255).astype(np.uint8)


def flats(line: np.ndarray, color: np.ndarray, config: FlatsConfig = FlatsConfig(),
          labels: np.ndarray | None = None, votes: Votes | None = None) -> np.ndarray:
    """segment() then fill(): (H, W) or (H, W, 2|3|4) uint8 line art + (H, W, 3) uint8 colour -> (H, W, 3)
    uint8 flats.

    `labels` and `votes`: regions_and_votes(line, config), worked out beforehand (the pipeline does it
    while the model runs)."""
    check_image(color, "color", 3)
    if color.shape[:2] != line.shape[:2]:
        raise ValueError(f"line {line.shape} and color {color.shape} must have the same height and width; "
                         "resize the model output to the canvas first")
    if labels is None or votes is None:
        ink = find_ink(line, config)
        labels = segment(line, config, ink) if labels is None else labels
        votes = plan_votes(labels, ~ink.mask) if votes is None else votes
    return fill(labels, color, votes=votes)


def paper_votes(line: np.ndarray, labels: np.ndarray, config: FlatsConfig = FlatsConfig(),
                ink: Ink | None = None) -> Votes:
    """The voters flats() uses: the paper pixels (not the ink) of each region."""
    return plan_votes(labels, ~(ink or find_ink(line, config)).mask)


def regions_and_votes(line: np.ndarray, config: FlatsConfig = FlatsConfig()
                      ) -> tuple[np.ndarray, Votes, np.ndarray]:
    """segment(), paper_votes() and the ink mask (crisp colour's walls) for one line art, its ink found once:
    everything that depends on the line art alone."""
    ink = find_ink(line, config)
    labels = segment(line, config, ink)
    return labels, plan_votes(labels, ~ink.mask), ink.mask
