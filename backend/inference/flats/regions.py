"""Gap closing and segmentation: the closed regions of line art, every pixel in one of them.

Trapped-ball filling (Zhang et al. 2009) with decreasing ball radii, done for all regions at once:

1. The ink (lines.py) and its distance transform. The ball centres for radius r are the pixels farther
   than r from any ink and from the canvas edge (the edge is a wall, so a line that stops just short of it
   still closes). A ball cannot pass a gap of up to 2r px, so such gaps do not join the centres.
2. Levels, from the largest radius down to 0 (radius 0: the paper itself). At each level the centres'
   4-connected components are compared with the regions found so far (each found region lies inside one
   component, as centres for a radius are centres for every smaller one): a component holding no region
   becomes a new region (an area too narrow for the bigger balls; a mere speck of centres waits for a
   smaller ball, which finds the narrow area whole); one holding exactly one region joins it (the
   smaller ball reaches further into its corners and narrow ends); one holding several (they touch
   through a gap the bigger ball could not pass) gives each new pixel to the region that reaches it
   first through the component, so every region comes as close to its lines as its neighbours do. What
   no region reaches at the last ball level (a strip between two strokes, open at both ends) becomes a
   region of its own instead of being split down its middle. So a big area closes gaps up to twice the
   largest radius, while a narrow one, found by a smaller ball, closes gaps up to its own width, as a
   person would see it.
3. Every pixel still without a region (the lines, the rims of regions joined through a gap) takes the
   region of the nearest labelled pixel. The fills of neighbouring regions meet under the lines, about
   half way across them.
4. Small pieces (stray marks, the narrow leftovers no ball fits) and thin ones (the strips between
   hatching strokes) merge into a neighbour (labelops.merge_small): the one they share the most border
   with, across the faintest line; then the areas either side of a band of hatching merge.

The largest radius follows the picture: gaps scale with the line width and the canvas size (a drawing
scanned larger has larger gaps). On large canvases the ball levels run on a canvas shrunk by 2 or 4 (a
coarse pixel is ink if any of its pixels is), where they cost a quarter or a sixteenth, as long as the
ball is a few coarse pixels wide; the smallest ball, the paper level and everything after run at full
resolution, so narrow strips (between hatching strokes) are found whole and the regions' edges follow
the lines exactly.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .config import FlatsConfig
from .labelops import components, fill_nearest, label_counts, merge_small
from .lines import Ink, find_ink

GAP_PER_LINE_WIDTH = 2.0  # auto gap: this many line widths ...
GAP_PER_1000_PX = 6.0  # ... plus this many px per 1000 px of the canvas's long side
COARSE_FROM = 2048  # long side from which the ball levels run on a canvas shrunk by 2 (by 4 from twice this)
COARSE_MIN_RADIUS = 2.0  # ... those of balls of at least this radius in coarse px (see level_radii)
MIN_BIRTH = 2.0  # a region is found at a ball level once its centres cover this many r^2 (the last level: any)
SMALL_SHARE = 1e-4  # regions under this share of the canvas are small (and at least config.min_region px)
SLIVER_FACTOR = 4  # regions no ball fits in are small up to this many times that
THIN_RADIUS = 4.0  # px: a region no wider than twice this (or than 2 x THIN_PER_LINE_WIDTH line widths)
THIN_PER_LINE_WIDTH = 1.0  # ... is thin (the strips between hatching strokes: see labelops.merge_small);
# hatching 4-8 px apart leaves strips up to 8 px wide, while wider made the eyes and strands of a small face
# with soft lines "strips" too (docs/performance.md, "the thin rule narrowed")
THIN_SHARE = 0.05  # ... while under this share of the canvas
THIN_FULL_SIDE = 192  # ... on a canvas this big or bigger; on a smaller one both shrink with it: a 96 px
# thumbnail is drawn 2x smaller, and at full size its eyes, strands and collar were all "strips" that merged
# away (docs/performance.md, "thumbnails")


def auto_gap(width: float, height: int, canvas_width: int) -> int:
    """The largest gap (px) closed when the config does not say: scaled with the line width and the canvas."""
    return round(GAP_PER_LINE_WIDTH * width + GAP_PER_1000_PX * max(height, canvas_width) / 1000)


def ball_radii(gap: int) -> list[float]:
    """Decreasing radii (px): the largest closes gaps up to `gap` (2 * ceil(gap / 2)), each next one half
    the last, down to 1."""
    radii = []
    r = (gap + 1) // 2
    while r >= 1:
        radii.append(float(r))
        r //= 2
    return radii


def coarse_factor(height: int, width: int) -> int:
    side = max(height, width)
    return 4 if side >= 2 * COARSE_FROM else 2 if side >= COARSE_FROM else 1


def level_radii(gap: int, f: int) -> list[tuple[float, int]]:
    """The ball levels (radius px, the factor of the canvas it runs on): the balls of ball_radii(gap) that
    are still COARSE_MIN_RADIUS pixels on the canvas shrunk by f run there, then the smallest one (1 px)
    on the full canvas. A ball of a pixel or so on the coarse canvas fragments the strips between close
    hatching strokes (a coarse pixel is ink where any of its pixels is), and the pieces then meet across
    paper, where no line tells that they are one strip. The balls between are left out: each would cost
    a full-canvas pass, and the drawings come out as right without them (docs/performance.md)."""
    radii = ball_radii(gap)
    if f == 1:
        return [(r, 1) for r in radii]
    coarse = [(r, f) for r in radii if r / f >= COARSE_MIN_RADIUS]
    return coarse + [(r, 1) for r in radii[len(coarse):][-1:]]


def _scale_up(labels: np.ndarray, k: int, height: int, width: int) -> np.ndarray:
    """Labels on a canvas shrunk by k scaled up to the (height, width) canvas (each coarse pixel k x k)."""
    if k == 1:
        return labels
    up = cv2.resize(labels, (labels.shape[1] * k, labels.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(up[:height, :width])


def _centres(ink: np.ndarray, r: float) -> np.ndarray:
    """The ball centres of radius r: the pixels farther than r from the ink and from the canvas's edge,
    as the distance transform gives them, from a dilation of the ink by the disk of radius r (a small
    ball's dilation costs a fraction of a distance transform on a large canvas)."""
    k = int(r)
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    disk = (yy * yy + xx * xx <= r * r).astype(np.uint8)
    near = cv2.dilate(ink, disk, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return cv2.compare(near, 0, cv2.CMP_EQ).view(bool)


def _shrink_ink(ink: np.ndarray, f: int) -> np.ndarray:
    """Ink on a canvas shrunk by f: a coarse pixel is ink if any of its f x f pixels is (outside is paper)."""
    if f == 1:
        return ink.view(np.uint8)
    H, W = ink.shape
    hc, wc = -(-H // f), -(-W // f)
    padded = cv2.copyMakeBorder(ink.view(np.uint8), 0, hc * f - H, 0, wc * f - W, cv2.BORDER_CONSTANT, value=0)
    return (cv2.resize(padded, (wc, hc), interpolation=cv2.INTER_AREA) > 0).view(np.uint8)


def _distance(ink: np.ndarray) -> np.ndarray:
    """Euclidean distance (OpenCV's 5x5 chamfer) of every pixel to the nearest ink or the canvas's edge."""
    walled = cv2.copyMakeBorder(ink, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    dist = cv2.distanceTransform(cv2.compare(walled, 0, cv2.CMP_EQ), cv2.DIST_L2, cv2.DIST_MASK_5)
    return dist[1:-1, 1:-1]


def _region_of(labels: np.ndarray, comps: np.ndarray, n_labels: int, f: int = 1) -> np.ndarray:
    """The component each region lies in (every region lies inside exactly one), index = region.

    `labels` may be the coarse canvas's (shrunk by f, as the ball levels leave them): the pixel (y, x)
    there is (f y, f x) on the full canvas, inside its coarse pixel. A scatter from every 4th row and
    column finds most (every pixel of a region writes the same component), then one pass picks up the
    regions the grid missed (thin or tiny ones)."""
    comp_of = np.zeros(n_labels + 1, np.int32)
    comp_of[labels[::4, ::4].ravel()] = comps[::4 * f, ::4 * f].ravel()
    missed = comp_of == 0
    missed[0] = False
    if missed.any():
        at = np.flatnonzero(np.take(missed, labels))
        y, x = np.divmod(at, labels.shape[1])
        comp_of[np.take(labels, at)] = comps[y * f, x * f]
    comp_of[0] = 0
    return comp_of


def _grow(labels: np.ndarray, allowed: np.ndarray, steps: int) -> None:
    """Grow the labels into the `allowed` unlabelled pixels, one pixel (4-neighbours) per step, in place.

    Through allowed pixels only, so a region never reaches round a line (where the nearest labelled pixel
    may lie across it); the larger label wins where two arrive in the same step. Worked on the allowed
    pixels alone (gathers of their neighbours), a thin share of the canvas."""
    H, W = labels.shape
    flat = labels.ravel()
    where = np.flatnonzero(allowed)
    y, x = np.divmod(where, W)
    neighbours = [np.where(y > 0, where - W, where), np.where(y < H - 1, where + W, where),
                  np.where(x > 0, where - 1, where), np.where(x < W - 1, where + 1, where)]
    for _ in range(steps):
        if not where.size:
            break
        best = np.take(flat, neighbours[0])
        for n in neighbours[1:]:
            np.maximum(best, np.take(flat, n), out=best)
        reached = best > 0
        flat[where[reached]] = best[reached]
        left = ~reached
        where = where[left]
        neighbours = [n[left] for n in neighbours]


def _level(labels: np.ndarray, n_labels: int, centres: np.ndarray, steps: int, min_new: int = 0,
           corridors: bool = False, coarse: tuple[np.ndarray, int] | None = None) -> tuple[np.ndarray, int]:
    """One level of step 2 (module doc): the labels after `centres` and the number of regions. New
    regions need `min_new` centre pixels; the new pixels of a component holding several regions go to
    the region that reaches them first (up to `steps` px away); `corridors`: what those steps leave
    becomes regions of its own. `coarse`: (the labels on the coarse canvas, its factor) when `labels` are
    their upscale (the paper level): the regions' components are then looked up there, on 1/f^2 of
    the pixels. uint16 labels stay uint16 while the regions fit."""
    n, comps = components(centres, compact=labels.dtype == np.uint16)
    comp_of = _region_of(labels, comps, n_labels) if coarse is None else _region_of(*coarse[:1], comps, n_labels,
                                                                                     coarse[1])
    held = np.bincount(comp_of[1:], minlength=n + 1)
    rep = np.zeros(n + 1, np.int32)
    rep[comp_of[1:]] = np.arange(1, n_labels + 1, dtype=np.int32)  # a component's only region, where it has one
    new = held == 0
    new[0] = False
    if min_new > 1:  # a speck of centres in a narrow place is no region yet: a smaller ball finds it whole
        new &= (label_counts(comps) if comps.dtype == np.uint16 else np.bincount(comps.ravel(), minlength=n + 1)) \
            >= min_new
    fresh = np.flatnonzero(new)
    rep[fresh] = n_labels + 1 + np.arange(len(fresh), dtype=np.int32)
    shared = held > 1
    rep[shared] = 0
    rep[0] = 0
    n_labels += len(fresh)
    if labels.dtype == np.uint16 and n_labels < 1 << 16:
        rep = rep.astype(np.uint16)
    out = np.take(rep, comps)
    np.maximum(out, labels, out=out)
    if shared.any() and steps > 0:
        # Unlabelled centres lie in components with several regions (the others took a label above).
        _grow(out, (out == 0) & centres, steps)
        if corridors:
            left = (out == 0) & centres
            n_left, strips = components(left)
            if out.dtype == np.uint16 and n_labels + n_left >= 1 << 16:
                out = out.astype(np.int32)
            np.add(out, strips + n_labels, out=out, where=strips > 0, casting="unsafe")  # the sums fit out's type
            n_labels += n_left
    return out, n_labels


def segment(line: np.ndarray, config: FlatsConfig = FlatsConfig(), ink: Ink | None = None) -> np.ndarray:
    """Label the closed regions of line art; every pixel (ink included) gets a label >= 1.

    line: (H, W) uint8 greyscale (255 = paper) or (H, W, 2|3|4) LA / RGB / RGBA. Returns (H, W) int32
    labels 1..K, consecutive, from the largest region down. `ink`: find_ink(line, config), if known."""
    if ink is None:
        ink = find_ink(line, config)
    mask = ink.mask
    H, W = mask.shape
    if H * W == 1:
        return np.ones((1, 1), np.int32)
    gap = config.gap if config.gap is not None else auto_gap(ink.width, H, W)

    # Step 2, the ball levels (level_radii): those on the canvas shrunk by f take their centres from its
    # distances to the ink, which also give every region's inradius; the last one on the full canvas, if
    # f > 1, from a dilation of the ink by its ball.
    f = fc = coarse_factor(H, W)
    levels = level_radii(gap, f)
    labels = np.zeros((1, 1), np.int32)
    born = [np.zeros(1)]  # the radius (px) of the level at which each region was found; 0 for the paper's
    inradius = np.zeros(1, np.float32)
    n_labels, coarse = 0, None
    if levels:
        dist = _distance(_shrink_ink(mask, f))
        labels = np.zeros(dist.shape, np.uint16)  # 16-bit while the regions fit (see _level)
        previous, ink_fc = levels[0][0], None
        for r, fr in levels:
            if fr != fc:  # a finer canvas: the labels so far scaled up to it
                labels = _scale_up(labels, fc // fr, -(-H // fr), -(-W // fr))
                fc, ink_fc = fr, _shrink_ink(mask, fr)
            last = r == levels[-1][0]
            centres = dist > r / fc if fc == f else _centres(ink_fc, r / fc)
            labels, n = _level(labels, n_labels, centres, math.ceil((previous - r) / fc) + 2,
                               0 if last else math.ceil(MIN_BIRTH * (r / fc) ** 2), corridors=last)
            born.append(np.full(n - n_labels, r))
            n_labels, previous = n, r
        inradius = np.zeros(n_labels + 1, np.float32)
        k = f // fc  # the labels on the first canvas: every k-th pixel of the last one's
        np.maximum.at(inradius, (labels[::k, ::k] if k > 1 else labels).ravel(), dist.ravel())
        inradius *= f
        del dist
        coarse = (labels, fc) if fc > 1 else None
    # 16-bit labels while they fit (the usual case): half the memory traffic of 32-bit ones.
    if n_labels < (1 << 16) - 1:
        labels = labels.astype(np.uint16)
    if fc > 1:
        labels = _scale_up(labels, fc, H, W)
    if labels.shape != (H, W):
        labels = np.zeros((H, W), labels.dtype)
    balls = n_labels
    labels, n_labels = _level(labels, n_labels, ~mask, 2, coarse=coarse)  # radius 0: the paper itself
    born.append(np.zeros(n_labels - balls))
    radius = np.concatenate(born)
    inradius = np.concatenate([inradius, np.zeros(n_labels - balls, np.float32)])

    # Step 3 and 4. Sizes count the pixels labelled so far (paper), so the lines do not make a piece big.
    if n_labels < 1 << 16:
        labels = labels.astype(np.uint16, copy=False)  # the usual case: 16-bit labels, and fill_nearest's fast path
    size = label_counts(labels)
    size[0] = 0
    if n_labels == 0 or size.max(initial=0) == 0:
        return np.ones((H, W), np.int32)  # all ink: one region
    unknown = labels == 0
    if unknown.any():
        fill_nearest(labels, ~unknown, unknown)
    small = max(config.min_region, round(SMALL_SHARE * H * W))
    limit = np.where(radius > 0, small, SLIVER_FACTOR * small)
    limit[0] = 0
    thin = max(THIN_RADIUS, THIN_PER_LINE_WIDTH * ink.width) * min(1.0, max(H, W) / THIN_FULL_SIDE)
    ink_dark = cv2.bitwise_and(ink.dark, ink.mask.view(np.uint8) * np.uint8(255))
    table = merge_small(labels, ink_dark, size, limit, inradius, thin, THIN_SHARE * H * W)
    # Numbering: from the largest region down, so that plan_votes() finds the small regions' pixels, which
    # vote with every pixel, with one comparison (labels >= the first small one).
    total = np.bincount(table, weights=size, minlength=len(size))
    roots = np.flatnonzero((table == np.arange(len(table))) & (total > 0))
    roots = roots[np.argsort(-total[roots], kind="stable")]
    renumber = np.zeros(len(table), np.int64)
    renumber[roots] = np.arange(1, len(roots) + 1)
    return np.take(renumber[table].astype(np.int32), labels)
