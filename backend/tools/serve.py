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
from backend.service.broker import DEFAULT_WORKER_ENDPOINT
from backend.service.server import Server, ServerConfig

log = logging.getLogger("irodori.serve")
DEFAULTS = ServerConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d, lim = DEFAULTS, DEFAULT_LIMITS
    p.add_argument("--bind", default=d.bind, help="where clients connect (default %(default)s)")
    p.add_argument("--connect", metavar="BROKER", help="work for `irodori broker` at its worker endpoint instead "
                                                       f"of binding (e.g. {DEFAULT_WORKER_ENDPOINT})")
    add_model_options(p, bf16=True)
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="requests per model call (default %(default)s)")
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
                                                  "loopback; with --connect: the keys to reach the broker)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without encryption")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat_s, help="with --connect: heartbeat seconds")
    p.add_argument("--slots", type=int, help="with --connect: requests the broker may hand over at once")
    p.add_argument("--no-shared-memory", dest="shared_memory", action="store_false", default=d.shared_memory,
                   help="refuse pixels in shared memory (/dev/shm); by default local clients may use it when the "
                        "server binds to loopback")
    p.add_argument("--delay-ms", type=float, default=d.delay_ms, help="add a delay before each batch (testing only)")
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
    config = ServerConfig(bind=args.bind, connect=args.connect, max_batch=max(1, args.max_batch),
                          max_wait_ms=args.max_wait_ms, queue_size=max(1, args.queue_size), curve_dir=args.curve_dir,
                          insecure=args.insecure, heartbeat_s=args.heartbeat, slots=args.slots,
                          delay_ms=args.delay_ms, shared_memory=args.shared_memory)
    try:
        if not args.connect:  # refuse before spending seconds on loading the model
            keys.check_bind(args.bind, args.curve_dir, args.insecure)
        if args.curve_dir and not (args.curve_dir / ("server.key" if args.connect else "server.key_secret")).is_file():
            raise ValueError(f"no CURVE keys in {args.curve_dir}: make them with `irodori keys {args.curve_dir}`")
        limits = _limits(args)
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
        print(f"irodori serve: cannot use {args.connect or args.bind}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"irodori serve: {exc}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0
