"""`irodori demo`: colour the bundled synthetic sketches with the bundled references and the demo model.

Each sketch is coloured with every reference, so the picture shows at a glance that the colours follow
the reference rather than one learned average scheme.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from backend.inference.imageio import load_image, save_image, side_by_side
from backend.inference.options import add_model_options

SAMPLES = Path(__file__).resolve().parent.parent / "demo" / "samples"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the pictures (default out/demo)")
    add_model_options(p)


def main(args: argparse.Namespace) -> int:
    from backend.inference.pipeline import Colorizer

    sketches = sorted(SAMPLES.glob("sketch_*.png"))
    references = sorted(SAMPLES.glob("reference_*.png"))
    if not sketches or not references:
        print(f"irodori demo: no bundled samples in {SAMPLES} (the package is incomplete)", file=sys.stderr)
        return 2
    colorizer = Colorizer(args.checkpoint, device=args.device)
    print(f"model: {colorizer.name} on {colorizer.device}")
    if colorizer.untrained:
        print("NOTE: no trained demo model is bundled; this run uses a seeded UNTRAINED generator, "
              "so the colours are meaningless. It shows that the pipeline runs end to end.")
    refs = [load_image(p) for p in references]
    rows = []
    for sketch_path in sketches:
        sketch = load_image(sketch_path)
        row = [sketch]
        for ref_path, ref in zip(references, refs):
            result = colorizer.colorize(sketch, ref, ("color", "flattened"))
            save_image(args.out / f"{sketch_path.stem}_with_{ref_path.stem}.png", result["flattened"])
            row += [ref, result["flattened"]]
        rows.append(side_by_side(row, height=192))
    width = max(r.shape[1] for r in rows)
    grid = np.full((sum(r.shape[0] for r in rows) + 4 * (len(rows) - 1), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        grid[y:y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + 4
    picture = save_image(args.out / "demo.png", grid)
    print(f"wrote {len(sketches) * len(references)} coloured images and the overview {picture}")
    print("each row: sketch | reference A | result A | reference B | result B ...")

    # Flats of the first sketch with the first reference: what a colourist gets to shade.
    sketch = load_image(sketches[0])
    result = colorizer.colorize(sketch, refs[0], ("color", "flats"))
    ink = (sketch if sketch.ndim == 2 else sketch[..., 0]).astype(np.float32)[..., None] / 255.0
    under_lines = (result["flats"] * ink + 0.5).astype(np.uint8)
    flats_picture = save_image(args.out / "flats.png", side_by_side(
        [sketch, refs[0], result["color"], result["flats"], under_lines], height=192))
    print(f"and {flats_picture}: line art | reference | colour | flats | flats under the line art")
    if colorizer.takes_hints:
        hints_picture = save_image(args.out / "hints.png", hinted_row(colorizer, load_image(sketches[1]), refs[0]))
        print(f"and {hints_picture}: line art | reference | colour | hint dots | colour with the hints")
    return 0


# The hint dots of the hints picture (README, docs/hints.png): colour -> (y, x) centres on the second
# bundled sketch (256 px): blue hair, a yellow top, a pale green background.
HINT_DOTS = {(40, 70, 200): [(45, 115), (60, 150), (120, 96), (130, 190), (75, 190), (80, 100)],
             (240, 200, 60): [(225, 150), (215, 120), (215, 180)],
             (200, 235, 200): [(30, 30), (150, 30), (150, 235), (20, 230)]}
HINT_RADIUS = 3


def hint_layer(shape: tuple[int, int], dots: dict = HINT_DOTS) -> np.ndarray:
    """(H, W, 4) RGBA: the dots as a user paints them on a hint layer, transparent elsewhere."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    layer = np.zeros((h, w, 4), np.uint8)
    for colour, centres in dots.items():
        for y, x in centres:
            layer[(yy - y) ** 2 + (xx - x) ** 2 <= HINT_RADIUS ** 2] = (*colour, 255)
    return layer


def hinted_row(colorizer, sketch: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One row: line art | reference | colour without hints | the dots on the line art | colour with them."""
    line = sketch if sketch.ndim == 2 else sketch[..., 0]
    hints = hint_layer(line.shape)
    plain = colorizer.colorize(line, reference, ("color",))["color"]
    hinted = colorizer.colorize(line, reference, ("color",), hints=hints)["color"]
    dotted = np.where(hints[..., 3:] > 0, hints[..., :3], np.repeat(line[..., None], 3, 2))
    return side_by_side([line, reference, plain, dotted, hinted], height=line.shape[0])
