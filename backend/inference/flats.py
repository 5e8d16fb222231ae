"""Flats: split line art into closed regions and fill each with one flat colour from the model's output.

Flatting is the studio chore of bucket-filling every closed region of the line art. We do it in three
vectorised steps, all at full canvas resolution (no Python loop over pixels or regions):

1. segment(): threshold the ink, then find the regions a "trapped ball" of radius r = ceil(gap / 2) can
   reach: ball centres are the paper pixels farther than r from any ink (and from the canvas edge), and
   their 4-connected components are the region seeds. A ball cannot pass through a gap of up to 2r px, so
   such gaps do not merge regions. The seeds are then grown back to the full paper area: a connected
   piece of paper that holds one seed takes that seed's label whole; a piece that holds none (a small
   closed shape the ball does not fit in) becomes a region of its own; a piece that holds several seeds
   (their paper touches through a closed gap, or a neck narrower than the ball) is split by nearest seed.
   Tiny regions (< min_region px) and the pixels under the lines go to the region of the nearest seed
   (seed labels grown a pixel at a time by OpenCV's dilation), so every pixel has a label and the fills
   of neighbouring regions meet under the lines, about half way across them.
2. fill(): each region gets the per-channel median of the model's colour in CIE Lab (robust to stray
   pixels, unlike the mean), found with one sort of (label, value) keys per channel. flats() lets only
   the paper pixels vote, so the dark lines the model also paints do not darken small regions.
3. shading(): the model's output minus the flats, as a 128-offset layer for a "grain merge" blend.

Hard edges and exactly one colour per region mean a bucket fill or select-by-colour in Krita/GIMP picks a
whole region. Neighbouring regions may still get the same colour (e.g. two white areas); that is fine for
flats, they are then simply one fill area.
"""
from __future__ import annotations

import functools
import math
import resource
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import cv2
import numpy as np

MAX_PIXELS = 8192 * 8192  # ~64 Mpx: the whole pipeline then needs a few GB; refuse anything larger
MAX_GAP = 64  # px; the ball costs O(gap) passes over the image, and a big ball eats real detail


@dataclass(frozen=True)
class FlatsConfig:
    line_threshold: int = 128  # grey values below this are ink (0 = black ink, 255 = paper)
    gap: int = 4  # largest gap in the lines (px) that is treated as closed; rounded up to an even number
    min_region: int = 16  # regions with fewer pixels than this merge into a neighbour

    def __post_init__(self):
        for name in ("line_threshold", "gap", "min_region"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if not 1 <= self.line_threshold <= 255:
            raise ValueError(f"line_threshold must be in 1..255, got {self.line_threshold}")
        if not 0 <= self.gap <= MAX_GAP:
            raise ValueError(f"gap must be in 0..{MAX_GAP} px, got {self.gap}")
        if not 0 <= self.min_region <= 1_000_000:
            raise ValueError(f"min_region must be in 0..1000000 px, got {self.min_region}")


# ----------------------------------------------------------------------------- input checks

def _check_image(a: np.ndarray, name: str, channels: int | None) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    want = 2 if channels is None else 3
    if a.ndim != want or (channels is not None and a.shape[2] != channels):
        shape = "(H, W)" if channels is None else f"(H, W, {channels})"
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ValueError(f"{name} is {a.shape[1]}x{a.shape[0]}, more than {MAX_PIXELS} pixels; "
                         "downscale it or split the canvas")


def _check_uint8(a: np.ndarray, name: str) -> None:
    if a.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 (0..255), got {a.dtype}; convert with np.clip(...).astype(np.uint8)")


# ----------------------------------------------------------------------------- segmentation

def _dilate_disk(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by the disk dx^2 + dy^2 <= r^2, outside the image counts as False.

    Small disks (the default gap's r = 2) go to OpenCV's dilation with the disk as its kernel (~2 ms at
    2048^2). Its cost grows with the kernel's area, so larger disks are built from shifted ORs instead:
    each row dy of the disk is a horizontal segment of half-width isqrt(r^2 - dy^2), so we widen one
    horizontal dilation step by step and OR it in shifted by +-dy, O(r) whole-array passes. Both give the
    same pixels.
    """
    if r <= 4:
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        kernel = (yy * yy + xx * xx <= r * r).astype(np.uint8)
        return cv2.dilate(mask.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).view(bool)
    out = mask.copy()
    h = mask.copy()  # mask dilated horizontally by half-width w
    w = 0
    for dy in range(r, -1, -1):  # half-width grows as dy shrinks
        want = math.isqrt(r * r - dy * dy)
        while w < want:
            g = h.copy()
            g[:, 1:] |= h[:, :-1]
            g[:, :-1] |= h[:, 1:]
            h, w = g, w + 1
        if dy == 0:
            out |= h
        elif dy < mask.shape[0]:
            out[dy:] |= h[:-dy]
            out[:-dy] |= h[dy:]
    return out


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """4-connected components of a bool mask: (count, int32 labels 0..count with 0 = outside the mask).

    OpenCV's labelling (Spaghetti/SAUF decision trees) is several times faster than scipy.ndimage.label on
    large canvases; both give the same partition."""
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return n - 1, labels


def _label_counts(labels: np.ndarray) -> np.ndarray:
    """Pixels per label (int64, index = label). OpenCV's histogram of the labels as uint16 is ~4x faster
    than np.bincount (which first widens 4M int32 labels to int64); its float32 counts are exact up to 2^24,
    plenty for the small-region test they serve. More than 65,535 labels: np.bincount."""
    n = int(labels.max()) + 1
    if n > 1 << 16:
        return np.bincount(labels.ravel(), minlength=n)
    hist = cv2.calcHist([labels.astype(np.uint16)], [0], None, [n], [0, n])
    return hist.ravel().astype(np.int64)


def _nearest(known: np.ndarray, labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The label of the nearest `known` pixel (chessboard distance) for the pixels at flat indices `where`.

    OpenCV's distance transform with DIST_LABEL_PIXEL numbers the known pixels 1..n in raster order and
    gives every pixel the number of its nearest one: one pass in C, no (2, H, W) index arrays."""
    _, nearest = cv2.distanceTransformWithLabels((~known).view(np.uint8), cv2.DIST_C, 3,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    lut = labels[known]  # the known pixels' labels in raster order: lut[i - 1] is known pixel number i
    return np.take(lut, np.take(nearest, where) - 1)  # np.take: ~4x faster than fancy indexing here


def segment(line: np.ndarray, config: FlatsConfig = FlatsConfig()) -> np.ndarray:
    """Label the closed regions of line art; every pixel (ink included) gets a label >= 1.

    line: (H, W) uint8 greyscale, 255 = paper, 0 = ink. Returns (H, W) int32 labels 1..K, consecutive.
    Gaps in the lines of up to 2 * ceil(gap / 2) px do not join regions (trapped-ball rule, module doc).
    """
    _check_image(line, "line", None)
    _check_uint8(line, "line")
    H, W = line.shape
    ink = line < config.line_threshold
    paper = ~ink
    # Paper is labelled 4-connected, so an 8-connected (diagonal, 1 px) ink line is a wall.

    # Ball centres: paper pixels more than r from ink and from the canvas edge (the edge is a wall, so a
    # line that stops just short of the edge still closes).
    r = (config.gap + 1) // 2
    if r > 0:
        blocked = _dilate_disk(ink, r)
        blocked[:r] = True
        blocked[-r:] = True
        blocked[:, :r] = True
        blocked[:, -r:] = True
        centres = ~blocked
        del blocked
    else:
        centres = paper
    n_seeds, seeds = _components(centres)
    del centres
    n_pieces, pieces = _components(paper)  # paper without closing

    # Each seed lies inside exactly one piece of paper (seeds are paper, 4-connected), so any one of its
    # pixels tells which: a scatter from every 4th row and column finds most seeds (every pixel of a seed
    # writes the same piece), then one pass picks up the seeds the grid missed (thin or tiny ones).
    # Then per piece: how many seeds.
    piece_of_seed = np.zeros(n_seeds + 1, np.int32)
    piece_of_seed[seeds[::4, ::4].ravel()] = pieces[::4, ::4].ravel()
    missed = piece_of_seed == 0
    missed[0] = False
    if missed.any():
        at = np.flatnonzero(np.take(missed, seeds))
        piece_of_seed[np.take(seeds, at)] = np.take(pieces, at)
    seeds_in_piece = np.bincount(piece_of_seed[1:], minlength=n_pieces + 1)
    rep = np.zeros(n_pieces + 1, np.int32)
    rep[piece_of_seed[1:]] = np.arange(1, n_seeds + 1, dtype=np.int32)  # a piece's only seed, where it has one
    # Pieces without a seed (closed shapes too small for the ball) become regions of their own; pieces with
    # several (joined through a closed gap) get 0 here and are split below by nearest seed.
    seedless = seeds_in_piece == 0
    seedless[0] = False  # index 0 is ink, not a piece
    rep[seedless] = n_seeds + 1 + np.arange(int(seedless.sum()), dtype=np.int32)
    rep[seeds_in_piece > 1] = 0
    rep[0] = 0
    # A seed pixel keeps its seed; any other paper pixel takes its piece's region (0 in a multi-seed piece).
    labels = np.take(rep, pieces)
    np.maximum(labels, seeds, out=labels)
    del pieces, ink, paper

    # Tiny regions give their pixels up to a neighbour (counted over the pixels labelled so far). One
    # table renumbers the surviving regions 1..K in order and sends tiny ones to 0 (unlabelled).
    counts = _label_counts(labels)
    counts[0] = 0
    if counts.max(initial=0) == 0:
        return np.ones((H, W), np.int32)  # all ink: one region
    tiny = counts < config.min_region
    tiny[0] = False
    if tiny[1:].all():
        tiny[int(np.argmax(counts))] = False  # everything is tiny: keep the largest
    # Numbering: the seeds' regions first, then the seedless pieces' (the test for `known` below relies on
    # that), each group from the largest region down, so that plan_votes() finds the small regions'
    # pixels, which vote with every pixel, with one comparison (labels >= the first small one).
    ids = np.flatnonzero((counts > 0) & ~tiny)
    seedless_ids = ids > n_seeds
    ids = ids[np.lexsort((-counts[ids], seedless_ids))]  # by group, then by size (largest first)
    table = np.zeros(len(counts), np.int32)
    table[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    seed_regions = len(ids) - int(seedless_ids.sum())  # renumbered seeds are 1..this; seedless pieces above
    if len(ids) < 1 << 16:
        table = table.astype(np.uint16)  # the usual case: 16-bit labels until the end, half the bytes to move
    labels = np.take(table, labels)

    # Every unlabelled pixel (ink, tiny regions, the rim of pieces joined through a gap) takes the label of
    # the nearest seed pixel (or pixel of a seedless region). Seeds lie more than r px from the ink, so a
    # pixel next to a thin line is nearer to its own seed than to the one across the line, unlike the
    # already-labelled rim pixels of the region across the line.
    unknown = labels == 0
    if unknown.any():
        known = (labels > 0) & ((seeds > 0) | (labels > seed_regions))
        _fill_nearest(labels, known, unknown)
    return labels.astype(np.int32, copy=False)


PROPAGATE_STEPS = 32  # growth steps of _fill_nearest before the distance transform takes what is left


def _fill_nearest(labels: np.ndarray, known: np.ndarray, unknown: np.ndarray) -> None:
    """Give every `unknown` pixel the label of its nearest `known` pixel (chessboard distance), in place.

    The unknown pixels are the lines and thin rims beside them, nearly all within a few px of a known
    pixel, so the known labels grow one pixel per step (a pixel keeps the first label that reaches it, the
    largest when several arrive in the same step): OpenCV's 3x3 dilation of 16-bit labels over the whole
    canvas (~1.2 ms a step at 2048^2) while many pixels are left, then only at the few left (8 gathers
    each). About 10 ms at 2048^2 against ~30 ms for OpenCV's labelled distance transform, which stays
    for more than 65,535 labels and for what is left after PROPAGATE_STEPS, or as soon as the steps stop
    shrinking what is left (a solid black area: growing it a pixel at a time would take hundreds)."""
    if labels.dtype == np.uint16:
        H, W = labels.shape
        grown = labels * known  # the known pixels' labels, 0 elsewhere
        kernel = np.ones((3, 3), np.uint8)
        steps, before = 0, grown.size
        while steps < PROPAGATE_STEPS:
            empty = cv2.compare(grown, 0, cv2.CMP_EQ)
            left = cv2.countNonZero(empty)
            if left <= grown.size // 128:
                break
            if steps >= 3 and left > 0.9 * before:  # far from everything (a solid black area): stop growing
                steps = PROPAGATE_STEPS
                break
            cv2.copyTo(cv2.dilate(grown, kernel), empty, grown)
            steps, before = steps + 1, left
        flat = grown.ravel()
        where = np.flatnonzero(flat == 0)
        while where.size and steps < PROPAGATE_STEPS:  # the same steps at the pixels left only
            y, x = np.divmod(where, W)
            best = np.zeros(where.size, np.uint16)
            for dy in (-1, 0, 1):
                row = np.clip(y + dy, 0, H - 1) * W  # clipped neighbours are real neighbours or the pixel
                for dx in (-1, 0, 1):
                    if dy or dx:
                        np.maximum(best, np.take(flat, row + np.clip(x + dx, 0, W - 1)), out=best)
            flat[where] = best
            where = where[best == 0]
            steps += 1
        cv2.copyTo(grown, unknown.view(np.uint8), labels)
        if not where.size:
            return
        unknown = labels == 0
    where = np.flatnonzero(unknown)
    np.put(labels, where, _nearest(known, labels, where))


# ----------------------------------------------------------------------------- colour (sRGB <-> CIE Lab, D65)

_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ.sum(axis=1)  # D65 white point of sRGB (X, Y, Z for RGB = 1)
_EPS = (6 / 29) ** 3


def _srgb_to_linear_lut() -> np.ndarray:
    c = np.arange(256) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_LINEAR = _srgb_to_linear_lut()


_XYZ_TO_F = (_RGB_TO_XYZ / _WHITE[:, None]).astype(np.float32)  # linear RGB -> X/Xn, Y/Yn, Z/Zn


def _rgb_to_lab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) uint8 sRGB -> L, a, b float32 (N,) arrays, CIE Lab (D65).

    Written as elementwise ops on small chunks rather than a (N, 3) @ (3, 3) matmul: BLAS threads gain
    nothing on a 3-wide product and stall when other processes share the cores.
    """
    r, g, b = _LINEAR[rgb[:, 0]], _LINEAR[rgb[:, 1]], _LINEAR[rgb[:, 2]]  # contiguous channels
    f = []
    for m in _XYZ_TO_F:
        t = m[0] * r
        t += m[1] * g
        t += m[2] * b
        ft = np.cbrt(t)
        dark = t <= _EPS  # the linear toe of the Lab curve; rare, so patch it instead of np.where everywhere
        if dark.any():
            ft[dark] = t[dark] / (3 * (6 / 29) ** 2) + 4 / 29
        f.append(ft)
    fx, fy, fz = f
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _lab_to_rgb(L: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 L, a, b (N,) -> (N, 3) uint8 sRGB, clipped to the gamut."""
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    t = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    lin = np.clip((t * _WHITE) @ _XYZ_TO_RGB.T, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(srgb * 255), 0, 255).astype(np.uint8)


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
    free again, and numpy and OpenCV release the GIL in these loops: 14 -> ~9 ms at 2048^2."""
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
    _check_image(labels, "labels", None)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    lowest = int(labels.min())
    if lowest < 0 or labels.max() > labels.size:
        raise ValueError("labels must be in 0..H*W; pass segment()'s output or relabel consecutively")
    if vote is not None and (not isinstance(vote, np.ndarray) or vote.shape != labels.shape or vote.dtype != bool):
        raise ValueError(f"vote must be a bool array of shape {labels.shape}")
    labels = labels.astype(np.int64 if labels.max() >= 1 << 31 else np.int32, copy=False)
    n = int(labels.max()) + 1  # labels 0..n-1
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
    the Lab conversion and the sorts shrink by stride^2 (16x at 2048^2). A smaller region votes with all
    of its pixels. `votes`: plan_votes(labels, vote, stride) worked out beforehand for these same labels
    (then vote and stride are not used).
    """
    _check_image(color, "color", 3)
    _check_uint8(color, "color")
    if not isinstance(labels, np.ndarray) or labels.shape != color.shape[:2]:
        raise ValueError(f"labels must be a numpy array of shape {color.shape[:2]} (the colour's H, W), "
                         f"got {getattr(labels, 'shape', type(labels).__name__)}")
    if votes is None:
        votes = plan_votes(labels, vote, stride)
    elif votes.shape != labels.shape:
        raise ValueError(f"votes were planned for {votes.shape}, the labels are {labels.shape}")
    H, W = labels.shape

    # Quantised Lab per channel, converted in chunks so the float temporaries stay small and in cache.
    rgb = np.take(color.reshape(-1, 3), votes.index, axis=0)  # ~4x faster than color.reshape(-1, 3)[index]
    q = np.empty((3, len(rgb)), np.uint16)
    lo = np.array([r[0] for r in _LAB_RANGE], np.float32)
    step = np.array([(r[1] - r[0]) / _Q for r in _LAB_RANGE], np.float32)

    def to_lab(i: int) -> None:
        for c, channel in enumerate(_rgb_to_lab(rgb[i:i + _CHUNK])):
            q[c, i:i + _CHUNK] = np.clip((channel - lo[c]) / step[c], 0, _Q - 1)

    def median(c: int) -> np.ndarray:
        keys = votes.keys | q[c]
        keys.sort()
        value = (keys[votes.mid] & keys.dtype.type(_Q - 1)).astype(np.float64)
        return lo[c] + (value + 0.5) * float(step[c])

    _in_parallel(to_lab, range(0, len(rgb), _CHUNK))
    medians = _in_parallel(median, range(3))
    del q
    # Paint: one 4-byte palette entry per region (a 1-D gather is ~2x faster than gathering 3-byte rows),
    # then OpenCV drops the padding byte; in two bands of rows at once.
    palette = np.zeros((votes.regions, 4), np.uint8)  # votes were planned for these labels: 0..regions-1
    palette[votes.used, :3] = _lab_to_rgb(*medians)
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
    _check_image(color, "color", 3)
    _check_image(flats, "flats", 3)
    _check_uint8(color, "color")
    _check_uint8(flats, "flats")
    if color.shape != flats.shape:
        raise ValueError(f"color {color.shape} and flats {flats.shape} must have the same shape")
    diff = color.astype(np.int16) - flats.astype(np.int16) + 128
    return np.clip(diff, 0, 255).astype(np.uint8)


def flats(line: np.ndarray, color: np.ndarray, config: FlatsConfig = FlatsConfig(),
          labels: np.ndarray | None = None, votes: Votes | None = None) -> np.ndarray:
    """segment() then fill(): (H, W) uint8 line art + (H, W, 3) uint8 colour -> (H, W, 3) uint8 flats.

    `labels`: segment(line, config), and `votes`: paper_votes(line, labels, config), computed beforehand
    (the pipeline works both out while the model runs)."""
    _check_image(color, "color", 3)
    if color.shape[:2] != line.shape[:2]:
        raise ValueError(f"line {line.shape} and color {color.shape} must have the same height and width; "
                         "resize the model output to the canvas first")
    if labels is None:
        labels = segment(line, config)
    if votes is None:
        votes = paper_votes(line, labels, config)
    return fill(labels, color, votes=votes)


def paper_votes(line: np.ndarray, labels: np.ndarray, config: FlatsConfig = FlatsConfig()) -> Votes:
    """The voters flats() uses: the paper pixels (not the ink) of each region."""
    return plan_votes(labels, line >= config.line_threshold)


# ----------------------------------------------------------------------------- benchmark

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


def bench_flats(size: int, repeats: int = 3, config: FlatsConfig = FlatsConfig()) -> dict:
    """Time flats() on a size x size synthetic canvas (median of `repeats` runs) and measure peak memory.

    Peak memory is measured in a separate run under tracemalloc (numpy's and scipy's array buffers are
    traced), so the tracing overhead does not skew the timings. Returns seconds and MiB.
    """
    if not 1 <= repeats <= 100:
        raise ValueError(f"repeats must be in 1..100, got {repeats}")
    line, color = bench_images(size)
    seg_s, fill_s, shade_s, cpu_s = [], [], [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        labels = segment(line, config)
        t1 = time.perf_counter()
        out = fill(labels, color, vote=line >= config.line_threshold)
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
