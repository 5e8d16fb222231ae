"""`irodori colorize FOLDER ... --ray [ADDRESS]`: the same batch on Ray Data, on one machine or a cluster.

Stages (one sketch per block, so a lost actor costs at most the sketches it held):
  read     CPU task: load the line art (checked as plain colorize checks it)
  colour   model actors, one Colorizer each (num_gpus=1 per actor where the cluster has GPUs, else CPU actors);
           Ray Data restarts a dead actor and hands its sketches to a live one
  write    CPU task: every output written to a unique temp file, then linked into place; a link never
           replaces a file, so an output is written exactly once even when its sketch was coloured twice
Resumable: sketches whose outputs all exist are skipped (unless --overwrite), so a crashed run is run again as
is and loses only what was in flight. Paths must be the same on every node (a shared or local folder).
"""
from __future__ import annotations

import argparse
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.inference.imageio import load_image, save_image


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # sketch -> reason

    def lines(self) -> list[str]:
        out = [f"done {self.done}, skipped {self.skipped} (outputs exist), failed {len(self.failed)}"]
        out += [f"  failed: {sketch}: {reason}" for sketch, reason in sorted(self.failed.items())]
        return out


def run(args: argparse.Namespace, plan: dict[Path, dict[str, Path]], outputs: list[str],
        hints: dict[Path, Path | None]) -> Summary:
    """Colour the sketches of `plan` on Ray; the summary says what happened to each."""
    from backend.service.ray_serve import connect

    summary = Summary()
    todo = []
    for sketch, targets in plan.items():
        if not args.overwrite and all(t.exists() for t in targets.values()):
            summary.skipped += 1
        else:
            todo.append({"sketch": str(sketch), "targets": [str(targets[name]) for name in outputs],
                         "hints": str(hints[sketch] or "")})
    if not todo:
        return summary
    resources = connect(args.ray or None)
    import ray
    import ray.data
    import torch
    from tqdm import tqdm

    load_image(args.reference, "reference")  # a bad reference is refused before any actor starts
    device = args.device if args.device != "auto" else ("cuda" if resources.get("GPU", 0) >= 1 else "cpu")
    gpus = int(resources.get("GPU", 0)) if device.startswith("cuda") else 0
    actors = args.ray_actors or gpus or max(1, int(resources.get("CPU", 1)) // 2)
    options = dict(checkpoint=str(args.checkpoint) if args.checkpoint else None, device=device, bf16=args.bf16,
                   crisp=not args.soft_color, reference=str(args.reference), outputs=tuple(outputs),
                   resolution=args.resolution, threads=torch.get_num_threads(), delay_ms=args.ray_delay_ms)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours below counts sketches, not blocks
    ds = ray.data.from_items(todo, override_num_blocks=len(todo))
    ds = ds.map(_read, num_cpus=0.5)
    ds = ds.map_batches(_ColourActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
                        num_gpus=1 if gpus else 0, num_cpus=1, fn_constructor_kwargs=options)
    ds = ds.map(_write, num_cpus=0.5, fn_kwargs={"overwrite": args.overwrite})
    with tqdm(total=len(todo), unit="sketch", desc="colorize (ray)", disable=len(todo) < 2) as bar:
        for row in ds.iter_rows():
            if row["error"]:
                summary.failed[row["sketch"]] = row["error"]
            else:
                summary.done += 1
            bar.update(1)
    return summary


# ------------------------------------------------------------------------------------------ stages
def _read(row: dict) -> dict:
    """Line art as (H, W, C) (grey as C=1), so every block holds one array shape kind; errors travel along."""
    try:
        a = load_image(row["sketch"])
        row["lineart"], row["error"] = (a[..., None] if a.ndim == 2 else a), ""
    except Exception as exc:  # one unreadable file fails itself, not the batch
        row["lineart"], row["error"] = np.zeros((1, 1, 1), np.uint8), f"cannot read: {exc}"
    return row


class _ColourActor:
    """One Colorizer per actor, loaded once; a bad sketch is reported, not raised (that would end the job)."""

    def __init__(self, checkpoint: str | None, device: str, bf16: bool, crisp: bool, reference: str, outputs: tuple,
                 resolution: int | None, threads: int, delay_ms: float) -> None:
        import torch

        from backend.inference.pipeline import Colorizer

        torch.set_num_threads(threads)  # as many as plain colorize uses here (Ray would set 1 per CPU slot)
        self.colorizer = Colorizer(checkpoint, device=device, bf16=bf16, crisp=crisp)
        self.reference = load_image(reference, "reference")  # read here: no large actor argument to keep
        self.outputs, self.resolution, self.delay_ms = outputs, resolution, delay_ms

    def __call__(self, batch: dict) -> dict:
        error = str(batch["error"][0])
        results: dict[str, np.ndarray] = {}
        if not error:
            if self.delay_ms:  # testing only: keeps sketches in flight long enough to kill an actor
                import time

                time.sleep(self.delay_ms / 1e3)
            a, hint_file = batch["lineart"][0], str(batch["hints"][0])
            try:
                hints = load_image(hint_file, "hints") if hint_file else None
                results = self.colorizer.colorize(a[..., 0] if a.shape[-1] == 1 else a, self.reference,
                                                  self.outputs, self.resolution, hints=hints)
            except Exception as exc:  # e.g. too large: this sketch fails, the job goes on
                error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
                error = f"with hints {hint_file}: {error}" if hint_file else error
        out = {"sketch": batch["sketch"], "targets": batch["targets"], "hints": batch["hints"],
               "error": np.array([error])}
        for i, name in enumerate(self.outputs):
            out[f"out{i}"] = results[name][None] if name in results else np.zeros((1, 1, 1, 3), np.uint8)
        return out


def _write(row: dict, overwrite: bool) -> dict:
    """Each output to a unique temp file in its folder, then into place: a hard link (never replaces: a second
    colouring of the same sketch after a lost actor finds the file there and leaves it), or with --overwrite
    a rename. Returns only the sketch and its error: the pixels stop here."""
    error = row["error"]
    if not error:
        try:
            for i, target in enumerate(row["targets"]):
                _place(Path(target), row[f"out{i}"], overwrite)
        except OSError as exc:
            error = f"cannot write: {exc}"
    return {"sketch": row["sketch"], "error": error}


def _place(target: Path, pixels: np.ndarray, overwrite: bool) -> None:
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}{target.suffix}")
    save_image(tmp, pixels)
    try:
        if overwrite:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # written by an earlier attempt of this sketch: keep that one
    finally:
        tmp.unlink(missing_ok=True)
