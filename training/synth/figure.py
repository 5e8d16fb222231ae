"""What the drawing steps of a character share: the shape list they add to (`Builder`) and the figure's
proportions, line widths and style choices (`Figure`), all in head units: origin at the head centre, y down,
1 = the face's half-width."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from training.synth.base import BASE, BG, Rng, Shape
from training.synth.geometry import rotate


class Builder:
    """Collects shapes in head units, in drawing order; `head=True` shapes follow the head tilt."""

    def __init__(self, tilt: float) -> None:
        self.items: list[tuple[str, np.ndarray, int, int, float, int, bool, bool]] = []
        self.tilt = tilt
        self.group = 0  # the background is group 0

    def new_group(self) -> int:
        self.group += 1
        return self.group

    def fill(self, pts, part: int, *, width: float, tone: int = BASE, group: int | None = None,
             casts: bool = True, head: bool = False) -> int:
        """A polygon of `part`, outlined when width > 0. Returns its shading group: a new one unless `group`
        is given (the parts of one object share a group so they do not shade each other)."""
        g = self.new_group() if group is None else group
        self.items.append(("fill", np.asarray(pts, float), part, tone, width, g, casts, head))
        return g

    def ink(self, pts, *, head: bool = False) -> None:
        self.items.append(("ink", np.asarray(pts, float), BG, BASE, 0.0, 0, False, head))

    def stroke(self, pts, *, width: float, head: bool = False) -> None:
        self.items.append(("stroke", np.asarray(pts, float), BG, BASE, width, 0, False, head))

    def tone(self, pts, part: int, *, tone: int, head: bool = False) -> None:
        self.items.append(("tone", np.asarray(pts, float), part, tone, 0.0, 0, False, head))

    def shapes(self, to_frame: Callable[[np.ndarray], np.ndarray]) -> tuple[Shape, ...]:
        out = []
        for kind, pts, part, tone, width, group, casts, head in self.items:
            if head:
                pts = rotate(pts, self.tilt, 0.0, 1.0)  # the head turns about the top of the neck
            xy = to_frame(pts)
            out.append(Shape(kind, tuple(float(v) for v in xy.ravel()), part, tone, float(width), group, casts))
        return tuple(out)


@dataclass(frozen=True)
class Pens:
    """Line widths in pixels at 128 px output."""

    outline: float  # big shapes: hair mass, clothes, limbs
    mid: float  # face, neck, fringe, side locks
    small: float  # eyes, mouth, collar, accessory
    detail: float  # strand lines, folds, pleats, the nose


@dataclass(frozen=True)
class Figure:
    """The proportions and style choices every drawing step reads."""

    tilt: float  # head tilt, radians
    pens: Pens
    cap_rx: float  # hair cap half-width
    cap_ry: float  # hair cap height above its centre
    cap_cy: float  # the hair cap's centre
    chin: float
    shoulder_y: float  # the shoulder line
    shoulder_w: float  # shoulder half-width
    waist_y: float
    waist_w: float  # waist half-width
    neck_w: float  # neck half-width
    hair_style: str  # short, bob, long or twintails
    spiky: bool
    accessory: str  # bow, flower, star, headband, beret or (cat) ears


def random_figure(rng: Rng) -> Figure:
    """The character's first random numbers, in a fixed order (changing it changes every character)."""
    tilt = math.radians(rng.u(-12, 12))
    lw = rng.u(1.0, 2.4)  # base line width
    pens = Pens(outline=lw * 1.25, mid=lw, small=lw * 0.8, detail=lw * 0.6)
    cap_rx = rng.u(1.12, 1.22)
    cap_ry = rng.u(1.18, 1.35)
    chin = rng.u(1.15, 1.3)
    shoulder_y = rng.u(1.55, 1.7)
    shoulder_w = rng.u(1.15, 1.45)
    waist_y = shoulder_y + rng.u(1.5, 1.85)
    waist_w = rng.u(0.8, 1.0)
    neck_w = rng.u(0.25, 0.33)
    hair_style = rng.pick(("short", "bob", "long", "long", "twintails"))
    spiky = rng.chance(0.25)
    accessory = rng.pick(("bow", "flower", "star", "headband", "beret", "ears"))
    return Figure(tilt=tilt, pens=pens, cap_rx=cap_rx, cap_ry=cap_ry, cap_cy=-0.02, chin=chin,
                  shoulder_y=shoulder_y, shoulder_w=shoulder_w, waist_y=waist_y, waist_w=waist_w, neck_w=neck_w,
                  hair_style=hair_style, spiky=spiky, accessory=accessory)
