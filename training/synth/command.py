"""`irodori synth`: data sets of synthetic characters on disk (colour, line art and mask PNGs plus meta.json
to re-render any item), and a preview grid to look at them."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from training.synth.base import MAX_SIZE, MIN_SIZE, PARTS, SEED_STRIDE, check_seed, check_size, item_seed
from training.synth.character import random_character
from training.synth.frames import MAX_FRAMES, character_frames
from training.synth.palette import random_palette
from training.synth.raster import render

MAX_COUNT = 1_000_000  # below SEED_STRIDE, so the seed ranges of different data set seeds never overlap
META_FORMAT = "irodori-synth/1"

# A fixed colour per part for looking at masks (not part of any palette).
MASK_VIS: tuple[tuple[int, int, int], ...] = (
    (40, 40, 40), (230, 80, 60), (250, 210, 170), (60, 120, 250), (200, 30, 90),
    (60, 190, 90), (150, 90, 200), (250, 230, 40), (40, 220, 220),
)


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """A mask as an RGB picture, one fixed colour per part (MASK_VIS), for looking at it."""
    return np.array(MASK_VIS, np.uint8)[mask]


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def write_dataset(out: Path, count: int, size: int, seed: int, frames: int = 1) -> list[Path]:
    """Write `count` characters of `size` px into `out`: {i:05d}_color.png, _line.png, _mask.png (the mask
    PNG holds part labels 0..len(PARTS)-1, not colours) and meta.json (enough to re-render every item).
    frames > 1: each character is a moving sequence (frames.py), {i:05d}_{t:03d}_color.png etc., one meta
    item per frame with its "frame" and the palette's "part_colors". Returns the colour image paths, in
    index (and frame) order; the other files sit beside them."""
    from tqdm import tqdm

    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be an int in 1..{MAX_COUNT}, got {count!r}")
    check_size(size)
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be an int in 1..{MAX_FRAMES}, got {frames!r}")
    item_seed(check_seed(seed), count - 1)  # the whole seed range must be valid
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; pick a folder path")
    out.mkdir(parents=True, exist_ok=True)

    items, paths = [], []
    for i in tqdm(range(count), desc="synth", unit="img", disable=count <= 1):
        s = item_seed(seed, i)
        palette = random_palette(s)
        sequence = [random_character(s)] if frames == 1 else character_frames(s, frames)
        for t, character in enumerate(sequence):
            r = render(character, palette, size)
            stem = f"{i:05d}" if frames == 1 else f"{i:05d}_{t:03d}"
            names = {k: f"{stem}_{k}.png" for k in ("color", "line", "mask")}
            _save_png(r.color, out / names["color"])
            _save_png(r.line, out / names["line"])
            _save_png(r.mask, out / names["mask"])
            item = {"index": i, **names, "character_seed": s, "palette_seed": s, "size": size}
            if frames > 1:
                item.update(frame=t, part_colors=[list(c) for c in palette.colors])
            items.append(item)
            paths.append(out / names["color"])
    meta = {
        "format": META_FORMAT,
        "seed": seed,
        "count": count,
        "size": size,
        **({"frames": frames} if frames > 1 else {}),
        "seed_rule": f"character_seed = palette_seed = seed * {SEED_STRIDE} + index",
        "parts": list(PARTS),
        "items": items,
    }
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(out / "meta.json")
    return paths


def preview(seeds: list[int], size: int = 128) -> np.ndarray:
    """One row per seed: colour | line | mask in MASK_VIS colours | the same character in the next seed's
    palette. For a quick look at what the generator makes."""
    rows = []
    for j, s in enumerate(seeds):
        ch = random_character(s)
        r = render(ch, random_palette(s), size)
        other = render(ch, random_palette(seeds[(j + 1) % len(seeds)] if len(seeds) > 1 else s + 1), size)
        line = np.repeat(r.line[..., None], 3, 2)
        rows.append(np.concatenate([r.color, line, mask_to_rgb(r.mask), other.color], 1))
    return np.concatenate(rows, 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write images and meta.json into")
    parser.add_argument("--count", type=int, default=16, help=f"number of characters (1..{MAX_COUNT})")
    parser.add_argument("--size", type=int, default=128, help=f"image side in pixels ({MIN_SIZE}..{MAX_SIZE})")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"data set seed K; item i uses seed K*{SEED_STRIDE}+i (use another K for held-out sets)")
    parser.add_argument("--frames", type=int, default=1,
                        help=f"frames per character (1..{MAX_FRAMES}): >1 draws each character moving (translation, "
                             "scale, arms and hair), for measuring keyframe colouring")
    parser.add_argument("--preview", type=Path, default=None,
                        help="also write a PNG grid of the first items (colour | line | mask | other palette)")


def main(args: argparse.Namespace) -> int:
    try:
        paths = write_dataset(args.out, args.count, args.size, args.seed, args.frames)
    except (ValueError, TypeError, NotADirectoryError) as e:
        print(f"irodori synth: {e}", file=sys.stderr)
        return 2
    if args.preview is not None:
        seeds = [item_seed(args.seed, i) for i in range(min(args.count, 6))]
        Image.fromarray(preview(seeds, args.size)).save(args.preview)
    frames = f" x {args.frames} frames" if args.frames > 1 else ""
    print(f"wrote {args.count} characters{frames} of {args.size} px to {args.out} (meta.json lists their seeds)")
    return 0
