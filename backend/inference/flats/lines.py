"""Line detection: which pixels of a drawing are ink, measured on the drawing itself.

Real line art is not black on white: pencil is a soft grey, ink is anti-aliased into grey fringes, lines
may be coloured, paper is off-white with grain, and a layer from Krita or GIMP is ink on transparent. A
fixed threshold loses the soft strokes (and the colour then leaks through them), so the ink is whatever is
darker than this picture's paper by a margin measured on this picture:

- darkness: how far each pixel is below the paper, per channel, the largest channel counting (a yellow
  line is dark in blue). On a transparent layer the paper is the transparency, so darkness is the alpha
  times how dark the stroke's colour is.
- paper level and grain: the 90th and 50th percentiles of the picture (most of a drawing is paper); the
  strokes' depth: the 99.5th percentile of the darkness.
- hysteresis: a pixel clearly darker (a share of the strokes' depth, and well above the grain) is ink; a
  pixel only a little darker (above the grain) is ink where it touches such a pixel, which keeps the
  anti-aliased fringe and the soft ends of a stroke without taking up paper grain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .config import FlatsConfig, check_image, check_uint8

SAMPLE_PIXELS = 1 << 18  # the percentiles are taken on a grid of about this many pixels
PAPER_PERCENTILE = 90  # the paper's level (grain above the middle of the paper)
MIDDLE_PERCENTILE = 50  # ... and its middle: paper - middle measures the grain ...
MAX_GRAIN = 16  # ... up to this: below that the middle is in the strokes (a dense drawing), not the paper
STROKE_PERCENTILE = 99.5  # the depth of the strokes: the darkest half percent
GRAIN_MARGIN = 3.0  # weak ink is this many times the grain below the paper
MIN_WEAK = 8  # ... and at least this dark (JPEG ringing, scanner noise of a clean scan)
FRINGE_SHARE = 0.25  # ... and, beside strong ink, this share of its darkness
STRONG_SHARE = 0.08  # strong ink: this share of the strokes' depth
STRONG_OVER_WEAK = 2.0  # ... and this many times the weak threshold
MIN_STRONG = 24  # ... and at least this dark: a blank page has no strokes


@dataclass(frozen=True)
class Ink:
    """The ink of one drawing, what the segmentation needs to know of it."""

    mask: np.ndarray  # (H, W) bool
    dark: np.ndarray  # (H, W) uint8: how much darker than the paper (regions.py prefers to merge across faint lines)
    width: float  # typical stroke width, px (2 for hairlines: see stroke_width)


def _percentile(hist: np.ndarray, q: float) -> int:
    """The q-th percentile of the values counted in a 256-bin histogram."""
    cum = np.cumsum(hist)
    return int(np.searchsorted(cum, cum[-1] * q / 100.0))


def _hist(channel: np.ndarray) -> np.ndarray:
    h, w = channel.shape
    s = max(1, math.isqrt(h * w // SAMPLE_PIXELS))
    grid = np.ascontiguousarray(channel[::s, ::s])
    return cv2.calcHist([grid], [0], None, [256], [0, 256]).ravel()


def darkness(line: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) uint8: how much darker than the paper each pixel is (0 = paper or lighter), and the grain.

    line: (H, W) grey, 255 = white paper, or (H, W, 2|3|4) LA / RGB / RGBA. A layer with transparent
    pixels is ink on transparent: the paper is the transparency."""
    if line.ndim == 2:
        planes, alpha = [line], None
    else:
        split = cv2.split(line)  # all channels in one pass
        planes = split[:1 if line.shape[2] == 2 else 3]
        alpha = split[-1] if line.shape[2] in (2, 4) else None
        if alpha is not None and cv2.minMaxLoc(alpha)[0] == 255:
            alpha = None  # opaque: a drawing on its own paper, as without alpha
    if alpha is not None:  # composited on white, darkness = alpha x (255 - the darkest channel)
        darkest = planes[0]
        for p in planes[1:]:
            darkest = cv2.min(darkest, p)
        return cv2.multiply(cv2.bitwise_not(darkest), alpha, scale=1 / 255), 0
    out, grain = None, 0
    for p in planes:
        hist = _hist(p)
        paper = _percentile(hist, PAPER_PERCENTILE)
        grain = max(grain, min(MAX_GRAIN, paper - _percentile(hist, MIDDLE_PERCENTILE)))
        d = cv2.subtract(cv2.bitwise_not(p), 255 - paper)  # paper - p, 0 where lighter than the paper
        out = d if out is None else cv2.max(out, d)
    return out, grain


def thresholds(dark: np.ndarray, grain: int) -> tuple[int, int]:
    """(weak, strong): the darkness of ink next to ink, and of ink on its own (module doc)."""
    depth = _percentile(_hist(dark), STROKE_PERCENTILE)
    weak = max(MIN_WEAK, math.ceil(GRAIN_MARGIN * grain))
    strong = max(MIN_STRONG, math.ceil(STRONG_OVER_WEAK * weak), math.ceil(STRONG_SHARE * depth))
    return weak, strong


def stroke_width(mask: np.ndarray) -> float:
    """The typical width of the strokes: 2 x ink area / ink outline (a long stroke of width w has an area of
    w times its length and an outline of twice its length). Hairlines (1 px) count as 2, as their outline
    is the whole stroke."""
    ink = mask.view(np.uint8)
    area = cv2.countNonZero(ink)
    if area == 0:
        return 1.0
    inside = cv2.countNonZero(cv2.erode(ink, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                                        borderType=cv2.BORDER_CONSTANT, borderValue=1))
    return max(1.0, 2.0 * area / max(1, area - inside))


def find_ink(line: np.ndarray, config: FlatsConfig = FlatsConfig()) -> Ink:
    """The ink of `line` ((H, W) grey or (H, W, 2|3|4), uint8): measured (module doc), or, with
    config.line_threshold, the pixels whose grey (composited on white) is below it."""
    check_image(line, "line", None, line=True)
    check_uint8(line, "line")
    if line.shape[0] * line.shape[1] == 1:  # OpenCV would read a 1x1 array as a scalar: measure it as 2x2
        ink = find_ink(np.repeat(np.repeat(line, 2, axis=0), 2, axis=1), config)
        return Ink(ink.mask[:1, :1].copy(), ink.dark[:1, :1].copy(), 1.0)
    line = np.ascontiguousarray(line)
    if config.line_threshold is not None:
        dark = cv2.bitwise_not(grey(line))
        mask = dark > 255 - config.line_threshold
    else:
        dark, grain = darkness(line)
        weak, strong = thresholds(dark, grain)
        core = cv2.compare(dark, strong, cv2.CMP_GE)
        # The fringe: beside a core pixel, and a fair share of its darkness (a stroke's anti-aliased edge,
        # not the paper between two close hatching strokes).
        beside = cv2.dilate(cv2.bitwise_and(dark, core), np.ones((3, 3), np.uint8))
        share = cv2.convertScaleAbs(beside, alpha=FRINGE_SHARE)  # = cv2.multiply(beside, FRINGE_SHARE), faster
        fringe = cv2.compare(dark, cv2.max(share, weak), cv2.CMP_GE)
        fringe = cv2.bitwise_and(fringe, cv2.compare(beside, 0, cv2.CMP_GT))
        mask = cv2.bitwise_or(core, fringe) > 0
    return Ink(mask, dark, stroke_width(mask))


def grey(line: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey of a line art, transparency composited on white."""
    if line.ndim == 2:
        return line
    c = line.shape[2]
    lum = cv2.extractChannel(line, 0) if c == 2 else cv2.cvtColor(line, cv2.COLOR_RGBA2GRAY if c == 4 else cv2.COLOR_RGB2GRAY)
    if c in (2, 4):  # paper shows through: 255 - (255 - lum) * alpha / 255
        lum = cv2.bitwise_not(cv2.multiply(cv2.bitwise_not(lum), cv2.extractChannel(line, c - 1), scale=1 / 255))
    return lum
