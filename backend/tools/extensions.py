"""Commands and bench sections that other installed packages add, found through entry points.

The layers point one way: nothing in backend imports training. Training still brings `irodori train`, `synth`,
`eval` and the bench's training section: pyproject.toml declares them as entry points (name -> module), and
backend finds them here by group, importing a module only when it is used.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

COMMANDS = "irodori.commands"  # name -> module with add_arguments(parser) and main(args) -> int
BENCH_SECTIONS = "irodori.bench"  # name -> module with run(device, quick) -> list[dict] and table_rows(results)


class ExtensionError(Exception):
    """A declared extension that cannot be loaded: the message says which and how to repair it."""


def find(group: str) -> dict[str, str]:
    """name -> module of every installed extension in `group`, from the installed package metadata."""
    from importlib.metadata import entry_points

    found: dict[str, str] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep.value)
    return found


def load(group: str, name: str, module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExtensionError(f"{name!r} comes from {module} (entry point group {group}), which cannot be "
                             f"imported: {type(exc).__name__}: {exc}") from exc


def missing_hint(group: str) -> str:
    """What to say when a name is not found: extensions exist only once the package is installed."""
    return (f"plug-ins add more (entry point group {group}); if one is missing, reinstall Irodori: "
            f"`pip install -e .` in the source tree")


def summary(module: str) -> str:
    """The first line of a module's docstring without its "`usage`: " prefix, read from the source file
    without importing it (a training module imports torch: seconds, for a line of help)."""
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8")) if spec and spec.origin else None
    except (ImportError, OSError, SyntaxError, ValueError):
        return f"(plug-in {module}, not importable)"
    doc = (ast.get_docstring(tree) or "").strip() if tree else ""
    return re.sub(r"^`[^`]*`:\s*", "", doc.splitlines()[0]).rstrip(".") if doc else f"(plug-in {module})"
