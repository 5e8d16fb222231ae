"""`irodori showcase`: real line art coloured with three references each, as one picture for the README.

Each row: the line art (extracted from a held-out picture, as `irodori eval --images` makes it), the picture it
came from, then the full pipeline's colour layer with three OTHER held-out pictures as references (each shown
as an inset in the corner). People judge a colouriser by looking; this is what they look at.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from backend.inference.options import add_model_options
from training.eval_real import load_truth, make_line, pick_pictures

TILE = 256  # px of each tile in the picture
GAP = 4


def inset(output: np.ndarray, reference: np.ndarray, share: float = 0.3) -> np.ndarray:
    """The output tile with its reference in the bottom-right corner behind a white frame."""
    tile = np.asarray(Image.fromarray(output).resize((TILE, TILE), Image.LANCZOS)).copy()
    side = int(TILE * share)
    small = np.asarray(Image.fromarray(reference).resize((side, side), Image.LANCZOS))
    tile[TILE - side - 4:, TILE - side - 4:] = 255
    tile[TILE - side - 2:TILE - 2, TILE - side - 2:TILE - 2] = small
    return tile


def showcase(colorize, pictures: list[Path], rows: int, size: int, lines: tuple[str, ...],
             references: int = 3) -> np.ndarray:
    """The picture as uint8 RGB; `colorize(line, reference) -> RGB` is the model under test."""
    truths = [load_truth(p, size) for p in pictures]
    n = len(truths)
    if n < rows + references:
        raise ValueError(f"{n} pictures: need at least {rows + references} for {rows} rows of {references} references")
    out_rows = []
    for i in range(rows):
        line = make_line(truths[i], i, lines)
        tiles = [np.repeat(np.asarray(Image.fromarray(line).resize((TILE, TILE), Image.LANCZOS))[..., None], 3, 2),
                 np.asarray(Image.fromarray(truths[i]).resize((TILE, TILE), Image.LANCZOS))]
        for k in range(references):
            ref = truths[(i + rows + k * rows) % n]  # references drawn from outside the rows' own pictures
            tiles.append(inset(colorize(line, ref), ref))
        out_rows.append(np.concatenate([np.pad(t, ((0, 0), (0, GAP), (0, 0)), constant_values=255) for t in tiles], 1))
    grid = np.concatenate([np.pad(r, ((0, GAP), (0, 0), (0, 0)), constant_values=255) for r in out_rows], 0)
    return grid[:-GAP, :-GAP]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    p.add_argument("--images", type=Path, required=True, help="a folder of colour pictures (e.g. the shared faces)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="use only the held-out split of this share (the training recipe's data.holdout)")
    p.add_argument("--rows", type=int, default=3, help="line arts shown (default 3)")
    p.add_argument("--skip", type=int, default=0, help="start at this held-out picture (default 0)")
    p.add_argument("--size", type=int, default=512, help="line-art size in px (default 512)")
    p.add_argument("--lines", default="xdog", help="line extractors used in turn (default xdog: the crispest)")
    p.add_argument("--out", type=Path, default=Path("out/showcase.png"),
                   help="the PNG to write (default out/showcase.png: the shared faces may not go into the repository)")


def main(args: argparse.Namespace) -> int:
    from backend.inference.pipeline import Colorizer

    try:
        pictures = pick_pictures(args.images, args.skip + args.rows + 3 * args.rows, args.holdout)[args.skip:]
        colorizer = Colorizer(args.checkpoint, device=args.device)
        lines = tuple(x for x in args.lines.split(",") if x)
        grid = showcase(lambda line, ref: colorizer.colorize(line, ref, ("color",))["color"], pictures,
                        args.rows, args.size, lines)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"irodori showcase: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out)
    print(f"{colorizer.name}: {args.rows} line arts x 3 references -> {args.out}")
    return 0
