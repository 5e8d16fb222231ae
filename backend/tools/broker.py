"""`irodori broker`: one endpoint for clients, many `irodori serve --connect` workers behind it
(backend/service/broker.py)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import zmq

from backend.service.base import install_signal_handlers
from backend.service.broker import Broker, BrokerConfig

log = logging.getLogger("irodori.broker")
DEFAULTS = BrokerConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("--bind", default=d.bind, help="where clients connect (default %(default)s)")
    p.add_argument("--workers", default=d.workers,
                   help="where `irodori serve --connect` workers connect (default %(default)s)")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat_s, help="heartbeat seconds (default %(default)s)")
    p.add_argument("--liveness", type=int, default=d.liveness, help="missed heartbeats before a worker is dead")
    p.add_argument("--queue-size", type=int, default=d.queue_size, help="waiting requests before 'busy'")
    p.add_argument("--wait-timeout", type=float, default=d.wait_timeout_s,
                   help="with no worker connected, seconds before waiting requests get 'no_workers' (default "
                        "%(default)s)")
    p.add_argument("--retries", type=int, default=d.retries, help="times a dead worker's request is sent to another")
    p.add_argument("--max-message-mb", type=float, default=d.max_message_bytes / 1024 ** 2,
                   help="largest request accepted")
    p.add_argument("--curve-dir", type=Path, help="CURVE keys from `irodori keys DIR` (needed beyond loopback)")
    p.add_argument("--insecure", action="store_true", help="allow non-loopback binds without encryption")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s irodori broker: %(message)s")
    config = BrokerConfig(bind=args.bind, workers=args.workers, heartbeat_s=args.heartbeat,
                          liveness=max(2, args.liveness), queue_size=max(1, args.queue_size),
                          wait_timeout_s=args.wait_timeout, retries=max(0, args.retries),
                          max_message_bytes=int(args.max_message_mb * 1024 ** 2), curve_dir=args.curve_dir,
                          insecure=args.insecure)
    broker = Broker(config)
    install_signal_handlers(broker.stop)
    try:
        broker.run()
    except ValueError as exc:
        print(f"irodori broker: {exc}", file=sys.stderr)
        return 2
    except zmq.ZMQError as exc:
        print(f"irodori broker: cannot bind: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0
