"""The body's drawing steps: neckline, skirt or trousers, top, neck, collar or ribbon, arms.

Each step draws its random numbers in a fixed order; `random_character` calls the steps in a fixed order, so
a seed always gives the same character."""
from __future__ import annotations

import math

import numpy as np

from training.synth.base import BOTTOM, COLLAR, SKIN, TOP, Rng
from training.synth.figure import Builder, Figure
from training.synth.geometry import capsule, ellipse, mirror, spline


def neckline(rng: Rng, fig: Figure) -> tuple[np.ndarray, float]:
    """The neckline (V or round, left to right) that the top, the neck and the collar share, and its depth."""
    v_s, nw = fig.shoulder_y, fig.neck_w
    depth = rng.u(0.1, 0.6)
    if rng.chance(0.5):  # V
        pts = [(-nw - 0.16, v_s - 0.02), (0.0, v_s + depth), (nw + 0.16, v_s - 0.02)]
        return np.array(pts), depth
    return spline([(-nw - 0.16, v_s - 0.02), (-nw * 0.7, v_s + depth * 0.8), (0.0, v_s + depth),
                   (nw * 0.7, v_s + depth * 0.8), (nw + 0.16, v_s - 0.02)], 4), depth


def bottom(b: Builder, rng: Rng, fig: Figure) -> None:
    """A pleated skirt or trousers, hanging from the waist."""
    v_w, ww, pen = fig.waist_y, fig.waist_w, fig.pens
    if rng.chance(0.6):  # skirt, pleated
        flare, length = rng.u(0.3, 0.9), rng.u(1.3, 2.2)
        n = 4 + int(rng.u(0, 4))
        hem_x = np.linspace(ww + flare, -(ww + flare), 2 * n + 1)
        hem = [(x, v_w + length + (0.12 if j % 2 else 0.0)) for j, x in enumerate(hem_x)]
        poly = np.vstack([[(-ww + 0.02, v_w - 0.15), (ww - 0.02, v_w - 0.15)], hem])
        b.fill(poly, BOTTOM, width=pen.outline)
        for j in range(1, 2 * n, 2):
            f = hem_x[j] / (ww + flare)
            b.stroke([(f * (ww - 0.1), v_w + 0.1), (hem_x[j], v_w + length + 0.1)], width=pen.detail)
    else:  # trousers: two legs split below the crotch
        wide = rng.u(0.0, 0.25)
        poly = [(-ww + 0.02, v_w - 0.15), (ww - 0.02, v_w - 0.15), (ww + wide, v_w + 3.0),
                (0.08, v_w + 3.0), (0.0, v_w + 1.0), (-0.08, v_w + 3.0), (-ww - wide, v_w + 3.0)]
        b.fill(poly, BOTTOM, width=pen.outline)
        b.stroke([(0.0, v_w + 0.15), (0.0, v_w + 1.0)], width=pen.detail)


def top(b: Builder, rng: Rng, fig: Figure, neck_pts: np.ndarray) -> None:
    """The top from the shoulders to just below the waist, cut out at the neckline, with a few folds."""
    v_s, v_w, sw, ww, nw = fig.shoulder_y, fig.waist_y, fig.shoulder_w, fig.waist_w, fig.neck_w
    sh = rng.u(0.0, 0.12)  # shoulder droop
    side = [(-nw - 0.16, v_s - 0.02), (-sw + 0.3, v_s + 0.02 + sh), (-sw, v_s + 0.3 + sh),
            (-sw + 0.08, v_s + 0.85), (-ww - 0.04, v_w - 0.2), (-ww - 0.06, v_w + 0.12)]
    left = spline(side, 4)
    hem = [(-ww * 0.5, v_w + 0.18), (ww * 0.5, v_w + 0.18)]
    right = mirror(left)[::-1]
    b.fill(np.vstack([left, hem, right, neck_pts[::-1]]), TOP, width=fig.pens.outline)
    for _ in range(int(rng.u(0, 3))):  # a few folds
        x = rng.sign() * rng.u(0.3, ww - 0.15)
        y = rng.u(v_s + 0.9, v_w - 0.2)
        b.stroke([(x, y), (x + rng.u(-0.2, 0.2), y + rng.u(0.2, 0.4))], width=fig.pens.detail)


def neck(b: Builder, fig: Figure, neck_pts: np.ndarray) -> None:
    v_s, nw = fig.shoulder_y, fig.neck_w
    poly = np.vstack([[(-nw, 0.5), (-nw, v_s - 0.12)], neck_pts, [(nw, v_s - 0.12), (nw, 0.5)]])
    b.fill(poly, SKIN, width=fig.pens.mid)


def collar(b: Builder, rng: Rng, fig: Figure, neck_pts: np.ndarray, depth: float) -> None:
    """Collar flaps, a sailor collar or none, and maybe a ribbon (always one without a collar)."""
    v_s, sw, nw, pen = fig.shoulder_y, fig.shoulder_w, fig.neck_w, fig.pens
    style = rng.pick(("flaps", "sailor", "none"))
    ribbon = style == "none" or rng.chance(0.5)
    if style == "flaps":
        for side in (-1, 1):
            flap = [(nw + 0.2, v_s - 0.06), (0.04, v_s + depth + 0.02),
                    (nw + rng.u(0.3, 0.55), v_s + depth * 0.5 + rng.u(0.2, 0.4))]
            b.fill(np.array(flap) * [side, 1], COLLAR, width=pen.small)
    elif style == "sailor":
        reach = rng.u(0.4, 0.8)
        outer = [(sw - 0.12, v_s + 0.1), (sw - 0.3, v_s + reach), (0.0, v_s + depth + 0.35)]
        outer = np.array(outer)
        poly = np.vstack([neck_pts, outer, mirror(outer)[::-1][1:]])
        b.fill(poly, COLLAR, width=pen.small)
        stripe = spline([(sw - 0.2, v_s + 0.15), (sw - 0.36, v_s + reach - 0.08), (0.0, v_s + depth + 0.25)], 4)
        b.stroke(np.vstack([stripe, mirror(stripe)[::-1][1:]]), width=pen.detail)
    if ribbon:
        k = rng.u(0.8, 1.3)
        cx, cy = 0.0, v_s + depth + 0.02
        for side in (-1, 1):
            tail = [(0.02, 0.0), (0.18 * k, 0.5 * k), (0.08 * k, 0.55 * k), (-0.02, 0.05)]
            b.fill(np.array(tail) * [side, 1] + [cx, cy], COLLAR, width=pen.small)
        for side in (-1, 1):
            wing = spline([(0.0, -0.02), (0.3 * k, -0.18 * k), (0.38 * k, 0.02), (0.28 * k, 0.16 * k),
                           (0.0, 0.03)], 4)
            b.fill(wing * [side, 1] + [cx, cy], COLLAR, width=pen.small)
        b.fill(ellipse(cx, cy, 0.08 * k, 0.09 * k, 12), COLLAR, width=pen.small)


def random_poses(rng: Rng) -> tuple[str, str]:
    """The poses of the arms at side -1 and side +1 (x < 0 and x > 0 before any mirroring); one may be raised."""
    return rng.pick(("down", "down", "hip", "front", "up")), rng.pick(("down", "down", "hip", "front"))


def arm(b: Builder, rng: Rng, fig: Figure, *, side: int, pose: str) -> None:
    """Upper arm, forearm, hand and a short or long sleeve, on side -1 (x < 0) or +1."""
    pen = fig.pens
    jx, jy = side * (fig.shoulder_w - 0.24), fig.shoulder_y + 0.3
    a1, a2 = {"down": (rng.u(8, 20), rng.u(5, 25)), "hip": (rng.u(30, 45), rng.u(-55, -35)),
              "front": (rng.u(5, 15), rng.u(-80, -60)), "up": (rng.u(120, 150), rng.u(155, 175))}[pose]
    l1, l2 = rng.u(1.05, 1.25), rng.u(0.95, 1.15)
    ex, ey = _along(side, a1, l1, jx, jy)  # elbow
    hx, hy = _along(side, a2, l2, ex, ey)  # wrist
    b.fill(capsule((jx, jy), (ex, ey), 0.42), SKIN, width=pen.outline)
    b.fill(capsule((ex, ey), (hx, hy), 0.34), SKIN, width=pen.outline)
    fx, fy = _along(side, a2, l2 + 0.12, ex, ey)
    b.fill(ellipse(fx, fy, 0.2, 0.22, 16, math.radians(-side * a2)), SKIN, width=pen.mid)
    sleeve = rng.pick(("short", "short", "long"))
    if sleeve == "short":
        sx, sy = _along(side, a1, l1 * rng.u(0.45, 0.75), jx, jy)
        b.fill(capsule((jx, jy - 0.02), (sx, sy), 0.52), TOP, width=pen.outline)
    else:
        b.fill(capsule((jx, jy - 0.02), (ex, ey), 0.5), TOP, width=pen.outline)
        cx, cy = _along(side, a2, l2 * 0.8, ex, ey)
        b.fill(capsule((ex, ey), (cx, cy), 0.44), TOP, width=pen.outline)


def _along(side: int, angle: float, length: float, x: float, y: float) -> tuple[float, float]:
    """The point `length` away from (x, y) at `angle` degrees from straight down, outwards on `side`."""
    r = math.radians(angle)
    return x + side * math.sin(r) * length, y + math.cos(r) * length
