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

`--hints` adds the colour-hint figures on the same characters (training/eval_hints.py; JSON key "hints").

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
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from backend.inference.colour import ciede2000, rgb_to_lab
from backend.inference.options import add_model_options
from training.eval_cases import Case, iter_cases, seeds_from_folder
from training.eval_metrics import flatten, psnr, ssim
from training.eval_models import NEUTRAL_GREY, ColorFn, colorizer_fn, ignoring_reference, reinhard_fn
from training.synth import PARTS

EVAL_SEED_BASE = 10_000_000  # held-out seeds start here; training must stay below
DEFAULT_COUNT = 24
MAX_COUNT = 100_000
MAX_SIZE = 2048
MIN_PART_PIXELS = 16


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

    result = {
        "rows": {name: row.summary(PARTS) for name, row in rows.items()},
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
    add_model_options(p)
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
    p.add_argument("--batch", type=int, default=8, help="requests per model call")
    p.add_argument("--hints", action="store_true",
                   help="also score colour hints on the same characters (training/eval_hints.py): no hints, one "
                        "per part, half the parts; needs a model trained with hint channels")
    from training.eval_real import add_image_arguments  # real pictures: --images FOLDER (training/eval_real.py)

    add_image_arguments(p)


def main(args: argparse.Namespace) -> int:
    from backend.inference.pipeline import Colorizer

    if getattr(args, "images", None):
        if args.hints:
            print("irodori eval: --hints scores the synthetic characters (they have part masks), not --images",
                  file=sys.stderr)
            return 2
        from training import eval_real

        return eval_real.main(args)
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
        if args.hints:
            from training import eval_hints

            eval_hints.check_hint_model(colorizer)
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
        if args.hints:  # the same characters, references and sizes as the figures above
            result["hints"] = eval_hints.evaluate_hints(
                colorizer, seeds=result["protocol"]["seeds"], size=result["protocol"]["size"],
                palette_seeds=palette_seeds, reference_size=result["protocol"]["reference_size"], batch=args.batch,
                progress=progress)
    except ValueError as exc:
        print(f"irodori eval: {exc}", file=sys.stderr)
        return 2
    proto = result["protocol"]
    print(f"{colorizer.name}: {proto['characters']} held-out characters, {proto['pairs']} sketch/reference pairs, "
          f"{proto['size']} px (references {proto['reference_size']} px), {result['seconds']:.1f} s")
    print(format_table(result))
    if "hints" in result:
        print(eval_hints.format_table(result["hints"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_no_nan(result), indent=2) + "\n")
        print(f"figures written to {args.json}")
    if args.grid:
        print(f"grid written to {args.grid}")
    return 0
