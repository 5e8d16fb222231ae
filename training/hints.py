"""Colour hints drawn from the ground truth, as Zhang et al. 2017 ("Real-time user-guided image
colorization with learned deep priors") train them: often none, else a Geometric number of small square
patches at random places, each painted with its patch's mean true colour. The model learns both to obey a
hint and to spread it over the part it falls in."""
from __future__ import annotations

import numpy as np


def sample_hints(color: np.ndarray, rng: np.random.Generator, empty: float, p: float) -> np.ndarray:
    """(H,W,3) float RGB in [0,1] -> (4,H,W) float32: hint RGB (0 where none) and the hint mask."""
    h, w = color.shape[:2]
    out = np.zeros((4, h, w), np.float32)
    if rng.random() < empty:
        return out
    largest = max(1, min(h, w) // 28)  # Zhang et al.: 1-9 px patches on 256 px pictures
    for _ in range(min(int(rng.geometric(p)), 64)):
        side = int(rng.integers(1, largest + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = (slice(top, top + side), slice(left, left + side))
        out[:3, patch[0], patch[1]] = color[patch].reshape(-1, 3).mean(0)[:, None, None]
        out[3, patch[0], patch[1]] = 1.0
    return out
