"""Crisp colour: the model's colour, upsampled to the canvas, kept inside the line art's regions.

The model colours a canvas shrunk to a few hundred pixels, so once resized to full size its colour bleeds
a few model pixels across every line (and the lines it paints dark smear into the areas beside them). The
regions of the line art (segment()) know where each area stops. Away from the lines ("core" pixels: more
than `margin` px from any ink and from any border between regions) the smooth model colour is kept, so
its shading survives; every other ("rim") pixel takes the colour of a nearby core pixel of its OWN region,
or, where there is none (narrow areas), the region's flat colour (its median, fill()).

Which core serves a rim pixel depends on the regions alone, so it is worked out once per line art and
margin (crisp_plan(), kept while the pipeline keeps the regions) and each colouring only copies colours.
The nearest core is looked up on a grid of cells an eighth of a model pixel wide (the model's colour
hardly changes within one): one distance transform with labels over the cells' centres, not over every
pixel. Each cell then has a colour for the region at its centre (its nearest core's, if that core is of
the same region). Where a cell and its 8 neighbours share that region, its pixels of that region take
those colours interpolated between the cells' centres (no blocks). Near the borders between regions a
cell may find the core across a line, so there each pixel checks its own region against the cell's
nearest core and, failing that, a second candidate: the nearest core, among the 8 neighbouring cells',
of the other region the cell holds; failing both, the region's flat colour.
"""
from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from .config import check_image, check_uint8
from .fills import _in_parallel

MARGIN_MODEL_PIXELS = 1.5  # core pixels lie this many model pixels (scaled to the canvas) from lines...
MIN_MARGIN = 2  # ... and at least this many canvas px
CELLS_PER_MARGIN = 12  # cell = margin / 12 = an eighth of a model pixel; 1 px (exact) below 24 px
PLANS_KEPT = 2  # plans kept for read-only regions (the pipeline's cache of them, SEGMENT_CACHE_SIZE)
# the pixel's colour source in CrispPlan.choice
KEEP, SMOOTH, FLAT, PICKED = 0, 1, 2, 3
_AROUND = ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))  # neighbour cells, nearest first


def crisp_margin(canvas: tuple[int, int], model: tuple[int, int]) -> int:
    """The margin (canvas px) around lines and region borders whose colour is taken from the cores: the
    reach of the resize's and the model's bleed, which grows with the upscale factor."""
    factor = max(canvas[0] / max(1, model[0]), canvas[1] / max(1, model[1]))
    return max(MIN_MARGIN, math.ceil(MARGIN_MODEL_PIXELS * factor))


@dataclass(frozen=True)
class CrispPlan:
    """Where every pixel's crisp colour comes from, for one set of regions and margin.

    choice: (H, W) uint8 per pixel: KEEP (a core: the model's colour), SMOOTH (the cells' colours for its
    region, interpolated), FLAT (its region's flat colour), PICKED (the colour of one core pixel:
    picked_from[i] for pixel picked_at[i], canvas indices); cell_from: (cells down, cells across) canvas
    index of the pixel whose colour is the cell's colour for the region at its centre, from the flat
    colours where cell_flat, else from the model's; step: the cell size in px."""

    step: int
    choice: np.ndarray
    picked_at: np.ndarray
    picked_from: np.ndarray
    cell_from: np.ndarray
    cell_flat: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.choice, self.picked_at, self.picked_from, self.cell_from, self.cell_flat))


def _rim(labels: np.ndarray, ink: np.ndarray | None, margin: int) -> np.ndarray:
    """(H, W) uint8, 1 within `margin` px (a square) of the ink or of a border between regions, else 0."""
    H, W = labels.shape
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
    return cv2.dilate(walls, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1)))


def _with_cells(ufunc: np.ufunc, pixels: np.ndarray, cells: np.ndarray, step: int, out: np.ndarray) -> np.ndarray:
    """ufunc(pixels, cells blown up to one value per pixel) into out, for a band of rows that starts at a cell
    boundary; blown up along the columns only (the rows of a cell broadcast), so 1/step of the copying."""
    n, w = pixels.shape
    wide = np.repeat(cells, step, axis=1)[:, :w]
    full = n // step * step
    ufunc(pixels[:full].reshape(-1, step, w), wide[: n // step, None], out=out[:full].reshape(-1, step, w))
    if full < n:
        ufunc(pixels[full:], wide[n // step], out=out[full:])
    return out


def _at(a: np.ndarray, offset: int | tuple[int, int], step: int) -> np.ndarray:
    """a[min(i * step + dy, H - 1), min(j * step + dx, W - 1)] for every cell (i, j): a strided copy, the
    last (partial) cell's row or column clamped to the edge."""
    dy, dx = (offset, offset) if isinstance(offset, int) else offset
    H, W = a.shape
    n, m = (H - 1 - dy) // step + 1, (W - 1 - dx) // step + 1  # cells whose row / column lies inside
    out = np.empty((-(-H // step), -(-W // step)), a.dtype)
    out[:n, :m] = a[dy::step, dx::step][:n, :m]
    out[n:, :m] = a[H - 1, dx::step][:m]
    out[:n, m:] = a[dy::step, W - 1][:n, None]
    out[n:, m:] = a[H - 1, W - 1]
    return out


def _around(a: np.ndarray) -> list[np.ndarray]:
    """a[y + dy, x + dx] for the 8 neighbours (_AROUND order), the edges repeated: views, no copies."""
    h, w = a.shape
    padded = np.pad(a, 1, mode="edge")
    return [padded[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w] for dy, dx in _AROUND]


def crisp_plan(labels: np.ndarray, margin: int, ink: np.ndarray | None = None) -> CrispPlan:
    """The colour source of every pixel (CrispPlan) for regions `labels` (H, W) and `margin`; `ink`:
    optional (H, W) bool ink mask, so thick lines are replaced too."""
    check_image(labels, "labels", None)
    if ink is not None and ink.shape != labels.shape:
        raise ValueError(f"ink {ink.shape} must match the labels {labels.shape}")
    if margin < 1:
        raise ValueError(f"margin must be >= 1, got {margin}")
    if labels.dtype.kind != "i":  # -1 marks "no region" below
        labels = labels.astype(np.int64)
    H, W = labels.shape
    step = max(1, margin // CELLS_PER_MARGIN)
    rim = _rim(labels, ink, margin)
    ch, cw = -(-H // step), -(-W // step)
    ys = np.minimum(np.arange(ch) * step + step // 2, H - 1)  # each cell's centre
    xs = np.minimum(np.arange(cw) * step + step // 2, W - 1)
    grid = _at(rim, step // 2, step)
    cores = np.flatnonzero(grid.ravel() == 0)
    if len(cores) == 0 and step > 1 and not rim.all():  # cores, but too small for the grid: every pixel
        grid, ys, xs, step, ch, cw = rim, np.arange(H), np.arange(W), 1, H, W
        cores = np.flatnonzero(grid.ravel() == 0)
    centre = ys[:, None] * W + xs[None, :]  # (ch, cw) each cell centre's canvas index
    flat_labels = labels.ravel()
    cell_label = _at(labels, step // 2, step)
    if len(cores) == 0:  # no core anywhere: every pixel is on the rim and takes its region's flat colour
        none = np.zeros(0, np.intp)
        return CrispPlan(step, np.full((H, W), FLAT, np.uint8), none, none, centre, np.ones((ch, cw), bool))
    # Nearest core cell of every cell: OpenCV numbers the zero (core) cells 1.. in raster order.
    _, nearest = cv2.distanceTransformWithLabels(grid, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    nearest_cell = np.concatenate([np.zeros(1, np.intp), cores])[nearest]  # (ch, cw) index among the cells
    first, first_label = centre.ravel()[nearest_cell], cell_label.ravel()[nearest_cell]
    second, second_label = np.zeros_like(first), np.full_like(cell_label, -1)
    smooth = np.zeros((ch, cw), bool)
    if step > 1:  # a pixel-sized cell holds one region: no second candidate, no interpolation (exact)
        # the region, other than the first candidate's, that the cell holds: its centre's, else a corner's
        other = np.where(cell_label != first_label, cell_label, -1)
        for dy in (0, step - 1):
            for dx in (0, step - 1):
                corner = _at(labels, (dy, dx), step)
                np.copyto(other, corner, where=(other < 0) & (corner != first_label))
        # its second candidate: the first neighbour cell (_AROUND order) whose nearest core is of that region
        need = np.flatnonzero(other.ravel() >= 0)
        want, found = other.ravel()[need], np.full(len(need), -1, np.intp)
        ny, nx = np.divmod(need, cw)
        for dy, dx in _AROUND:
            j = np.clip(ny + dy, 0, ch - 1) * cw + np.clip(nx + dx, 0, cw - 1)
            hit = (found < 0) & (first_label.ravel()[j] == want)
            found[hit] = j[hit]
        need, want, found = need[found >= 0], want[found >= 0], found[found >= 0]
        second.ravel()[need], second_label.ravel()[need] = first.ravel()[found], want
        smooth[...] = True  # cells whose 8 neighbours have the same centre region: interpolated
        for neighbour in _around(cell_label):
            smooth &= neighbour == cell_label
    # each cell's colour source for its centre's region, and what its pixels of that region take
    own_first, own_second = first_label == cell_label, second_label == cell_label
    cell_from = np.where(own_first, first, np.where(own_second, second, centre))
    cell_flat = ~(own_first | own_second)
    code = np.where(smooth, SMOOTH, np.where(cell_flat, FLAT, PICKED)).astype(np.uint8)
    choice = np.empty((H, W), np.uint8)

    def mark(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        cells = slice(rows.start // step, -(-rows.stop // step))
        here = labels[rows]
        out = choice[rows]
        centred = _with_cells(np.equal, here, cell_label[cells], step, np.empty(here.shape, bool))
        _with_cells(np.multiply, centred.view(np.uint8), code[cells], step, out)  # the cell's code for them
        np.copyto(out, FLAT, where=~centred)
        np.multiply(out, rim[rows], out=out)  # KEEP (0) off the rim
        plain = np.flatnonzero(out.ravel() == PICKED)  # of the centre's region, no interpolation: the cell's
        plain_from = cell_from.ravel()[(plain // W + rows.start) // step * cw + plain % W // step]
        # the rest of the rim: its cell's first candidate, else its second, if of the pixel's region
        odd = np.flatnonzero(out.ravel() == FLAT)
        cell = (odd // W + rows.start) // step * cw + odd % W // step
        own = here.ravel()[odd]
        odd_from = np.where(first_label.ravel()[cell] == own, first.ravel()[cell],
                            np.where(second_label.ravel()[cell] == own, second.ravel()[cell], -1))
        odd, odd_from = odd[odd_from >= 0], odd_from[odd_from >= 0]
        out.ravel()[odd] = PICKED
        return np.concatenate([plain, odd]) + rows.start * W, np.concatenate([plain_from, odd_from])

    parts = _in_parallel(mark, _bands(H, step))
    at, src = (np.concatenate(p) for p in zip(*parts))
    return CrispPlan(step, choice, at, src, cell_from, cell_flat)


def _bands(height: int, step: int) -> list[slice]:
    """Two bands of rows that split at a cell boundary (one band for small canvases)."""
    half = (height // 2) // step * step
    return [slice(0, half), slice(half, height)] if half > 0 else [slice(0, height)]


_plans: list[tuple[weakref.ref, weakref.ref | None, int, CrispPlan]] = []
_plans_lock = threading.Lock()


def _frozen(a: np.ndarray) -> bool:
    """True when no one can write to `a` (read-only all the way down to the memory's owner)."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return True


def _plan_for(labels: np.ndarray, ink: np.ndarray | None, margin: int) -> CrispPlan:
    """crisp_plan(), reused for the same read-only regions (the pipeline's cached segmentation: "the same
    sketch with another reference" is the usual loop in Krita and GIMP). Identity, not contents, finds
    it: read-only arrays cannot change, and the entry dies with them."""
    if not (_frozen(labels) and (ink is None or _frozen(ink))):
        return crisp_plan(labels, margin, ink)
    with _plans_lock:
        for lab, ink_ref, m, plan in _plans:
            if lab() is labels and (ink_ref() if ink_ref is not None else None) is ink and m == margin:
                return plan
    plan = crisp_plan(labels, margin, ink)
    with _plans_lock:
        _plans[:] = [e for e in _plans if e[0]() is not None and (e[1] is None or e[1]() is not None)]
        _plans.append((weakref.ref(labels), None if ink is None else weakref.ref(ink), margin, plan))
        del _plans[:-PLANS_KEPT]
    return plan


def crisp(color: np.ndarray, labels: np.ndarray, flat: np.ndarray, margin: int,
          ink: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 colour upsampled from the model, with each region's colour carried up to its lines.

    labels: (H, W) integer regions (segment()); flat: (H, W, 3) uint8 fill(labels, color), each region's
    median; margin: px around the borders between regions (and the ink) whose colour is replaced; ink:
    optional (H, W) bool ink mask (find_ink().mask), so thick lines are replaced too. Returns a new array.
    Read-only labels and ink (the pipeline's cache) keep their plan (crisp_plan) for the next colour."""
    check_image(color, "color", 3)
    check_uint8(color, "color")
    check_uint8(flat, "flat")
    H, W = color.shape[:2]
    if labels.shape != (H, W) or flat.shape != color.shape or (ink is not None and ink.shape != (H, W)):
        raise ValueError(f"labels {labels.shape}, flat {flat.shape} and ink must match the colour {color.shape}")
    return crisp_with(color, flat, _plan_for(labels, ink, margin))


def crisp_with(color: np.ndarray, flat: np.ndarray, plan: CrispPlan) -> np.ndarray:
    """crisp() with its plan: the colours copied from where the plan says, in two bands of rows at once."""
    check_uint8(color, "color")
    check_uint8(flat, "flat")
    H, W = plan.choice.shape
    if color.shape != (H, W, 3) or flat.shape != color.shape:
        raise ValueError(f"color {color.shape} and flat {flat.shape} must be the plan's {(H, W, 3)}")
    # one 3-byte item per pixel: numpy gathers and scatters these several times faster than (N, 3) rows
    pixels, flats = _items(color), _items(flat)
    cells = np.take(pixels, plan.cell_from.ravel())
    from_flat = np.flatnonzero(plan.cell_flat)
    cells[from_flat] = np.take(flats, plan.cell_from.ravel()[from_flat])
    cells = cells.view(np.uint8).reshape(*plan.cell_from.shape, 3)
    out = np.empty_like(color)
    step = plan.step

    def paint(rows: slice) -> None:
        choice, dst = plan.choice[rows], out[rows]
        dst[...] = color[rows]
        cv2.copyTo(flat[rows], (choice == FLAT).view(np.uint8), dst)
        smooth = (choice == SMOOTH).view(np.uint8)
        if smooth.any():
            cv2.copyTo(_interpolated(cells, step, rows, W), smooth, dst)

    _in_parallel(paint, _bands(H, step))
    np.put(_items(out), plan.picked_at, np.take(pixels, plan.picked_from))
    return out


def _items(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H * W,) 3-byte items, a view."""
    return image.reshape(-1, 3).view(np.dtype("V3")).ravel()


def _interpolated(cells: np.ndarray, step: int, rows: slice, width: int) -> np.ndarray:
    """(rows, width, 3) bilinear interpolation of per-cell colours (ch, cw, 3) between the cells' centres."""
    ch, cw = cells.shape[:2]
    # the band's cells and one more on each side, so that the band's edge rows interpolate as the whole would
    c0, c1 = max(0, rows.start // step - 1), min(ch, -(-rows.stop // step) + 1)
    big = cv2.resize(cells[c0:c1], (cw * step, (c1 - c0) * step), interpolation=cv2.INTER_LINEAR)
    top = rows.start - c0 * step
    return big[top: top + rows.stop - rows.start, :width]
