"""`irodori bench --sections ray`: Ray against the plain paths it stands beside, in one run (needs the `ray` extra).

  batch   `irodori colorize FOLDER` (the plain in-process loop) and `irodori colorize FOLDER --ray` on the same
          N frames (plan.ray_frames, or --ray-frames) of plan.ray_size line art, each command timed as a person
          runs it (interpreter, model and Ray start-up included): wall seconds, Ray Data's own execution time,
          and Ray's overhead (no CPU seconds: Ray's workers are not children the command reaps)
  serve   images/s through `irodori serve` and `irodori serve --ray` (one replica) at 1 and 16 clients: the
          (e) throughput scenario of served.py, plan.concurrency_rounds rounds each, medians
Ray is local (started inside each command) unless --ray-address names a cluster. Not in the default sections:
it takes minutes and an optional package. docs/performance.md ("Ray batch and serve in `irodori bench`").
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from backend.tools.launcher import ROOT, child_env, free_port, start_serving

from .children import bench_env
from .measure import line_art_rgba, reference_rgb
from .plan import Plan
from .served import _concurrent_round, _request

TARGET_OVERHEAD = 0.15  # the bound on Ray's batch overhead over the plain loop
CLIENTS = (1, 16)


def missing() -> str | None:
    """Why this section cannot run here, or None."""
    if importlib.util.find_spec("ray") is None:
        return "section ray needs Ray, which is not installed: `pip install 'irodori[ray]'` (or leave out ray)"
    return None


def bench_ray(args: argparse.Namespace, plan: Plan, say: Callable[[str], None]) -> dict:
    frames = args.ray_frames or plan.ray_frames
    model = ["--device", args.device] + (["--checkpoint", str(args.checkpoint)] if args.checkpoint else [])
    ray_args = ["--ray"] + ([args.ray_address] if args.ray_address else [])
    env = bench_env(args.threads)
    with tempfile.TemporaryDirectory(prefix="irodori-bench-ray-") as tmp:
        work = Path(tmp)
        from backend.inference.imageio import save_image

        for i in range(frames):
            save_image(work / "frames" / f"f{i:04d}.png", line_art_rgba(plan.ray_size, seed=i))
        save_image(work / "ref.png", reference_rgb())
        batch = ["colorize", str(work / "frames"), "-r", str(work / "ref.png"), *model]
        say(f"ray batch: plain `colorize` loop, {frames} frames of {plan.ray_size}x{plan.ray_size}")
        plain = _timed([*batch, "-o", str(work / "plain")], env)
        say(f"ray batch: `colorize --ray{' ' + args.ray_address if args.ray_address else ''}`, the same frames")
        on_ray = _timed([*batch, "-o", str(work / "ray"), *ray_args], env)
        m = re.search(r"execution finished in ([\d.]+) seconds", on_ray.pop("log"))
        plain.pop("log")
        on_ray["execution_s"] = float(m.group(1)) if m else None
        res = {"frames": frames, "size": plan.ray_size, "ray_address": args.ray_address or "local",
               "plain": plain, "ray": on_ray, "overhead": on_ray["wall_s"] / plain["wall_s"] - 1,
               "identical": _same_files(work / "plain", work / "ray")}
    res["serve"] = {}
    for name, extra in (("plain", []), ("ray", [*ray_args, "--replicas", "1"])):
        say(f"ray serve: `irodori serve{' ' + ' '.join(extra) if extra else ''}`, "
            f"{' and '.join(map(str, CLIENTS))} clients, {plan.concurrency_rounds} round(s)")
        res["serve"][name] = _serve(["serve", *model, *extra], env, plan)
    return res


def _timed(cmd: list[str], env: dict[str, str]) -> dict:
    """One `irodori` command: wall seconds and its output."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "backend", *cmd], env=child_env(env), cwd=str(ROOT),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"irodori {' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {"wall_s": wall, "log": done.stdout + done.stderr}


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def _serve(cmd: list[str], env: dict[str, str], plan: Plan) -> dict:
    """The (e) rounds against one server: each client count its median round."""
    from backend.protocol import Client

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    lineart, ref = line_art_rgba(plan.concurrent_size), reference_rgb()
    server = SimpleNamespace(endpoint=endpoint)
    rounds: dict[int, list[dict]] = {n: [] for n in CLIENTS}
    with start_serving(endpoint, *cmd, "--bind", endpoint, "--queue-size", "64", timeout=600.0, env=env,
                       stop_grace=30.0):
        with Client(endpoint, timeout=1800.0) as warm:
            _request(warm, lineart, ref)
        for _ in range(plan.concurrency_rounds):
            for n in CLIENTS:
                rounds[n].append(_concurrent_round(server, plan, n, lineart, ref))
    out = {}
    for n, runs in rounds.items():
        mid = sorted(runs, key=lambda r: r["images_per_s"])[len(runs) // 2]
        out[n] = {"images_per_s": mid["images_per_s"], "median_latency_ms": mid["median_latency_ms"],
                  "images_per_s_rounds": [r["images_per_s"] for r in runs],
                  "errors": sum(r["errors"] for r in runs), "size": plan.concurrent_size}
    return out


# ------------------------------------------------------------------------------------------ the report
def table_rows(r: dict) -> list[tuple[str, ...]]:
    if not r:
        return []
    plain, ray = r["plain"], r["ray"]
    what = f"{r['frames']} frames {r['size']}x{r['size']}"
    execution = "" if ray["execution_s"] is None else (
        f"; Ray Data's execution {ray['execution_s']:.1f} s, the rest {ray['wall_s'] - ray['execution_s']:.1f} s "
        "(start-up)")
    rows = [("ray batch", f"{what}, plain `colorize` loop", f"{plain['wall_s'] / r['frames'] * 1e3:,.0f}",
             f"{plain['wall_s']:.1f} s", "ms: wall time per frame"),
            ("ray batch", f"{what}, `colorize --ray` ({r['ray_address']} Ray)",
             f"{ray['wall_s'] / r['frames'] * 1e3:,.0f}", f"{ray['wall_s']:.1f} s{execution}",
             f"{r['overhead']:+.1%} over the plain loop; outputs {'identical' if r['identical'] else 'DIFFERENT'}")]
    for n in CLIENTS:
        p, q = r["serve"]["plain"][n], r["serve"]["ray"][n]
        rows.append(("ray serve", f"{n} client(s), {p['size']}x{p['size']}, `serve` / `serve --ray` (1 replica)",
                     f"{p['median_latency_ms']:,.0f} / {q['median_latency_ms']:,.0f}",
                     f"{p['images_per_s']:.2f} / {q['images_per_s']:.2f} images/s ({p['errors'] + q['errors']} "
                     "errors)", f"Ray: {q['images_per_s'] / p['images_per_s'] - 1:+.0%} images/s"))
    return rows


def targets(r: dict) -> list[dict]:
    if not r:
        return []
    return [{"name": f"ray batch {r['frames']} frames: Ray's overhead over the plain loop (wall, start-up included)",
             "value": r["overhead"], "target": f"<= {TARGET_OVERHEAD}", "met": r["overhead"] <= TARGET_OVERHEAD}]
