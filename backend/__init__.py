"""Irodori backend: the model, the inference pipeline, the ZeroMQ service and the CLI."""

import os

# torch's OpenMP threads spin while they wait by default; on a shared or busy CPU that starves the real work
# (measured here: colorize at 2048x2048 2.5-3.5x faster, a training step 2-3x). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
