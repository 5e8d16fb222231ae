"""The Ray figures of docs/performance.md and docs/scaling.md, in one run, against the plain paths they replace.

  batch   `irodori colorize FOLDER` (the plain in-process loop) and `irodori colorize FOLDER --ray` (a local Ray
          started inside the command) on the same N frames of SIZE x SIZE line art: wall time of each command
          as a person runs it, Ray Data's own execution time, and Ray's overhead over the plain loop
  serve   images/s through `irodori serve` and `irodori serve --ray` (local Ray, one replica) at 1 and 16
          clients: section (e)'s scenario (REQUESTS between the clients, after one untimed request each)

`python -m backend.tools.bench.ray_section [--frames 200] [--size 1024] [--serve-size N] [--requests 32]
[--sections batch serve] [--checkpoint DIR | --untrained] [--json FILE]` (needs the `ray` extra). Commands run
as subprocesses with this machine's default threads; docs/performance.md ("Ray") has the figures.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from backend.tools.bench.measure import line_art_rgba, reference_rgb
from backend.tools.bench.served import _concurrent_round
from backend.tools.launcher import child_env, free_port, start_serving


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "backend", *cmd], env=child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"irodori {' '.join(cmd[:1])} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def bench_batch(folder: Path, ref: Path, model: list[str], work: Path) -> dict:
    plain_s, _ = _timed(["colorize", str(folder), "-r", str(ref), "-o", str(work / "plain"), *model])
    ray_s, log = _timed(["colorize", str(folder), "-r", str(ref), "-o", str(work / "ray"), *model, "--ray"])
    m = re.search(r"execution finished in ([\d.]+) seconds", log)
    return {"plain_s": plain_s, "ray_s": ray_s, "ray_execution_s": float(m.group(1)) if m else None,
            "overhead": ray_s / plain_s - 1}


def bench_serve(model: list[str], size: int, requests: int) -> dict:
    """Through the (e) throughput scenario of served.py: the same clients against both servers."""
    lineart, ref = line_art_rgba(size), reference_rgb()
    plan = SimpleNamespace(concurrent_requests=requests)
    out = {}
    for name, extra in (("plain", []), ("ray", ["--ray", "--replicas", "1"])):
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        server = start_serving(endpoint, "serve", "--bind", endpoint, "--queue-size", "64", *model, *extra,
                               timeout=300)
        try:
            out[name] = {n: _concurrent_round(SimpleNamespace(endpoint=endpoint), plan, n, lineart, ref)
                         for n in (1, 16)}
        finally:
            server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--requests", type=int, default=32, help="timed serve requests per client count")
    p.add_argument("--serve-size", type=int, help="line-art side for the serve figures (default --size)")
    p.add_argument("--sections", nargs="+", choices=("batch", "serve"), default=["batch", "serve"])
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--untrained", action="store_true", help="a seeded untrained default ModelConfig() generator")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from backend.inference.imageio import save_image

    with tempfile.TemporaryDirectory(prefix="irodori-raybench-") as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint
        if args.untrained:
            from backend.tools.bench.command import _save_untrained

            checkpoint = _save_untrained(work / "untrained")
        model = ["--device", "cpu"] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
        res: dict = {"frames": args.frames, "size": args.size}
        if "batch" in args.sections:
            for i in range(args.frames):
                save_image(work / "frames" / f"f{i:04d}.png", line_art_rgba(args.size, seed=i))
            save_image(work / "ref.png", reference_rgb())
            res["batch"] = bench_batch(work / "frames", work / "ref.png", model, work)
            print(json.dumps(res["batch"]), flush=True)
        if "serve" in args.sections:
            res["serve_size"] = args.serve_size or args.size
            res["serve"] = bench_serve(model, res["serve_size"], args.requests)
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
