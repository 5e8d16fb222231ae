"""`irodori eval --images FOLDER`: how well a model colours REAL pictures (a folder of colour images).

The synthetic evaluation (training/eval.py) knows each part's true colour; real pictures have no part masks,
so this one asks two simpler questions on line art extracted from the pictures themselves.

Protocol (deterministic):
- Pictures: the image files under FOLDER, sorted by path; with --holdout SHARE only the pictures of the fixed
  evaluation split (training.data.held_out: by file name, the split training leaves out with the same
  data.holdout); the first --count of them. Each is centre-cropped to a square and resized to the
  evaluation size (the model's resolution unless --size): the truth y.
- Line art: picture i gets extractor LINES[i % len(LINES)] (--lines, default hed,xdog) with parameters drawn
  from numpy's default_rng([LINE_SEED, i]) as training draws them (training.extract.random_lines, no
  augmentation).
- (a) Same picture as reference (the paper's training setting, now on unseen pictures): the model colours
  line art i with picture i as its reference. Against the truth: CIEDE2000 averaged over the pixels at least
  1 px from any ink (line < 128, dilated 3x3), so outlines never count; PSNR and SSIM of the outputs
  flattened with the line art (training.eval's definitions). Rows: the model; the same model given a flat
  grey reference (what ignoring the reference scores); a fill of the whole picture with the reference's mean
  colour (mean in CIELAB; what "paint the average" scores).
- (b) Cross references: line art i coloured with the CROSS pictures i+1 .. i+CROSS (mod N). For each output,
  a colour histogram (CIELAB, L 4 x a 8 x b 8 bins over [0,100] x [-80,80]^2, non-ink pixels) is compared
  with the histograms of those CROSS references (whole pictures) by L1 distance; the output ranks right when
  its own reference is the closest. Ranking accuracy = share of outputs that rank right; chance is 1/CROSS.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from backend.inference.colour import ciede2000, lab_to_rgb, rgb_to_lab
from training.data import held_out, scan_images
from training.eval_metrics import flatten, psnr, ssim
from training.eval_models import ColorFn, colorizer_fn, ignoring_reference
from training.extract import random_lines

LINE_SEED = 20_250_000
DEFAULT_LINES = ("hed", "xdog")
DEFAULT_CROSS = 5
HIST_BINS = (4, 8, 8)
HIST_RANGE = ((0.0, 100.0), (-80.0, 80.0), (-80.0, 80.0))
ROWS = {"model": "model", "grey_reference": "same model, grey reference", "mean_fill": "reference mean-colour fill"}


def pick_pictures(folder: str | Path, count: int, holdout: float = 0.0) -> list[Path]:
    files = scan_images(folder)
    if holdout > 0:
        files = [p for p in files if held_out(p, holdout)]
    if len(files) < 2:
        raise ValueError(f"{folder}: {len(files)} picture(s) to evaluate; at least 2 are needed")
    return files[:count]


def load_truth(path: Path, size: int) -> np.ndarray:
    """Centre square crop, resized to size x size (antialiased), uint8 RGB."""
    img = Image.open(path).convert("RGB")
    s = min(img.size)
    box = ((img.width - s) // 2, (img.height - s) // 2, (img.width - s) // 2 + s, (img.height - s) // 2 + s)
    return np.asarray(img.resize((size, size), Image.BICUBIC, box=box, reducing_gap=None))


def make_line(truth: np.ndarray, index: int, lines: Sequence[str]) -> np.ndarray:
    rng = np.random.default_rng([LINE_SEED, index])
    line = random_lines(truth.astype(np.float32) / 255.0, rng, (lines[index % len(lines)],), augment=False)
    return np.clip(line * 255.0 + 0.5, 0, 255).astype(np.uint8)


def paper_mask(line: np.ndarray) -> np.ndarray:
    """Pixels at least 1 px away from any ink."""
    return ~ndimage.binary_dilation(line < 128, structure=np.ones((3, 3), bool))


def mean_fill(references: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    out = []
    for ref in references:
        mean = rgb_to_lab(ref[..., :3]).reshape(-1, 3).mean(0)
        out.append(np.broadcast_to(lab_to_rgb(mean), (size, size, 3)).astype(np.uint8))
    return out


def histogram(rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    lab = rgb_to_lab(rgb[..., :3]).reshape(-1, 3)
    if mask is not None:
        lab = lab[mask.reshape(-1)]
    hist, _ = np.histogramdd(np.clip(lab, [r[0] for r in HIST_RANGE], [r[1] - 1e-6 for r in HIST_RANGE]),
                             bins=HIST_BINS, range=HIST_RANGE)
    return hist.reshape(-1) / max(1.0, hist.sum())


def same_reference_scores(outputs: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                          lines: Sequence[np.ndarray]) -> dict[str, float]:
    de, ps, ss = [], [], []
    for out, truth, line in zip(outputs, truths, lines):
        mask = paper_mask(line)
        if mask.any():
            de.append(float(ciede2000(rgb_to_lab(out[mask]), rgb_to_lab(truth[mask])).mean()))
        ps.append(psnr(flatten(out, line), flatten(truth, line)))
        ss.append(ssim(flatten(out, line), flatten(truth, line)))
    return {"de00": float(np.mean(de)) if de else math.nan, "psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


def ranking_accuracy(model: ColorFn, truths: Sequence[np.ndarray], lines: Sequence[np.ndarray], cross: int,
                     batch: int = 8) -> tuple[float, list[np.ndarray]]:
    """(b): the share of cross-reference outputs whose colour histogram is closest to their own reference's;
    also returns the outputs of the first picture's line art (for a grid)."""
    n = len(truths)
    hists = [histogram(t) for t in truths]
    right = total = 0
    first: list[np.ndarray] = []
    for start in range(0, n, max(1, batch // cross)):
        idx = range(start, min(n, start + max(1, batch // cross)))
        pairs = [(i, (i + k) % n) for i in idx for k in range(1, cross + 1)]
        outs = model([lines[i] for i, _ in pairs], [truths[j] for _, j in pairs])
        for (i, j), out in zip(pairs, outs):
            h = histogram(out, paper_mask(lines[i]))
            candidates = [(i + k) % n for k in range(1, cross + 1)]
            dists = [np.abs(h - hists[c]).sum() for c in candidates]
            right += candidates[int(np.argmin(dists))] == j
            total += 1
            if i == 0:
                first.append(out)
    return right / max(1, total), first


def evaluate_images(model: ColorFn, pictures: Sequence[Path], size: int, lines: Sequence[str] = DEFAULT_LINES,
                    cross: int = DEFAULT_CROSS, batch: int = 8) -> dict:
    """Every figure of the protocol above; `model` is a ColorFn (a Colorizer through colorizer_fn, or a test
    stand-in)."""
    if not 1 <= cross < len(pictures):
        raise ValueError(f"--cross {cross} needs more than {cross} pictures (got {len(pictures)})")
    t0 = time.perf_counter()
    truths = [load_truth(p, size) for p in pictures]
    line_art = [make_line(t, i, lines) for i, t in enumerate(truths)]
    rows = {}
    for name, fn in (("model", model), ("grey_reference", ignoring_reference(model))):
        outs: list[np.ndarray] = []
        for start in range(0, len(truths), batch):
            outs += fn(line_art[start:start + batch], truths[start:start + batch])
        rows[name] = same_reference_scores(outs, truths, line_art)
    rows["mean_fill"] = same_reference_scores(mean_fill(truths, size), truths, line_art)
    accuracy, _ = ranking_accuracy(model, truths, line_art, cross, batch)
    m = rows["model"]["de00"]
    return {
        "protocol": {"pictures": len(pictures), "size": size, "lines": list(lines), "cross": cross,
                     "line_seed": LINE_SEED, "histogram_bins": list(HIST_BINS)},
        "rows": rows,
        "ratios": {"de00_vs_mean_fill": m / rows["mean_fill"]["de00"], "de00_vs_grey_reference": m / rows["grey_reference"]["de00"]},
        "ranking_accuracy": accuracy, "chance": 1.0 / cross, "seconds": time.perf_counter() - t0,
    }


def format_table(result: dict) -> str:
    out = [f"{'(a) same picture as reference':30} {'CIEDE2000':>10} {'PSNR dB':>8} {'SSIM':>6}"]
    for name, row in result["rows"].items():
        out.append(f"{ROWS[name]:30} {row['de00']:10.2f} {row['psnr']:8.2f} {row['ssim']:6.3f}")
    r = result["ratios"]
    out.append(f"model / mean-colour fill {r['de00_vs_mean_fill']:.3f}, model / grey reference {r['de00_vs_grey_reference']:.3f}")
    out.append(f"(b) cross references: ranking accuracy {result['ranking_accuracy']:.3f} "
               f"(chance {result['chance']:.2f}, {result['protocol']['cross']} references per line art)")
    return "\n".join(out)


def add_image_arguments(p) -> None:
    """Options of the --images branch; --count, --size, --json, --batch, --checkpoint and --device are shared."""
    p.add_argument("--images", type=Path, help="evaluate on a folder of real colour pictures instead "
                                                "(training/eval_real.py: same-reference and cross-reference figures)")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="with --images: only the pictures of the held-out split of this share (data.holdout)")
    p.add_argument("--lines", default=",".join(DEFAULT_LINES),
                   help=f"with --images: line extractors used in turn (default {','.join(DEFAULT_LINES)})")
    p.add_argument("--cross", type=int, default=DEFAULT_CROSS,
                   help=f"with --images: other pictures each line art is coloured with (default {DEFAULT_CROSS})")


def main(args) -> int:
    """The eval command's --images branch (training/eval.py declares the options)."""
    from backend.inference.pipeline import Colorizer

    try:
        lines = tuple(x for x in args.lines.split(",") if x)
        pictures = pick_pictures(args.images, args.count, args.holdout)
        colorizer = Colorizer(args.checkpoint, device=args.device)
        size = args.size or colorizer.config.resolution
        result = evaluate_images(colorizer_fn(colorizer, size, args.batch), pictures, size, lines, args.cross, args.batch)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"irodori eval: {exc}", file=sys.stderr)
        return 2
    result["protocol"].update({"folder": str(args.images), "holdout": args.holdout, "model": colorizer.name})
    print(f"{colorizer.name}: {len(pictures)} pictures from {args.images}, {size} px, {result['seconds']:.1f} s")
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0
