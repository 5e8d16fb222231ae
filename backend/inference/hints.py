"""Colour hints: an RGBA image at the line art's size whose opaque-ish pixels (alpha > 0) say "this colour
here" (Zhang et al. 2017; the dots of Style2paints, PaintsChainer and Krita's Colorize Mask).

They act twice: the model reads them as extra input planes (hint_planes at the model's size), and the
regions of the line art that hold hint pixels take the hint colour exactly in the colour layer and the flats
(the model may spread a hint only approximately; a user who drew pink wants that pink). Only the hinted
regions are touched, so the rest of the picture is what it would be without hints.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.model.preprocess import hint_planes

HINT_LAYOUT = "RGBA"  # (H, W, 4) uint8, straight alpha; alpha > 0 marks a hint pixel


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


def model_hints(hints: np.ndarray | None, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(H, W, 4) uint8 hints (or None: no hints) -> the (1, 4, *size) planes the generator reads.

    These are preprocess.hint_planes' planes (the one rule, which training uses too). Shrinking, they are
    worked out from the hint pixels alone (_shrunk_planes): hint_planes pools every pixel of the canvas, a
    sizeable share of a 2048^2 request for a few dots."""
    if hints is None:
        return torch.zeros((1, 4, *size), device=device)
    if size[0] <= hints.shape[0] and size[1] <= hints.shape[1]:
        return torch.from_numpy(_shrunk_planes(hints, size)).to(device)
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


def _shrunk_planes(hints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """hint_planes(colour, alpha > 0, size) for a shrink, from the hint pixels: each cell holding any hint
    pixel gets their mean colour and mask 1, the others 0. (1, 4, *size) float32."""
    h, w = size
    out = np.zeros((4, h * w), np.float32)
    ys, xs = np.divmod(hint_pixels(hints), hints.shape[1])
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
class HintFill:
    """The pixels of the hinted regions (flat indices into the canvas) and the colour each takes."""

    index: np.ndarray  # (N,) intp
    colour: np.ndarray  # (3, N) uint8: R, G and B planes

    def paint(self, image: np.ndarray) -> np.ndarray:
        """Paint the hinted regions into an (H, W, 3) uint8 image, in place; returns it. One channel at a
        time through a strided view: several times faster than assigning whole 3-byte rows."""
        pixels = image.reshape(-1, 3)
        for c in range(3):
            pixels[:, c][self.index] = self.colour[c]
        return image


def region_colours(hints: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every region holding hint pixels: (labels (K,), colours (K, 3) uint8), the hint colour with the
    most pixels in the region (a tie goes to the lowest 0xRRGGBB value, so the result is deterministic)."""
    where = hint_pixels(hints)
    if len(where) == 0:
        return np.zeros(0, labels.dtype), np.zeros((0, 3), np.uint8)
    rgb = hints.reshape(-1, 4)[where, :3].astype(np.uint64)
    packed = (rgb[:, 0] << np.uint64(16)) | (rgb[:, 1] << np.uint64(8)) | rgb[:, 2]
    region = labels.ravel()[where].astype(np.uint64)
    keys, counts = np.unique((region << np.uint64(24)) | packed, return_counts=True)
    key_region = keys >> np.uint64(24)
    # per region, the most pixels; among equals the first key (lowest colour), as lexsort is stable
    order = np.lexsort((-counts, key_region))
    first = np.ones(len(order), bool)
    first[1:] = key_region[order][1:] != key_region[order][:-1]
    best = keys[order][first]
    colour = best & np.uint64(0xFFFFFF)
    out = np.stack([(colour >> np.uint64(s)) & np.uint64(0xFF) for s in (16, 8, 0)], axis=1).astype(np.uint8)
    return (best >> np.uint64(24)).astype(labels.dtype), out


def hint_fill(hints: np.ndarray | None, labels: np.ndarray) -> HintFill | None:
    """Which pixels take which hint colour: every pixel of each hinted region (labels from the line art's
    segmentation). None without hints or when no hint pixel is drawn."""
    if hints is None:
        return None
    hinted, colours = region_colours(hints, labels)
    if len(hinted) == 0:
        return None
    n = int(labels.max()) + 1
    hinted_region = np.zeros(n, bool)
    hinted_region[hinted] = True
    index = np.flatnonzero(np.take(hinted_region, labels))  # a bool lookup: a quarter of the bytes of an int one
    slot = np.zeros(n, np.int32)  # region -> row of `colours`
    slot[hinted] = np.arange(len(hinted), dtype=np.int32)
    row = np.take(slot, np.take(labels, index))
    return HintFill(index, np.stack([np.take(colours[:, c], row) for c in range(3)]))
