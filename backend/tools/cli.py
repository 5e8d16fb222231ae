"""The `irodori` command. Each subcommand lives in its own module, imported only when used.

A subcommand module defines `add_arguments(parser)` and `main(args) -> int`; keeping the import lazy
means `irodori serve` does not pay for training code and a broken optional module cannot break the rest.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "colorize": ("backend.tools.colorize", "colour line art from a reference (in-process or via a server)"),
    "serve": ("backend.service.server", "run the ZeroMQ backend that the plugins talk to"),
    "broker": ("backend.service.broker", "load-balance many `irodori serve --connect` workers behind one endpoint"),
    "keys": ("backend.service.keys", "make CURVE key pairs for a non-loopback server"),
    "train": ("training.train", "train a model (GAN, paper losses); torchrun for several GPUs"),
    "synth": ("training.synth", "generate synthetic anime-like characters with part masks"),
    "eval": ("training.eval", "measure colour error and reference-following on held-out characters"),
    "bench": ("backend.tools.bench", "measure speed and memory against this machine's own limits"),
    "plugin": ("backend.tools.plugins", "build or install the Krita and GIMP plugins"),
    "demo": ("backend.tools.demo", "colour the bundled sketches with the bundled demo model and write a picture"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irodori", description=__doc__.splitlines()[0])
    from backend import __version__

    parser.add_argument("--version", action="version", version=f"irodori {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen subcommand's module is imported
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args()
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
