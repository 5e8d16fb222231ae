"""`irodori eval`: how well a model colours held-out synthetic characters, and how much it follows the reference.

Every public Style2paints V1 reimplementation failed the same way: it paints one average colour scheme and
ignores the reference. Loss curves do not show that; these figures do.

Protocol (everything deterministic, nothing random at run time):
- Held-out characters: character i has seed EVAL_SEED_BASE + i for its drawing AND its palette
  (`synth.random_character(seed)`, `synth.random_palette(seed)`). EVAL_SEED_BASE = 10_000_000: every
  character and palette seed used in training must be below it, so these drawings and palettes are never
  seen in training. (`irodori synth --seed K` item i has seed K * 1_000_003 + i: K = 0..8 is always safe, K = 9
  with fewer than 999_973 items; K >= 10 lands on or above the evaluation range.) `--seed-base` moves the
  range; seeds below EVAL_SEED_BASE are warned about.
- Cases: for each sketch character i (of N >= 3), two references from OTHER characters,
  A = character (i+1) mod N and B = character (i+2) mod N, each drawn in its own palette. The sketch is the
  line layer of character i. The true target for reference A is character i re-rendered with A's palette
  (same drawing, A's colours); likewise for B. The references are rendered at the model's reference size
  when that is larger than the evaluation size (a user's reference is a full-size picture, and a model
  whose VGG19 sees 96 px should get 96 px of reference), else at the evaluation size. With `--data DIR`
  the characters are the (character, palette) seeds listed in a folder written by `irodori synth`
  (meta.json items), re-rendered at the evaluation size; the first --count of them are used.
- Rows, all on the same cases in the same run:
    model               the checkpoint through the real pipeline (Colorizer.colorize_batch, "color" output);
    ignores reference   the same model with every reference replaced by a flat neutral grey image
                        (RGB 128): what a model that ignores the reference scores;
    Reinhard            classical global colour transfer: a flat grey fill (RGB 128) with the sketch's ink
                        multiplied in, Reinhard mean/std transfer per channel in CIELAB onto the reference's
                        statistics (a channel with no spread in the source, a* and b* here, takes the
                        reference's mean).
- Per-part colour error: each image is converted to CIELAB (sRGB, D65). For every part label of the
  character (`synth.PARTS`, the background included) the pixels used are the part's mask ERODED BY 1 PIXEL
  (3x3) and at least 1 pixel away from any ink (line < 128, dilated 3x3), so outlines and anti-aliased borders
  never count; parts with fewer than MIN_PART_PIXELS such pixels are skipped. The part's colour is the
  per-channel MEDIAN of L*, a*, b* over those pixels (robust to the model's small strokes and noise).
  Error = CIEDE2000 (kL = kC = kH = 1) between the output's and the target's part colours. It is averaged per
  part label over all (sketch, reference) pairs, then over part labels ("part dE00"; lower is better).
- Reference-following ratio: for one sketch, d_out = mean over parts of CIEDE2000(output_A, output_B) part
  colours, d_tgt = the same between target_A and target_B. ratio = sum(d_out) / sum(d_tgt) over sketches
  (a ratio of sums, so a sketch whose two targets happen to be close does not blow up the figure).
  1.0: the output moves exactly as much as the truth does; 0.0: it ignores the reference. It measures HOW
  MUCH the output follows, not whether correctly: read it beside part dE00.
- PSNR and SSIM of the full image against the target, both FLATTENED with the line art (pixel x line/255) so
  the comparison does not depend on whether a colour layer carries lines. PSNR over RGB with peak 255, per
  image, capped at PSNR_CAP dB (identical images), averaged. SSIM: Wang et al. 2004 on luma
  (0.299 R + 0.587 G + 0.114 B, range 255), Gaussian window sigma 1.5 truncated to 11x11, K1 0.01, K2 0.03,
  averaged over the pixels whose window lies inside the image; then averaged over images.

`evaluate(model, ...)` accepts a Colorizer or any callable `(sketches, references) -> colour images`, so tests
can put an oracle or a reference-blind model in its place.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from backend.model.config import read_json

EVAL_SEED_BASE = 10_000_000  # held-out seeds start here; training must stay below
DEFAULT_COUNT = 24
MAX_COUNT = 100_000
MAX_SIZE = 2048
MIN_PART_PIXELS = 16
NEUTRAL_GREY = 128
PSNR_CAP = 100.0
MAX_META_BYTES = 64 * 1024 * 1024

# (sketches (S,S) uint8, references (h,w,3) uint8) -> colour images (S,S,3) uint8 RGB, one per pair
ColorFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], list[np.ndarray]]


# ----------------------------------------------------------------------------------------- colour science
_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_SRGB = np.linalg.inv(_SRGB_TO_XYZ)
_D65 = _SRGB_TO_XYZ.sum(axis=1)  # D65 white as the matrix maps RGB white: greys get a* = b* = 0 exactly
_EPS = 216 / 24389  # CIE constants, exact rational forms
_KAPPA = 24389 / 27


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIELAB float64 (..., 3), D65 white."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
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


# ----------------------------------------------------------------------------------------- image metrics
def psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR in dB over all channels, peak 255; identical images give `cap` instead of infinity."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if mse == 0:
        return cap
    return min(cap, 10 * math.log10(255.0 ** 2 / mse))


def luma(rgb: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------- baselines
def reinhard_transfer(line: np.ndarray, reference: np.ndarray, grey: int = NEUTRAL_GREY) -> np.ndarray:
    """Reinhard et al. 2001 global transfer in CIELAB: a flat grey fill with the sketch's ink multiplied in,
    each channel shifted and scaled to the reference's mean and standard deviation. (S,S,3) uint8 RGB."""
    source = np.full((*line.shape, 3), grey, np.uint8)
    src = rgb_to_lab(flatten(source, line)).reshape(-1, 3)
    ref = rgb_to_lab(np.asarray(reference)[..., :3]).reshape(-1, 3)
    mu_s, sd_s = src.mean(0), src.std(0)
    mu_r, sd_r = ref.mean(0), ref.std(0)
    scale = np.where(sd_s > 1e-6, sd_r / np.maximum(sd_s, 1e-6), 1.0)  # no spread: take the reference's mean
    out = (src - mu_s) * scale + mu_r
    return lab_to_rgb(out).reshape(*line.shape, 3)


def reinhard_fn(lines: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [reinhard_transfer(line, ref) for line, ref in zip(lines, references)]


def neutral_reference(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), NEUTRAL_GREY, np.uint8)


def ignoring_reference(model: ColorFn) -> ColorFn:
    """The model with every reference replaced by the same neutral grey image (each sketch run once)."""
    grey = neutral_reference()

    def fn(lines: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> list[np.ndarray]:
        distinct: dict[int, np.ndarray] = {}  # the same sketch object appears once per reference
        for line in lines:
            distinct.setdefault(id(line), line)
        outs = dict(zip(distinct, model(list(distinct.values()), [grey] * len(distinct))))
        return [outs[id(line)] for line in lines]

    return fn


def colorizer_fn(colorizer, size: int, batch: int = 8) -> ColorFn:
    """A Colorizer as a ColorFn: the real pipeline, `batch` requests per colorize_batch call."""

    def fn(lines: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> list[np.ndarray]:
        requests = [(line, ref, ("color",), size) for line, ref in zip(lines, references)]
        out: list[np.ndarray] = []
        for start in range(0, len(requests), batch):
            out += [r["color"] for r in colorizer.colorize_batch(requests[start:start + batch])]
        return out

    return fn


# ----------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One sketch, its two references (other characters) and the true targets for each."""

    seed: int  # the sketch character's seed (drawing and palette)
    line: np.ndarray  # (S,S) uint8, 255 = paper
    mask: np.ndarray  # (S,S) uint8 part labels (synth.PARTS)
    ref_seeds: tuple[int, int]
    references: tuple[np.ndarray, np.ndarray]  # (R,R,3) the other characters in their own palettes (R >= S)
    targets: tuple[np.ndarray, np.ndarray]  # (S,S,3) this character in the references' palettes


def iter_cases(seeds: Sequence[int], size: int, palette_seeds: Sequence[int] | None = None,
               reference_size: int | None = None) -> Iterator[Case]:
    """Render the cases for characters `seeds` one at a time (memory stays flat for any count). The palette
    seed is the character seed unless `palette_seeds` is given; references are rendered at
    max(size, reference_size). See the module docstring for the layout."""
    from training import synth

    seeds = [int(s) for s in seeds]
    palette_seeds = seeds if palette_seeds is None else [int(s) for s in palette_seeds]
    if len(seeds) < 3:
        raise ValueError(f"evaluation needs at least 3 characters (a sketch and two others), got {len(seeds)}")
    if len(palette_seeds) != len(seeds):
        raise ValueError("give one palette seed per character seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError("evaluation seeds must be distinct")
    n = len(seeds)
    ref_side = max(size, reference_size or size)
    for i in range(n):
        a, b = (i + 1) % n, (i + 2) % n
        character = synth.random_character(seeds[i])
        own = synth.render(character, synth.random_palette(palette_seeds[i]), size)
        refs = tuple(synth.render(synth.random_character(seeds[j]), synth.random_palette(palette_seeds[j]), ref_side).color
                     for j in (a, b))
        # the same drawing, so the same line and mask: only the colours change with the palette
        targets = tuple(synth.render(character, synth.random_palette(palette_seeds[j]), size).color for j in (a, b))
        yield Case(seed=seeds[i], line=own.line, mask=own.mask, ref_seeds=(seeds[a], seeds[b]),
                   references=refs, targets=targets)  # type: ignore[arg-type]


def make_cases(seeds: Sequence[int], size: int, palette_seeds: Sequence[int] | None = None,
               reference_size: int | None = None) -> list[Case]:
    """All cases at once (small counts: tests, notebooks)."""
    return list(iter_cases(seeds, size, palette_seeds, reference_size))


def seeds_from_folder(folder: str | Path) -> tuple[list[int], list[int]]:
    """(character seeds, palette seeds) of a folder written by `irodori synth`, from its meta.json."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: --data takes a folder written by `irodori synth`")
    meta = read_json(path, "synth metadata", MAX_META_BYTES)
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("irodori-synth/"):
        raise ValueError(f"{path} is not an `irodori synth` meta.json (no format irodori-synth/...)")
    items = meta.get("items")
    try:
        pairs = [(item["character_seed"], item["palette_seed"]) for item in items]
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{path}: every item needs character_seed and palette_seed ({exc!r})") from exc
    if not all(isinstance(v, int) and not isinstance(v, bool) for pair in pairs for v in pair):
        raise ValueError(f"{path}: seeds must be integers")
    return [c for c, _ in pairs], [p for _, p in pairs]


# ----------------------------------------------------------------------------------------- scoring
def part_pixels(case: Case) -> dict[int, np.ndarray]:
    """Flat pixel indices per part label: the mask eroded by 1 px and kept 1 px away from ink."""
    away_from_ink = ~ndimage.binary_dilation(case.line < 128, structure=np.ones((3, 3), bool))
    out = {}
    for label in np.unique(case.mask):
        inner = ndimage.binary_erosion(case.mask == label, structure=np.ones((3, 3), bool)) & away_from_ink
        idx = np.flatnonzero(inner)
        if idx.size >= MIN_PART_PIXELS:
            out[int(label)] = idx
    return out


def part_colours(image: np.ndarray, parts: dict[int, np.ndarray]) -> np.ndarray:
    """(P,3) per-part median CIELAB colours, in the order of `parts`."""
    lab = rgb_to_lab(image[..., :3]).reshape(-1, 3)
    return np.array([np.median(lab[idx], axis=0) for idx in parts.values()]).reshape(-1, 3)


class _Row:
    """Accumulates one row's figures over cases."""

    def __init__(self) -> None:
        self.part_errors: dict[int, list[float]] = {}
        self.d_out = 0.0  # sums over sketches of the mean-part distance between the two outputs / targets
        self.d_tgt = 0.0
        self.sketches = 0
        self.psnr: list[float] = []
        self.ssim: list[float] = []

    def add(self, case: Case, parts: dict[int, np.ndarray], target_colours: list[np.ndarray],
            outputs: Sequence[np.ndarray]) -> None:
        out_colours = []
        for output, target, t_col in zip(outputs, case.targets, target_colours):
            if output.shape != target.shape or output.dtype != np.uint8:
                raise ValueError(f"a model output is {output.shape} {output.dtype}; expected {target.shape} uint8")
            o_col = part_colours(output, parts)
            out_colours.append(o_col)
            for label, err in zip(parts, ciede2000(o_col, t_col)):
                self.part_errors.setdefault(label, []).append(float(err))
            self.psnr.append(psnr(flatten(output, case.line), flatten(target, case.line)))
            self.ssim.append(ssim(flatten(output, case.line), flatten(target, case.line)))
        if parts:
            self.sketches += 1
            self.d_out += float(ciede2000(out_colours[0], out_colours[1]).mean())
            self.d_tgt += float(ciede2000(target_colours[0], target_colours[1]).mean())

    def summary(self, part_names: Sequence[str]) -> dict:
        per_part = {(part_names[k] if k < len(part_names) else str(k)): float(np.mean(v))
                    for k, v in sorted(self.part_errors.items())}
        return {
            "part_de00": float(np.mean(list(per_part.values()))) if per_part else float("nan"),
            "follow_ratio": self.d_out / self.d_tgt if self.d_tgt > 0 else float("nan"),
            "psnr": float(np.mean(self.psnr)),
            "ssim": float(np.mean(self.ssim)),
            "per_part_de00": per_part,
            "output_a_b_distance_de00": self.d_out / self.sketches if self.sketches else float("nan"),
            "target_a_b_distance_de00": self.d_tgt / self.sketches if self.sketches else float("nan"),
        }


ROWS = {"model": "model", "ignores_reference": "ignores reference (grey ref)", "reinhard": "Reinhard global transfer"}


def evaluate(model, count: int = DEFAULT_COUNT, size: int | None = None, seed_base: int = EVAL_SEED_BASE, *,
             seeds: Sequence[int] | None = None, palette_seeds: Sequence[int] | None = None,
             cases: Sequence[Case] | None = None, baselines: bool = True,
             grid: str | Path | None = None, grid_cases: int = 4, batch: int = 8,
             reference_size: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Score `model` (a Colorizer or a ColorFn) and the two baselines on held-out characters.

    Characters are `seeds` (with `palette_seeds`, default the same) if given, else seed_base ..
    seed_base+count-1; `cases` (pre-rendered) overrides both. `size` defaults to a Colorizer's model
    resolution; references are rendered at max(size, reference_size), which defaults to a Colorizer's
    reference size. Returns a JSON-ready dict (NaN where nothing was measurable): "rows" maps model /
    ignores_reference / reinhard to {part_de00, follow_ratio, psnr, ssim, per_part_de00, ...}.
    `grid` writes a PNG (sketch | reference | output | target) for the first `grid_cases` sketches.
    """
    colorizer = model if hasattr(model, "colorize_batch") else None
    if colorizer is not None:
        size = size or colorizer.config.resolution
        if size % colorizer.config.multiple:
            raise ValueError(f"--size {size} must be a multiple of {colorizer.config.multiple} for this model")
        fn: ColorFn = colorizer_fn(colorizer, size, batch)
    elif callable(model):
        fn = model
    else:
        raise TypeError("model must be a Colorizer or a callable (sketches, references) -> colour images")
    if cases is None:
        if size is None:
            raise ValueError("size is needed when the model is not a Colorizer")
        if not 32 <= size <= MAX_SIZE:
            raise ValueError(f"size {size} must be between 32 and {MAX_SIZE}")
        if seeds is None:
            if not 3 <= count <= MAX_COUNT:
                raise ValueError(f"count {count} must be between 3 and {MAX_COUNT}")
            seeds = range(seed_base, seed_base + count)
        if not 3 <= len(seeds) <= MAX_COUNT:
            raise ValueError(f"{len(seeds)} characters given: evaluation takes 3 to {MAX_COUNT}")
        if min(seeds) < EVAL_SEED_BASE:
            warnings.warn(f"evaluation seeds start at {min(seeds)}, below EVAL_SEED_BASE = {EVAL_SEED_BASE}: "
                          "they may have been used in training, so the figures are not held-out")
        total = len(seeds)
        if reference_size is None and colorizer is not None:
            reference_size = colorizer.config.reference_size
        source: Iterable[Case] = iter_cases(seeds, size, palette_seeds, reference_size)
    else:
        if len(cases) < 1:
            raise ValueError("no cases to evaluate")
        total, size, source = len(cases), int(cases[0].line.shape[0]), cases
    fns: dict[str, ColorFn] = {"model": fn}
    if baselines:
        fns["ignores_reference"] = ignoring_reference(fn)
        fns["reinhard"] = reinhard_fn
    rows = {name: _Row() for name in fns}
    tiles: list[np.ndarray] = []
    seen: list[int] = []
    reference_side = 0  # as the cases were rendered (recorded in the protocol)
    t0 = time.perf_counter()
    for group in _chunks(source, max(1, batch // 2)):
        lines = [c.line for c in group for _ in range(2)]
        refs = [r for c in group for r in c.references]
        outputs = {name: f(lines, refs) for name, f in fns.items()}
        for j, case in enumerate(group):
            parts = part_pixels(case)
            target_colours = [part_colours(t, parts) for t in case.targets]
            for name, row in rows.items():
                row.add(case, parts, target_colours, outputs[name][2 * j:2 * j + 2])
            if grid is not None and len(seen) < grid_cases:
                for k in range(2):
                    out = flatten(outputs["model"][2 * j + k], case.line)
                    tiles.append(_grid_row(case.line, case.references[k], out, case.targets[k]))
            seen.append(case.seed)
            reference_side = int(case.references[0].shape[0])
        if progress is not None:
            progress(len(seen), total)
    elapsed = time.perf_counter() - t0

    try:
        from training.synth import PARTS as part_names
    except ImportError:
        part_names = ()
    result = {
        "rows": {name: row.summary(part_names) for name, row in rows.items()},
        "protocol": {
            "characters": len(seen),
            "pairs": 2 * len(seen),
            "seeds": seen,
            "size": size,
            "reference_size": reference_side,
            "colour_error": "CIEDE2000 of per-part median CIELAB (mask eroded 1 px, 1 px away from ink), "
                            "averaged per part label, then over labels",
            "follow_ratio": "sum over sketches of mean-part dE00(out_A, out_B) / same for (target_A, target_B)",
            "psnr_ssim": "against the target, both flattened with the line art; SSIM on luma, Gaussian 11x11 sigma 1.5",
            "neutral_reference": f"flat RGB {NEUTRAL_GREY} image",
            "eval_seed_base": EVAL_SEED_BASE,
        },
        "seconds": elapsed,
    }
    if colorizer is not None:
        result["model"] = {"name": colorizer.name, "untrained": colorizer.untrained, "device": str(colorizer.device)}
    if grid is not None and tiles:
        from backend.inference.imageio import save_image

        save_image(grid, _stack(tiles))
        result["grid"] = str(grid)
    return result


def _chunks(items: Iterable[Case], n: int) -> Iterator[list[Case]]:
    group: list[Case] = []
    for item in items:
        group.append(item)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def _grid_row(line: np.ndarray, reference: np.ndarray, output: np.ndarray, target: np.ndarray) -> np.ndarray:
    from backend.inference.imageio import side_by_side

    height = max(128, line.shape[0])
    return side_by_side([line, reference[..., :3], output, target], height=height)


def _stack(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    out = np.full((sum(r.shape[0] for r in rows) + gap * (len(rows) - 1), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        out[y:y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + gap
    return out


def format_table(result: dict) -> str:
    """The three rows as a plain-text table."""
    lines = [f"{'':30} {'part dE00 (lower)':>18} {'follow ratio (1=follows)':>25} {'PSNR dB':>8} {'SSIM':>6}"]
    for name, row in result["rows"].items():
        lines.append(f"{ROWS.get(name, name):30} {row['part_de00']:18.2f} {row['follow_ratio']:25.3f} "
                     f"{row['psnr']:8.2f} {row['ssim']:6.3f}")
    return "\n".join(lines)


def _no_nan(value):
    """NaN (no measurable part) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, help="model folder (default: the bundled demo model)")
    p.add_argument("--data", type=Path, help="evaluate the characters of a folder written by `irodori synth` "
                                              "(its meta.json seeds) instead of seeds --seed-base..")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"held-out characters (default {DEFAULT_COUNT})")
    p.add_argument("--size", type=int, help="image size (default: the model's resolution)")
    p.add_argument("--reference-size", type=int,
                   help="render references at max(size, this) px (default: the model's reference size)")
    p.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE,
                   help=f"first character seed (default {EVAL_SEED_BASE}; training uses seeds below it)")
    p.add_argument("--grid", type=Path, help="write a PNG grid: sketch | reference | output | target")
    p.add_argument("--grid-cases", type=int, default=4, help="sketches in the grid (two rows each)")
    p.add_argument("--json", type=Path, help="write all figures as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch", type=int, default=8, help="requests per model call")


def main(args: argparse.Namespace) -> int:
    from backend.inference.pipeline import Colorizer

    try:
        if args.batch < 1 or args.grid_cases < 0:
            raise ValueError("--batch must be >= 1 and --grid-cases >= 0")
        for name in ("size", "reference_size"):
            value = getattr(args, name)
            if value is not None and not 32 <= value <= MAX_SIZE:
                raise ValueError(f"--{name.replace('_', '-')} must be between 32 and {MAX_SIZE}")
        seeds = palette_seeds = None
        if args.data:
            seeds, palette_seeds = seeds_from_folder(args.data)
            if len(seeds) > args.count:
                print(f"note: evaluating the first {args.count} of {len(seeds)} characters in {args.data} "
                      "(raise --count for more)", file=sys.stderr)
                seeds, palette_seeds = seeds[:args.count], palette_seeds[:args.count]
        colorizer = Colorizer(args.checkpoint, device=args.device)
    except (ValueError, OSError) as exc:
        print(f"irodori eval: {exc}", file=sys.stderr)
        return 2
    if colorizer.untrained:
        print("note: this model is UNTRAINED; its figures are a floor, not a result", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} sketches", end="" if done < total else "\n", file=sys.stderr, flush=True)

    try:
        result = evaluate(colorizer, count=args.count, size=args.size, seed_base=args.seed_base, seeds=seeds,
                          palette_seeds=palette_seeds,
                          grid=args.grid, grid_cases=args.grid_cases, batch=args.batch,
                          reference_size=args.reference_size, progress=progress)
    except ValueError as exc:
        print(f"irodori eval: {exc}", file=sys.stderr)
        return 2
    proto = result["protocol"]
    print(f"{colorizer.name}: {proto['characters']} held-out characters, {proto['pairs']} sketch/reference pairs, "
          f"{proto['size']} px (references {proto['reference_size']} px), {result['seconds']:.1f} s")
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_no_nan(result), indent=2) + "\n")
        print(f"figures written to {args.json}")
    if args.grid:
        print(f"grid written to {args.grid}")
    return 0
