"""Whole-canvas operations on region labels: connected components, sizes, nearest-label fill and the
merging of small pieces into their neighbours. Vectorised (OpenCV and numpy), no Python loop over pixels."""
from __future__ import annotations

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components


def components(mask: np.ndarray, compact: bool = False) -> tuple[int, np.ndarray]:
    """4-connected components of a bool mask: (count, int32 labels 0..count with 0 = outside the mask).

    OpenCV's labelling (Spaghetti/SAUF decision trees) is several times faster than scipy.ndimage.label on
    large canvases; both give the same partition. `compact`: uint16 labels where they fit (half the memory
    to write and read on a full canvas); OpenCV raises when its provisional labels overflow 16 bits, and
    the labelling is then done again in 32 bits."""
    if compact:
        try:
            n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_16U)
            return n - 1, labels
        except cv2.error:
            pass
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return n - 1, labels


def label_counts(labels: np.ndarray) -> np.ndarray:
    """Pixels per label (int64, index = label). OpenCV's histogram of the labels as uint16 is faster than
    np.bincount (which first widens millions of int32 labels to int64); its float32 counts are exact up to
    2^24, plenty for the small-region test they serve. More than 65,535 labels: np.bincount."""
    n = int(labels.max()) + 1
    if n > 1 << 16:
        return np.bincount(labels.ravel(), minlength=n)
    hist = cv2.calcHist([labels.astype(np.uint16, copy=False)], [0], None, [n], [0, n])
    return hist.ravel().astype(np.int64)


def _nearest(known: np.ndarray, labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The label of the nearest `known` pixel (chessboard distance) for the pixels at flat indices `where`.

    OpenCV's distance transform with DIST_LABEL_PIXEL numbers the known pixels 1..n in raster order and
    gives every pixel the number of its nearest one: one pass in C, no (2, H, W) index arrays."""
    _, nearest = cv2.distanceTransformWithLabels((~known).view(np.uint8), cv2.DIST_C, 3,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    lut = labels[known]  # the known pixels' labels in raster order: lut[i - 1] is known pixel number i
    return np.take(lut, np.take(nearest, where) - 1)  # np.take: faster than fancy indexing here


PROPAGATE_STEPS = 32  # growth steps of fill_nearest before the distance transform takes what is left


def fill_nearest(labels: np.ndarray, known: np.ndarray, unknown: np.ndarray) -> None:
    """Give every `unknown` pixel the label of its nearest `known` pixel (chessboard distance), in place.

    The unknown pixels are the lines and thin rims beside them, nearly all within a few px of a known
    pixel, so the known labels grow one pixel per step (a pixel keeps the first label that reaches it, the
    largest when several arrive in the same step): OpenCV's 3x3 dilation of 16-bit labels over the whole
    canvas while many pixels are left, then only at the few left (8 gathers each). Faster than OpenCV's
    labelled distance transform (docs/performance.md), which stays for more than 65,535 labels and for
    what is left after PROPAGATE_STEPS, or as soon as the steps stop shrinking what is left (a solid black
    area: growing it a pixel at a time would take hundreds)."""
    if labels.dtype == np.uint16:
        H, W = labels.shape
        grown = labels * known  # the known pixels' labels, 0 elsewhere
        kernel = np.ones((3, 3), np.uint8)
        steps, before = 0, grown.size
        while steps < PROPAGATE_STEPS:
            empty = cv2.compare(grown, 0, cv2.CMP_EQ)
            left = cv2.countNonZero(empty)
            if left <= grown.size // 128:
                break
            if steps >= 3 and left > 0.9 * before:  # far from everything (a solid black area): stop growing
                steps = PROPAGATE_STEPS
                break
            cv2.copyTo(cv2.dilate(grown, kernel), empty, grown)
            steps, before = steps + 1, left
        flat = grown.ravel()
        where = np.flatnonzero(flat == 0)
        while where.size and steps < PROPAGATE_STEPS:  # the same steps at the pixels left only
            y, x = np.divmod(where, W)
            best = np.zeros(where.size, np.uint16)
            for dy in (-1, 0, 1):
                row = np.clip(y + dy, 0, H - 1) * W  # clipped neighbours are real neighbours or the pixel
                for dx in (-1, 0, 1):
                    if dy or dx:
                        np.maximum(best, np.take(flat, row + np.clip(x + dx, 0, W - 1)), out=best)
            flat[where] = best
            where = where[best == 0]
            steps += 1
        cv2.copyTo(grown, unknown.view(np.uint8), labels)
        if not where.size:
            return
        unknown = labels == 0
    where = np.flatnonzero(unknown)
    np.put(labels, where, _nearest(known, labels, where))


MERGE_ROUNDS = 16  # a small piece merged into a small piece goes on merging
FAINT_STEP = 32  # lines whose darkness differs by less than this count as equally faint
INKED_SHARE = 0.5  # a border is a line where this share of it has ink on a side (else it is a closed gap)
FAINT_SHARE = 0.7  # a thin region merges only across a line this much fainter than its darkest border
# (and than a wide neighbour's outline) ...
PIECE_WIDTHS = 2.0  # ... where that neighbour is wider than this many thin widths (narrower: broken hatching)
HATCH_BORDER = 0.5  # two larger groups merge across a line under this share of each one's border ...
BAND_SHARE = 0.5  # ... and at most this share as dark as the rest of their lines, on average
FAINT_SPREAD, FAINT_SLACK = 1.1, 4  # ... and about as faint as its faintest: up to 1.1 x that + 4
OUTLINE_LENGTH = 4.0  # a group's outline: its darkest border this many thin widths long or more (short ones are noise)


def _borders(labels: np.ndarray, involved: np.ndarray, ink_dark: np.ndarray) -> tuple[np.ndarray, ...]:
    """(a, b, length, inked, darkness): the label pairs a < b that touch (4-neighbours), at least one of
    them `involved`; the number of pixel edges between them, how many of those have ink on a side
    (ink_dark > 0: the rest cross a closed gap), and the sum of the darker side's darkness over those."""
    H, W = labels.shape
    flat, dark = labels.ravel(), ink_dark.ravel()
    every = bool(involved.all())
    first, second = [], []
    for right, left, step, across in ((labels[:, 1:], labels[:, :-1], 1, True), (labels[1:], labels[:-1], W, False)):
        if not right.size:
            continue
        # OpenCV's comparison of the two shifted views (uint16 or int32 labels, as segment() has them) is
        # several times faster than numpy's; its 255s become a proper bool mask.
        k = np.flatnonzero(cv2.bitwise_and(cv2.compare(right, left, cv2.CMP_NE), 1).view(bool))
        p = k + k // (W - 1) if across else k  # the flat index of the pair's first pixel
        if not every:
            p = p[np.take(involved, np.take(flat, p)) | np.take(involved, np.take(flat, p + step))]
        first.append(p)
        second.append(p + step)
    p, q = np.concatenate(first), np.concatenate(second)
    la, lb = np.take(flat, p), np.take(flat, q)
    n = len(involved)
    key_type = np.uint32 if n * n < 1 << 32 else np.uint64
    key = np.minimum(la, lb).astype(key_type) * key_type(n) + np.maximum(la, lb)
    # One sort of (pair, darkness) packed in 64 bits (pairs < n^2 <= 2^52, as n <= MAX_PIXELS) gives every
    # pair's run of pixel edges; faster than np.unique's argsort and three weighted counts.
    packed = (key.astype(np.uint64) << np.uint64(8)) | np.maximum(np.take(dark, p), np.take(dark, q))
    packed.sort()
    if not len(packed):  # one region: no borders
        none = np.zeros(0, np.int64)
        return none, none, none, none, none
    pair = packed >> np.uint64(8)
    start = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    dk = (packed & np.uint64(255)).astype(np.int64)
    keys = pair[start].astype(np.int64)
    length = np.diff(np.r_[start, len(pair)])
    inked = np.add.reduceat((dk > 0).astype(np.int64), start)
    darkness = np.add.reduceat(dk, start)
    return keys // n, keys % n, length, inked, darkness


def _union(parent: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Join the groups src[i] and dst[i] (group roots) for every i: the new root of each label."""
    n = len(parent)
    graph = csr_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    root = np.zeros(n, np.int64)
    np.maximum.at(root, comp, np.arange(n))  # a component's root: its highest label
    return root[comp[parent]]


def _strips_inside(src: np.ndarray, dst: np.ndarray, w: np.ndarray, mean_dark: np.ndarray, total: np.ndarray,
                   thin: float, thin_cap: float, is_small: np.ndarray, is_thin: np.ndarray, spread: np.ndarray,
                   darkest: np.ndarray, keys: np.ndarray, dark_sum: np.ndarray,
                   inked_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joins for the thin groups in the middle of hatching: their lines are all hatching, so none is fainter
    than their darkest. Such a group touches two or more groups across lines, and its lines are all clearly
    fainter than the outline (darkest long border) of a neighbour that is neither thin nor small and under
    THIN_SHARE of the canvas. It joins the largest such neighbour, and another one too only where the two
    are apart by no line or by one clearly fainter than both their outlines (the areas either side of a
    band of hatching; not an eye and the face round it). Larger neighbours are left out: joining two
    regions of a face that way costs the faces' figures their goals (README, "Flats")."""
    n = len(total)
    outline = np.zeros(n)
    long = np.isfinite(mean_dark) & (w >= OUTLINE_LENGTH * thin)
    np.maximum.at(outline, src[long], mean_dark[long])
    lines = np.bincount(src, weights=np.isfinite(mean_dark), minlength=n)
    ok = is_thin[src] & ~is_small[dst] & ~is_thin[dst] & (total[dst] < thin_cap) & spread \
        & (darkest[src] <= FAINT_SHARE * outline[dst]) & (lines[src] >= 2)
    t_src, t_dst = src[ok], dst[ok]
    order = np.lexsort((-t_dst, -total[t_dst], t_src))
    t_src, t_dst = t_src[order], t_dst[order]
    first = np.r_[True, t_src[1:] != t_src[:-1]][:len(t_src)]
    largest = t_dst[np.flatnonzero(first)[np.cumsum(first) - 1]]
    pair = np.minimum(largest, t_dst) * n + np.maximum(largest, t_dst)
    at = np.minimum(np.searchsorted(keys, pair), len(keys) - 1)
    line = dark_sum[at] / np.maximum(inked_len[at], 1)
    both = first | (keys[at] != pair) | (line <= FAINT_SHARE * np.minimum(outline[largest], outline[t_dst]))
    return t_src[both], t_dst[both]


def merge_small(labels: np.ndarray, ink_dark: np.ndarray, size: np.ndarray, limit: np.ndarray,
                inradius: np.ndarray, thin: float, thin_cap: float) -> np.ndarray:
    """A table label -> label that merges small and thin regions into their neighbours: hatching and stray
    marks leave pieces that are no region a person would fill on its own.

    labels: (H, W) with every pixel labelled (0..n-1); ink_dark: (H, W) uint8 the ink's darkness (0 off the ink); size: (n,)
    the pixels counted for each region; inradius: (n,) the radius of the largest disk inside each.

    - A small region (size below `limit`) merges into one neighbour: across the faintest line (in steps of
      FAINT_STEP), then one not small itself, then the one it shares the most border with.
    - A thin region (inradius <= thin, size below `thin_cap`: the strips between hatching strokes) merges
      with every neighbour across a line about as faint as its faintest border and clearly fainter than
      its darkest: hatching is drawn lighter than the outlines round it, and the strips of a band of
      hatching join the areas on both sides of it. A thin shape drawn all round with one line stays, and
      so does a lone thin region with such a line on one side only (an eye's white under a dark lid), but
      for a thin neighbour. Nor does a thin region join a wide neighbour across a line as dark as that
      neighbour's own outline: a strand beside a face drawn with the same soft line, a strip beside a
      shape drawn inside the hatching as faintly as the hatching.
    - Once no small or thin group merges any more, two other groups merge across a line that is a short
      stretch of both their borders (under HATCH_BORDER of each) and clearly fainter than the rest of their
      lines (BAND_SHARE of their mean darkness): the areas either side of a band of hatching, which the
      strips could not join because a group with a wide member is no longer thin. A shape drawn inside
      another is all border to it, and stays.
    - Last, the thin groups in the middle of hatching, whose lines are all equally faint, join the larger
      groups round them whose outline is clearly darker than those lines (_strips_inside).
    Merged regions form a group, small or thin while its total size and its members allow, that goes on
    merging. The table maps each label to its group's root (its highest label)."""
    n = len(size)
    parent = np.arange(n)
    if not ((size < limit) | ((inradius <= thin) & (size < thin_cap))).any():
        return parent
    involved = (size < limit) | (inradius <= thin)
    if (involved & (inradius <= thin)).any():  # hatching: every border counts (each side's whole outline)
        involved[:] = True
    a, b, length, inked, darkness = _borders(labels, involved, ink_dark)
    for _ in range(MERGE_ROUNDS):
        total = np.bincount(parent, weights=size, minlength=n)
        lowest, widest = np.full(n, np.inf), np.zeros(n)
        np.minimum.at(lowest, parent, limit)
        np.maximum.at(widest, parent, inradius)
        ga, gb = parent[a], parent[b]
        apart = ga != gb
        if not apart.any():
            break
        lo, hi = np.minimum(ga[apart], gb[apart]), np.maximum(ga[apart], gb[apart])
        keys, inverse = np.unique(lo * n + hi, return_inverse=True)
        shared = np.bincount(inverse, weights=length[apart])
        inked_len = np.bincount(inverse, weights=inked[apart])
        dark_sum = np.bincount(inverse, weights=darkness[apart])
        mean_dark = dark_sum / np.maximum(inked_len, 1)
        mean_dark[inked_len < INKED_SHARE * shared] = np.inf  # (mostly) through a gap: no line, not a faint one
        lo, hi = keys // n, keys % n
        src, dst = np.concatenate([lo, hi]), np.concatenate([hi, lo])
        w, mean_dark = np.concatenate([shared, shared]), np.concatenate([mean_dark, mean_dark])
        inked2, dark2 = np.concatenate([inked_len, inked_len]), np.concatenate([dark_sum, dark_sum])
        # A band of hatching between two larger groups: a short stretch of their outlines (under
        # HATCH_BORDER of each), drawn clearly fainter than the rest of each one's lines.
        g_len = np.bincount(src, weights=w, minlength=n)
        other_inked = np.bincount(src, weights=inked2, minlength=n)[src] - inked2
        other_dark = (np.bincount(src, weights=dark2, minlength=n)[src] - dark2) / np.maximum(other_inked, 1)
        hatch = np.isfinite(mean_dark) & (other_inked > 0) & (mean_dark <= BAND_SHARE * other_dark) \
            & (w < HATCH_BORDER * g_len[src])
        m = len(lo)
        band = hatch[:m] & hatch[m:]
        darkest, faintest = np.zeros(n), np.full(n, np.inf)
        np.maximum.at(darkest, src, np.where(np.isfinite(mean_dark), mean_dark, 0))
        np.minimum.at(faintest, src, mean_dark)
        is_small = total < lowest
        is_thin = (widest <= thin) & (total < thin_cap)
        # Small groups: one neighbour each, by the order in the docstring, then the larger group and the
        # higher label (deterministic).
        pick = is_small[src]
        s_src, s_dst = src[pick], dst[pick]
        order = np.lexsort((-s_dst, -total[s_dst], -w[pick], is_small[s_dst] | is_thin[s_dst],
                            np.minimum(mean_dark[pick], 1e9) // FAINT_STEP, s_src))
        s_src, s_dst = s_src[order], s_dst[order]
        first = np.r_[True, s_src[1:] != s_src[:-1]][:len(s_src)]
        # Thin groups: every neighbour across a clearly fainter line.
        spread = mean_dark <= FAINT_SPREAD * faintest[src] + FAINT_SLACK
        faint = spread & (mean_dark <= FAINT_SHARE * darkest[src])
        across = ~pick & is_thin[src] & faint & ~is_small[dst]  # a small one picks its own neighbour
        # A strip of hatching has faint lines on both sides; a lone thin region with one faint line (an eye's
        # white under a dark lid, a strand) is no strip: it joins across that line only another thin one.
        lone = np.bincount(parent, minlength=n) == 1
        clear = is_thin[src] & (mean_dark <= FAINT_SHARE * darkest[src]) & ~is_small[dst]
        sides = np.bincount(src[clear], minlength=n)  # neighbours across a clearly fainter line
        across &= ~lone[src] | (sides[src] >= 2) | is_thin[dst]
        # Nor does a thin region join a wide neighbour across a line as dark as that neighbour's outline (the
        # mean of its lines to other wide groups; 0 for a shape with strips all round, inside hatching): a
        # strand beside a face drawn with the same soft line, a strip beside a shape inside the hatching.
        # Pieces of broken hatching (up to PIECE_WIDTHS strip widths wide) are exempt.
        wide = ~is_thin[dst] & ~is_small[dst]
        outline = np.bincount(src[wide], weights=dark2[wide], minlength=n) \
            / np.maximum(np.bincount(src[wide], weights=inked2[wide], minlength=n), 1)
        across &= is_thin[dst] | (mean_dark <= FAINT_SHARE * outline[dst]) | (widest[dst] <= PIECE_WIDTHS * thin)
        join_src, join_dst = np.concatenate([s_src[first], src[across]]), np.concatenate([s_dst[first], dst[across]])
        if not len(join_src):  # the small and thin pieces are settled: the groups either side of hatching
            band &= ~is_small[lo] & ~is_small[hi] & ~is_thin[lo] & ~is_thin[hi]
            join_src, join_dst = lo[band], hi[band]
        if not len(join_src):  # last: the strips in the middle of hatching, all their lines faint
            join_src, join_dst = _strips_inside(src, dst, w, mean_dark, total, thin, thin_cap, is_small, is_thin,
                                                spread, darkest, keys, dark_sum, inked_len)
        if not len(join_src):
            break
        parent = _union(parent, join_src, join_dst)
    return parent
