"""Command-line options that every command running the model shares, declared once.

`irodori colorize`, `serve`, `demo`, `bench` and `eval` all load a checkpoint onto a device; their options
must read and default the same way, so they come from here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")


def add_model_options(p: argparse.ArgumentParser, *, checkpoint_help: str | None = None,
                      device_note: str = "", bf16: bool = False) -> None:
    """--checkpoint and --device (and --bf16 where the command can use it)."""
    p.add_argument("--checkpoint", type=Path,
                   help=checkpoint_help or "model folder (default: the bundled demo model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda" + device_note)
    if bf16:
        p.add_argument("--bf16", action="store_true", help="bf16 autocast" + (device_note or " (on the GPU)"))
