"""Matching a frame's regions to a keyframe's: a cost per (frame region, keyframe region) pair, solved as an
assignment problem (scipy's linear_sum_assignment, the Hungarian method's modern form).

The cost adds, each scaled so that about 1 means "clearly not the same region":
- position: the distance between the region's centre and the keyframe region's centre carried into the
  frame by a scale and shift (first from the ink's centre and spread, then fitted to the matched pairs),
  relative to the figure's size;
- size and shape: log ratios of area and of the two axes (after that scale), the axis direction for
  elongated regions, and whether the region touches the canvas's edge;
- overlap: 1 - the Dice overlap of the region with the keyframe region laid over the frame by that scale
  and shift (near frames overlap most);
- neighbours: 1 - the overlap of the colours around the region (by the previous pass's matches) with the
  colours around the keyframe region: a skin region between hair and collar is not the one by the sleeve;
- optionally the model's colour for the region against the keyframe region's colour.

Position is tried two ways: against the figure's scale and shift, and against where the region's
neighbours moved (local_shift: an arm, a lock of hair); regions cut by the canvas's edge are also compared
in the canvas's own frame (the background moves with the canvas, not the figure).

Assignment (assign): one-to-one first; the regions left over are paired with the keyframe regions nobody
took, or taken as a PART of a keyframe region (a region split by a moving arm, a gap closed in one frame and
not the other) at SECOND_USE more. A part left over that borders only matches of its own keyframe region (a
new shape drawn inside it) has no counterpart. Confidence = 1 - cost / UNSURE_COST; the caller marks the
regions under its threshold unsure."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from .regions import Regions

W_POSITION = 1 / 0.2  # a centre a fifth of the figure's size away costs 1
W_AREA = 0.5  # per e-fold of area
W_AXES = 0.4  # per e-fold of each axis
W_ANGLE = 0.4  # per radian, times how elongated both regions are
W_EDGE = 0.4
W_OVERLAP = 1.0
W_CONTEXT = 1.0
W_MODEL = 1 / 60  # per RGB unit of distance (Euclidean) between the model's colour and the keyframe's
SECOND_USE = 0.6  # the extra cost of a keyframe region's second, third... match
UNSURE_COST = 2.5  # above this a region has no good counterpart
PASSES = 3
MAX_REGIONS = 20_000  # per side: the cost matrix is K x K floats


@dataclass(frozen=True)
class Assignment:
    """match[i]: the keyframe region of frame region i (0: none); cost[i]; confidence[i] in [0, 1]
    (1 - cost / UNSURE_COST); index 0 unused."""

    match: np.ndarray
    cost: np.ndarray
    confidence: np.ndarray


def fit_scale_shift(src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares s, t with dst ~ s * src + t (weighted)."""
    w = weight / weight.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    var = float(w @ (a * a).sum(1))
    s = float(w @ (a * b).sum(1)) / var if var > 0 else 1.0
    return s, md - s * ms


def _overlap(frame: Regions, key: Regions, s: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Kf+1, Kk+1) Dice overlap of frame regions with keyframe regions carried by (s, t), and the share of
    each frame region the keyframe region covers; on the frame's grid."""
    g = frame.grid
    kf, kk = frame.count, key.count
    src = key.grid.astype(np.uint16) if kk < 65535 else key.grid.astype(np.float32)
    f = frame.stride / (s * key.stride)
    m = np.array([[f, 0, -t[0] / (s * key.stride)], [0, f, -t[1] / (s * key.stride)]], np.float64)
    warped = cv2.warpAffine(src, m, (g.shape[1], g.shape[0]), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    codes = g.astype(np.int64).ravel() * (kk + 1) + warped.astype(np.int64).ravel()
    size = (kf + 1) * (kk + 1)
    if size <= 1 << 23:
        joint = np.bincount(codes, minlength=size).reshape(kf + 1, kk + 1).astype(np.float64)
    else:  # many regions: only the pairs that occur
        uniq, counts = np.unique(codes, return_counts=True)
        joint = np.zeros((kf + 1, kk + 1), np.float64)
        joint[uniq // (kk + 1), uniq % (kk + 1)] = counts
    a = joint.sum(1, keepdims=True)
    b = joint.sum(0, keepdims=True)
    return 2 * joint / np.maximum(a + b, 1), joint / np.maximum(a, 1)


def _context(regions: Regions, cls: np.ndarray, n_cls: int) -> np.ndarray:
    """(K+1, n_cls): the share of each region's border shared with regions of each colour class."""
    h = np.zeros((regions.count + 1, n_cls), np.float64)
    a, b = regions.pairs[:, 0], regions.pairs[:, 1]
    np.add.at(h, (a, cls[b]), regions.border)
    return h / np.maximum(h.sum(1, keepdims=True), 1e-9)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(2))


def local_shift(frame: Regions, key: Regions, s: float, t: np.ndarray, match: np.ndarray,
                cost: np.ndarray) -> np.ndarray:
    """(Kf+1, 2): how far each region's confidently matched neighbours moved beyond the global scale and
    shift (an arm swinging, hair swaying), weighted by the border they share: where the region itself is
    expected to have moved too."""
    moved = np.zeros((frame.count + 1, 2))
    moved[1:] = frame.centre[1:] - (key.centre[1:][match] * s + t)
    sure = np.zeros(frame.count + 1)
    sure[1:] = cost < UNSURE_COST / 2
    a, b = frame.pairs[:, 0], frame.pairs[:, 1]
    w = frame.border * sure[b]
    total = np.bincount(a, weights=w, minlength=frame.count + 1)
    out = np.stack([np.bincount(a, weights=w * moved[b, k], minlength=frame.count + 1) for k in range(2)], 1)
    return out / np.maximum(total, 1e-9)[:, None]


def costs(frame: Regions, key: Regions, s: float, t: np.ndarray, context: tuple | None = None,
          model: tuple[np.ndarray, np.ndarray] | None = None,
          shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Kf, Kk) costs of frame region i+1 being keyframe region j+1 (module doc), and of it being a PART of
    keyframe region j+1 (a region split by a moving arm, a gap closed in one frame and not in the other):
    there size and shape do not count, position counts beyond the keyframe region's own extent and overlap
    counts as the share of the frame region it covers. shift: local_shift(), a second guess at where each
    region's counterpart went (the position terms take the nearer guess)."""
    fc, kc = frame.centre[1:], key.centre[1:] * s + t
    d = _distance(fc, kc)
    if shift is not None:
        d = np.minimum(d, _distance(fc - shift[1:], kc))
    beyond = np.maximum(d - 2 * s * key.axes[None, 1:, 0], 0) / frame.scale
    d /= frame.scale
    c = W_POSITION * d
    fa, ka = np.log(frame.area[1:] + 1), np.log(key.area[1:] * s * s + 1)
    c += W_AREA * np.abs(fa[:, None] - ka[None, :])
    for i in range(2):
        c += W_AXES * np.abs(np.log(frame.axes[1:, i])[:, None] - np.log(key.axes[1:, i] * s)[None, :])
    fe = 1 - frame.axes[1:, 1] / frame.axes[1:, 0]
    ke = 1 - key.axes[1:, 1] / key.axes[1:, 0]
    da = np.abs(frame.angle[1:, None] - key.angle[None, 1:])
    da = np.minimum(da, np.pi - da)
    c += W_ANGLE * da * np.sqrt(fe[:, None] * ke[None, :])
    common = W_EDGE * (frame.edge[1:, None] != key.edge[None, 1:])
    dice, cover = _overlap(frame, key, s, t)
    if context is not None:
        fh, kh = context
        shared = np.zeros_like(c)
        for k in range(fh.shape[1]):
            shared += np.minimum(fh[1:, k, None], kh[None, 1:, k])
        common += W_CONTEXT * (1 - shared)
    if model is not None:
        frame_rgb, key_rgb = (m[1:].astype(np.float64) for m in model)
        common += W_MODEL * np.sqrt(((frame_rgb[:, None, :] - key_rgb[None, :, :]) ** 2).sum(2))
    whole = c + common + W_OVERLAP * (1 - dice[1:, 1:])
    part = W_POSITION * beyond + common + W_OVERLAP * (1 - cover[1:, 1:])
    return whole, part


def assign(whole: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each frame region's keyframe region (0-based), its cost, and whether it is a second match of its
    keyframe region. One-to-one first, where it pays (regions costlier than UNSURE_COST left out); then the
    regions left over and the keyframe regions nobody took are paired once more (an arm that swung far
    still has its own counterpart), unless the region is cheaper as a part of a taken keyframe region
    (at SECOND_USE more)."""
    kf, kk = whole.shape
    rows, cols = linear_sum_assignment(np.hstack([whole, np.full((kf, kf), UNSURE_COST)]))
    match = np.full(kf, -1, np.int64)
    ok = cols < kk
    match[rows[ok]] = cols[ok]
    cost = np.zeros(kf)
    cost[rows[ok]] = whole[rows[ok], cols[ok]]
    left = np.flatnonzero(match < 0)
    either = np.minimum(whole[left], part[left])
    best = np.argmin(either, 1)
    as_part = either[np.arange(len(left)), best] + SECOND_USE
    free = np.setdiff1d(np.arange(kk), match[match >= 0])
    second = np.zeros(kf, bool)
    if len(left) and len(free):
        dummy = np.full((len(left), len(left)), np.inf)
        np.fill_diagonal(dummy, as_part)
        r2, c2 = linear_sum_assignment(np.hstack([whole[np.ix_(left, free)], dummy]))
        own = c2 < len(free)
        match[left[r2[own]]] = free[c2[own]]
        cost[left[r2[own]]] = whole[left[r2[own]], free[c2[own]]]
        left, best, as_part = left[r2[~own]], best[r2[~own]], as_part[r2[~own]]
    match[left] = best
    cost[left] = as_part
    second[left] = True
    return match, cost, second


def match_regions(frame: Regions, key: Regions, key_class: np.ndarray,
                  model: tuple[np.ndarray, np.ndarray] | None = None) -> Assignment:
    """Frame regions -> keyframe regions (module doc). key_class: (Kk+1,) int, a colour class per keyframe
    region (regions of one colour share a class), for the neighbour term."""
    if max(frame.count, key.count) > MAX_REGIONS:
        raise ValueError(f"too many regions to match ({frame.count} in the frame, {key.count} in the keyframe; "
                         f"at most {MAX_REGIONS}): the line art is too noisy or too large; clean or split it")
    n_cls = int(key_class.max()) + 1
    key_context = _context(key, key_class, n_cls)
    # Regions cut by the canvas's edge (the background, most of all) move with the canvas, not the figure:
    # for those pairs the canvas's own frame of reference (scale by the canvas's size, no shift) is tried too.
    edges = np.ix_(frame.edge[1:], key.edge[1:])
    canvas = (frame.shape[1] / key.shape[1], np.zeros(2))

    def solve(s: float, t: np.ndarray, context=None, shift=None):
        whole, part = costs(frame, key, s, t, context, model, shift)
        if edges[0].size and edges[1].size:
            for mine, other in zip((whole, part), costs(frame, key, *canvas, context, model)):
                mine[edges] = np.minimum(mine[edges], other[edges])
        return assign(whole, part)

    # Two first guesses at the scale and shift: the ink's centre and spread (a figure moved on the canvas),
    # and none at all (frames drawn in register; new ink, such as a prop, does not pull this one). The one
    # whose matches cost less goes on; each pass refits it to the confident matches of the figure itself.
    guesses = [(frame.scale / key.scale, frame.origin - frame.scale / key.scale * key.origin), canvas]
    tried = [(solve(*g), g) for g in guesses]
    (match, cost, leftover), (s, t) = min(tried, key=lambda r: float(np.minimum(r[0][1], UNSURE_COST).sum()))
    for _ in range(PASSES - 1):
        good = (cost < UNSURE_COST / 2) & ~frame.edge[1:]  # the figure's own regions, not the canvas's
        if good.sum() >= 3:
            src, dst = key.centre[1:][match[good]], frame.centre[1:][good]
            w = np.sqrt(frame.area[1:][good])
            s2, t2 = fit_scale_shift(src, dst, w)
            residual = np.sqrt(((dst - (src * s2 + t2)) ** 2).sum(1))
            keep = residual <= 2 * np.median(residual) + 1.0  # once more without the outliers (a moving arm)
            if keep.sum() >= 3:
                s2, t2 = fit_scale_shift(src[keep], dst[keep], w[keep])
            if 0.2 < s2 / s < 5:
                s, t = s2, t2
        cls = np.zeros(frame.count + 1, np.int64)
        cls[1:] = key_class[match + 1]
        match, cost, leftover = solve(s, t, (_context(frame, cls, n_cls), key_context),
                                      local_shift(frame, key, s, t, match, cost))
    out = np.zeros(frame.count + 1, np.int64)
    out[1:] = match + 1
    # A piece of a split region borders what split it: a region matched to something else. A region left
    # over that borders only its own keyframe region's matches (a new shape drawn inside it) is new.
    left = np.zeros(frame.count + 1, bool)
    left[1:] = leftover
    a, b = frame.pairs[:, 0], frame.pairs[:, 1]
    split_by = left[a] & ~left[b] & (out[a] != out[b]) & (b > 0)
    supported = np.bincount(a[split_by], minlength=frame.count + 1) > 0
    cost = np.where(leftover & ~supported[1:], np.maximum(cost, UNSURE_COST), cost)
    full_cost = np.zeros(frame.count + 1)
    full_cost[1:] = cost
    confidence = np.clip(1 - full_cost / UNSURE_COST, 0, 1)
    confidence[0] = 0
    return Assignment(match=out, cost=full_cost, confidence=confidence)
