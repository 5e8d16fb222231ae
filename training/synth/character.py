"""A random character: its figure, the drawing steps in order (back to front), its place in the frame and
its light.

The order of the steps is the order of the random numbers: moving, adding or removing a draw changes every
character after it, and the training data and bundled demo model are made of these characters."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.synth import body, head
from training.synth.base import Character, Rng, Shape, check_seed
from training.synth.figure import Builder, Figure, random_figure


def random_character(seed: int) -> Character:
    """A half-body figure: head, hair (back hair, fringe, side locks, maybe twin tails, spikes, an ahoge), face
    (iris eyes, brows, nose, mouth), neck, top with collar or ribbon, arms in one of four poses, skirt or
    trousers, and one accessory. Random shapes, pose, scale, position, tilt, mirror, light and line widths."""
    rng = Rng(f"irodori-synth-character-{check_seed(seed)}")
    fig = random_figure(rng)
    b = Builder(tilt=fig.tilt)
    draw_figure(b, rng, fig)
    shapes = check_shapes(b.shapes(random_placement(rng).to_frame))
    cast_shadow, form_shadow, gradient = random_light(rng)
    return Character(seed, shapes, cast_shadow, form_shadow, gradient)


def check_shapes(shapes: tuple[Shape, ...]) -> tuple[Shape, ...]:
    if sum(1 for sh in shapes if sh.kind == "fill") > 254 or sum(1 for sh in shapes if sh.kind == "tone") > 255:
        raise RuntimeError("too many shapes for the 8-bit id maps")
    return shapes


def draw_figure(b: Builder, rng: Rng, fig: Figure, steps: dict[str, list[range]] | None = None) -> None:
    """Every drawing step, back to front. `steps`, when given, receives step name -> the ranges of b.items
    each call of that step added (frames.py moves the arms and the hair of a figure by them)."""
    def step(name: str, draw, *args, **kwargs):
        start = len(b.items)
        out = draw(*args, **kwargs)
        if steps is not None:
            steps.setdefault(name, []).append(range(start, len(b.items)))
        return out

    step("back_hair", head.back_hair, b, rng, fig)
    if fig.accessory == "ears":  # cat ears sit behind everything else on the head
        step("accessory", head.accessory, b, rng, fig)
    neck_pts, depth = body.neckline(rng, fig)
    step("bottom", body.bottom, b, rng, fig)
    step("top", body.top, b, rng, fig, neck_pts)
    step("neck", body.neck, b, fig, neck_pts)
    step("collar", body.collar, b, rng, fig, neck_pts, depth)
    for side, pose in zip((-1, 1), body.random_poses(rng)):
        step(f"arm{side:+d}", body.arm, b, rng, fig, side=side, pose=pose)
    face_group = step("face", head.face, b, rng, fig)
    step("eyes", head.eyes, b, rng, fig, face_group=face_group)
    step("nose_mouth", head.nose_mouth, b, rng, fig)
    step("side_locks", head.side_locks, b, rng, fig)
    step("fringe", head.fringe, b, rng, fig)
    if fig.accessory != "ears":
        step("accessory", head.accessory, b, rng, fig)


@dataclass(frozen=True)
class Placement:
    """Where the figure sits in the frame: head size, head centre, body lean and mirror."""

    r_head: float  # the face's half-width in frame units
    cx: float
    cy: float
    lean: float  # radians
    flip: float  # 1 or -1 (mirrored)

    def to_frame(self, p: np.ndarray) -> np.ndarray:
        """Head units -> frame units (0..1, y down)."""
        c, s = math.cos(self.lean), math.sin(self.lean)
        x, y = p[:, 0] * self.flip, p[:, 1]
        return np.stack([self.cx + self.r_head * (c * x - s * y), self.cy + self.r_head * (s * x + c * y)], 1)


def random_placement(rng: Rng) -> Placement:
    r_head = rng.u(0.15, 0.2)
    cx = 0.5 + rng.u(-0.07, 0.07)
    cy = 0.05 + 1.35 * r_head + rng.u(0.0, 0.04)
    lean = math.radians(rng.u(-6, 6))
    return Placement(r_head=r_head, cx=cx, cy=cy, lean=lean, flip=rng.sign())


def random_light(rng: Rng) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float] | None]:
    """(cast shadow offset, form shadow offset, background gradient direction or None), see Character."""
    light = math.radians(rng.u(-150, -30))  # direction towards the light: mostly from above
    lx, ly = math.cos(light), math.sin(light)
    d_cast, d_form = rng.u(0.025, 0.05), rng.u(0.005, 0.02)
    gradient = None
    if rng.chance(0.5):
        g = math.radians(rng.u(0, 360))
        gradient = (math.cos(g), math.sin(g))
    return (lx * d_cast, ly * d_cast), (lx * d_form, ly * d_form), gradient
