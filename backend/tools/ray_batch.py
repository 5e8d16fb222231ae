"""`irodori colorize FOLDER ... --ray [ADDRESS]`: the same batch on Ray Data, on one machine or a cluster.

One stage: model actors (one Colorizer each; num_gpus=1 per actor where the cluster has GPUs, else CPU
actors) take FRAMES_PER_CALL sketches per call as file names, and each reads, colours and writes its own. Only
names and error strings cross Ray's object store, never pixels: a separate read task and write task per frame
cost their object-store copies, a Ray task each and a share of the cores the model needs (docs/performance.md,
"Ray batch and serve in `irodori bench`"). A GPU actor reads the next sketch and writes the last outputs in
two threads while the model runs, so the GPU is not left waiting on PNG decoding and encoding; a CPU actor
does them in turn, as the plain loop does (beside the model's torch threads they would slow it down).

A lost actor: Ray Data restarts it and sends its calls again (to it or a live one), so a killed actor costs
at most the sketches of its calls in flight, coloured again. Every output is written to a unique temp file,
then linked into place; a link never replaces a file, so an output is written exactly once even when its
sketch was coloured twice, and the temp files of a killed actor are removed when the run ends.
Resumable: sketches whose outputs all exist are skipped (unless --overwrite), so a crashed run is run again as
is and loses only what was in flight. Paths must be the same on every node (a shared or local folder).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.inference import keyframe_requests
from backend.inference.imageio import load_image, save_image

FRAMES_PER_CALL = 2  # per actor call: fewer Ray calls, while a lost actor still loses few frames


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
    from backend.service.ray_serve import MODEL_ACTOR_ENV, connect

    summary = Summary()
    todo = []
    for sketch, targets in plan.items():
        if not args.overwrite and all(t.exists() for t in targets.values()):
            summary.skipped += 1
        else:
            todo.append({"sketch": str(sketch), "targets": "\n".join(str(targets[name]) for name in outputs),
                         "hints": str(hints[sketch] or "")})
    if not todo:
        return summary
    resources = connect(args.ray or None)
    import ray
    import ray.data
    import torch
    from tqdm import tqdm

    load_image(args.reference, "reference")  # a bad reference (or keyframe) is refused before any actor starts
    keyframe = tuple(str(p) for p in args.keyframe) if args.keyframe else None
    if keyframe:
        keyframe_requests.load_keyframe(*keyframe)
    device = args.device if args.device != "auto" else ("cuda" if resources.get("GPU", 0) >= 1 else "cpu")
    gpus = int(resources.get("GPU", 0)) if device.startswith("cuda") else 0
    actors = args.ray_actors or gpus or max(1, int(resources.get("CPU", 1)) // 2)
    options = dict(checkpoint=str(args.checkpoint) if args.checkpoint else None, device=device, bf16=args.bf16,
                   crisp=not args.soft_color, reference=str(args.reference), outputs=tuple(outputs),
                   resolution=args.resolution, threads=torch.get_num_threads(), delay_ms=args.ray_delay_ms,
                   overwrite=args.overwrite, keyframe=keyframe)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours below counts sketches, not blocks
    ds = ray.data.from_items(todo, override_num_blocks=math.ceil(len(todo) / FRAMES_PER_CALL))
    ds = ds.map_batches(_ColourActor, batch_size=FRAMES_PER_CALL, compute=ray.data.ActorPoolStrategy(size=actors),
                        num_gpus=1 if gpus else 0, num_cpus=1, fn_constructor_kwargs=options,
                        runtime_env=MODEL_ACTOR_ENV)
    try:
        with tqdm(total=len(todo), unit="sketch", desc="colorize (ray)", disable=len(todo) < 2) as bar:
            for row in ds.iter_rows():
                if row["error"]:
                    summary.failed[row["sketch"]] = row["error"]
                else:
                    summary.done += 1
                bar.update(1)
    finally:
        _sweep([Path(t) for row in todo for t in row["targets"].split("\n")])
    return summary


# ------------------------------------------------------------------------------------------ the actor
class _ColourActor:
    """One Colorizer per actor, loaded once; a bad sketch is reported, not raised (that would end the job)."""

    def __init__(self, checkpoint: str | None, device: str, bf16: bool, crisp: bool, reference: str, outputs: tuple,
                 resolution: int | None, threads: int, delay_ms: float, overwrite: bool,
                 keyframe: tuple[str, str] | None = None) -> None:
        import torch

        from backend.inference.pipeline import Colorizer

        torch.set_num_threads(threads)  # as many as plain colorize uses here (Ray would set 1 per CPU slot)
        self.colorizer = Colorizer(checkpoint, device=device, bf16=bf16, crisp=crisp)
        self.reference = load_image(reference, "reference")  # read here: no large actor argument to keep
        self.outputs, self.resolution, self.delay_ms, self.overwrite = outputs, resolution, delay_ms, overwrite
        # segmented once per actor, as the server caches it
        self.key = keyframe_requests.load_keyframe(*keyframe) if keyframe else None
        self.io = ThreadPoolExecutor(2, thread_name_prefix="irodori-io") if device.startswith("cuda") else None

    def __call__(self, batch: dict) -> dict:
        sketches, hint_files = [str(s) for s in batch["sketch"]], [str(h) for h in batch["hints"]]
        reads = [self._io(_read, s, h) for s, h in zip(sketches, hint_files)]
        errors, writes = [], []
        for i, read in enumerate(reads):
            try:
                error, placing = self._colour(read.result(), str(batch["targets"][i]), hint_files[i])
            except _ReadError as exc:
                error, placing = str(exc), []
            errors.append(error)
            writes += [(i, done) for done in placing]
        for i, done in writes:  # a call returns only once its outputs are in place
            try:
                done.result()
            except OSError as exc:
                errors[i] = f"cannot write: {exc}"
        return {"sketch": np.array(sketches), "error": np.array(errors)}

    def _colour(self, read: tuple, targets: str, hint_file: str) -> tuple[str, list]:
        """(error, the futures of its outputs being written)."""
        if self.delay_ms:  # testing only: keeps sketches in flight long enough to kill an actor
            import time

            time.sleep(self.delay_ms / 1e3)
        line, hints = read
        try:
            if self.key is None:
                results = self.colorizer.colorize(line, self.reference, self.outputs, self.resolution, hints=hints)
            else:  # as plain `colorize --keyframe`: the model's outputs, then the flats in the keyframe's colours
                results = self.colorizer.colorize(line, self.reference, keyframe_requests.model_outputs(self.outputs),
                                                  self.resolution, hints=hints)
                results = keyframe_requests.finish(self.key, line, results)
        except Exception as exc:  # e.g. too large: this sketch fails, the job goes on
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
            return (f"with hints {hint_file}: {error}" if hint_file else error), []
        return "", [self._io(_place, Path(target), results[name], self.overwrite)
                    for target, name in zip(targets.split("\n"), self.outputs)]

    def _io(self, fn, *args) -> Future:
        """fn(*args) in an I/O thread (GPU actors), or here and now (CPU actors)."""
        if self.io is not None:  # PNG decoding and encoding release the GIL
            return self.io.submit(fn, *args)
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except Exception as exc:  # raised where the result is asked for, as from a thread
            done.set_exception(exc)
        return done


class _ReadError(Exception):
    pass


def _read(sketch: str, hint_file: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The line art and its hints, checked as plain colorize checks them; raises _ReadError with the reason."""
    try:
        line = load_image(sketch)
    except Exception as exc:  # one unreadable file fails itself, not the batch
        raise _ReadError(f"cannot read: {exc}") from None
    try:
        return line, (load_image(hint_file, "hints") if hint_file else None)
    except Exception as exc:
        raise _ReadError(f"with hints {hint_file}: {exc}") from None


# ------------------------------------------------------------------------------------------ writing
def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}{target.suffix}")


def _place(target: Path, pixels: np.ndarray, overwrite: bool) -> None:
    """To a unique temp file in its folder, then into place: a hard link (never replaces: a second colouring
    of the same sketch after a lost actor finds the file there and leaves it), or with --overwrite a rename."""
    tmp = _temp_name(target)
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


def _sweep(targets: list[Path]) -> None:
    """Remove the temp files (`_temp_name`) a killed actor left beside these targets."""
    by_folder: dict[Path, set[str]] = {}
    for t in targets:
        by_folder.setdefault(t.parent, set()).add(t.name)
    pattern = re.compile(r"^\.(.+)\.[0-9a-f]{12}(\.[^.]+)$")
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            m = pattern.match(entry.name)
            if m and m.group(1) + m.group(2) in names:
                Path(entry.path).unlink(missing_ok=True)
