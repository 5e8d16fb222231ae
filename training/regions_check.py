"""How the flats' regions hold on real drawings: figures on the shared anime faces, and the README's picture.

`python -m training.regions_check faces ../shared/data/anime-faces-256` (or `anime-faces-96`, the 96 px
thumbnails) makes line art from every face (`--count N`: the first N) with the project's classical
extractors (training/extract.py, default parameters) and reports, per extractor, the largest region's share
of the canvas and the number of regions (the goals: no region over 60% of the canvas, at least 20
regions). The faces are training and evaluation input only: nothing made from them is written anywhere.

`python -m training.regions_check sketches --size 512 --seeds 0-191` measures the regions against the drawn
shapes of procedural sketches (training/sketches.py, hatched; ink on transparent for odd seeds, as in the
tests): the seeds where a shape is split (under 95% in one region) or a region spans two shapes or a shape
and the background (purity under 95%).

`python -m training.regions_check picture docs/flats-sketch.png` draws the README's picture from a
procedural sketch (training/sketches.py): line art | its regions in random colours | its flats.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from backend.inference.flats import flats, segment
from training import extract

EXTRACTORS = {"dilate": extract.dilate_diff, "xdog": extract.xdog, "highpass": extract.highpass}
MAX_SHARE = 0.6  # the goals: no region over this share of the canvas ...
MIN_REGIONS = 20  # ... and at least this many regions on every picture
SHOW_FILES = 20  # failing pictures named in the report
SHAPE_SHARE = 0.95  # a drawn shape is one region with this share of it in its main region; a region this pure


def face_line_art(path: Path, extractor: str, **options) -> np.ndarray:
    """(H, W) uint8 line art (255 = paper) of the colour picture at `path`; `options` go to the extractor."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"), np.float32) / 255.0
    return (np.clip(EXTRACTORS[extractor](rgb, **options), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def region_stats(labels: np.ndarray) -> tuple[float, int]:
    """(the largest region's share of the canvas, the number of regions)."""
    return float(np.bincount(labels.ravel()).max() / labels.size), int(labels.max())


def measure_faces(folder: Path, count: int | None, extractors: tuple[str, ...] = tuple(EXTRACTORS)) -> dict:
    """Per extractor: the largest share and region count on each of the first `count` pictures (None: all),
    summed up."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    out = {}
    for name in extractors:
        shares, counts = zip(*(region_stats(segment(face_line_art(f, name))) for f in files))
        shares, counts = np.array(shares), np.array(counts)
        over, under = shares > MAX_SHARE, counts < MIN_REGIONS
        failing = over | under
        out[name] = {"pictures": len(files), "largest_share_max": float(shares.max()),
                     "largest_share_median": float(np.median(shares)), "regions_min": int(counts.min()),
                     "regions_median": float(np.median(counts)), "failing": int(failing.sum()),
                     "over_share": int(over.sum()), "under_count": int(under.sum()),
                     "failing_files": [files[i].name for i in np.flatnonzero(failing)]}
    return out


def measure_sketches(seeds: range, size: int = 512, hatch_share: float = 0.4) -> dict:
    """The seeds whose regions miss the drawn shapes (see training.sketches.region_scores): {seed: (split
    shapes, mixed regions)}, and the shape totals."""
    from training.sketches import draw_sketch, region_scores

    failing, shapes, split_total, mixed_total = {}, 0, 0, 0
    for seed in seeds:
        sketch = draw_sketch(seed, size, transparent=bool(seed % 2), hatch_share=hatch_share)
        whole, purity = region_scores(segment(sketch.line), sketch)
        split = int((whole[1:] < SHAPE_SHARE).sum())
        mixed = int((purity[1:] < SHAPE_SHARE).sum())
        shapes += len(whole) - 1
        split_total, mixed_total = split_total + split, mixed_total + mixed
        if split or mixed:
            failing[seed] = (split, mixed)
    return {"drawings": len(seeds), "shapes": shapes, "split": split_total, "mixed": mixed_total,
            "failing": failing}


def picture(path: Path, seed: int = 3, size: int = 512) -> Path:
    """Line art | regions in random colours | flats | flats under the line art, for a procedural sketch
    with hatching and gaps. The colour the flats take stands in for a model's: each drawn shape gets a
    colour, blurred and noisy."""
    from PIL import Image, ImageFilter

    from backend.inference.imageio import save_image, side_by_side
    from training.sketches import draw_sketch

    sketch = draw_sketch(seed, size, hatch_share=0.7)
    labels = segment(sketch.line)
    rng = np.random.default_rng(seed)
    regions = rng.integers(40, 256, (int(labels.max()) + 1, 3), dtype=np.uint8)[labels]
    palette = rng.integers(60, 250, (int(sketch.shapes.max()) + 1, 3), dtype=np.uint8)
    palette[0] = (238, 236, 228)
    colour = Image.fromarray(palette[sketch.shapes]).filter(ImageFilter.GaussianBlur(3))
    colour = np.clip(np.asarray(colour, np.int16) + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
    line = sketch.line if sketch.line.ndim == 2 else 255 - sketch.line[..., 3]
    flat = flats(sketch.line, colour)
    under = (flat * (line[..., None] / 255.0) + 0.5).astype(np.uint8)
    return save_image(path, side_by_side([line, regions, flat, under], height=384))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.regions_check", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("faces", help="region figures on a folder of colour pictures")
    f.add_argument("folder", type=Path)
    f.add_argument("--count", type=int, default=None, help="the first N pictures (default: all)")
    f.add_argument("--extractors", default=",".join(EXTRACTORS), help="comma-separated: " + ", ".join(EXTRACTORS))
    sk = sub.add_parser("sketches", help="region figures on procedural sketches against their drawn shapes")
    sk.add_argument("--size", type=int, default=512)
    sk.add_argument("--seeds", default="0-191", help="FIRST-LAST")
    sk.add_argument("--hatch-share", type=float, default=0.4)
    pic = sub.add_parser("picture", help="write the README's flats picture")
    pic.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.what == "picture":
        print(f"wrote {picture(args.out)}")
        return 0
    if args.what == "sketches":
        first, _, last = args.seeds.partition("-")
        r = measure_sketches(range(int(first), int(last or first) + 1), args.size, args.hatch_share)
        right = r["drawings"] - len(r["failing"])
        print(f"{args.size} px, {r['drawings']} drawings: {right} entirely right; {r['shapes']} shapes, "
              f"{r['split']} split, {r['mixed']} regions over two shapes")
        for seed, (split, mixed) in r["failing"].items():
            print(f"  seed {seed}: {split} shapes split, {mixed} regions over two shapes")
        return 0
    extractors = tuple(args.extractors.split(","))
    if set(extractors) - set(EXTRACTORS):
        print(f"unknown extractor(s) {sorted(set(extractors) - set(EXTRACTORS))}; choose from "
              f"{', '.join(EXTRACTORS)}", file=sys.stderr)
        return 2
    if not args.folder.is_dir():
        print(f"no folder {args.folder}", file=sys.stderr)
        return 2
    for name, r in measure_faces(args.folder, args.count, extractors).items():
        print(f"{name:9s} {r['pictures']} pictures: largest region {r['largest_share_median']:.0%} median, "
              f"{r['largest_share_max']:.0%} at most; regions {r['regions_median']:.0f} median, {r['regions_min']} "
              f"at least; {r['failing']} miss a goal ({r['over_share']} > {MAX_SHARE:.0%}, {r['under_count']} < "
              f"{MIN_REGIONS} regions)"
              + (f": {' '.join(r['failing_files'][:SHOW_FILES])}" if r["failing"] else "")
              + (f" and {r['failing'] - SHOW_FILES} more" if r["failing"] > SHOW_FILES else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
