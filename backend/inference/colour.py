"""Colour science, in one place: sRGB <-> CIE Lab (D65) and the CIEDE2000 difference.

Flats take each region's median in Lab (a perceptual space, so the median of a region's colours looks like
its typical colour) and the evaluation measures colour error in Lab; both must mean the same Lab. Two
forward conversions share the constants: `rgb_to_lab` (float64, any shape) for measuring, and
`rgb_to_lab_planes` (float32, a lookup table for the sRGB curve) for the million-pixel inputs of fill().
"""
from __future__ import annotations

import numpy as np

_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_SRGB = np.linalg.inv(_SRGB_TO_XYZ)
_D65 = _SRGB_TO_XYZ.sum(axis=1)  # D65 white as the matrix maps RGB white: greys get a* = b* = 0 exactly
_EPS = 216 / 24389  # CIE constants, exact rational forms: (6/29)^3 and (29/3)^3
_KAPPA = 24389 / 27


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIELAB float64 (..., 3), D65 white."""
    lin = _srgb_to_linear(np.asarray(rgb, dtype=np.float64) / 255.0)
    xyz = lin @ _SRGB_TO_XYZ.T / _D65
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> sRGB uint8 (..., 3); out-of-gamut colours are clipped."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA) * _D65
    lin = np.clip(xyz @ _XYZ_TO_SRGB.T, 0.0, 1.0)
    c = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(c * 255.0 + 0.5, 0, 255).astype(np.uint8)


_LINEAR = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)  # uint8 sRGB -> linear, as a table
_XYZ_TO_F = (_SRGB_TO_XYZ / _D65[:, None]).astype(np.float32)  # linear RGB -> X/Xn, Y/Yn, Z/Zn


def rgb_to_lab_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) uint8 sRGB -> L, a, b float32 (N,) arrays: the fast path for fill()'s many voters.

    Written as elementwise ops on small chunks rather than a (N, 3) @ (3, 3) matmul: BLAS threads gain
    nothing on a 3-wide product and stall when other processes share the cores.
    """
    r, g, b = _LINEAR[rgb[:, 0]], _LINEAR[rgb[:, 1]], _LINEAR[rgb[:, 2]]  # contiguous channels
    f = []
    for m in _XYZ_TO_F:
        t = m[0] * r
        t += m[1] * g
        t += m[2] * b
        ft = np.cbrt(t)
        dark = t <= _EPS  # the linear toe of the Lab curve; rare, so patch it instead of np.where everywhere
        if dark.any():
            ft[dark] = t[dark] / (3 * (6 / 29) ** 2) + 4 / 29
        f.append(ft)
    fx, fy, fz = f
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005; kL = kC = kH = 1), vectorised over (..., 3)."""
    lab1, lab2 = np.broadcast_arrays(np.asarray(lab1, np.float64), np.asarray(lab2, np.float64))
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c7 / (c7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360  # arctan2(0, 0) = 0, as the formula asks
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    chroma0 = (c1p * c2p) == 0

    dlp = L2 - L1
    dcp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma0, 0.0, dh)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)

    lbar = (L1 + L2) / 2
    cbar = (c1p + c2p) / 2
    hsum = h1p + h2p
    hbar = np.where(np.abs(h1p - h2p) <= 180, hsum / 2, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    hbar = np.where(chroma0, hsum, hbar)

    t = (1 - 0.17 * np.cos(np.radians(hbar - 30)) + 0.24 * np.cos(np.radians(2 * hbar))
         + 0.32 * np.cos(np.radians(3 * hbar + 6)) - 0.20 * np.cos(np.radians(4 * hbar - 63)))
    dtheta = 30 * np.exp(-(((hbar - 275) / 25) ** 2))
    cbar7 = cbar ** 7
    rc = 2 * np.sqrt(cbar7 / (cbar7 + 25.0 ** 7))
    sl = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    sc = 1 + 0.045 * cbar
    sh = 1 + 0.015 * cbar * t
    rt = -np.sin(np.radians(2 * dtheta)) * rc
    dl, dc, dhh = dlp / sl, dcp / sc, dHp / sh
    return np.sqrt(np.maximum(dl ** 2 + dc ** 2 + dhh ** 2 + rt * dc * dhh, 0.0))
