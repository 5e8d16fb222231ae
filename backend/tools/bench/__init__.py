"""`irodori bench [--quick] [--json FILE]`: speed and memory against this machine's own limit, in one run.

Every figure in the table comes from the same run, so ratios compare like with like on a shared machine:

  (a) limit      dense matmul and 3x3 conv throughput, fp32 and bf16 (where supported): the machine's peak
  (b) generator  the U-net forward (default ModelConfig) at 256/512/1024 px: median ms, counted GFLOP
                 (torch.utils.flop_counter), GFLOP/s and the fraction of (a) for its dtype
  (c) pipeline   Colorizer.colorize on 2048^2 and 4096^2 RGBA line art, each in a fresh subprocess: median
                 ms and peak RSS (VmHWM), plus a model-resolution run for the "within 1.5x" check
  flats          backend.inference.flats on the same sizes (fresh subprocess each): alone, and what a request
                 with the flats output takes over one without (interleaved in one process)
  hints          requests with and without colour hints at the first size (hints.py): what hints add
  (d) transport  the same requests through `irodori serve` on loopback (pixels in shared memory, as local
                 clients send them on Linux, and in raw or PNG frames): overhead over (c)
  (e) throughput images/s with 1, 4 and 16 concurrent clients, server batching on and off
  (f) training   optimiser steps/s of the trainer at the tiny and paper configurations: a plug-in section
                 (training/bench.py, entry point group `irodori.bench`), since nothing in backend imports training
  ray            only when named (`--sections ray`): `colorize FOLDER` against `colorize FOLDER --ray` on the
                 same frames (200 of 1024^2 by default), and `serve` against `serve --ray` at 1 and 16 clients

The package, by concern: measure.py (timers, memory, test images, the machine), plan.py (what a run measures),
kernels.py ((a), (b)), hints.py (the hints row), children.py ((c) and flats in fresh subprocesses: they
re-enter the package as `python -m backend.tools.bench CHILD_JSON`, so each scenario's peak memory is its
own), served.py ((d), (e) through backend/tools/launcher.py), report.py (the table and the targets),
command.py (the command and its plug-in sections), ray_section.py (`--sections ray`: the Ray batch and
`serve --ray` against the plain paths; it needs the `ray` extra and minutes of frames, so only a run that
names it has it). docs/performance.md holds the latest table and how to read it.
"""
from __future__ import annotations

from .command import add_arguments, main

__all__ = ["add_arguments", "main"]
