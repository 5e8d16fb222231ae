"""The synthetic data's vocabulary: part labels, palettes, shapes, characters, renders, seeds and the one
random stream every drawing step takes its numbers from."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

PARTS: tuple[str, ...] = ("background", "hair", "skin", "eyes", "mouth", "top", "bottom", "collar", "accessory")
BG, HAIR, SKIN, EYES, MOUTH, TOP, BOTTOM, COLLAR, ACCESSORY = range(len(PARTS))
BASE, SHADOW, HIGHLIGHT = 0, 1, 2  # tone index, see part_tones()

SEED_STRIDE = 1_000_003
MIN_SIZE, MAX_SIZE = 16, 2048
MAX_SEED = 2**62


def check_size(size: int) -> int:
    """A render side in pixels, refused with a clear error outside MIN_SIZE..MAX_SIZE."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an int in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    return size


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


class Rng:
    """Random numbers for one seed. Only Random.random() is guaranteed stable across Python versions, so
    everything is built on it alone."""

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


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if abs(seed) > MAX_SEED:
        raise ValueError(f"seed must be within +-2**62, got {seed}")
    return seed


def item_seed(dataset_seed: int, index: int) -> int:
    """Character and palette seed of item `index` in a data set made with `dataset_seed`."""
    return check_seed(dataset_seed * SEED_STRIDE + index)

