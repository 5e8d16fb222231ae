"""Drawing primitives: shapes as (N, 2) float arrays of points, in whatever units the caller draws in.

Every function here is plain arithmetic (no randomness), so a character's geometry depends only on the numbers
its steps draw."""
from __future__ import annotations

import math

import numpy as np


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, rot: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def spline(points, n: int = 6, closed: bool = False) -> np.ndarray:
    """Catmull-Rom curve through the points (smooth hair, faces, cloth)."""
    p = np.asarray(points, float)
    if closed:
        p = np.vstack([p[-1], p, p[0], p[1]])
    else:
        p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    p0, p1, p2, p3 = p[:-3, None], p[1:-2, None], p[2:-1, None], p[3:, None]
    seg = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    out = seg.reshape(-1, 2)
    return out if closed else np.vstack([out, p[-2]])


def bezier(p0, p1, p2, n: int = 6) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(q, float) for q in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def ribbon(path: np.ndarray, widths) -> np.ndarray:
    """A polygon around a path with a width per point (tapered strands, lashes, brows)."""
    path = np.asarray(path, float)
    w = np.broadcast_to(np.asarray(widths, float), (len(path),))[:, None] / 2
    d = np.gradient(path, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1)
    return np.vstack([path + nrm * w, (path - nrm * w)[::-1]])


def capsule(a, b, width: float, n: int = 8) -> np.ndarray:
    """A limb: a bar from a to b with round ends."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    r = width / 2
    end_b = arc(b[0], b[1], r, r, ang - math.pi / 2, ang + math.pi / 2, n)
    end_a = arc(a[0], a[1], r, r, ang + math.pi / 2, ang + 3 * math.pi / 2, n)
    return np.vstack([end_b, end_a])


def rotate(points: np.ndarray, angle: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[:, 0] - cx, points[:, 1] - cy
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def mirror(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, 1.0])
