"""The `irodori bench` command: which sections run, in which order, and what is printed and saved.

Sections that other packages add (the training steps) are plug-ins: entry points of group
`irodori.bench` (backend/tools/extensions.py), each a module with `run(device, quick) -> list[dict]` and
`table_rows(results)`. They run after the built-in sections, in the same process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from backend.inference.options import add_model_options
from backend.tools import extensions

from . import ray_section
from .children import run_child
from .kernels import bench_generator, bench_peak
from .measure import machine_info
from .plan import FULL, QUICK, Plan
from .report import table, targets
from .served import bench_served

SECTIONS = ("peak", "generator", "pipeline", "flats", "hints", "transport", "concurrency")  # built in, default
ON_REQUEST = ("ray",)  # built in, run only when named (an optional package, minutes of frames)


def add_arguments(p: argparse.ArgumentParser) -> None:
    plugins = extensions.find(extensions.BENCH_SECTIONS)
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (about a minute)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every figure as JSON here")
    p.add_argument("--sections", help=f"comma-separated subset of "
                                      f"{','.join(SECTIONS + ON_REQUEST + tuple(plugins))} (default: all but "
                                      f"{', '.join(ON_REQUEST)}; {', '.join(plugins) or 'none'} from plug-ins)")
    add_model_options(p, checkpoint_help="model for (c), (d), (e) (default: the bundled demo model, else an "
                                         "untrained default-config generator)")
    p.add_argument("--untrained", action="store_true",
                   help="use a seeded untrained default ModelConfig() generator for (c), (d), (e): what a model "
                        "of the paper's size costs (the bundled demo model is a 64 px toy that runs in ms)")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out the torch.compile rows of (b) (each compiles for tens of seconds per size)")
    p.add_argument("--ray-frames", type=int, help="frames of the ray section's batch (default: 200, --quick 8)")
    p.add_argument("--ray-address", metavar="ADDRESS", help="the ray section on the Ray cluster at ADDRESS "
                                                            "(default: a local Ray inside each command)")
    p.add_argument("--threads", type=int, default=0, help="torch threads here and in every subprocess "
                                                          "(0 = torch's default: one per core)")


def _refusal(args: argparse.Namespace, sections: list[str], plugins: dict[str, str]) -> str | None:
    """Why these arguments cannot run, or None."""
    known = SECTIONS + ON_REQUEST + tuple(plugins)
    unknown = sorted(set(sections) - set(known))
    if unknown:
        return (f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(known)} "
                f"({extensions.missing_hint(extensions.BENCH_SECTIONS)})")
    if "ray" in sections and ray_section.missing():
        return ray_section.missing()
    if args.ray_frames is not None and args.ray_frames < 1:
        return "--ray-frames must be >= 1"
    if args.checkpoint is not None and not (args.checkpoint / "config.json").is_file():
        return f"{args.checkpoint} is not a model folder (no config.json)"
    if args.threads < 0:
        return "--threads must be >= 0"
    if args.untrained and args.checkpoint is not None:
        return "--untrained and --checkpoint exclude each other"
    return None


def _load_plugins(sections: list[str], plugins: dict[str, str], named: bool) -> dict[str, ModuleType]:
    """The plug-in sections to run. One that cannot be loaded stops a run that named it, and is left out
    (with a note) of a default run: a broken optional package must not cost the other figures."""
    loaded = {}
    for name in sections:
        if name in plugins:
            try:
                loaded[name] = extensions.load(extensions.BENCH_SECTIONS, name, plugins[name])
            except extensions.ExtensionError as exc:
                if named:
                    raise
                print(f"irodori bench: leaving out section {exc}", file=sys.stderr)
    return loaded


def main(args: argparse.Namespace) -> int:
    import torch

    from backend.inference.pipeline import pick_device

    plugins = extensions.find(extensions.BENCH_SECTIONS)
    sections = [s.strip() for s in (args.sections or ",".join(SECTIONS + tuple(plugins))).split(",") if s.strip()]
    refusal = _refusal(args, sections, plugins)
    if refusal is None:
        try:
            device = pick_device(args.device)
            loaded = _load_plugins(sections, plugins, named=args.sections is not None)
        except (ValueError, extensions.ExtensionError) as exc:
            refusal = str(exc)
    if refusal is not None:
        print(f"irodori bench: {refusal}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = device.type
    plan = QUICK if args.quick else FULL
    if args.no_compile:
        plan = replace(plan, gen_compile=False)
    res = run(args, plan, sections, loaded, device)
    _print(res, args.quick)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0


def run(args: argparse.Namespace, plan: Plan, sections: list[str], plugins: dict[str, ModuleType],
        device: Any) -> dict[str, Any]:
    """Every chosen section, in order, into one result dict (with its table and targets)."""
    res: dict[str, Any] = {"machine": machine_info(device, args.threads), "quick": args.quick, "plan": asdict(plan)}
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    untrained_dir = None
    if args.untrained:  # saved like any model, so every subprocess and `irodori serve` loads it the real way
        untrained_dir = tempfile.TemporaryDirectory(prefix="irodori-bench-")  # removed when run() returns
        args.checkpoint = _save_untrained(Path(untrained_dir.name) / "untrained")
        say(f"model for (c)-(e): untrained default ModelConfig() at {args.checkpoint}")
    if "peak" in sections or "generator" in sections:
        say("(a) dense matmul and conv throughput")
        res["peak"] = bench_peak(device, plan)
    if "generator" in sections:
        say("(b) generator forward")
        res["generator"] = bench_generator(device, plan, res["peak"])
    spec_base = {"device": device.type, "checkpoint": str(args.checkpoint) if args.checkpoint else None}
    if "pipeline" in sections or "transport" in sections or "flats" in sections:
        res["pipeline"] = _pipeline(spec_base, plan, args.threads, say)
    if "flats" in sections:
        res["flats"] = _flats(spec_base, plan, args.threads, say, res["pipeline"])
    if "hints" in sections:
        size = plan.pipeline_sizes[0]
        say(f"hints {size}x{size}: requests without and with colour hints, interleaved")
        res["hints"] = [run_child({**spec_base, "kind": "hints", "size": size, "rounds": plan.flats_request_rounds},
                                  args.threads)]
    if "transport" in sections or "concurrency" in sections:
        say("(d) and (e): `irodori serve` subprocesses on loopback")
        res.update(bench_served(args, plan, sections))
    if "ray" in sections:
        res["ray"] = ray_section.bench_ray(args, plan, say)
    for name, section in plugins.items():
        say(f"{name} (plug-in {section.__name__})")
        res[name] = section.run(device, args.quick)
    res["machine"]["load_avg_end"] = list(os.getloadavg())
    res["seconds"] = time.perf_counter() - t_start
    res["targets"] = targets(res) + ray_section.targets(res.get("ray", {}))
    res["table"] = table(res, {**({"ray": ray_section} if "ray" in res else {}), **plugins})
    return res


def _save_untrained(path: Path) -> Path:
    from backend.inference.pipeline import untrained_checkpoint
    from backend.model.checkpoint import save_checkpoint

    ckpt = untrained_checkpoint()
    save_checkpoint(path, ckpt.generator, ckpt.style_sha256, meta=ckpt.meta)
    return path


def _pipeline(spec_base: dict, plan: Plan, threads: int, say: Callable[[str], None]) -> list[dict]:
    """(c): the model's own resolution, then each size, each in a fresh subprocess."""
    say("(c) in-process pipeline at the model's resolution, one fresh subprocess per size")
    spec = {**spec_base, "kind": "pipeline", "repeats": plan.pipeline_repeats}
    mr = run_child({**spec, "size": "model"}, threads)
    mr["is_model_resolution"] = True
    rows = [mr] if mr["size"] not in plan.pipeline_sizes else []
    for size in plan.pipeline_sizes:
        say(f"(c) {size}x{size}")
        rows.append(run_child({**spec, "size": size}, threads))
    big = rows[-1]
    if big is not mr:
        big["big_ratio"] = big["median_ms"] / (mr["median_ms"] + big["resize_ms"])
    return rows


def _flats(spec_base: dict, plan: Plan, threads: int, say: Callable[[str], None], pipeline: list[dict]
           ) -> list[dict]:
    rows = []
    pipe = {p["size"]: p["median_ms"] for p in pipeline}
    for size in plan.pipeline_sizes:
        say(f"flats {size}x{size}")
        fl = run_child({**spec_base, "kind": "flats", "size": size, "repeats": plan.flats_repeats,
                        "rounds": plan.flats_request_rounds}, threads)
        fl["pct_of_pipeline"] = 100 * fl["flats_s"] * 1e3 / pipe[size] if size in pipe else None
        rows.append(fl)
    return rows


def _print(res: dict, quick: bool) -> None:
    m = res["machine"]
    print(f"irodori bench{' --quick' if quick else ''}: {m['cpu']}, {m['logical_cores']} logical cores, "
          f"torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}"
          f"{' ' + m['gpu'] if 'gpu' in m else ''}, bf16 {'yes' if m['bf16'] else 'no'}"
          f"{''.join(f', {k}={v}' for k, v in m['env'].items())}; load average "
          f"{m['load_avg_start'][0]:.1f} -> {m['load_avg_end'][0]:.1f}; {res['seconds']:.0f} s")
    print(res["table"])
    if res["targets"]:
        print("\ntargets (benchmark figures, not tests):")
        for t in res["targets"]:
            extra = "".join(f", {k[:-6].replace('_', ' ')}: {t[k]:.3g}"
                            for k in ("cpu_time_value", "same_request_value") if t.get(k) is not None)
            print(f"  {t['name']}: {t['value']:.3g}{extra} (target {t['target']}): {'met' if t['met'] else 'NOT met'}")
