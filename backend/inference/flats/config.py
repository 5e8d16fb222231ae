"""The flats' settings and the input checks every public function of the package shares."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PIXELS = 8192 * 8192  # ~64 Mpx: the whole pipeline then needs a few GB; refuse anything larger
MAX_GAP = 64  # px; the balls cost a distance transform and a labelling per radius, and a big ball eats detail


@dataclass(frozen=True)
class FlatsConfig:
    """None means "measured on the picture": the ink's threshold from its paper and strokes, the gap from
    the picture's size and line width (see lines.py and regions.py)."""

    line_threshold: int | None = None  # grey values below this are ink (0 = black ink, 255 = paper)
    gap: int | None = None  # largest gap in the lines (px) closed in areas wide enough for the ball
    min_region: int = 16  # regions with fewer pixels than this always merge into a neighbour

    def __post_init__(self):
        for name in ("line_threshold", "gap", "min_region"):
            value = getattr(self, name)
            if value is None and name != "min_region":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int{' or None' if name != 'min_region' else ''}, got {value!r}")
        if self.line_threshold is not None and not 1 <= self.line_threshold <= 255:
            raise ValueError(f"line_threshold must be in 1..255, got {self.line_threshold}")
        if self.gap is not None and not 0 <= self.gap <= MAX_GAP:
            raise ValueError(f"gap must be in 0..{MAX_GAP} px, got {self.gap}")
        if not 0 <= self.min_region <= 1_000_000:
            raise ValueError(f"min_region must be in 0..1000000 px, got {self.min_region}")


LINE_CHANNELS = (2, 3, 4)  # line art may also be LA, RGB or RGBA (ink on transparent: see lines.py)


def check_image(a: np.ndarray, name: str, channels: int | None, line: bool = False) -> None:
    """(H, W) when channels is None, else (H, W, channels); `line`: (H, W) or (H, W, 2|3|4). Not empty, not
    over MAX_PIXELS."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if line:
        ok, shape = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in LINE_CHANNELS), "(H, W) or (H, W, 2|3|4)"
    elif channels is None:
        ok, shape = a.ndim == 2, "(H, W)"
    else:
        ok, shape = a.ndim == 3 and a.shape[2] == channels, f"(H, W, {channels})"
    if not ok:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ValueError(f"{name} is {a.shape[1]}x{a.shape[0]}, more than {MAX_PIXELS} pixels; "
                         "downscale it or split the canvas")


def check_uint8(a: np.ndarray, name: str) -> None:
    if a.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 (0..255), got {a.dtype}; convert with np.clip(...).astype(np.uint8)")
