"""Image metrics shared by the evaluations (synthetic characters and real pictures): PSNR, SSIM on luma, and
the flattened picture (colour x line art) that both compare."""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

PSNR_CAP = 100.0  # dB for identical images (instead of infinity)


def psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR in dB over all channels, peak 255; identical images give `cap` instead of infinity."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if mse == 0:
        return cap
    return min(cap, 10 * math.log10(255.0 ** 2 / mse))


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma (0.299 R + 0.587 G + 0.114 B) as float64; a 2-D image is taken as luma already."""
    x = np.asarray(rgb, np.float64)
    if x.ndim == 2:
        return x
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004) on luma with a Gaussian window (sigma 1.5, 11x11)."""
    x, y = luma(a), luma(b)
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs equal shapes, got {x.shape} and {y.shape}")
    radius = int(3.5 * sigma + 0.5)  # 5 for sigma 1.5: the classic 11x11 window
    if min(x.shape) < 2 * radius + 1:
        raise ValueError(f"SSIM needs images of at least {2 * radius + 1} px a side, got {x.shape}")

    def blur(z: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(z, sigma, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[radius:-radius, radius:-radius].mean())


def flatten(colour: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Colour multiplied by the line art (the picture a user sees), uint8 RGB."""
    out = colour.astype(np.float32) * (line.astype(np.float32)[..., None] / 255.0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
