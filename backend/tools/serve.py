"""`irodori serve`: load the model once and serve it over ZeroMQ (backend/service/server.py, docs/protocol.md)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import zmq

from backend.inference.options import add_model_options
from backend.protocol import DEFAULT_LIMITS, Limits
from backend.service import keys
from backend.service.base import install_signal_handlers
from backend.service.server import Server, ServerConfig

log = logging.getLogger("irodori.serve")
DEFAULTS = ServerConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d, lim = DEFAULTS, DEFAULT_LIMITS
    p.add_argument("--bind", default=d.bind, help="where clients connect (default %(default)s)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the model as a Ray Serve deployment (`pip install irodori[ray]`) on the cluster at "
                        "ADDRESS (without one: a local Ray in this process); this process stays the front end")
    p.add_argument("--replicas", type=int, default=1, help="with --ray: model replicas (default %(default)s)")
    p.add_argument("--max-replicas", type=int,
                   help="with --ray: the autoscaler adds replicas up to this while requests queue (default: "
                        "--replicas, no scaling)")
    add_model_options(p, bf16=True)
    p.add_argument("--max-batch", type=int, help=f"requests per model call (default {d.max_batch}; with --ray: "
                                                  "requests sent to the replicas at once, default 16)")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="wait for a batch to fill (default %(default)s)")
    p.add_argument("--queue-size", type=int, default=d.queue_size,
                   help="waiting requests before 'busy' (default %(default)s)")
    p.add_argument("--max-pixels", type=int, help=f"line-art pixel limit (default {lim.max_pixels})")
    p.add_argument("--max-reference-pixels", type=int,
                   help=f"reference pixel limit (default {lim.max_reference_pixels})")
    p.add_argument("--max-side", type=int, help=f"longest side limit (default {lim.max_side})")
    p.add_argument("--max-encoded-mb", type=float,
                   help=f"encoded image file limit (default {lim.max_encoded_bytes / 1024 ** 2:g})")
    p.add_argument("--curve-dir", type=Path, help="CURVE keys made by `irodori keys DIR` (needed to bind beyond "
                                                  "loopback)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without encryption")
    p.add_argument("--no-shared-memory", dest="shared_memory", action="store_false", default=d.shared_memory,
                   help="refuse pixels in shared memory (/dev/shm); by default local clients may use it when the "
                        "server binds to loopback")
    p.add_argument("--delay-ms", type=float, default=d.delay_ms,
                   help="add a delay before each batch (with --ray: before each request in a replica; testing only)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")


def _limits(args: argparse.Namespace) -> Limits:
    d = DEFAULT_LIMITS
    return Limits(max_side=args.max_side or d.max_side, max_pixels=args.max_pixels or d.max_pixels,
                  max_reference_pixels=args.max_reference_pixels or d.max_reference_pixels,
                  max_encoded_bytes=int(args.max_encoded_mb * 1024 ** 2) if args.max_encoded_mb
                  else d.max_encoded_bytes)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s irodori serve: %(message)s")
    logging.getLogger("PIL").setLevel(logging.INFO)
    ray = args.ray is not None
    max_batch = args.max_batch or (16 if ray else DEFAULTS.max_batch)
    config = ServerConfig(bind=args.bind, max_batch=max(1, max_batch), max_wait_ms=args.max_wait_ms,
                          queue_size=max(1, args.queue_size), curve_dir=args.curve_dir, insecure=args.insecure,
                          delay_ms=0.0 if ray else args.delay_ms, shared_memory=args.shared_memory)
    colorizer = None
    try:
        keys.check_bind(args.bind, args.curve_dir, args.insecure)  # refused before seconds of model loading
        if args.curve_dir and not (args.curve_dir / "server.key_secret").is_file():
            raise ValueError(f"no CURVE keys in {args.curve_dir}: make them with `irodori keys {args.curve_dir}`")
        limits = _limits(args)
        if ray:
            from backend.service.ray_serve import RayColorizer, RayServeConfig

            colorizer = RayColorizer(RayServeConfig(address=args.ray or None, replicas=args.replicas,
                                                    max_replicas=args.max_replicas),
                                     args.checkpoint, device=args.device, bf16=args.bf16, limits=limits,
                                     delay_ms=args.delay_ms)
        else:
            from backend.inference.pipeline import Colorizer

            colorizer = Colorizer(args.checkpoint, device=args.device, bf16=args.bf16, limits=limits)
    except ValueError as exc:
        print(f"irodori serve: {exc}", file=sys.stderr)
        return 2
    if colorizer.untrained:
        log.warning("no trained model found: colours come from an UNTRAINED seeded generator")
    server = Server(colorizer, config, limits)
    install_signal_handlers(server.stop)
    try:
        server.run()
    except zmq.ZMQError as exc:
        print(f"irodori serve: cannot use {args.bind}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"irodori serve: {exc}", file=sys.stderr)
        return 2
    finally:
        if ray:
            colorizer.close()
    log.info("stopped")
    return 0
