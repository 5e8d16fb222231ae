"""`irodori eval-keyframes`: how well keyframe colouring colours held-out synthetic animation frames.

Protocol (deterministic):
- Sequences: character i has seed EVAL_SEED_BASE + i (training.eval's held-out range) for its drawing, its
  palette and its motion (`synth.character_frames`), rendered at --size px; --frames frames each.
- The keyframe of a pair (t, u) is frame t: its line art and its flats (each part's base colour over the
  part's mask, what a studio's colour keyframe holds). The frame u's line art is coloured from it.
  "consecutive": every pair (t, t + 1); "5 apart": every pair (t, t + 5).
- Truth: each region of frame u (the flats segmentation of its line art) is the part most of its paper
  pixels (not ink) belong to; its true colour is that part's base colour. Regions of >= MIN_REGION px count.
- Segment accuracy: the share of counted regions whose flat colour EQUALS the true colour. Pixel accuracy:
  the same weighted by region area. Unsure regions take the model's flat colour snapped to the nearest
  keyframe colour (the fallback), so they count as whatever that colour is; the unsure share is reported.
- Baseline, same frames in the same run: the model's own flats (Colorizer, "flats" output, reference = the
  keyframe's colour picture). A model's colour never equals a palette colour exactly, so the baseline is
  also scored with the "nearest" rule: a region is right when its colour is nearer (RGB) to its true part
  colour than to any other part colour of the palette. Keyframe colours are palette colours, so for them
  the two rules agree.
- Chains: every sequence coloured from frame 0 alone, each frame directly against the keyframe and each
  against the previous coloured frame; accuracy per distance from the keyframe.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from backend.inference.keyframes import (Keyframe, colour_frame, colour_sequence, frame_regions, keyframe,
                                         region_colours)
from backend.inference.options import add_model_options
from training.eval import EVAL_SEED_BASE
from training.synth import character_frames, random_palette, render

MIN_REGION = 32  # px: regions below this are too small to count (the rule)
GAPS = {"consecutive": 1, "5 apart": 5}


def sequence(seed: int, frames: int, size: int) -> tuple[list, np.ndarray]:
    """The rendered frames of one held-out character and its (parts, 3) base colours."""
    palette = np.array(random_palette(seed).colors, np.uint8)
    return [render(c, random_palette(seed), size) for c in character_frames(seed, frames)], palette


def truth(labels: np.ndarray, mask: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """(K+1,) the part most of each region's paper pixels belong to (all its pixels if it has no paper)."""
    k = int(labels.max())
    parts = int(mask.max()) + 1
    out = np.zeros(k + 1, np.int64)
    for select in (np.ones_like(paper), paper):  # the paper's vote overrides where a region has paper
        votes = np.bincount(labels[select].astype(np.int64) * parts + mask[select], minlength=(k + 1) * parts)
        votes = votes.reshape(k + 1, parts)
        has = votes.sum(1) > 0
        out[has] = votes[has].argmax(1)
    return out


def score(colours: np.ndarray, labels_area: np.ndarray, part: np.ndarray, palette: np.ndarray) -> dict:
    """Exact and nearest-part accuracy, by region and by pixel, over regions of >= MIN_REGION px."""
    keep = labels_area >= MIN_REGION
    keep[0] = False
    want = palette[part]
    exact = (colours == want).all(1)
    d = ((colours[:, None, :].astype(np.int64) - palette[None].astype(np.int64)) ** 2).sum(2)
    nearest = d.argmin(1) == part
    w = labels_area[keep]
    return {"regions": int(keep.sum()), "pixels": float(w.sum()),
            "exact": float(exact[keep].mean()), "exact_px": float((exact[keep] * w).sum() / w.sum()),
            "nearest": float(nearest[keep].mean()), "nearest_px": float((nearest[keep] * w).sum() / w.sum())}


def _pool(scores: list[dict]) -> dict:
    """Region- and pixel-weighted means over many frames (each region counts once)."""
    n = sum(s["regions"] for s in scores)
    px = sum(s["pixels"] for s in scores)
    out = {"frames": len(scores), "regions": n}
    for key in ("exact", "nearest"):
        out[key] = sum(s[key] * s["regions"] for s in scores) / max(n, 1)
        out[key + "_px"] = sum(s[key + "_px"] * s["pixels"] for s in scores) / max(px, 1)
    for key in ("unsure", "unsure_wrong"):
        if scores and key in scores[0]:
            out[key] = sum(s[key] * s["regions"] for s in scores) / max(n, 1)
    return out


def evaluate(count: int, frames: int, size: int, seed_base: int = EVAL_SEED_BASE, model=None) -> dict:
    """Every figure of docs/keyframes.md. model: a Colorizer (the baseline and the unsure regions'
    fallback) or None (unsure regions keep their best guess; no baseline)."""
    if frames < 1 + max(GAPS.values()):
        raise ValueError(f"--frames must be at least {1 + max(GAPS.values())} for pairs {max(GAPS.values())} apart")
    pairs: dict[str, dict[str, list]] = {g: {"keyframes": [], "model": []} for g in GAPS}
    chains: dict[str, dict[int, list]] = {"keyframe": {}, "previous": {}}
    match_ms = []
    for i in range(count):
        seed = seed_base + i
        rendered, palette = sequence(seed, frames, size)
        lines = [r.line for r in rendered]
        described = [frame_regions(line) for line in lines]
        keys, truths = [], []
        for r, (regions, paper) in zip(rendered, described):
            flats = palette[r.mask]
            keys.append(Keyframe.from_regions(regions, region_colours(regions.labels, flats, paper)))
            truths.append(truth(regions.labels, r.mask, paper))
        model_flats: dict[tuple[int, int], np.ndarray] = {}

        def fallback(t: int, u: int) -> np.ndarray | None:
            if model is None:
                return None
            if (t, u) not in model_flats:
                model_flats[(t, u)] = model.colorize(lines[u], rendered[t].color, ("flats",))["flats"]
            return model_flats[(t, u)]

        for name, gap in GAPS.items():
            for t in range(frames - gap):
                u = t + gap
                regions = described[u][0]
                fb = fallback(t, u)
                t0 = time.perf_counter()
                got = colour_frame(keys[t], regions, fb)
                match_ms.append((time.perf_counter() - t0) * 1e3)
                s = score(got.colours, regions.area, truths[u], palette)
                wrong = ~(got.colours == palette[truths[u]]).all(1)
                counted = regions.area >= MIN_REGION
                counted[0] = False
                s["unsure"] = float(got.unsure_regions[counted].mean())
                s["unsure_wrong"] = float((got.unsure_regions & wrong)[counted].mean())
                pairs[name]["keyframes"].append(s)
                if fb is not None:
                    fcol = np.zeros((regions.count + 1, 3), np.uint8)
                    fcol[regions.labels.ravel()] = fb.reshape(-1, 3)
                    pairs[name]["model"].append(score(fcol, regions.area, truths[u], palette))
        for chain in chains:
            got = colour_sequence({0: keys[0]}, [d[0] for d in described], chain,
                                  [fallback(0, u) if u else None for u in range(frames)])
            for u in range(1, frames):
                s = score(got[u].colours, described[u][0].area, truths[u], palette)
                chains[chain].setdefault(u, []).append(s)
        print(f"  sequence {i + 1}/{count} done", file=sys.stderr)
    return {
        "protocol": {"sequences": count, "frames": frames, "size": size, "seed_base": seed_base,
                     "min_region_px": MIN_REGION, "model": None if model is None else model.name},
        "pairs": {name: {k: _pool(v) for k, v in rows.items() if v} for name, rows in pairs.items()},
        "chains": {chain: {str(u): _pool(v) for u, v in sorted(rows.items())} for chain, rows in chains.items()},
        "match_ms": {"median": float(np.median(match_ms)), "max": float(np.max(match_ms))},
    }


def format_table(result: dict) -> str:
    lines = ["| frames | method | segment accuracy | pixel accuracy | nearest-colour accuracy | unsure |",
             "|---|---|---|---|---|---|"]
    for name, rows in result["pairs"].items():
        for method, r in rows.items():
            label = "keyframe matching" if method == "keyframes" else "model only (baseline)"
            unsure = f"{r['unsure']:.3f}" if "unsure" in r else "-"
            lines.append(f"| {name} | {label} | {r['exact']:.3f} | {r['exact_px']:.3f} | {r['nearest']:.3f} | "
                         f"{unsure} |")
    lines += ["", "| distance from keyframe | against the keyframe | against the previous frame |", "|---|---|---|"]
    for u in result["chains"]["keyframe"]:
        a, b = result["chains"]["keyframe"][u], result["chains"]["previous"][u]
        lines.append(f"| {u} | {a['exact']:.3f} | {b['exact']:.3f} |")
    return "\n".join(lines)


def picture(model=None, seed: int = EVAL_SEED_BASE, later: tuple[int, ...] = (3, 6, 10), size: int = 320) -> np.ndarray:
    """The README's picture: top, the keyframe's line art and three later frames'; below, the keyframe's
    colouring and the three frames coloured from it (flats x line art; unsure regions hatched)."""
    from backend.inference.imageio import side_by_side

    rendered, palette = sequence(seed, max(later) + 1, size)
    key_flats = palette[rendered[0].mask]
    key = keyframe(rendered[0].line, key_flats)
    top, bottom = [rendered[0].line], [key_flats]
    for u in later:
        line = rendered[u].line
        fb = None if model is None else model.colorize(line, rendered[0].color, ("flats",))["flats"]
        got = colour_frame(key, line, fb)
        out = (got.flats.astype(np.uint16) * line[..., None] // 255).astype(np.uint8)
        yy, xx = np.mgrid[0:size, 0:size]
        out[got.unsure & ((xx + yy) % 8 < 2)] = 0
        top.append(line)
        bottom.append(out)
    ink = [np.repeat(a[..., None], 3, 2) for a in top]
    rows = [side_by_side(ink, size), side_by_side(bottom, size)]
    return np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8), rows[1]], 0)


# ----------------------------------------------------------------------------------------- `irodori bench`
def run(device, quick: bool) -> list[dict]:
    """What keyframe colouring adds to a request (bench section, entry point irodori.bench): one held-out
    character's frame 1 coloured from its frame 0 at 2048 px (1024 with --quick), the keyframe described
    once beforehand (a front end keeps it) and the frame's segmentation done (the pipeline does it for its
    flats and crisp colour anyway, while the model runs): what is timed is the segmentation cache's
    look-up, describing the frame's regions, matching and painting. Median of 5; the CPU only."""
    size = 1024 if quick else 2048
    rendered, palette = sequence(EVAL_SEED_BASE, 2, size)
    key = keyframe(rendered[0].line, palette[rendered[0].mask])
    t0 = time.perf_counter()
    frame_regions(rendered[1].line)
    segment_ms = (time.perf_counter() - t0) * 1e3
    times, cpu = [], []
    for _ in range(6):
        t0, c0 = time.perf_counter(), time.process_time()
        colour_frame(key, rendered[1].line)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return [{"size": size, "match_ms": float(np.median(times[1:])), "match_cpu_ms": float(np.median(cpu[1:])),
             "segment_ms": segment_ms, "regions": key.regions.count}]


def table_rows(results: list[dict]) -> list[tuple[str, ...]]:
    return [("keyframes", f"{r['size']} px frame, keyframe cached ({r['regions']} regions)",
             f"{r['match_ms']:.0f} ms", f"CPU {r['match_cpu_ms']:.0f} ms; segmentation {r['segment_ms']:.0f} ms "
             "(shared with flats)",
             "describe + match + paint") for r in results]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=12, help="held-out sequences (characters)")
    p.add_argument("--frames", type=int, default=11, help="frames per sequence (at least 6)")
    p.add_argument("--size", type=int, default=256, help="frame side in pixels")
    p.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE, help="first held-out seed")
    p.add_argument("--no-model", action="store_true",
                   help="skip the model: no baseline, unsure regions keep their best guess")
    add_model_options(p, device_note="", bf16=False)
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--picture", type=Path,
                   help="also write the README picture here (keyframe, three later frames, their flats)")


def main(args: argparse.Namespace) -> int:
    try:
        if not 1 <= args.count <= 10_000 or not 6 <= args.frames <= 1000:
            raise ValueError("--count must be in 1..10000 and --frames in 6..1000")
        model = None
        if not args.no_model:
            from backend.inference.pipeline import Colorizer

            model = Colorizer(args.checkpoint, device=args.device)
        result = evaluate(args.count, args.frames, args.size, args.seed_base, model)
    except ValueError as exc:
        print(f"irodori eval-keyframes: {exc}", file=sys.stderr)
        return 2
    result["command"] = "irodori eval-keyframes " + " ".join(sys.argv[2:])
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.picture:
        from backend.inference.imageio import save_image

        save_image(args.picture, picture(model, args.seed_base))
    return 0
