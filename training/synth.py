"""Procedural anime-like characters with known parts, for training and for measuring reference-following.

Why synthetic: real illustrations give no ground truth for "this sketch in that reference's colours". Here the
geometry (a `Character`) and the colours (a `Palette`) are separate, so one character can be re-rendered with
any other character's palette: `render(a, palette_of_b)` is the true target for "sketch of a, coloured like b".

Each render gives three aligned images of the same figure:
  color  (S,S,3) uint8  cel-shaded colour image WITH the ink lines (colour * line / 255), like a finished picture
  line   (S,S)   uint8  line art: 255 = paper, 0 = ink (antialiased outlines of every part plus a few details)
  mask   (S,S)   uint8  part label per pixel, an index into PARTS (crisp: nearest sample, no blending)

Colours: every pixel of part p is one of p's three tones (base, shadow, highlight; see `part_tones`), except
where antialiasing blends neighbours and under ink. The background is its base colour or a linear gradient
from its base to its highlight tone. Shadows are hard-edged (cel shading): a part is shaded where a shape in
front of it lies towards the light (cast shadow) or where its own silhouette ends away from the light (form
shadow). Line art draws an outline round every filled shape, so every part boundary is inked.

Seeds: item i of a data set made with seed K uses character seed = palette seed = K * 1_000_003 + i
(`item_seed`). Evaluation can hold out a K whose range of seeds never meets the training range.
Random numbers come only from `random.Random(str).random()`, which Python keeps stable across versions, so a
seed gives the same images wherever Pillow and NumPy are the same versions. MAX_COUNT < SEED_STRIDE, so the seed
ranges of different K never overlap.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PARTS: tuple[str, ...] = ("background", "hair", "skin", "eyes", "mouth", "top", "bottom", "collar", "accessory")
BG, HAIR, SKIN, EYES, MOUTH, TOP, BOTTOM, COLLAR, ACCESSORY = range(len(PARTS))
BASE, SHADOW, HIGHLIGHT = 0, 1, 2  # tone index, see part_tones()

SUPERSAMPLE = 2  # draw at 2x, box-filter colour and line art down; the mask takes the nearest sample
SEED_STRIDE = 1_000_003
MIN_SIZE, MAX_SIZE = 16, 2048
MAX_COUNT = 1_000_000
MAX_SEED = 2**62
META_FORMAT = "irodori-synth/1"

# A fixed colour per part for looking at masks (not part of any palette).
MASK_VIS: tuple[tuple[int, int, int], ...] = (
    (40, 40, 40), (230, 80, 60), (250, 210, 170), (60, 120, 250), (200, 30, 90),
    (60, 190, 90), (150, 90, 200), (250, 230, 40), (40, 220, 220),
)


# ----------------------------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True)
class Palette:
    """One base RGB per part, index as PARTS. Shadow and highlight tones derive from it (part_tones)."""

    colors: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.colors) != len(PARTS):
            raise ValueError(f"a Palette needs {len(PARTS)} colours (one per part in PARTS), got {len(self.colors)}")
        for c in self.colors:
            if len(c) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in c):
                raise ValueError(f"palette colours must be (r, g, b) ints in 0..255, got {c!r}")


@dataclass(frozen=True)
class Shape:
    """One drawing primitive in frame coordinates (0..1, y down), flattened as x0, y0, x1, y1, ...

    kind: "fill"   a polygon of `part` with a fixed `tone`; outlined in the line art when width > 0
          "ink"    a filled polygon of ink, drawn only into the line art (lashes, tapered strokes)
          "stroke" a polyline of ink of `width`, only into the line art (strand lines, folds, pleats)
          "tone"   repaints base-tone pixels of `part` under the polygon with `tone` (hair shine, iris shade)
    width: line width in pixels at 128 px output (scaled with the size).
    group: shading group of a fill; parts of one object (iris, pupil, highlights) share one so they do not
           shade each other. Groups are numbered in drawing order, so a higher group is in front.
    casts: whether this fill throws a cast shadow on what lies behind it.
    """

    kind: str
    points: tuple[float, ...]
    part: int = BG
    tone: int = BASE
    width: float = 0.0
    group: int = 0
    casts: bool = True


@dataclass(frozen=True)
class Character:
    """Geometry only, no colours: the shapes in drawing order, the light, and the background's layout."""

    seed: int
    shapes: tuple[Shape, ...]
    cast_shadow: tuple[float, float]  # offset towards the light, in frame units, for cast shadows
    form_shadow: tuple[float, float]  # offset towards the light, in frame units, for form shadows
    gradient: tuple[float, float] | None  # background gradient direction (unit vector) or None for flat


@dataclass(frozen=True, eq=False)  # arrays: compare fields with np.array_equal
class Rendered:
    color: np.ndarray  # (S,S,3) uint8 RGB, ink included
    line: np.ndarray  # (S,S) uint8, 255 = paper, 0 = ink
    mask: np.ndarray  # (S,S) uint8 part label per pixel (index into PARTS)


# ----------------------------------------------------------------------------------------------------------------
# Random numbers: only Random.random() is guaranteed stable across Python versions, so build on it alone.


class _Rng:
    def __init__(self, key: str) -> None:
        self._r = random.Random(key)

    def u(self, a: float, b: float) -> float:
        return a + (b - a) * self._r.random()

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def pick(self, items):
        return items[min(int(self._r.random() * len(items)), len(items) - 1)]

    def sign(self) -> float:
        return 1.0 if self._r.random() < 0.5 else -1.0


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if abs(seed) > MAX_SEED:
        raise ValueError(f"seed must be within +-2**62, got {seed}")
    return seed


def item_seed(dataset_seed: int, index: int) -> int:
    """Character and palette seed of item `index` in a data set made with `dataset_seed`."""
    return _check_seed(dataset_seed * SEED_STRIDE + index)


# ----------------------------------------------------------------------------------------------------------------
# Palettes


def _hls(h: float, l: float, s: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(h % 1.0, min(max(l, 0.0), 1.0), min(max(s, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def random_palette(seed: int) -> Palette:
    """Random hues per part with plausible lightness: natural-ish skin (sometimes fantasy), reddish mouth,
    anything for hair, eyes, clothes and accessory. Lightness stays inside 0.12..0.9 so tones differ."""
    rng = _Rng(f"irodori-synth-palette-{_check_seed(seed)}")
    colors = [None] * len(PARTS)
    colors[BG] = _hls(rng.u(0, 1), rng.u(0.55, 0.9), rng.u(0.1, 0.7))
    if rng.chance(0.2):  # black or very dark hair
        colors[HAIR] = _hls(rng.u(0, 1), rng.u(0.12, 0.22), rng.u(0.1, 0.5))
    else:
        colors[HAIR] = _hls(rng.u(0, 1), rng.u(0.25, 0.8), rng.u(0.2, 0.9))
    if rng.chance(0.1):  # fantasy skin
        colors[SKIN] = _hls(rng.u(0, 1), rng.u(0.65, 0.88), rng.u(0.15, 0.45))
    else:
        light = 0.92 - 0.36 * rng.u(0, 1) ** 2  # mostly pale, sometimes tan; pale skin is more saturated in HLS
        colors[SKIN] = _hls(rng.u(0.02, 0.1), light, rng.u(0.25, 0.45) + (light - 0.56) * 1.4)
    colors[EYES] = _hls(rng.u(0, 1), rng.u(0.3, 0.6), rng.u(0.5, 1.0))
    colors[MOUTH] = _hls(rng.u(-0.06, 0.03), rng.u(0.35, 0.6), rng.u(0.45, 0.85))
    top_hue = rng.u(0, 1)
    colors[TOP] = _hls(top_hue, rng.u(0.2, 0.85), rng.u(0.1, 0.9))
    colors[BOTTOM] = _hls(rng.u(0, 1), rng.u(0.15, 0.75), rng.u(0.1, 0.9))
    collar_hue = top_hue + rng.u(0.3, 0.7) if rng.chance(0.6) else rng.u(0, 1)
    colors[COLLAR] = _hls(collar_hue, rng.u(0.2, 0.85), rng.u(0.2, 0.95))
    colors[ACCESSORY] = _hls(rng.u(0, 1), rng.u(0.3, 0.8), rng.u(0.4, 1.0))
    return Palette(tuple(colors))


def part_tones(palette: Palette) -> np.ndarray:
    """(len(PARTS), 3, 3) uint8: [part, tone] -> RGB with tone BASE, SHADOW (darker, same hue, a little more
    saturated) and HIGHLIGHT (lighter, same hue)."""
    out = np.zeros((len(PARTS), 3, 3), np.uint8)
    for p, (r, g, b) in enumerate(palette.colors):
        h, l, s = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
        out[p, BASE] = (r, g, b)
        out[p, SHADOW] = _hls(h, l * 0.72, s * 1.1 + 0.05)
        out[p, HIGHLIGHT] = _hls(h, l + (1 - l) * 0.55, s * 0.9)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Geometry helpers, all on (N, 2) float arrays in "head units" (origin at the head centre, 1 = face half-width)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, rot: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _spline(points, n: int = 6, closed: bool = False) -> np.ndarray:
    """Catmull-Rom curve through the points (smooth hair, faces, cloth)."""
    p = np.asarray(points, float)
    if closed:
        p = np.vstack([p[-1], p, p[0], p[1]])
    else:
        p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    p0, p1, p2, p3 = p[:-3, None], p[1:-2, None], p[2:-1, None], p[3:, None]
    seg = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    out = seg.reshape(-1, 2)
    return out if closed else np.vstack([out, p[-2]])


def _bezier(p0, p1, p2, n: int = 6) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(q, float) for q in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _ribbon(path: np.ndarray, widths) -> np.ndarray:
    """A polygon around a path with a width per point (tapered strands, lashes, brows)."""
    path = np.asarray(path, float)
    w = np.broadcast_to(np.asarray(widths, float), (len(path),))[:, None] / 2
    d = np.gradient(path, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1)
    return np.vstack([path + nrm * w, (path - nrm * w)[::-1]])


def _capsule(a, b, width: float, n: int = 8) -> np.ndarray:
    """A limb: a bar from a to b with round ends."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    r = width / 2
    end_b = _arc(b[0], b[1], r, r, ang - math.pi / 2, ang + math.pi / 2, n)
    end_a = _arc(a[0], a[1], r, r, ang + math.pi / 2, ang + 3 * math.pi / 2, n)
    return np.vstack([end_b, end_a])


def _rotate(points: np.ndarray, angle: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[:, 0] - cx, points[:, 1] - cy
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _mirror(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, 1.0])


# ----------------------------------------------------------------------------------------------------------------
# The character builder


class _Builder:
    """Collects shapes in head units; `head=True` shapes follow the head tilt."""

    def __init__(self, tilt: float) -> None:
        self.items: list[tuple[str, np.ndarray, int, int, float, int, bool, bool]] = []
        self.tilt = tilt
        self.group = 0  # the background is group 0

    def new_group(self) -> int:
        self.group += 1
        return self.group

    def fill(self, pts, part: int, width: float, tone: int = BASE, group: int | None = None,
             casts: bool = True, head: bool = False) -> int:
        g = self.new_group() if group is None else group
        self.items.append(("fill", np.asarray(pts, float), part, tone, width, g, casts, head))
        return g

    def ink(self, pts, head: bool = False) -> None:
        self.items.append(("ink", np.asarray(pts, float), BG, BASE, 0.0, 0, False, head))

    def stroke(self, pts, width: float, head: bool = False) -> None:
        self.items.append(("stroke", np.asarray(pts, float), BG, BASE, width, 0, False, head))

    def tone(self, pts, part: int, tone: int, head: bool = False) -> None:
        self.items.append(("tone", np.asarray(pts, float), part, tone, 0.0, 0, False, head))

    def shapes(self, to_frame) -> tuple[Shape, ...]:
        out = []
        for kind, pts, part, tone, width, group, casts, head in self.items:
            if head:
                pts = _rotate(pts, self.tilt, 0.0, 1.0)  # the head turns about the top of the neck
            xy = to_frame(pts)
            out.append(Shape(kind, tuple(float(v) for v in xy.ravel()), part, tone, float(width), group, casts))
        return tuple(out)


def random_character(seed: int) -> Character:
    """A half-body figure: head, hair (back hair, fringe, side locks, maybe twin tails, spikes, an ahoge), face
    (iris eyes, brows, nose, mouth), neck, top with collar or ribbon, arms in one of four poses, skirt or
    trousers, and one accessory. Random shapes, pose, scale, position, tilt, mirror, light and line widths."""
    rng = _Rng(f"irodori-synth-character-{_check_seed(seed)}")
    b = _Builder(tilt=math.radians(rng.u(-12, 12)))
    lw = rng.u(1.0, 2.4)  # base line width, pixels at 128 px
    w_out, w_mid, w_small, w_detail = lw * 1.25, lw, lw * 0.8, lw * 0.6

    # --- proportions (head units) ---
    a_cap = rng.u(1.12, 1.22)  # hair cap half-width
    b_cap = rng.u(1.18, 1.35)  # hair cap height above its centre
    cap_cy = -0.02
    chin = rng.u(1.15, 1.3)
    v_s = rng.u(1.55, 1.7)  # shoulder line
    sw = rng.u(1.15, 1.45)  # shoulder half-width
    v_w = v_s + rng.u(1.5, 1.85)  # waist
    ww = rng.u(0.8, 1.0)  # waist half-width
    nw = rng.u(0.25, 0.33)  # neck half-width
    hair_style = rng.pick(("short", "bob", "long", "long", "twintails"))
    spiky = rng.chance(0.25)
    accessory = rng.pick(("bow", "flower", "star", "headband", "beret", "ears"))

    # --- back hair ---
    def back_hair():
        a, bb = a_cap + 0.06, b_cap + 0.06
        if hair_style == "short":
            length, wb = rng.u(0.7, 1.0), a * rng.u(0.95, 1.05)
        elif hair_style == "bob":
            length, wb = rng.u(1.1, 1.6), rng.u(1.2, 1.45)
        elif hair_style == "long":
            length, wb = rng.u(2.8, 5.0), rng.u(1.4, 1.9)
        else:
            length, wb = rng.u(0.9, 1.3), a * rng.u(0.95, 1.1)
        cap = _arc(0, cap_cy, a, bb, math.pi, 2 * math.pi, 24)
        if spiky:  # push every fourth point out: spikes all round the head
            k = np.arange(len(cap))
            r = np.where(k % 4 == 2, rng.u(1.12, 1.25), 1.0)[:, None]
            cap = (cap - [0, cap_cy]) * r + [0, cap_cy]
        right = _spline([(a, cap_cy), (a + 0.08, 0.5 * length), (wb, length - 0.25)], 4)[1:]
        n_tips = 3 + int(rng.u(0, 4)) if hair_style != "short" else 3
        xs = np.linspace(wb, -wb, 2 * n_tips + 1)
        bottom = []
        for j, x in enumerate(xs):
            if j % 2:  # a strand tip
                bottom.append((x, length + rng.u(0.05, 0.3) * (0.4 if hair_style == "bob" else 1.0)))
            else:  # a notch between tips
                bottom.append((x, length - rng.u(0.1, 0.35)))
        left = _mirror(right)[::-1]
        b.fill(np.vstack([cap, right, bottom, left]), HAIR, w_out, head=True)
        if hair_style == "twintails":
            for side in (-1, 1):
                drop = rng.u(2.5, 4.5)
                out = rng.u(1.5, 1.9)
                path = _spline([(0.9, -0.65), (out, -0.2), (out + rng.u(-0.1, 0.2), drop * 0.5),
                                (out - rng.u(0.0, 0.4), drop)], 5)
                t = np.linspace(0, 1, len(path))
                width = rng.u(0.6, 0.9) * (1 - t) ** 0.6 * (0.6 + 0.4 * np.sin(np.pi * t)) + 0.02
                b.fill(_ribbon(path * [side, 1], width), HAIR, w_out, head=True)

    # --- body ---
    def neckline():
        depth = rng.u(0.1, 0.6)
        if rng.chance(0.5):  # V
            pts = [(-nw - 0.16, v_s - 0.02), (0.0, v_s + depth), (nw + 0.16, v_s - 0.02)]
            return np.array(pts), depth
        return _spline([(-nw - 0.16, v_s - 0.02), (-nw * 0.7, v_s + depth * 0.8), (0.0, v_s + depth),
                        (nw * 0.7, v_s + depth * 0.8), (nw + 0.16, v_s - 0.02)], 4), depth

    def bottom():
        if rng.chance(0.6):  # skirt, pleated
            flare, length = rng.u(0.3, 0.9), rng.u(1.3, 2.2)
            n = 4 + int(rng.u(0, 4))
            hem_x = np.linspace(ww + flare, -(ww + flare), 2 * n + 1)
            hem = [(x, v_w + length + (0.12 if j % 2 else 0.0)) for j, x in enumerate(hem_x)]
            poly = np.vstack([[(-ww + 0.02, v_w - 0.15), (ww - 0.02, v_w - 0.15)], hem])
            b.fill(poly, BOTTOM, w_out)
            for j in range(1, 2 * n, 2):
                f = hem_x[j] / (ww + flare)
                b.stroke([(f * (ww - 0.1), v_w + 0.1), (hem_x[j], v_w + length + 0.1)], w_detail)
        else:  # trousers: two legs split below the crotch
            wide = rng.u(0.0, 0.25)
            poly = [(-ww + 0.02, v_w - 0.15), (ww - 0.02, v_w - 0.15), (ww + wide, v_w + 3.0),
                    (0.08, v_w + 3.0), (0.0, v_w + 1.0), (-0.08, v_w + 3.0), (-ww - wide, v_w + 3.0)]
            b.fill(poly, BOTTOM, w_out)
            b.stroke([(0.0, v_w + 0.15), (0.0, v_w + 1.0)], w_detail)

    def top(neck_pts):
        sh = rng.u(0.0, 0.12)  # shoulder droop
        side = [(-nw - 0.16, v_s - 0.02), (-sw + 0.3, v_s + 0.02 + sh), (-sw, v_s + 0.3 + sh),
                (-sw + 0.08, v_s + 0.85), (-ww - 0.04, v_w - 0.2), (-ww - 0.06, v_w + 0.12)]
        left = _spline(side, 4)
        hem = [(-ww * 0.5, v_w + 0.18), (ww * 0.5, v_w + 0.18)]
        right = _mirror(left)[::-1]
        b.fill(np.vstack([left, hem, right, neck_pts[::-1]]), TOP, w_out)
        for _ in range(int(rng.u(0, 3))):  # a few folds
            x = rng.sign() * rng.u(0.3, ww - 0.15)
            y = rng.u(v_s + 0.9, v_w - 0.2)
            b.stroke([(x, y), (x + rng.u(-0.2, 0.2), y + rng.u(0.2, 0.4))], w_detail)

    def neck(neck_pts):
        poly = np.vstack([[(-nw, 0.5), (-nw, v_s - 0.12)], neck_pts, [(nw, v_s - 0.12), (nw, 0.5)]])
        b.fill(poly, SKIN, w_mid)

    def collar(neck_pts, depth):
        style = rng.pick(("flaps", "sailor", "none"))
        ribbon = style == "none" or rng.chance(0.5)
        if style == "flaps":
            for side in (-1, 1):
                flap = [(nw + 0.2, v_s - 0.06), (0.04, v_s + depth + 0.02),
                        (nw + rng.u(0.3, 0.55), v_s + depth * 0.5 + rng.u(0.2, 0.4))]
                b.fill(np.array(flap) * [side, 1], COLLAR, w_small)
        elif style == "sailor":
            reach = rng.u(0.4, 0.8)
            outer = [(sw - 0.12, v_s + 0.1), (sw - 0.3, v_s + reach), (0.0, v_s + depth + 0.35)]
            outer = np.array(outer)
            poly = np.vstack([neck_pts, outer, _mirror(outer)[::-1][1:]])
            b.fill(poly, COLLAR, w_small)
            stripe = _spline([(sw - 0.2, v_s + 0.15), (sw - 0.36, v_s + reach - 0.08), (0.0, v_s + depth + 0.25)], 4)
            b.stroke(np.vstack([stripe, _mirror(stripe)[::-1][1:]]), w_detail)
        if ribbon:
            k = rng.u(0.8, 1.3)
            cx, cy = 0.0, v_s + depth + 0.02
            for side in (-1, 1):
                tail = [(0.02, 0.0), (0.18 * k, 0.5 * k), (0.08 * k, 0.55 * k), (-0.02, 0.05)]
                b.fill(np.array(tail) * [side, 1] + [cx, cy], COLLAR, w_small)
            for side in (-1, 1):
                wing = _spline([(0.0, -0.02), (0.3 * k, -0.18 * k), (0.38 * k, 0.02), (0.28 * k, 0.16 * k),
                                (0.0, 0.03)], 4)
                b.fill(wing * [side, 1] + [cx, cy], COLLAR, w_small)
            b.fill(_ellipse(cx, cy, 0.08 * k, 0.09 * k, 12), COLLAR, w_small)

    def arm(side: int, pose: str):
        jx, jy = side * (sw - 0.24), v_s + 0.3
        a1, a2 = {"down": (rng.u(8, 20), rng.u(5, 25)), "hip": (rng.u(30, 45), rng.u(-55, -35)),
                  "front": (rng.u(5, 15), rng.u(-80, -60)), "up": (rng.u(120, 150), rng.u(155, 175))}[pose]
        l1, l2 = rng.u(1.05, 1.25), rng.u(0.95, 1.15)

        def along(angle, length, x, y):
            r = math.radians(angle)
            return x + side * math.sin(r) * length, y + math.cos(r) * length

        ex, ey = along(a1, l1, jx, jy)
        hx, hy = along(a2, l2, ex, ey)
        b.fill(_capsule((jx, jy), (ex, ey), 0.42), SKIN, w_out)
        b.fill(_capsule((ex, ey), (hx, hy), 0.34), SKIN, w_out)
        fx, fy = along(a2, l2 + 0.12, ex, ey)
        b.fill(_ellipse(fx, fy, 0.2, 0.22, 16, math.radians(-side * a2)), SKIN, w_mid)
        sleeve = rng.pick(("short", "short", "long"))
        if sleeve == "short":
            sx, sy = along(a1, l1 * rng.u(0.45, 0.75), jx, jy)
            b.fill(_capsule((jx, jy - 0.02), (sx, sy), 0.52), TOP, w_out)
        else:
            b.fill(_capsule((jx, jy - 0.02), (ex, ey), 0.5), TOP, w_out)
            cx, cy = along(a2, l2 * 0.8, ex, ey)
            b.fill(_capsule((ex, ey), (cx, cy), 0.44), TOP, w_out)

    # --- head ---
    def face():
        for side in (-1, 1):
            b.fill(_ellipse(side * 0.97, 0.3, 0.14, 0.22, 14), SKIN, w_mid, head=True)
        jaw = rng.u(0.72, 0.85)
        low = [(-1.0, 0.0), (-0.98, 0.42), (-jaw, 0.88), (-0.4, chin - 0.12), (0.0, chin),
               (0.4, chin - 0.12), (jaw, 0.88), (0.98, 0.42), (1.0, 0.0)]
        top = _arc(0.0, 0.0, 1.0, 1.05, 0.0, -math.pi, 18)[1:-1]
        return b.fill(np.vstack([_spline(low, 4), top]), SKIN, w_mid, head=True)

    def eyes(face_group: int):
        rx = rng.u(0.19, 0.26)
        ry = rx * rng.u(1.2, 1.45)
        ex, ey = rng.u(max(0.38, rx + 0.17), 0.5), rng.u(0.2, 0.34)
        lash = rng.u(0.09, 0.15)
        lid_drop = rng.u(0.55, 0.85)
        hl_side = rng.sign()
        brow_y = ey - ry - rng.u(0.25, 0.4)
        for side in (-1, 1):
            def place(p):  # eye built with its outer corner at +x; mirror for the left eye
                return np.asarray(p, float) * [side, 1] + [side * ex, ey]

            g = b.fill(place(_ellipse(0, 0, rx, ry, 24)), EYES, w_small, head=True, casts=False)
            b.fill(place(_ellipse(0, 0.12 * ry, rx * 0.5, ry * 0.55, 16)), EYES, 0, SHADOW, g, False, True)
            b.fill(place(_ellipse(hl_side * side * 0.35 * rx, -0.35 * ry, 0.3 * rx, 0.3 * rx, 12)),
                   EYES, 0, HIGHLIGHT, g, False, True)
            b.fill(place(_ellipse(-hl_side * side * 0.35 * rx, 0.45 * ry, 0.14 * rx, 0.14 * rx, 10)),
                   EYES, 0, HIGHLIGHT, g, False, True)
            b.tone(place([(-1.5 * rx, -1.5 * ry), (1.5 * rx, -1.5 * ry), (1.5 * rx, -0.2 * ry),
                          (-1.5 * rx, -0.35 * ry)]), EYES, SHADOW, head=True)
            lid = _spline([(-1.25 * rx, -0.25 * ry), (-0.2 * rx, -lid_drop * ry - 0.08),
                           (1.35 * rx, -0.45 * ry)], 5)
            cover = np.vstack([lid, [(1.35 * rx, -1.6 * ry), (-1.25 * rx, -1.6 * ry)]])
            b.fill(place(cover), SKIN, 0, BASE, face_group, False, True)
            t = np.linspace(0, 1, len(lid))
            b.ink(place(_ribbon(lid, lash * (0.3 + 0.7 * t) * np.sin(np.pi * np.clip(t, 0.02, 0.9)) ** 0.4)),
                  head=True)
            if rng.chance(0.7):  # lower lash
                low = _arc(0, 0.1 * ry, rx * 1.05, ry * 0.95, 0.25 * math.pi, 0.05 * math.pi, 5)
                b.ink(place(_ribbon(low, 0.04 * np.sin(np.linspace(0.2, 3.0, 5)))), head=True)
            brow = _spline([(-0.9 * rx, brow_y - ey + 0.05), (0.2 * rx, brow_y - ey - 0.05),
                            (1.3 * rx, brow_y - ey + 0.04)], 4)
            b.ink(place(_ribbon(brow, 0.06 * np.sin(np.pi * np.linspace(0.05, 0.95, len(brow))))), head=True)

    def nose_mouth():
        ns = rng.sign()
        b.stroke([(0.0, rng.u(0.55, 0.62)), (ns * 0.05, rng.u(0.64, 0.7))], w_detail, head=True)
        my = rng.u(0.74, 0.86)
        mw, mh = rng.u(0.26, 0.42), min(rng.u(0.13, 0.26), chin - my - 0.14)
        style = rng.pick(("smile", "open", "cat"))
        if style == "smile":
            poly = _arc(0, my, mw / 2, mh, 0, math.pi, 10)  # a D: flat top, round bottom
        elif style == "open":
            poly = _ellipse(0, my + mh / 2, mw * 0.4, mh * 0.6, 14)
        else:
            poly = _spline([(-mw / 2, my), (0, my + mh), (mw / 2, my)], 4)
        b.fill(poly, MOUTH, w_small, head=True, casts=False)
        b.tone(_ellipse(0, my + mh * 0.95, mw * 0.3, mh * 0.45, 12), MOUTH, HIGHLIGHT, head=True)

    def side_locks():
        n_lock = 1 + int(rng.u(0, 2))
        for side in (-1, 1):
            for k in range(n_lock):
                length = rng.u(0.9, 1.9) if hair_style != "short" else rng.u(0.5, 1.0)
                x0 = 0.9 - 0.12 * k
                path = _spline([(x0, -0.4), (x0 + 0.12, 0.2), (x0 + rng.u(-0.1, 0.05), length)], 5)
                t = np.linspace(0, 1, len(path))
                width = rng.u(0.22, 0.34) * (1 - t) ** 0.7 + 0.01
                b.fill(_ribbon(path * [side, 1], width), HAIR, w_mid, head=True)

    def fringe():
        a, bb = a_cap, b_cap
        side_v = rng.u(0.0, 0.3)
        cap = _arc(0, cap_cy, a, bb, math.pi, 2 * math.pi, 24)
        if spiky:
            k = np.arange(len(cap))
            r = np.where(k % 4 == 0, rng.u(1.08, 1.18), 1.0)[:, None]
            cap = (cap - [0, cap_cy]) * r + [0, cap_cy]
        n = 3 + int(rng.u(0, 4))
        lean = rng.u(-0.35, 0.35)
        notch_x = np.linspace(a * 0.92, -a * 0.92, n + 1)
        part_at = int(rng.u(0, n + 1))
        notches = []
        for j, x in enumerate(notch_x):
            v = rng.u(-0.55, -0.3) if 0 < j < n else side_v - 0.2
            if j == part_at and 0 < j < n:
                v -= rng.u(0.2, 0.4)
            notches.append((x, v))
        edge = [(a, side_v)]
        for j in range(n):
            (x0, v0), (x1, v1) = notches[j], notches[j + 1]
            tip = ((x0 + x1) / 2 + lean * (x1 - x0), rng.u(-0.1, 0.28))
            c0 = ((x0 + tip[0]) / 2 + 0.08, (v0 + tip[1]) / 2)
            c1 = ((x1 + tip[0]) / 2 - 0.08, (v1 + tip[1]) / 2)
            edge.extend(_bezier((x0, v0), c0, tip, 5).tolist())
            edge.extend(_bezier(tip, c1, (x1, v1), 5)[1:].tolist())
        edge.append((-a, side_v))
        b.fill(np.vstack([cap, edge]), HAIR, w_mid, head=True)
        for x, v in notches[1:-1]:  # strand lines running up from the notches
            b.stroke(_spline([(x, v - 0.08), (x * 0.85, v - 0.3), (x * 0.6, v - rng.u(0.45, 0.65))], 3),
                     w_detail, head=True)
        b.tone(np.vstack([_arc(0, cap_cy, a * 0.85, bb * 0.85, 1.12 * math.pi, 1.88 * math.pi, 14),
                          _zigzag_arc(a * 0.66, bb * 0.66, cap_cy, rng)]), HAIR, HIGHLIGHT, head=True)
        if rng.chance(0.35):  # ahoge
            s = rng.sign()
            path = _spline([(0.1 * s, -bb + 0.1), (0.3 * s, -bb - 0.45), (0.6 * s, -bb - 0.35)], 5)
            t = np.linspace(0, 1, len(path))
            b.fill(_ribbon(path, 0.16 * (1 - t) + 0.01), HAIR, w_small, head=True)

    def accessory_shape(when: str):
        if (accessory == "ears") != (when == "early"):
            return
        s = rng.sign()
        ang = math.radians(rng.u(215, 245))
        px, py = 0.9 * a_cap * math.cos(ang) * s, cap_cy + 0.9 * b_cap * math.sin(ang)
        k = rng.u(0.9, 1.3)
        if accessory == "bow":
            rot = math.radians(rng.u(-30, 30))
            for side in (-1, 1):
                wing = _spline([(0, 0), (0.3 * k, -0.2 * k), (0.42 * k, 0), (0.3 * k, 0.2 * k)], 4, closed=True)
                b.fill(_rotate(wing * [side, 1], rot) + [px, py], ACCESSORY, w_small, head=True)
            b.fill(_ellipse(px, py, 0.09 * k, 0.1 * k, 12), ACCESSORY, w_small, head=True)
        elif accessory == "flower":
            for j in range(5):
                t = 2 * math.pi * j / 5
                b.fill(_ellipse(px + 0.13 * k * math.cos(t), py + 0.13 * k * math.sin(t), 0.11 * k, 0.11 * k, 12),
                       ACCESSORY, w_small, head=True)
            b.fill(_ellipse(px, py, 0.08 * k, 0.08 * k, 12), ACCESSORY, w_small, HIGHLIGHT, head=True)
        elif accessory == "star":
            t = np.arange(10) * math.pi / 5 - math.pi / 2 + rng.u(-0.3, 0.3)
            r = np.where(np.arange(10) % 2 == 0, 0.26 * k, 0.11 * k)
            b.fill(np.stack([px + r * np.cos(t), py + r * np.sin(t)], 1), ACCESSORY, w_small, head=True)
        elif accessory == "headband":
            band = _arc(0, cap_cy, a_cap * 0.97, b_cap * 0.97, 1.05 * math.pi, 1.95 * math.pi, 20)
            b.fill(_ribbon(band, rng.u(0.18, 0.26)), ACCESSORY, w_small, head=True)
        elif accessory == "beret":
            b.fill(_ellipse(0.25 * s, -b_cap + 0.05, a_cap * 0.85, 0.38, 24, math.radians(-12 * s)),
                   ACCESSORY, w_mid, head=True)
            b.fill(_capsule((0.3 * s, -b_cap - 0.3), (0.32 * s, -b_cap - 0.42), 0.08), ACCESSORY, w_small,
                   head=True)
        else:  # cat ears, behind the fringe
            for side in (-1, 1):
                base = np.array([(0.35, -b_cap + 0.25), (0.95, -0.75), (0.85, -b_cap - 0.35 * k)])
                g = b.fill(base * [side, 1], ACCESSORY, w_mid, head=True)
                inner = base + (base.mean(0) - base) * 0.45
                b.fill(inner * [side, 1], ACCESSORY, 0, SHADOW, g, False, True)

    # --- assemble in drawing order, back to front ---
    back_hair()
    accessory_shape("early")
    nl, depth = neckline()
    bottom()
    top(nl)
    neck(nl)
    collar(nl, depth)
    poses = (rng.pick(("down", "down", "hip", "front", "up")), rng.pick(("down", "down", "hip", "front")))
    for side, pose in zip((-1, 1), poses):
        arm(side, pose)
    fg = face()
    eyes(fg)
    nose_mouth()
    side_locks()
    fringe()
    accessory_shape("late")

    # --- place in the frame ---
    r_head = rng.u(0.15, 0.2)
    cx = 0.5 + rng.u(-0.07, 0.07)
    cy = 0.05 + 1.35 * r_head + rng.u(0.0, 0.04)
    lean = math.radians(rng.u(-6, 6))
    flip = rng.sign()
    c, s = math.cos(lean), math.sin(lean)

    def to_frame(p: np.ndarray) -> np.ndarray:
        x, y = p[:, 0] * flip, p[:, 1]
        return np.stack([cx + r_head * (c * x - s * y), cy + r_head * (s * x + c * y)], 1)

    shapes = b.shapes(to_frame)
    if sum(1 for sh in shapes if sh.kind == "fill") > 254 or sum(1 for sh in shapes if sh.kind == "tone") > 255:
        raise RuntimeError("too many shapes for the 8-bit id maps")

    light = math.radians(rng.u(-150, -30))  # direction towards the light: mostly from above
    lx, ly = math.cos(light), math.sin(light)
    d_cast, d_form = rng.u(0.025, 0.05), rng.u(0.005, 0.02)
    gradient = None
    if rng.chance(0.5):
        g = math.radians(rng.u(0, 360))
        gradient = (math.cos(g), math.sin(g))
    return Character(seed, shapes, (lx * d_cast, ly * d_cast), (lx * d_form, ly * d_form), gradient)


def _zigzag_arc(rx: float, ry: float, cy: float, rng: _Rng) -> np.ndarray:
    """Inner edge of the hair shine, right to left, with the saw teeth anime artists draw."""
    t = np.linspace(1.88 * math.pi, 1.12 * math.pi, 15)
    r = np.where(np.arange(15) % 2 == 1, rng.u(0.78, 0.9), 1.0)
    return np.stack([rx * r * np.cos(t), cy + ry * r * np.sin(t)], 1)


# ----------------------------------------------------------------------------------------------------------------
# Rendering


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """out[y, x] = a[y + dy, x + dx], clamped at the borders."""
    h, w = a.shape
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    return a[ys[:, None], xs[None, :]] if (dx or dy) else a


def _box2(a: np.ndarray) -> np.ndarray:
    """Sum of each 2x2 block (the caller divides, so rounding happens once)."""
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def render(character: Character, palette: Palette, size: int) -> Rendered:
    """Draw the character at `size` x `size` with the palette's colours. Same inputs, same bytes."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an int in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    big = size * SUPERSAMPLE
    px_scale = size / 128 * SUPERSAMPLE  # line widths are given at 128 px

    id_img = Image.new("L", (big, big), 0)  # 0 = background, k = k-th fill
    line_img = Image.new("L", (big, big), 255)
    tone_img = Image.new("L", (big, big), 0)  # 0 = none, k = k-th tone shape
    draw_id, draw_line, draw_tone = ImageDraw.Draw(id_img), ImageDraw.Draw(line_img), ImageDraw.Draw(tone_img)

    part_lut, tone_lut, group_lut, cast_lut = [BG], [BASE], [0], [0]
    tshape_part, tshape_tone = [255], [BASE]  # 255 matches no part
    for sh in character.shapes:
        xy = [v * big - 0.5 for v in sh.points]  # pixel centres sit at integer coordinates
        if sh.kind == "fill":
            part_lut.append(sh.part)
            tone_lut.append(sh.tone)
            group_lut.append(sh.group)
            cast_lut.append(sh.group if sh.casts else 0)
            draw_id.polygon(xy, fill=len(part_lut) - 1)
            draw_line.polygon(xy, fill=255)
            if sh.width > 0:
                w = max(1, round(sh.width * px_scale))
                draw_line.line(xy + xy[:2], fill=0, width=w, joint="curve")
        elif sh.kind == "ink":
            draw_line.polygon(xy, fill=0)
        elif sh.kind == "stroke":
            draw_line.line(xy, fill=0, width=max(1, round(sh.width * px_scale)), joint="curve")
        elif sh.kind == "tone":
            tshape_part.append(sh.part)
            tshape_tone.append(sh.tone)
            draw_tone.polygon(xy, fill=len(tshape_part) - 1)
        else:
            raise ValueError(f"unknown shape kind {sh.kind!r}")

    ids = np.asarray(id_img)
    part_of, tone_of = np.array(part_lut, np.uint8), np.array(tone_lut, np.uint8)
    group_of, cast_of = np.array(group_lut, np.int16), np.array(cast_lut, np.int16)
    part = part_of[ids]
    tone = tone_of[ids]
    group = group_of[ids]

    # Cel shading: cast shadow where a shape in front lies towards the light; form shadow where the shape's
    # own silhouette ends (something behind it) away from the light.
    shade = np.zeros(ids.shape, bool)
    dx, dy = (round(v * big) for v in character.cast_shadow)
    if dx or dy:
        shade |= _shift(cast_of[ids], dx, dy) > group
    dx, dy = (round(v * big) for v in character.form_shadow)
    if dx or dy:
        shade |= _shift(group, -dx, -dy) < group
    shade &= (tone == BASE) & (part != BG)
    tone[shade] = SHADOW

    if len(tshape_part) > 1:  # tone shapes repaint base pixels of their part
        tid = np.asarray(tone_img)
        hit = (tid > 0) & (tone == BASE) & (part == np.array(tshape_part, np.uint8)[tid])
        tone[hit] = np.array(tshape_tone, np.uint8)[tid][hit]

    tones = part_tones(palette)
    rgb = tones.reshape(-1, 3)[part.astype(np.intp) * 3 + tone].astype(np.uint32)
    if character.gradient is not None:  # background: base -> highlight along the gradient direction
        gx, gy = character.gradient
        ramp = (np.arange(big, dtype=np.float32) + 0.5) / big
        t = gx * ramp[None, :] + gy * ramp[:, None]
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        lo, hi = tones[BG, BASE].astype(np.float32), tones[BG, HIGHLIGHT].astype(np.float32)
        grad = np.rint(lo + t[..., None] * (hi - lo)).astype(np.uint32)
        bg = part == BG
        rgb[bg] = grad[bg]

    line_big = np.asarray(line_img).astype(np.uint32)
    inked = rgb * line_big[..., None]  # multiply the ink over the colours
    n = SUPERSAMPLE * SUPERSAMPLE
    color = ((_box2(inked) + n * 255 // 2) // (n * 255)).astype(np.uint8)
    line = ((_box2(line_big) + n // 2) // n).astype(np.uint8)
    mask = np.ascontiguousarray(part[0::2, 0::2])
    return Rendered(color=color, line=line, mask=mask)


# ----------------------------------------------------------------------------------------------------------------
# Data set files


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """A mask as an RGB picture, one fixed colour per part (MASK_VIS), for looking at it."""
    return np.array(MASK_VIS, np.uint8)[mask]


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def write_dataset(out: Path, count: int, size: int, seed: int) -> list[Path]:
    """Write `count` characters of `size` px into `out`: {i:05d}_color.png, _line.png, _mask.png (the mask
    PNG holds part labels 0..len(PARTS)-1, not colours) and meta.json (enough to re-render every item).
    Returns the colour image paths, in index order; the other files sit beside them."""
    from tqdm import tqdm

    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be an int in 1..{MAX_COUNT}, got {count!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an int in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    item_seed(_check_seed(seed), count - 1)  # the whole seed range must be valid
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; pick a folder path")
    out.mkdir(parents=True, exist_ok=True)

    items, paths = [], []
    for i in tqdm(range(count), desc="synth", unit="img", disable=count <= 1):
        s = item_seed(seed, i)
        r = render(random_character(s), random_palette(s), size)
        names = {k: f"{i:05d}_{k}.png" for k in ("color", "line", "mask")}
        _save_png(r.color, out / names["color"])
        _save_png(r.line, out / names["line"])
        _save_png(r.mask, out / names["mask"])
        items.append({"index": i, **names, "character_seed": s, "palette_seed": s, "size": size})
        paths.append(out / names["color"])
    meta = {
        "format": META_FORMAT,
        "seed": seed,
        "count": count,
        "size": size,
        "seed_rule": f"character_seed = palette_seed = seed * {SEED_STRIDE} + index",
        "parts": list(PARTS),
        "items": items,
    }
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(out / "meta.json")
    return paths


def preview(seeds: list[int], size: int = 128) -> np.ndarray:
    """One row per seed: colour | line | mask in MASK_VIS colours | the same character in the next seed's
    palette. For a quick look at what the generator makes."""
    rows = []
    for j, s in enumerate(seeds):
        ch = random_character(s)
        r = render(ch, random_palette(s), size)
        other = render(ch, random_palette(seeds[(j + 1) % len(seeds)] if len(seeds) > 1 else s + 1), size)
        line = np.repeat(r.line[..., None], 3, 2)
        rows.append(np.concatenate([r.color, line, mask_to_rgb(r.mask), other.color], 1))
    return np.concatenate(rows, 0)


# ----------------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write images and meta.json into")
    parser.add_argument("--count", type=int, default=16, help=f"number of characters (1..{MAX_COUNT})")
    parser.add_argument("--size", type=int, default=128, help=f"image side in pixels ({MIN_SIZE}..{MAX_SIZE})")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"data set seed K; item i uses seed K*{SEED_STRIDE}+i (use another K for held-out sets)")
    parser.add_argument("--preview", type=Path, default=None,
                        help="also write a PNG grid of the first items (colour | line | mask | other palette)")


def main(args: argparse.Namespace) -> int:
    try:
        paths = write_dataset(args.out, args.count, args.size, args.seed)
    except (ValueError, TypeError, NotADirectoryError) as e:
        print(f"irodori synth: {e}", file=sys.stderr)
        return 2
    if args.preview is not None:
        seeds = [item_seed(args.seed, i) for i in range(min(args.count, 6))]
        Image.fromarray(preview(seeds, args.size)).save(args.preview)
    print(f"wrote {len(paths)} characters of {args.size} px to {args.out} (meta.json lists their seeds)")
    return 0
