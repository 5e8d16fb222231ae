"""Synthetic animation: one character moving over a sequence of frames, for measuring keyframe colouring.

Frame t of character seed s is the same drawing as `random_character(s)` (frame 0 is exactly it) with a
smooth, seeded motion applied before placing it in the frame: the figure translates, drifts and scales, the
head tilts, each arm swings about its shoulder (crossing the top and hiding parts of it, or uncovering them),
the side locks and twin tails swing about their roots and the back hair sways. The palette is the
character's for every frame, so a part keeps its colour from frame to frame, as on a model sheet.

The motion has its own random stream (key "irodori-synth-motion-{seed}"), so adding frames never changes a
character or a still data set."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.synth.base import Character, Rng, check_seed
from training.synth.character import Placement, check_shapes, draw_figure, random_light, random_placement
from training.synth.figure import Builder, random_figure
from training.synth.geometry import rotate

MAX_FRAMES = 1000


@dataclass(frozen=True)
class Motion:
    """Amplitudes (frame units, scale factors, radians) and phases of a sinusoidal motion of `period` frames,
    plus a steady drift; `at(0)` is no motion at all."""

    period: float
    shift: tuple[float, float]
    drift: tuple[float, float]
    zoom: float
    tilt: float
    arms: tuple[float, float]
    hair: float
    phases: tuple[float, ...]

    def wave(self, t: int, k: int) -> float:
        """sin(2 pi t / period + phase k) - sin(phase k): 0 at frame 0."""
        p = self.phases[k]
        return math.sin(2 * math.pi * t / self.period + p) - math.sin(p)

    def at(self, t: int) -> dict[str, float]:
        return {"dx": self.shift[0] * self.wave(t, 0) + self.drift[0] * t,
                "dy": self.shift[1] * self.wave(t, 1) + self.drift[1] * t,
                "zoom": 1.0 + self.zoom * self.wave(t, 2), "tilt": self.tilt * self.wave(t, 3),
                "arm-1": self.arms[0] * self.wave(t, 4), "arm+1": self.arms[1] * self.wave(t, 5),
                "hair": self.hair * self.wave(t, 6)}


def random_motion(seed: int) -> Motion:
    """An animator's idle or gesture loop: a period of 16..28 frames, arm swings of 10..30 degrees."""
    rng = Rng(f"irodori-synth-motion-{check_seed(seed)}")
    return Motion(period=rng.u(16, 28), shift=(rng.u(0.01, 0.04), rng.u(0.005, 0.02)),
                  drift=(rng.u(-0.003, 0.003), rng.u(-0.002, 0.002)), zoom=rng.u(0.02, 0.06),
                  tilt=math.radians(rng.u(2, 6)), arms=(math.radians(rng.u(10, 30)), math.radians(rng.u(10, 30))),
                  hair=math.radians(rng.u(4, 10)), phases=tuple(rng.u(0, 2 * math.pi) for _ in range(7)))


def _swing(pts: np.ndarray, angle: float) -> np.ndarray:
    """Rotate a hanging shape (a lock, a tail) about its root: its topmost point."""
    root = pts[np.argmin(pts[:, 1])]
    return rotate(pts, angle, float(root[0]), float(root[1]))


def _sway(pts: np.ndarray, angle: float) -> np.ndarray:
    """Shear the back hair below the ears sideways, more towards its ends."""
    out = pts.copy()
    out[:, 0] += math.sin(angle) * np.maximum(out[:, 1] - 0.5, 0.0)
    return out


def character_frames(seed: int, frames: int) -> list[Character]:
    """`frames` Characters of one moving figure (module doc); the drawing and its light are `seed`'s."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be an int in 1..{MAX_FRAMES}, got {frames!r}")
    rng = Rng(f"irodori-synth-character-{check_seed(seed)}")  # the same stream as random_character(seed)
    fig = random_figure(rng)
    b = Builder(tilt=fig.tilt)
    steps: dict[str, list[range]] = {}
    draw_figure(b, rng, fig, steps)
    place = random_placement(rng)
    light = random_light(rng)
    motion = random_motion(seed)
    joints = {f"arm{side:+d}": (side * (fig.shoulder_w - 0.24), fig.shoulder_y + 0.3) for side in (-1, 1)}
    swinging = [i for r in steps.get("side_locks", []) for i in r] + [i for r in steps["back_hair"] for i in r][1:]
    out = []
    for t in range(frames):
        m = motion.at(t)
        moved = list(b.items)
        for name, (jx, jy) in joints.items():
            if m[name] == 0.0:  # frame 0: the still character, bit for bit
                continue
            side = 1.0 if name.endswith("+1") else -1.0
            for i in (i for r in steps[name] for i in r):
                item = moved[i]
                moved[i] = (item[0], rotate(item[1], side * m[name], jx, jy), *item[2:])
        if m["hair"] != 0.0:
            for i in swinging:
                item = moved[i]
                moved[i] = (item[0], _swing(item[1], m["hair"]), *item[2:])
            first = steps["back_hair"][0].start
            moved[first] = (moved[first][0], _sway(moved[first][1], m["hair"]), *moved[first][2:])
        fb = Builder(tilt=fig.tilt + m["tilt"])
        fb.items = moved
        p = Placement(r_head=place.r_head * m["zoom"], cx=place.cx + m["dx"], cy=place.cy + m["dy"],
                      lean=place.lean, flip=place.flip)
        out.append(Character(seed, check_shapes(fb.shapes(p.to_frame)), *light))
    return out
