"""`irodori keys DIR`: make the CURVE key pairs a server reachable from other machines needs (backend/service/keys.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.service.keys import AUTHORIZED, make_keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="folder for the keys (created; kept private)")
    p.add_argument("--client", action="append", dest="clients", metavar="NAME",
                   help="make and authorize a client key pair NAME (repeatable; default: client)")
    p.add_argument("--force", action="store_true", help="replace existing key pairs")


def main(args: argparse.Namespace) -> int:
    try:
        directory = make_keys(args.dir, args.clients, args.force)
    except ValueError as exc:
        print(f"irodori keys: {exc}", file=sys.stderr)
        return 2
    names = args.clients or ["client"]
    print(f"keys in {directory}:\n"
          f"  server:  irodori serve --bind tcp://0.0.0.0:5717 --curve-dir {directory}\n"
          f"  clients: copy server.key and NAME.key_secret to the client machine; in Python:\n"
          f"           Client(endpoint, curve=CurveKeys.from_dir(DIR, client=NAME))   (needs pyzmq)\n"
          f"  authorized clients: {', '.join(names)} (public keys in {directory / AUTHORIZED})")
    return 0
