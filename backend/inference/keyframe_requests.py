"""Keyframe colouring as the server runs it (issue 23): the keyframe's segmentation kept by content, and a
frame's outputs from the model's.

A batch of frames coloured from one keyframe sends that keyframe with every frame; segmenting and describing
it (keyframes.keyframe) is the costly part, so the Keyframe objects are kept in a small LRU keyed by a
SHA-256 of both images (their bytes, shapes and dtypes). A cryptographic digest needs no byte-for-byte
confirmation, so no copy of the images is kept. The frame's own segmentation goes through the pipeline's
cache (keyframes.frame_regions). The matching runs where this is called (the server's process), so it works
the same whatever colours the frames (a Colorizer or a Ray deployment)."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from backend.inference import keyframes
from backend.inference.imageio import load_image
from backend.protocol import UNSURE_OUTPUT

KEYFRAME_CACHE_SIZE = 4  # keyframes kept: a few characters' model sheets, or the keyframes around a cut


def content_key(*arrays: np.ndarray) -> bytes:
    """One digest of several arrays' contents, shapes and dtypes."""
    h = hashlib.sha256()  # hardware-accelerated on current CPUs: faster here than BLAKE2
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str};".encode())
        h.update(a)
    return h.digest()


class KeyframeCache:
    """A bounded LRU of Keyframes by content. `hits`/`misses` count lookups (a server reports whether each
    request's keyframe was cached)."""

    def __init__(self, size: int = KEYFRAME_CACHE_SIZE) -> None:
        if size < 1:
            raise ValueError("a keyframe cache keeps at least one keyframe")
        self.size = size
        self.hits = self.misses = 0
        self._entries: OrderedDict[bytes, keyframes.Keyframe] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, line: np.ndarray, colouring: np.ndarray) -> tuple[keyframes.Keyframe, bool]:
        """(the Keyframe of this line art and colouring, whether it was cached). A keyframe the core refuses
        (sizes differ, no closed regions...) raises its ValueError and is not kept."""
        key = content_key(line, colouring)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found, True
        made = keyframes.keyframe(line, colouring)  # outside the lock: it takes a while
        with self._lock:
            self.misses += 1
            self._entries[key] = made
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return made, False


def load_keyframe(line_path: str | Path, colour_path: str | Path) -> keyframes.Keyframe:
    """A keyframe from its two files (`colorize --keyframe LINE COLOUR`), segmented and described; a bad one
    raises ValueError with the reason."""
    return keyframes.keyframe(load_image(line_path, "keyframe line art"), load_image(colour_path, "keyframe colouring"))


def model_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    """What the model must produce for a keyframe request: the outputs asked for, without the unsure mask
    (not the model's) and with the flats (the unsure regions take their colours from the model's flats)."""
    wanted = tuple(o for o in outputs if o != UNSURE_OUTPUT)
    return wanted if "flats" in wanted else (*wanted, "flats")


def finish(key: keyframes.Keyframe, line: np.ndarray, result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs for one frame (with its flats) -> the same, with the flats in the keyframe's colours
    and the unsure mask (white: no good match; those regions keep the model's colour, snapped to the
    keyframe's). The other outputs stay the model's, as `irodori colorize --keyframe` writes them."""
    got = keyframes.keyframe_outputs(key, line, result["flats"])
    return {**result, "flats": got["flats"], UNSURE_OUTPUT: got["unsure"]}
