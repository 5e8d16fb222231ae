"""Real-looking procedural line art with its ground truth: which closed shape every pixel belongs to.

The flats' regions must hold on drawings as people make them, not only on clean black outlines: soft grey
pencil and anti-aliased ink of 1-3 px, strokes that do not quite meet (gaps of 1-6 px), hatching inside
some shapes, paper grain, and ink on a transparent layer. `draw_sketch` draws such a picture from a seed,
with the shape map that says what a person would fill as one region; the flats tests measure the regions
against it and the README's flats picture is drawn with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 4  # strokes are drawn this many times larger, then averaged down: anti-aliased edges


@dataclass(frozen=True)
class Sketch:
    line: np.ndarray  # (S, S) uint8 grey on opaque paper (255 = paper), or (S, S, 4) RGBA ink on transparent
    shapes: np.ndarray  # (S, S) int32: 0 = background, k = closed shape k (a shape drawn inside another wins)
    strokes: np.ndarray  # (S, S) bool: where the strokes are (any ink at all)
    hatched: tuple[int, ...]  # the shapes with hatching inside
    gaps: int  # how many gaps were cut into the outlines


@dataclass(frozen=True)
class _Shape:
    outline: np.ndarray  # (N, 2) float x, y in px, closed (the first point is not repeated)
    tone: float  # how dark its stroke is: 1 = black ink, ~0.4 = soft pencil
    width: float  # stroke width, px
    parent: int = 0  # the shape it is drawn inside (1-based), 0 for none


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    """A closed wobbly outline: an ellipse, a rounded box or a blob, ~radius px from (cx, cy)."""
    t = np.linspace(0, 2 * np.pi, 160, endpoint=False)
    kind = rng.integers(3)
    aspect = rng.uniform(0.6, 1.0)
    if kind == 0:  # ellipse
        r = np.ones_like(t)
    elif kind == 1:  # rounded box (a superellipse)
        p = 6.0
        r = (np.abs(np.cos(t)) ** p + np.abs(np.sin(t)) ** p) ** (-1 / p) * 0.85
    else:  # blob: a few low harmonics
        r = np.ones_like(t)
        for k in (2, 3, 5):
            r += rng.uniform(0.03, 0.12) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    turn = rng.uniform(0, np.pi)
    x, y = radius * r * np.cos(t), radius * aspect * r * np.sin(t)
    return np.stack([cx + x * math.cos(turn) - y * math.sin(turn), cy + x * math.sin(turn) + y * math.cos(turn)], 1)


def _place(rng: np.random.Generator, size: int, count: int, margin: float) -> list[tuple[float, float, float]]:
    """Up to `count` non-overlapping circles (cx, cy, r) inside the canvas, `margin` px apart."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(count * 40):
        r = rng.uniform(0.07, 0.2) * size
        cx, cy = rng.uniform(r + margin, size - r - margin, 2)
        if all(math.hypot(cx - x, cy - y) > r + q + margin for x, y, q in placed):
            placed.append((cx, cy, r))
            if len(placed) == count:
                break
    return placed


def _stroke_path(outline: np.ndarray, rng: np.random.Generator, gaps: int, gap_px: tuple[float, float]) -> list[np.ndarray]:
    """The outline as open polylines, with `gaps` pieces of gap_px length cut out at random places."""
    closed = np.vstack([outline, outline[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    along = np.r_[0, np.cumsum(seg)]
    total = along[-1]
    cuts = sorted((float(rng.uniform(0, total)), float(rng.uniform(*gap_px))) for _ in range(gaps))
    if not cuts:
        return [closed]
    start = (cuts[0][0] + cuts[0][1]) % total  # walk from the end of the first gap round to its start
    pieces, pos = [], start
    for i in range(len(cuts)):
        nxt = cuts[(i + 1) % len(cuts)][0] if i + 1 < len(cuts) else cuts[0][0] + total
        end = nxt if nxt > pos else nxt + total
        s = np.linspace(pos, end, max(2, int((end - pos) / 2)))
        pieces.append(np.stack([np.interp(s % total, along, closed[:, 0]), np.interp(s % total, along, closed[:, 1])], 1))
        if i + 1 < len(cuts):
            pos = cuts[i + 1][0] + cuts[i + 1][1]
    return pieces


def _hatching(rng: np.random.Generator, inside: np.ndarray, spacing: float, inset: float) -> list[np.ndarray]:
    """Parallel short strokes across part of a shape (a bool mask), ending `inset` px or more inside it."""
    ys, xs = np.nonzero(inside)
    cx, cy = xs.mean(), ys.mean()
    angle = rng.uniform(0, np.pi)
    d = np.array([math.cos(angle), math.sin(angle)])
    n = np.array([-d[1], d[0]])
    extent = math.hypot(xs.max() - xs.min(), ys.max() - ys.min()) / 2
    offsets = np.arange(-extent * rng.uniform(0.2, 0.6), extent * rng.uniform(0.2, 0.6), spacing)
    strokes = []
    h, w = inside.shape
    for o in offsets:
        t = np.arange(-extent, extent, 0.5)
        px, py = cx + o * n[0] + t * d[0], cy + o * n[1] + t * d[1]
        ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        ok[ok] = inside[py[ok].astype(int), px[ok].astype(int)]
        if ok.sum() < 8:
            continue
        idx = np.flatnonzero(ok)
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)  # one stroke per stretch inside the shape
        for run in runs:
            a = run[0] + int(2 * rng.uniform(inset, 2.5 * inset))
            b = run[-1] - int(2 * rng.uniform(inset, 2.5 * inset))
            if b - a > 8:
                strokes.append(np.array([[px[a], py[a]], [px[b], py[b]]]))
    return strokes


def draw_sketch(seed: int, size: int = 512, transparent: bool = False, shapes: int = 7,
                gap_px: tuple[float, float] = (1.0, 6.0), hatch_share: float = 0.4) -> Sketch:
    """A line art of `shapes` closed shapes (some with a shape inside), soft grey to black anti-aliased
    strokes of 1-3 px, one or two gaps of gap_px px in most outlines, hatching inside some shapes. Opaque
    white paper with a little grain, or (transparent) black-to-grey ink in the alpha of an RGBA layer."""
    rng = np.random.default_rng(seed)
    s = SUPERSAMPLE
    truth = Image.new("I", (size, size), 0)
    fill = ImageDraw.Draw(truth)
    outlines: list[_Shape] = []
    for cx, cy, r in _place(rng, size, shapes, margin=0.05 * size):
        outlines.append(_Shape(_blob(rng, cx, cy, r), rng.uniform(0.35, 1.0), rng.uniform(1.0, 3.0)))
        if r > 0.12 * size and rng.random() < 0.5:  # a shape inside it (an eye in a face)
            ox, oy = rng.uniform(-0.3, 0.3, 2) * r
            outlines.append(_Shape(_blob(rng, cx + ox, cy + oy, r * rng.uniform(0.25, 0.4)),
                                   rng.uniform(0.35, 1.0), rng.uniform(1.0, 2.5), parent=len(outlines)))
    for k, shape in enumerate(outlines, start=1):
        fill.polygon([tuple(p) for p in shape.outline], fill=k)
    shape_map = np.asarray(truth, np.int32)

    # Darkness at SUPERSAMPLE x the size, each stroke as dark as its tone, then averaged down.
    ink = Image.new("L", (size * s, size * s), 0)
    pen = ImageDraw.Draw(ink)
    hatched, gaps = [], 0
    for k, shape in enumerate(outlines, start=1):
        area = shape_map == k
        if area.sum() > 0.02 * size * size and rng.random() < hatch_share:
            hatched.append(k)
            inner = [o.tone for o in outlines if o.parent == k]
            tone = rng.uniform(0.3, 0.6) * min([shape.tone, *inner])  # lighter than the outlines round it
            for stroke in _hatching(rng, area, spacing=rng.uniform(4.0, 8.0), inset=2.0):
                pen.line([tuple(p * s) for p in stroke], fill=round(255 * tone), width=s)
    for shape in outlines:
        n = int(rng.choice([0, 1, 1, 2]))
        gaps += n
        for piece in _stroke_path(shape.outline, rng, n, gap_px):
            pen.line([tuple(p * s) for p in piece], fill=round(255 * shape.tone), width=round(shape.width * s),
                     joint="curve")
    dark = np.asarray(ink.resize((size, size), Image.BOX), np.float32)
    grain = np.asarray(Image.fromarray((rng.random((size // 8, size // 8)) * 255).astype(np.uint8))
                       .resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2)), np.float32) / 255
    dark *= 0.75 + 0.35 * grain  # pencil pressure varies along a stroke
    dark = np.clip(dark, 0, 255)
    if transparent:
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 60)  # the pen colour; the alpha carries the strokes
        rgba[..., 3] = (dark + 0.5).astype(np.uint8)
        line = rgba
    else:
        paper = 250 + rng.normal(0, 1.5, (size, size))  # off-white with grain
        line = np.clip(paper - dark + 0.5, 0, 255).astype(np.uint8)
    return Sketch(line, shape_map, dark > 0, tuple(hatched), gaps)


def region_scores(labels: np.ndarray, sketch: Sketch, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """How well regions match the drawn shapes, on the pixels more than `margin` px from any stroke (under
    and beside a line, either side is right). Returns (whole, purity): for each shape (index = shape, 0 =
    background), the share of its pixels in the one region that holds most of them; for each region
    (index = label), the share of its pixels that belong to its main shape (1 for a region not measured)."""
    from scipy import ndimage

    away = ~ndimage.binary_dilation(sketch.strokes, iterations=margin)
    truth, lab = sketch.shapes[away].astype(np.int64), labels[away].astype(np.int64)
    n_truth, n_lab = int(sketch.shapes.max()) + 1, int(labels.max()) + 1
    joint = np.bincount(lab * n_truth + truth, minlength=n_lab * n_truth).reshape(n_lab, n_truth)
    whole = np.where(joint.sum(0) > 0, joint.max(0) / np.maximum(joint.sum(0), 1), 1.0)
    purity = np.where(joint.sum(1) > 0, joint.max(1) / np.maximum(joint.sum(1), 1), 1.0)
    return whole, purity
