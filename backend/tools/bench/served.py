"""(d) transport and (e) throughput: the requests of (c) through real `irodori serve` subprocesses on loopback."""
from __future__ import annotations

import argparse
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from backend.tools.launcher import BackendProcess, free_port, start_serving

from .children import bench_env, load_colorizer
from .measure import line_art_rgba, median, reference_rgb, status_kib
from .plan import Plan


@dataclass(frozen=True)
class Served:
    """A running `irodori serve` as the scenarios see it."""

    endpoint: str
    max_batch: int
    process: BackendProcess

    def peak_rss_mib(self) -> float | None:
        kib = status_kib("VmHWM", self.process.proc.pid)
        return None if kib is None else kib / 1024


@contextmanager
def serving(args: argparse.Namespace, max_batch: int, max_wait_ms: float = 5.0) -> Iterator[Served]:
    """`irodori serve` on a free loopback port, ready when entered; stopped with SIGINT (it drains, then exits)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cmd = ["serve", "--bind", endpoint, "--device", args.device, "--max-batch", str(max_batch),
           "--max-wait-ms", str(max_wait_ms), "--queue-size", "64"]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    with start_serving(endpoint, *cmd, timeout=300.0, env=bench_env(args.threads), stop_grace=30.0) as process:
        yield Served(endpoint, max_batch, process)


def _request(client, lineart, ref, output_format: str = "raw") -> dict:
    """One colorize round trip as a local plugin does it: raw pixels in, raw RGBA out (viewed, not copied).
    A client with shared_memory on moves them through /dev/shm, else in ZeroMQ frames."""
    from backend.protocol import Pixels

    t0 = time.perf_counter()
    if output_format == "raw":
        out = client.colorize(Pixels.from_array(lineart), Pixels.from_array(ref), ("color",))
        out["color"].to_array()
    else:  # PNG both ways: what a client without raw frames pays (its encode and decode included)
        import io

        from PIL import Image

        from backend.inference.imageio import encode_png

        out = client.colorize(encode_png(lineart), encode_png(ref), ("color",), output_format="png")
        Image.open(io.BytesIO(bytes(out["color"]))).load()
    return {"roundtrip_ms": (time.perf_counter() - t0) * 1e3, **client.last_timings}


def bench_transport(server: Served, plan: Plan, colorizer: Any) -> list[dict]:
    """(c)'s requests through the server, alternating with the same request in-process (one loop, so a busy
    machine slows both alike), plus the overhead inside each request: round trip minus the server's own
    colorize time for that very request."""
    from backend.protocol import Client, shm_available

    rows = []
    ref = reference_rgb()
    # "shm": raw pixels through /dev/shm (what a local client does by default on Linux); "raw": the same
    # pixels in ZeroMQ frames (a client elsewhere, or on another OS); "png": encoded files both ways.
    with Client(server.endpoint, timeout=1800.0, shared_memory=True) as shm, \
            Client(server.endpoint, timeout=1800.0, shared_memory=False) as frames:
        for size in plan.pipeline_sizes:
            lineart = line_art_rgba(size)
            formats = (["shm"] if shm_available() else []) + ["raw"]
            for fmt in formats + ["png"] if size == plan.pipeline_sizes[0] else formats:
                client = shm if fmt == "shm" else frames
                local: list[float] = []
                runs: list[dict] = []
                for i in range(plan.transport_repeats + 1):  # the first pair warms up
                    t0 = time.perf_counter()
                    colorizer.colorize(lineart, ref, ("color",))
                    ms = (time.perf_counter() - t0) * 1e3
                    run = _request(client, lineart, ref, "png" if fmt == "png" else "raw")
                    if i:
                        local.append(ms)
                        runs.append(run)
                rt, here = median([r["roundtrip_ms"] for r in runs]), median(local)
                row = {"size": size, "format": fmt, "roundtrip_ms": rt, "in_process_ms": here,
                       "overhead_ms": rt - here, "overhead_pct": 100 * (rt - here) / here,
                       "server_colorize_ms": median([r.get("colorize_ms", math.nan) for r in runs]),
                       "same_request_overhead_ms": median([r["roundtrip_ms"] - r.get("colorize_ms", math.nan)
                                                            for r in runs])}
                row["same_request_overhead_pct"] = 100 * row["same_request_overhead_ms"] / row["server_colorize_ms"]
                for key in ("queue_ms", "decode_ms", "encode_ms", "server_ms"):  # where the overhead goes
                    row[f"server_{key}"] = median([r.get(key, math.nan) for r in runs])
                row["wire_and_client_ms"] = row["roundtrip_ms"] - row["server_server_ms"]
                rows.append(row)
    return rows


def bench_concurrency(server: Served, plan: Plan, batching: str) -> list[dict]:
    """Total images/s with N clients at once (one thread and one Client each).

    The client counts take turns for plan.concurrency_rounds rounds (1, 4, 16, 1, 4, 16, ...) and each
    count reports its median round: one busy moment on a shared machine then skews one round of one
    count, not the whole comparison."""
    from backend.protocol import Client

    lineart, ref = line_art_rgba(plan.concurrent_size), reference_rgb()
    with Client(server.endpoint, timeout=1800.0) as warm:
        _request(warm, lineart, ref)
    rounds: dict[int, list[dict]] = {n: [] for n in plan.clients}
    for _ in range(plan.concurrency_rounds):
        for n in plan.clients:
            rounds[n].append(_concurrent_round(server, plan, n, lineart, ref))
    rows: list[dict] = []
    for n in plan.clients:
        runs = sorted(rounds[n], key=lambda r: r["images_per_s"])
        mid = runs[len(runs) // 2]
        rows.append({"batching": batching, "max_batch": server.max_batch, "clients": n, "size": plan.concurrent_size,
                     "rounds": len(runs), "images": mid["images"], "errors": sum(r["errors"] for r in runs),
                     "seconds": mid["seconds"], "images_per_s": mid["images_per_s"],
                     "images_per_s_rounds": [r["images_per_s"] for r in rounds[n]],
                     "vs_single_client": mid["images_per_s"] / rows[0]["images_per_s"] if rows else 1.0,
                     "median_latency_ms": mid["median_latency_ms"]})
    return rows


def _concurrent_round(server: Served, plan: Plan, n: int, lineart, ref) -> dict:
    """n clients send plan.concurrent_requests requests between them, all at once: images/s and latency.

    Each client first sends one untimed request (connecting, and making its shared-memory segments, is a
    once-per-client cost): the figure is the steady state a studio's batch sees."""
    from backend.protocol import Client

    per_client = max(1, math.ceil(plan.concurrent_requests / n))
    start = threading.Barrier(n + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def work() -> None:
        with Client(server.endpoint, timeout=1800.0) as client:
            _request(client, lineart, ref)  # connected, shared-memory segments made, before the clock starts
            start.wait()
            for _ in range(per_client):
                try:
                    ms = _request(client, lineart, ref)["roundtrip_ms"]
                except Exception as exc:  # counted, not fatal: "busy" would show up here
                    with lock:
                        errors.append(repr(exc))
                    continue
                with lock:
                    latencies.append(ms)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"images": len(latencies), "errors": len(errors), "seconds": seconds,
            "images_per_s": len(latencies) / seconds, "median_latency_ms": median(latencies) if latencies else None}


def bench_served(args: argparse.Namespace, plan: Plan, sections: list[str]) -> dict:
    """(d) and (e) against real `irodori serve` subprocesses: batching off (max batch 1, also used for (d))
    and on (the server's default max batch of 4, 5 ms wait)."""
    out: dict[str, Any] = {}
    with serving(args, max_batch=1) as server:
        if "transport" in sections:
            colorizer = load_colorizer({"device": args.device, "checkpoint": args.checkpoint})
            out["transport"] = bench_transport(server, plan, colorizer)
            colorizer = None  # its memory back before (e)
        if "concurrency" in sections:
            out["concurrency"] = bench_concurrency(server, plan, "off")
        out["server_peak_rss_mib"] = {"batching off": server.peak_rss_mib()}
    if "concurrency" in sections:
        with serving(args, max_batch=4) as server:
            out["concurrency"] += bench_concurrency(server, plan, "on")
            out["server_peak_rss_mib"]["batching on"] = server.peak_rss_mib()
    return out


