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
    p.add_argument("--reference", "-r", required=True, type=Path, help="the coloured picture whose colours to use")
    p.add_argument("--out", "-o", required=True, type=Path,
                   help="output folder, or a file name when there is one sketch and one output")
    p.add_argument("--output", action="append", choices=OUTPUTS, dest="outputs",
                   help="what to write (repeatable): color = layer to put under the line art (default), "
                        "flattened = colour x line art, flats = flat regions, shading = output minus flats")
    add_model_options(p, device_note=" (in-process only)", bf16=True)
    p.add_argument("--resolution", type=int, help="model resolution (long side); default: the model's own")
    p.add_argument("--soft-color", action="store_true",
                   help="the model's colour resized softly across the lines (before crisp colour), instead of "
                        "each closed area keeping its own colour up to its lines (in-process only)")
    p.add_argument("--server", metavar="ENDPOINT", help=f"use a running `irodori serve` (e.g. {DEFAULT_ENDPOINT})")
    p.add_argument("--jobs", type=int, default=4, help="requests kept in flight with --server")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds per request with --server, waits for a busy server included")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")


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
    outputs = args.outputs or ["color"]
    try:
        sketches = collect_sketches(args.sketches)
        protected = {p.resolve() for p in sketches} | {args.reference.resolve()}
        plan = plan_outputs(sketches, outputs, args.out, protected, args.overwrite)
        if args.server and args.soft_color:
            raise ValueError("--soft-color works in-process only; the server always sends crisp colour")
        if args.server:
            written = _run_server(args, plan, outputs)
        else:
            written = _run_local(args, plan, outputs)
    except ValueError as exc:
        print(f"irodori colorize: {exc}", file=sys.stderr)
        return 2
    folder = args.out if args.out.suffix.lower() not in IMAGE_SUFFIXES else args.out.parent
    print(f"wrote {written} image(s) to {folder}")
    return 0


def _run_local(args: argparse.Namespace, plan: dict[Path, dict[str, Path]], outputs: list[str]) -> int:
    from backend.inference.pipeline import Colorizer

    colorizer = Colorizer(args.checkpoint, device=args.device, bf16=args.bf16, crisp=not args.soft_color)
    if colorizer.untrained:
        print("note: no trained model found, colours come from an UNTRAINED seeded generator", file=sys.stderr)
    reference = load_image(args.reference, "reference")
    written = 0
    for sketch, targets in tqdm(plan.items(), disable=len(plan) < 2, unit="sketch", desc="colorize"):
        result = colorizer.colorize(load_image(sketch), reference, outputs, args.resolution)
        for name, target in targets.items():
            save_image(target, result[name])
            written += 1
    return written


def _run_server(args: argparse.Namespace, plan: dict[Path, dict[str, Path]], outputs: list[str]) -> int:
    """Keeps --jobs requests in flight (one client per thread) and writes each result as it arrives."""
    from backend.protocol import Client, IrodoriError

    reference = args.reference.read_bytes()
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
        result = client().colorize_patiently(sketch.read_bytes(), reference, outputs=tuple(outputs),
                                             options=options)
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
