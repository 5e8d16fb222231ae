"""The head's drawing steps: back hair, face, eyes, nose and mouth, side locks, fringe, and the accessory.

All head shapes are drawn with head=True, so they follow the head tilt. Each step draws its random numbers in
a fixed order; `random_character` calls the steps in a fixed order, so a seed always gives the same character."""
from __future__ import annotations

import math

import numpy as np

from training.synth.base import ACCESSORY, BASE, EYES, HAIR, HIGHLIGHT, MOUTH, SHADOW, SKIN, Rng
from training.synth.figure import Builder, Figure
from training.synth.geometry import arc, bezier, capsule, ellipse, mirror, ribbon, rotate, spline


# ----------------------------------------------------------------------------------------------------- hair
def back_hair(b: Builder, rng: Rng, fig: Figure) -> None:
    """The hair mass behind the head (short, bob, long or with twin tails), strand tips along its bottom."""
    a, bb, cy, style = fig.cap_rx + 0.06, fig.cap_ry + 0.06, fig.cap_cy, fig.hair_style
    if style == "short":
        length, wb = rng.u(0.7, 1.0), a * rng.u(0.95, 1.05)
    elif style == "bob":
        length, wb = rng.u(1.1, 1.6), rng.u(1.2, 1.45)
    elif style == "long":
        length, wb = rng.u(2.8, 5.0), rng.u(1.4, 1.9)
    else:
        length, wb = rng.u(0.9, 1.3), a * rng.u(0.95, 1.1)
    cap = arc(0, cy, a, bb, math.pi, 2 * math.pi, 24)
    if fig.spiky:
        cap = _spiked(cap, cy, phase=2, scale=rng.u(1.12, 1.25))
    right = spline([(a, cy), (a + 0.08, 0.5 * length), (wb, length - 0.25)], 4)[1:]
    n_tips = 3 + int(rng.u(0, 4)) if style != "short" else 3
    xs = np.linspace(wb, -wb, 2 * n_tips + 1)
    bottom = []
    for j, x in enumerate(xs):
        if j % 2:  # a strand tip
            bottom.append((x, length + rng.u(0.05, 0.3) * (0.4 if style == "bob" else 1.0)))
        else:  # a notch between tips
            bottom.append((x, length - rng.u(0.1, 0.35)))
    left = mirror(right)[::-1]
    b.fill(np.vstack([cap, right, bottom, left]), HAIR, width=fig.pens.outline, head=True)
    if style == "twintails":
        for side in (-1, 1):
            drop = rng.u(2.5, 4.5)
            out = rng.u(1.5, 1.9)
            path = spline([(0.9, -0.65), (out, -0.2), (out + rng.u(-0.1, 0.2), drop * 0.5),
                           (out - rng.u(0.0, 0.4), drop)], 5)
            t = np.linspace(0, 1, len(path))
            width = rng.u(0.6, 0.9) * (1 - t) ** 0.6 * (0.6 + 0.4 * np.sin(np.pi * t)) + 0.02
            b.fill(ribbon(path * [side, 1], width), HAIR, width=fig.pens.outline, head=True)


def side_locks(b: Builder, rng: Rng, fig: Figure) -> None:
    """One or two tapered locks on each side of the face."""
    n_lock = 1 + int(rng.u(0, 2))
    for side in (-1, 1):
        for k in range(n_lock):
            length = rng.u(0.9, 1.9) if fig.hair_style != "short" else rng.u(0.5, 1.0)
            x0 = 0.9 - 0.12 * k
            path = spline([(x0, -0.4), (x0 + 0.12, 0.2), (x0 + rng.u(-0.1, 0.05), length)], 5)
            t = np.linspace(0, 1, len(path))
            width = rng.u(0.22, 0.34) * (1 - t) ** 0.7 + 0.01
            b.fill(ribbon(path * [side, 1], width), HAIR, width=fig.pens.mid, head=True)


def fringe(b: Builder, rng: Rng, fig: Figure) -> None:
    """The hair cap with a fringe of pointed strands, its strand lines, a shine band, maybe an ahoge."""
    a, bb, cy, pen = fig.cap_rx, fig.cap_ry, fig.cap_cy, fig.pens
    side_v = rng.u(0.0, 0.3)
    cap = arc(0, cy, a, bb, math.pi, 2 * math.pi, 24)
    if fig.spiky:
        cap = _spiked(cap, cy, phase=0, scale=rng.u(1.08, 1.18))
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
        edge.extend(bezier((x0, v0), c0, tip, 5).tolist())
        edge.extend(bezier(tip, c1, (x1, v1), 5)[1:].tolist())
    edge.append((-a, side_v))
    b.fill(np.vstack([cap, edge]), HAIR, width=pen.mid, head=True)
    for x, v in notches[1:-1]:  # strand lines running up from the notches
        b.stroke(spline([(x, v - 0.08), (x * 0.85, v - 0.3), (x * 0.6, v - rng.u(0.45, 0.65))], 3),
                 width=pen.detail, head=True)
    b.tone(np.vstack([arc(0, cy, a * 0.85, bb * 0.85, 1.12 * math.pi, 1.88 * math.pi, 14),
                      _zigzag_arc(a * 0.66, bb * 0.66, cy, rng)]), HAIR, tone=HIGHLIGHT, head=True)
    if rng.chance(0.35):  # ahoge
        s = rng.sign()
        path = spline([(0.1 * s, -bb + 0.1), (0.3 * s, -bb - 0.45), (0.6 * s, -bb - 0.35)], 5)
        t = np.linspace(0, 1, len(path))
        b.fill(ribbon(path, 0.16 * (1 - t) + 0.01), HAIR, width=pen.small, head=True)


def _spiked(cap: np.ndarray, cy: float, *, phase: int, scale: float) -> np.ndarray:
    """Every fourth point of the cap, from `phase`, pushed out from its centre: spikes all round the head."""
    k = np.arange(len(cap))
    r = np.where(k % 4 == phase, scale, 1.0)[:, None]
    return (cap - [0, cy]) * r + [0, cy]


def _zigzag_arc(rx: float, ry: float, cy: float, rng: Rng) -> np.ndarray:
    """Inner edge of the hair shine, right to left, with the saw teeth anime artists draw."""
    t = np.linspace(1.88 * math.pi, 1.12 * math.pi, 15)
    r = np.where(np.arange(15) % 2 == 1, rng.u(0.78, 0.9), 1.0)
    return np.stack([rx * r * np.cos(t), cy + ry * r * np.sin(t)], 1)


# ----------------------------------------------------------------------------------------------------- face
def face(b: Builder, rng: Rng, fig: Figure) -> int:
    """Ears and the face; returns the face's shading group (the eyelids join it)."""
    for side in (-1, 1):
        b.fill(ellipse(side * 0.97, 0.3, 0.14, 0.22, 14), SKIN, width=fig.pens.mid, head=True)
    jaw = rng.u(0.72, 0.85)
    chin = fig.chin
    low = [(-1.0, 0.0), (-0.98, 0.42), (-jaw, 0.88), (-0.4, chin - 0.12), (0.0, chin),
           (0.4, chin - 0.12), (jaw, 0.88), (0.98, 0.42), (1.0, 0.0)]
    top = arc(0.0, 0.0, 1.0, 1.05, 0.0, -math.pi, 18)[1:-1]
    return b.fill(np.vstack([spline(low, 4), top]), SKIN, width=fig.pens.mid, head=True)


def eyes(b: Builder, rng: Rng, fig: Figure, *, face_group: int) -> None:
    """Two eyes: iris with pupil shade and highlights, upper lid (skin of the face's group) with lashes,
    maybe a lower lash, and a brow. Each eye is built with its outer corner at +x, then mirrored."""
    rx = rng.u(0.19, 0.26)
    ry = rx * rng.u(1.2, 1.45)
    ex, ey = rng.u(max(0.38, rx + 0.17), 0.5), rng.u(0.2, 0.34)
    lash = rng.u(0.09, 0.15)
    lid_drop = rng.u(0.55, 0.85)
    hl_side = rng.sign()
    brow_y = ey - ry - rng.u(0.25, 0.4)
    for side in (-1, 1):
        def place(p):
            return np.asarray(p, float) * [side, 1] + [side * ex, ey]

        g = b.fill(place(ellipse(0, 0, rx, ry, 24)), EYES, width=fig.pens.small, head=True, casts=False)
        # pupil shade and highlights: in the iris's group, no outline, no cast shadow
        b.fill(place(ellipse(0, 0.12 * ry, rx * 0.5, ry * 0.55, 16)),
               EYES, width=0, tone=SHADOW, group=g, casts=False, head=True)
        b.fill(place(ellipse(hl_side * side * 0.35 * rx, -0.35 * ry, 0.3 * rx, 0.3 * rx, 12)),
               EYES, width=0, tone=HIGHLIGHT, group=g, casts=False, head=True)
        b.fill(place(ellipse(-hl_side * side * 0.35 * rx, 0.45 * ry, 0.14 * rx, 0.14 * rx, 10)),
               EYES, width=0, tone=HIGHLIGHT, group=g, casts=False, head=True)
        b.tone(place([(-1.5 * rx, -1.5 * ry), (1.5 * rx, -1.5 * ry), (1.5 * rx, -0.2 * ry),
                      (-1.5 * rx, -0.35 * ry)]), EYES, tone=SHADOW, head=True)
        lid = spline([(-1.25 * rx, -0.25 * ry), (-0.2 * rx, -lid_drop * ry - 0.08),
                      (1.35 * rx, -0.45 * ry)], 5)
        cover = np.vstack([lid, [(1.35 * rx, -1.6 * ry), (-1.25 * rx, -1.6 * ry)]])
        b.fill(place(cover), SKIN, width=0, tone=BASE, group=face_group, casts=False, head=True)
        t = np.linspace(0, 1, len(lid))
        b.ink(place(ribbon(lid, lash * (0.3 + 0.7 * t) * np.sin(np.pi * np.clip(t, 0.02, 0.9)) ** 0.4)),
              head=True)
        if rng.chance(0.7):  # lower lash
            low = arc(0, 0.1 * ry, rx * 1.05, ry * 0.95, 0.25 * math.pi, 0.05 * math.pi, 5)
            b.ink(place(ribbon(low, 0.04 * np.sin(np.linspace(0.2, 3.0, 5)))), head=True)
        brow = spline([(-0.9 * rx, brow_y - ey + 0.05), (0.2 * rx, brow_y - ey - 0.05),
                       (1.3 * rx, brow_y - ey + 0.04)], 4)
        b.ink(place(ribbon(brow, 0.06 * np.sin(np.pi * np.linspace(0.05, 0.95, len(brow))))), head=True)


def nose_mouth(b: Builder, rng: Rng, fig: Figure) -> None:
    """A one-stroke nose and a smiling, open or cat mouth with a highlight."""
    ns = rng.sign()
    b.stroke([(0.0, rng.u(0.55, 0.62)), (ns * 0.05, rng.u(0.64, 0.7))], width=fig.pens.detail, head=True)
    my = rng.u(0.74, 0.86)
    mw, mh = rng.u(0.26, 0.42), min(rng.u(0.13, 0.26), fig.chin - my - 0.14)
    style = rng.pick(("smile", "open", "cat"))
    if style == "smile":
        poly = arc(0, my, mw / 2, mh, 0, math.pi, 10)  # a D: flat top, round bottom
    elif style == "open":
        poly = ellipse(0, my + mh / 2, mw * 0.4, mh * 0.6, 14)
    else:
        poly = spline([(-mw / 2, my), (0, my + mh), (mw / 2, my)], 4)
    b.fill(poly, MOUTH, width=fig.pens.small, head=True, casts=False)
    b.tone(ellipse(0, my + mh * 0.95, mw * 0.3, mh * 0.45, 12), MOUTH, tone=HIGHLIGHT, head=True)


# ----------------------------------------------------------------------------------------------------- accessory
def accessory(b: Builder, rng: Rng, fig: Figure) -> None:
    """The figure's accessory: a bow, flower or star at a random place on the hair, a headband, a beret, or
    cat ears (drawn before the face, so they sit behind the fringe)."""
    a_cap, b_cap, cy, kind, pen = fig.cap_rx, fig.cap_ry, fig.cap_cy, fig.accessory, fig.pens
    s = rng.sign()
    ang = math.radians(rng.u(215, 245))
    px, py = 0.9 * a_cap * math.cos(ang) * s, cy + 0.9 * b_cap * math.sin(ang)
    k = rng.u(0.9, 1.3)
    if kind == "bow":
        rot = math.radians(rng.u(-30, 30))
        for side in (-1, 1):
            wing = spline([(0, 0), (0.3 * k, -0.2 * k), (0.42 * k, 0), (0.3 * k, 0.2 * k)], 4, closed=True)
            b.fill(rotate(wing * [side, 1], rot) + [px, py], ACCESSORY, width=pen.small, head=True)
        b.fill(ellipse(px, py, 0.09 * k, 0.1 * k, 12), ACCESSORY, width=pen.small, head=True)
    elif kind == "flower":
        for j in range(5):
            t = 2 * math.pi * j / 5
            b.fill(ellipse(px + 0.13 * k * math.cos(t), py + 0.13 * k * math.sin(t), 0.11 * k, 0.11 * k, 12),
                   ACCESSORY, width=pen.small, head=True)
        b.fill(ellipse(px, py, 0.08 * k, 0.08 * k, 12), ACCESSORY, width=pen.small, tone=HIGHLIGHT, head=True)
    elif kind == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2 + rng.u(-0.3, 0.3)
        r = np.where(np.arange(10) % 2 == 0, 0.26 * k, 0.11 * k)
        b.fill(np.stack([px + r * np.cos(t), py + r * np.sin(t)], 1), ACCESSORY, width=pen.small, head=True)
    elif kind == "headband":
        band = arc(0, cy, a_cap * 0.97, b_cap * 0.97, 1.05 * math.pi, 1.95 * math.pi, 20)
        b.fill(ribbon(band, rng.u(0.18, 0.26)), ACCESSORY, width=pen.small, head=True)
    elif kind == "beret":
        b.fill(ellipse(0.25 * s, -b_cap + 0.05, a_cap * 0.85, 0.38, 24, math.radians(-12 * s)),
               ACCESSORY, width=pen.mid, head=True)
        b.fill(capsule((0.3 * s, -b_cap - 0.3), (0.32 * s, -b_cap - 0.42), 0.08), ACCESSORY, width=pen.small,
               head=True)
    else:  # cat ears, behind the fringe
        for side in (-1, 1):
            base = np.array([(0.35, -b_cap + 0.25), (0.95, -0.75), (0.85, -b_cap - 0.35 * k)])
            g = b.fill(base * [side, 1], ACCESSORY, width=pen.mid, head=True)
            inner = base + (base.mean(0) - base) * 0.45
            b.fill(inner * [side, 1], ACCESSORY, width=0, tone=SHADOW, group=g, casts=False, head=True)
