"""`irodori colorize`: colour sketch files or folders, in-process or through a running `irodori serve`."""
from __future__ import annotations

import argparse
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backend.inference.imageio import IMAGE_SUFFIXES, load_image, save_image
from backend.inference.options import add_model_options
from backend.protocol import DEFAULT_ENDPOINT
from backend.inference.pipeline import OUTPUTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sketches", nargs="+", type=Path, help="line-art files or folders (searched recursively)")
    p.add_argument("--reference", "-r", type=Path,
                   help="the coloured picture whose colours to use (required unless --keyframe gives one)")
    p.add_argument("--out", "-o", required=True, type=Path,
                   help="output folder, or a file name when there is one sketch and one output")
    p.add_argument("--output", action="append", choices=OUTPUTS, dest="outputs",
                   help="what to write (repeatable): color = layer to put under the line art (default), "
                        "flattened = colour x line art, flats = flat regions, shading = output minus flats")
    add_model_options(p, device_note=" (in-process only)", bf16=True)
    p.add_argument("--hints", type=Path, metavar="FILE|FOLDER",
                   help="colour hints: an RGBA image the size of the line art, transparent except for dots of the "
                        "colours wanted there; a FOLDER gives each sketch the hints file with its name (stem); "
                        "needs a model trained with hints")
    p.add_argument("--keyframe", nargs=2, type=Path, metavar=("LINE", "COLOUR"),
                   help="colour each sketch region by region from a coloured keyframe: its line art and its flats "
                        "or colour picture (in-process, with --server or with --ray). Writes flats in the keyframe's "
                        "colours (default output) and NAME_unsure.png (white: regions with no counterpart, given the "
                        "model's colour); the reference defaults to COLOUR (docs/keyframes.md)")
    p.add_argument("--resolution", type=int, help="model resolution (long side); default: the model's own")
    p.add_argument("--soft-color", action="store_true",
                   help="the model's colour resized softly across the lines (before crisp colour), instead of "
                        "each closed area keeping its own colour up to its lines (in-process only)")
    p.add_argument("--server", metavar="ENDPOINT", help=f"use a running `irodori serve` (e.g. {DEFAULT_ENDPOINT})")
    p.add_argument("--jobs", type=int, default=4, help="requests kept in flight with --server")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds per request with --server, waits for a busy server included")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the batch on Ray Data (`pip install irodori[ray]`): join the cluster at ADDRESS, or "
                        "start a local Ray without one; skips sketches whose outputs exist (docs/scaling.md)")
    p.add_argument("--ray-actors", type=int, help="model actors with --ray (default: one per GPU, else CPUs / 2)")
    p.add_argument("--ray-delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: work in flight


def collect_sketches(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    if not found:
        raise ValueError(f"no images found in {', '.join(map(str, paths))}")
    return found


def match_hints(hints: Path | None, sketches: list[Path]) -> dict[Path, Path | None]:
    """Each sketch's hints file: the one FILE for all, or from a FOLDER the image with the sketch's stem
    (searched recursively). Sketches without a match are coloured without hints, and that is said once."""
    if hints is None:
        return {s: None for s in sketches}
    if hints.is_file():
        return {s: hints for s in sketches}
    if not hints.is_dir():
        raise ValueError(f"--hints {hints}: no such file or folder")
    by_stem: dict[str, Path] = {}
    for path in sorted(p for p in hints.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.stem in by_stem:
            raise ValueError(f"--hints {hints}: both {by_stem[path.stem]} and {path} are named {path.stem!r}; "
                             "keep one hints file per sketch name")
        by_stem[path.stem] = path
    matched = {s: by_stem.get(s.stem) for s in sketches}
    missing = [s.name for s, h in matched.items() if h is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        print(f"note: no hints file in {hints} for {len(missing)} sketch(es) ({shown}): coloured without hints",
              file=sys.stderr)
    return matched


def plan_outputs(sketches: list[Path], outputs: list[str], out: Path, protected: set[Path],
                 overwrite: bool) -> dict[Path, dict[str, Path]]:
    """Where each result goes; refuses to touch an input and, without --overwrite, an existing file."""
    single_file = out.suffix.lower() in IMAGE_SUFFIXES
    if single_file and len(sketches) > 1:
        raise ValueError(f"--out {out} is a file name, but there are {len(sketches)} sketches: give a folder")
    plan: dict[Path, dict[str, Path]] = {}
    seen: set[Path] = set()
    for sketch in sketches:
        targets = {}
        for name in outputs:
            if single_file:
                target = out if name == outputs[0] else out.with_name(f"{out.stem}_{name}{out.suffix}")
            else:
                target = out / f"{sketch.stem}_{name}.png"
            resolved = target.resolve()
            if resolved in protected:
                raise ValueError(f"refusing to write {target}: it is one of the inputs")
            if resolved in seen:
                raise ValueError(f"two sketches would both write {target}: rename one or use separate runs")
            if target.exists() and not overwrite:
                raise ValueError(f"{target} exists: pass --overwrite to replace it, or choose another --out")
            seen.add(resolved)
            targets[name] = target
        plan[sketch] = targets
    return plan


def main(args: argparse.Namespace) -> int:
    outputs = args.outputs or (["flats"] if args.keyframe else ["color"])
    try:
        if args.reference is None:
            if not args.keyframe:
                raise ValueError("give --reference (the coloured picture to take colours from), or --keyframe "
                                 "LINE COLOUR")
            args.reference = args.keyframe[1]
        sketches = collect_sketches(args.sketches)
        hints = match_hints(args.hints, sketches)
        protected = {p.resolve() for p in [*sketches, *filter(None, hints.values())]} | {args.reference.resolve()}
        if args.ray is not None and args.server:
            raise ValueError("--ray and --server are two ways to run the batch: give one")
        protected |= {p.resolve() for p in args.keyframe or ()}
        plan = plan_outputs(sketches, outputs + (["unsure"] if args.keyframe else []), args.out, protected,
                            args.overwrite or args.ray is not None)
        if args.server and args.soft_color:
            raise ValueError("--soft-color works in-process only; the server always sends crisp colour")
        if args.ray is not None:
            return _run_ray(args, plan, outputs + (["unsure"] if args.keyframe else []), hints)
        if args.server:
            written = _run_server(args, plan, outputs, hints)
        else:
            written = _run_local(args, plan, outputs, hints)
    except ValueError as exc:
        print(f"irodori colorize: {exc}", file=sys.stderr)
        return 2
    folder = args.out if args.out.suffix.lower() not in IMAGE_SUFFIXES else args.out.parent
    print(f"wrote {written} image(s) to {folder}")
    return 0


def _run_ray(args: argparse.Namespace, plan: dict[Path, dict[str, Path]], outputs: list[str],
             hints: dict[Path, Path | None]) -> int:
    """Existing outputs are not an error here: they are finished work, skipped (a rerun resumes)."""
    from backend.tools import ray_batch

    summary = ray_batch.run(args, plan, outputs, hints)
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


def _run_local(args: argparse.Namespace, plan: dict[Path, dict[str, Path]], outputs: list[str],
               hints: dict[Path, Path | None]) -> int:
    from backend.inference.pipeline import Colorizer

    colorizer = Colorizer(args.checkpoint, device=args.device, bf16=args.bf16, crisp=not args.soft_color)
    if colorizer.untrained:
        print("note: no trained model found, colours come from an UNTRAINED seeded generator", file=sys.stderr)
    reference = load_image(args.reference, "reference")
    key = None
    if args.keyframe:
        from backend.inference import keyframe_requests

        key = keyframe_requests.load_keyframe(*args.keyframe)
    written = 0
    for sketch, targets in tqdm(plan.items(), disable=len(plan) < 2, unit="sketch", desc="colorize"):
        hint_file = hints[sketch]
        line = load_image(sketch)
        try:
            result = colorizer.colorize(line, reference,
                                        outputs if key is None else keyframe_requests.model_outputs(outputs),
                                        args.resolution,
                                        hints=None if hint_file is None else load_image(hint_file, "hints"))
            if key is not None:  # the model's flats (with the hints) colour the regions the keyframe lacks
                try:
                    result = keyframe_requests.finish(key, line, result)
                except ValueError as exc:
                    raise ValueError(f"{sketch}: {exc}") from None
        except ValueError as exc:
            if hint_file is None:
                raise
            raise ValueError(f"{sketch} with hints {hint_file}: {exc}") from None
        for name, target in targets.items():
            save_image(target, result[name])
            written += 1
    return written


def _run_server(args: argparse.Namespace, plan: dict[Path, dict[str, Path]], outputs: list[str],
                hints: dict[Path, Path | None]) -> int:
    """Keeps --jobs requests in flight (one client per thread) and writes each result as it arrives."""
    from backend.protocol import UNSURE_OUTPUT, Client, IrodoriError

    reference = args.reference.read_bytes()
    keyframe = tuple(p.read_bytes() for p in args.keyframe) if args.keyframe else None  # the server caches it
    asked = tuple(outputs) + ((UNSURE_OUTPUT,) if keyframe else ())
    local = threading.local()
    clients: list = []

    def client() -> "Client":
        if not hasattr(local, "client"):
            local.client = Client(args.server, timeout=args.timeout)
            clients.append(local.client)
        return local.client

    def one(sketch: Path) -> int:
        options = {"resolution": args.resolution} if args.resolution else {}
        # a busy server is waited for (within --timeout): other batches may share it
        hint_file = hints[sketch]
        result = client().colorize_patiently(sketch.read_bytes(), reference, outputs=asked, options=options,
                                             hints=hint_file.read_bytes() if hint_file else None, keyframe=keyframe)
        for name, target in plan[sketch].items():
            px = result[name]
            arr = np.frombuffer(px.data, np.uint8).reshape(px.height, px.width, len(px.layout))
            save_image(target, arr[..., :3])
        return len(plan[sketch])

    written = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(one, s): s for s in plan}
            for fut in tqdm(as_completed(futures), total=len(futures), disable=len(plan) < 2, unit="sketch"):
                try:
                    written += fut.result()
                except IrodoriError as exc:
                    raise ValueError(f"{futures[fut]}: {exc}") from exc
    finally:
        for c in clients:
            c.close()
    return written
