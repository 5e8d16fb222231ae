"""Shared test helpers: tiny checkpoints, free ports, simple line art."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pytest
import torch

from backend.model.checkpoint import save_checkpoint
from backend.model.config import ModelConfig
from backend.model.networks import Generator, shared_style_encoder
from backend.tools.launcher import free_port  # noqa: F401  (the tests import it from here)

TINY = ModelConfig(resolution=32, base_channels=8, channel_mults=(1, 2, 2), blocks_per_level=1, mid_blocks=1,
                   reference_size=32, guide_channels=8, vgg_weights="random:0")


def make_tiny_checkpoint(path: str | Path, seed: int = 0, config: ModelConfig = TINY) -> Path:
    """A seeded, untrained tiny generator saved in the backend's checkpoint format."""
    torch.manual_seed(seed)
    gen = Generator(config)
    return save_checkpoint(path, gen, shared_style_encoder(config.vgg_weights).sha256, meta={"untrained": True})


TINY_HINTS = dataclasses.replace(TINY, hint_channels=4)  # TINY that also reads colour hints


def make_tiny_hint_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """make_tiny_checkpoint with hint_channels 4: a model that takes colour hints (issue 22)."""
    return make_tiny_checkpoint(path, seed, TINY_HINTS)


@pytest.fixture(scope="session")
def tiny_hint_checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained checkpoint that takes hints; use it with `from helpers import tiny_hint_checkpoint`
    (pytest finds a fixture imported into the test module)."""
    return make_tiny_hint_checkpoint(tmp_path_factory.mktemp("ckpt-hints") / "tiny-hints")


def line_art(height: int, width: int, rgba: bool = False, seed: int = 0) -> np.ndarray:
    """Black strokes on white (or on transparent, as a Krita/GIMP layer arrives)."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((height, width), bool)
    for _ in range(6):
        if rng.random() < 0.5:
            y = rng.integers(0, height)
            ink[y:y + 2, :] = True
        else:
            x = rng.integers(0, width)
            ink[:, x:x + 2] = True
    if rgba:
        out = np.zeros((height, width, 4), np.uint8)
        out[ink, 3] = 255
        return out
    return np.where(ink, 0, 255).astype(np.uint8)


def reference(height: int = 64, width: int = 80, colour=(200, 40, 60), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = colour
    img[height // 3:, : width // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def run_in_threads(target: Callable[..., None], args: Iterable[tuple] = ((),), timeout: float | None = None) -> None:
    """One thread per argument tuple, all started before any is joined (each join waits at most `timeout` s):
    concurrent clients against a real server.

    A thread's exception would only be printed by threading, and the test would pass: the first one is
    re-raised here once all threads are joined, and a thread still running after its join fails the call."""
    errors: list[BaseException] = []

    def run(*a: object) -> None:
        try:
            target(*a)
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise errors[0]
    running = sum(t.is_alive() for t in threads)
    if running:
        raise TimeoutError(f"{running} of {len(threads)} threads still running after {timeout} s")
