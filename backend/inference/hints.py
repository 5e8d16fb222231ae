"""Colour hints: an RGBA image at the line art's size whose opaque-ish pixels (alpha > 0) say "this colour
here" (Zhang et al. 2017; the dots of Style2paints, PaintsChainer and Krita's Colorize Mask).

They act twice: the model reads them as extra input planes (hint_planes at the model's size), and the
line art's regions that hold hint pixels take the hint colour exactly (the model may spread a hint only
approximately; a user who drew pink wants that pink): the whole region in the flats, and in the colour
layer the areas of it that the ink closes around the hint (hint_areas: the segmentation merges areas too
small for it into a neighbour, and a hint on a collar must not paint the top). The painting touches
nothing else; the model's colour elsewhere is what it makes of the hint planes.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from backend.model.preprocess import hint_planes

HINT_LAYOUT = "RGBA"  # (H, W, 4) uint8, straight alpha; alpha > 0 marks a hint pixel
WORK_SIDE = 512  # hint_areas finds the areas on a canvas of at most this long side (a few ms at any size)
SPECK = 1 / 2048  # an area without hints smaller than this share of the canvas (between hatching strokes,
# inside a letter) is a speck and goes with the area around it; a larger one keeps the model's colour
GROW = 8  # working pixels a speck or a line spans at most, for hint_areas to find the area beside it


def check_hints(hints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The hints as a (H, W, 4) uint8 array for a line art of `size` (H, W); else a ValueError that says
    what to send."""
    a = np.asarray(hints)
    if a.dtype != np.uint8:
        raise ValueError(f"hints must be 8-bit (uint8) RGBA, got {a.dtype}")
    if a.ndim != 3 or a.shape[2] != 4:
        raise ValueError(f"hints must be RGBA (H,W,4): a transparent image with a dot of colour where a colour "
                         f"is wanted; got shape {a.shape}")
    if a.shape[:2] != tuple(size):
        raise ValueError(f"hints are {a.shape[1]}x{a.shape[0]} but the line art is {size[1]}x{size[0]}: "
                         "draw the hints on a layer the size of the line art")
    return a


def hint_pixels(hints: np.ndarray) -> np.ndarray:
    """Flat indices of the hint pixels (alpha > 0). Read as little-endian 32-bit pixels, alpha is the top
    byte: one comparison per pixel, many times faster than picking the alpha bytes out of each pixel."""
    packed = np.ascontiguousarray(hints).view("<u4").ravel()
    return np.flatnonzero(packed > 0x00FFFFFF)


def model_hints(hints: np.ndarray | None, size: tuple[int, int], device: torch.device,
                where: np.ndarray | None = None) -> torch.Tensor:
    """(H, W, 4) uint8 hints (or None: no hints) -> the (1, 4, *size) planes the generator reads. `where`:
    hint_pixels(hints), if known (the pipeline finds them once for the planes and the painting).

    These are preprocess.hint_planes' planes (the one rule, which training uses too). Shrinking, they are
    worked out from the hint pixels alone (_shrunk_planes): hint_planes pools every pixel of the canvas, a
    sizeable share of a 2048^2 request for a few dots."""
    if hints is None:
        return torch.zeros((1, 4, *size), device=device)
    if size[0] <= hints.shape[0] and size[1] <= hints.shape[1]:
        return torch.from_numpy(_shrunk_planes(hints, size, where)).to(device)
    if not hints.flags.writeable:  # e.g. a server's received frame: torch wants memory it may write
        hints = hints.copy()
    t = torch.from_numpy(np.ascontiguousarray(hints)).to(device).permute(2, 0, 1)[None]
    return hint_planes(t[:, :3].float().div_(255.0), (t[:, 3:] > 0).float(), size)


def _bins(coords: np.ndarray, length: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For pixel coordinates along an axis of `length` pooled to `n` cells: (pixel positions, cell) pairs.
    Cell i averages pixels floor(i*L/n) .. ceil((i+1)*L/n)-1 (adaptive average pooling's bins, which
    overlap by a pixel where L/n is not whole): every pixel is in its cell (y*n)//L, and maybe in a neighbour."""
    cell = coords * n // length
    before = (cell > 0) & (-(-cell * length // n) > coords)  # the previous cell ends after the pixel
    after = (cell + 1 < n) & ((cell + 1) * length // n <= coords)  # the next cell starts at or before it
    which = np.arange(len(coords))
    return (np.concatenate([which, which[before], which[after]]),
            np.concatenate([cell, cell[before] - 1, cell[after] + 1]))


def _shrunk_planes(hints: np.ndarray, size: tuple[int, int], where: np.ndarray | None = None) -> np.ndarray:
    """hint_planes(colour, alpha > 0, size) for a shrink, from the hint pixels (`where`, if known): each cell
    holding any hint pixel gets their mean colour and mask 1, the others 0. (1, 4, *size) float32."""
    h, w = size
    out = np.zeros((4, h * w), np.float32)
    ys, xs = np.divmod(hint_pixels(hints) if where is None else where, hints.shape[1])
    if len(ys):
        rows, row_cell = _bins(ys, hints.shape[0], h)
        cols, col_cell = _bins(xs, hints.shape[1], w)
        # every (row cell, column cell) pair of each pixel: its rows' entries crossed with its columns'
        per_pixel = np.bincount(cols, minlength=len(ys))
        first = np.concatenate([[0], np.cumsum(per_pixel)[:-1]])
        order = np.argsort(cols, kind="stable")
        pixel = np.repeat(rows, per_pixel[rows])
        offset = np.arange(len(pixel)) - np.repeat(np.cumsum(per_pixel[rows]) - per_pixel[rows], per_pixel[rows])
        cell = np.repeat(row_cell, per_pixel[rows]) * w + col_cell[order[first[pixel] + offset]]
        count = np.bincount(cell, minlength=h * w)
        hit = count > 0
        rgb = hints[ys, xs, :3]
        for c in range(3):
            out[c, hit] = np.bincount(cell, rgb[pixel, c], minlength=h * w)[hit] / (255.0 * count[hit])
        out[3, hit] = 1.0
    return out.reshape(1, 4, h, w)


@dataclass(frozen=True)
class Paint:
    """Pixels (flat indices into the canvas) and the colour each takes."""

    index: np.ndarray  # (N,) intp
    colour: np.ndarray  # (3, N) uint8: R, G and B planes

    def paint(self, image: np.ndarray) -> np.ndarray:
        """Paint the pixels into an (H, W, 3) uint8 image, in place; returns it. One channel at a time
        through a strided view: several times faster than assigning whole 3-byte rows."""
        pixels = image.reshape(-1, 3)
        for c in range(3):
            pixels[:, c][self.index] = self.colour[c]
        return image


@dataclass(frozen=True)
class HintFill:
    """What the hints paint. flats: every pixel of each hinted region, in its region's hint colour (issue 22:
    a region holding hint pixels takes that colour exactly). layer: the colour layer's share, the same
    except where the ink splits a hinted region into areas (hint_areas)."""

    flats: Paint
    layer: Paint


def region_colours(hints: np.ndarray, labels: np.ndarray, where: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For every region holding hint pixels: (labels (K,), colours (K, 3) uint8), the hint colour with the
    most pixels in the region (a tie goes to the lowest 0xRRGGBB value, so the result is deterministic).
    `where`: hint_pixels(hints), if known."""
    where = hint_pixels(hints) if where is None else where
    if len(where) == 0:
        return np.zeros(0, labels.dtype), np.zeros((0, 3), np.uint8)
    best, colour = _majority(labels.ravel()[where], _packed(hints, where))
    return best.astype(labels.dtype), colour


def _packed(hints: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The hint pixels' colours as 0xRRGGBB (uint64)."""
    rgb = hints.reshape(-1, 4)[where, :3].astype(np.uint64)
    return (rgb[:, 0] << np.uint64(16)) | (rgb[:, 1] << np.uint64(8)) | rgb[:, 2]


def _majority(group: np.ndarray, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group (non-negative ints) of hint pixels: (groups (K,), their most frequent colour (K, 3) uint8);
    among equals the lowest 0xRRGGBB, as lexsort is stable."""
    keys, counts = np.unique((group.astype(np.uint64) << np.uint64(24)) | packed, return_counts=True)
    key_group = keys >> np.uint64(24)
    order = np.lexsort((-counts, key_group))
    first = np.ones(len(order), bool)
    first[1:] = key_group[order][1:] != key_group[order][:-1]
    best = keys[order][first]
    colour = best & np.uint64(0xFFFFFF)
    out = np.stack([(colour >> np.uint64(s)) & np.uint64(0xFF) for s in (16, 8, 0)], axis=1).astype(np.uint8)
    return (best >> np.uint64(24)).astype(np.int64), out


def hint_fill(hints: np.ndarray | None, labels: np.ndarray, ink: np.ndarray | None = None,
              where: np.ndarray | None = None) -> HintFill | None:
    """Which pixels take which hint colour (labels from the line art's segmentation; ink: its (H, W) bool
    ink mask, which splits the colour layer's share: hint_areas; where: hint_pixels(hints), if known). None
    without hints or when no hint pixel is drawn."""
    if hints is None:
        return None
    where = hint_pixels(hints) if where is None else where
    hinted, colours = region_colours(hints, labels, where)
    if len(hinted) == 0:
        return None
    n = int(labels.max()) + 1
    hinted_region = np.zeros(n, bool)
    hinted_region[hinted] = True
    index = np.flatnonzero(np.take(hinted_region, labels))  # a bool lookup: a quarter of the bytes of an int one
    palette = np.zeros((3, n), np.uint8)  # region -> its hint colour, as R, G and B planes
    palette[:, hinted] = colours.T
    at = np.take(labels, index)
    colour = np.empty((3, len(at)), np.uint8)
    for c in range(3):
        np.take(palette[c], at, out=colour[c])
    flats = Paint(index, colour)
    layer = None if ink is None else hint_areas(hints, where, labels, ink, hinted_region, palette, flats, at)
    return HintFill(flats, flats if layer is None else layer)


def hint_areas(hints: np.ndarray, where: np.ndarray, labels: np.ndarray, ink: np.ndarray,
               hinted_region: np.ndarray, palette: np.ndarray, flats: Paint, at: np.ndarray) -> Paint | None:
    """The colour layer's share of the hints, where the ink splits a hinted region into areas.

    The segmentation merges areas too small or thin for its ball into a neighbouring region (a collar into
    the top it borders), and a region's hint would paint them all. In the colour layer each area the ink
    closes off (4-connected paper) counts alone: one holding hint pixels takes its own majority hint colour,
    one without any keeps the model's colour (a hint is for the area it was put in) unless it is a
    speck (SPECK), which goes with the area around it, as the ink does. Worked out on the canvas shrunk to
    WORK_SIDE, the ink max-pooled so that no line is lost, so a pixel beside a line may go with the area
    on the line's other side.
    palette: (3, regions) each hinted region's colour; flats, at: the flats' paint and the labels at its
    pixels. None when the layer's share is the flats' (each hinted region one area or hinted alike)."""
    H, W = labels.shape
    f = 1
    while max(H, W) > f * WORK_SIDE:
        f *= 2
    lab = np.ascontiguousarray(labels[::f, ::f])
    wall = _any_in_blocks(ink, f)
    w = lab.shape[1]
    paper = np.take(hinted_region, lab) & ~wall
    paper[:, 1:] &= lab[:, 1:] == lab[:, :-1]  # and off one side of every region border: no area spans two
    paper[1:] &= lab[1:] == lab[:-1]
    k, comp = cv2.connectedComponents(paper.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    comp = comp.ravel()
    region = np.zeros(k, np.int64)  # each area lies in one region; 0 stands for the walls and other regions
    on_paper = np.flatnonzero(paper)
    region[comp[on_paper]] = lab.reshape(-1)[on_paper]
    # the hint pixels' areas: none for one on a wall, or where the working pixel is another region's
    hy, hx = np.divmod(where, W)
    hc = comp[(hy // f) * w + hx // f]
    hc[region[hc] != labels.ravel()[where]] = 0
    on = hc > 0
    hinted, hinted_colour = _majority(hc[on], _packed(hints, where[on]))
    colour = palette[:, region]  # (3, k)
    colour[:, hinted] = hinted_colour.T
    differs = np.zeros(k, bool)
    differs[hinted] = (hinted_colour.T != palette[:, region[hinted]]).any(0)
    has_area = np.zeros(len(hinted_region), bool)  # regions where a hint fell on an area (else: all painted)
    has_area[region[hinted]] = True
    keep = has_area[region] & (np.bincount(comp, minlength=k) >= SPECK * comp.size)
    keep[hinted] = False
    keep[0] = False
    if not keep.any() and not differs.any():
        return None
    split = np.zeros(len(hinted_region), bool)  # the regions where the layer differs from the flats
    split[region[keep | differs]] = True
    some = np.flatnonzero(np.take(split, at))  # their pixels, of all the flats paints: the only ones to look up
    y, x = np.divmod(flats.index[some], W)
    y //= f
    x //= f
    top, left = y.min(), x.min()
    box = slice(top, y.max() + 1), slice(left, x.max() + 1)  # around the split regions, working pixels
    # every working pixel there goes with the nearest area that is hinted or kept: a speck with what
    # surrounds it, a pixel beside a line with its side of it
    sizeable = keep.copy()
    sizeable[hinted] = True
    areas = comp.reshape(lab.shape)[box]
    owner = _grow(np.where(sizeable[areas], areas, 0), region, lab[box])
    c = owner[(y - top) * areas.shape[1] + x - left]
    c[region[c] != at[some]] = 0
    out = flats.colour.copy()
    change = differs[c]
    where_change, to = some[change], c[change]
    for ch in range(3):
        out[ch, where_change] = colour[ch, to]
    drop = some[keep[c]]
    if len(drop) == 0:
        return Paint(flats.index, out)
    stay = np.ones(len(at), bool)
    stay[drop] = False
    return Paint(flats.index[stay], out[:, stay])


def _any_in_blocks(mask: np.ndarray, f: int) -> np.ndarray:
    """(H, W) bool -> (ceil(H/f), ceil(W/f)): whether each f x f block holds a True; f a power of two. The
    bools of f (or 8) neighbouring pixels read as one unsigned integer: tens of times faster than any()
    over a 4-D view, a few times faster than a dilation."""
    if f == 1:
        return mask
    H, W = mask.shape
    h, w = -(-H // f), -(-W // f)
    if (H, W) != (h * f, w * f):
        padded = np.zeros((h * f, w * f), bool)
        padded[:H, :W] = mask
        mask = padded
    byte = min(f, 8)
    cols = np.ascontiguousarray(mask).view(f"<u{byte}") != 0  # (h * f, w * f // byte)
    if f > byte:
        cols = cols.reshape(h * f, w, f // byte).any(axis=2)
    return cols.reshape(h, f, w).any(axis=1)


def _grow(owner: np.ndarray, region: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Spread the areas' numbers (owner (h, w); 0 = none) over the empty working pixels next to them, GROW
    steps of one pixel, never into another region (region: area -> region; lab: each pixel's region).
    Returns them flat."""
    grown = owner.astype(np.float32)  # exact below 2^24 areas; OpenCV dilates floats
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(GROW):
        near = cv2.dilate(grown, kernel)
        take = (grown == 0) & (near > 0)
        take[take] = region[near[take].astype(np.int64)] == lab[take]
        if not take.any():
            break
        grown[take] = near[take]
    return grown.ravel().astype(np.int64)
