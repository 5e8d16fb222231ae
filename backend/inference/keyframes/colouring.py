"""Keyframe colouring: a coloured keyframe (its line art and a flats or colour layer) colours other frames
of the same character region by region, so every part keeps exactly the keyframe's colour.

The keyframe is segmented and described once (`Keyframe`, kept by its caller: the keyframe's regions are
the part worth caching); each frame is segmented with the same flats segmentation as the pipeline (and
through its cache, on its worker thread), matched (match.py) and painted. Regions with no good match are
marked unsure and take the fallback colour (the model's flats, or a hint's) when one is given."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .. import pipeline
from ..colour import rgb_to_lab
from .match import Assignment, match_regions
from .regions import Regions, describe, paint, region_colours

UNSURE_BELOW = 0.12  # confidence under which a region is marked unsure (1 - cost / UNSURE_COST)
CHAINS = ("keyframe", "previous")


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A coloured frame: its regions, one colour per region, and a class per distinct colour."""

    regions: Regions
    colours: np.ndarray  # (K+1, 3) uint8
    classes: np.ndarray  # (K+1,) int: regions of one colour share a class

    @classmethod
    def from_regions(cls, regions: Regions, colours: np.ndarray) -> "Keyframe":
        _, inverse = np.unique(colours, axis=0, return_inverse=True)
        return cls(regions=regions, colours=colours, classes=np.asarray(inverse).reshape(-1))


@dataclass(frozen=True, eq=False)
class FrameColours:
    """One frame coloured from a keyframe."""

    flats: np.ndarray  # (H, W, 3) uint8, one colour per region
    unsure: np.ndarray  # (H, W) bool: regions with no good counterpart in the keyframe
    regions: Regions
    colours: np.ndarray  # (K+1, 3) uint8 per region, as painted
    unsure_regions: np.ndarray  # (K+1,) bool
    assignment: Assignment

    def as_keyframe(self) -> Keyframe:
        """This frame as the keyframe of the next (chain="previous")."""
        return Keyframe.from_regions(self.regions, self.colours)


def _check_rgb(a: np.ndarray, name: str, keep_alpha: bool = False) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be 8-bit (uint8), got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, 2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"{name} must be (H,W), (H,W,3) or (H,W,4), got shape {a.shape}")
    return a if keep_alpha else a[..., :3]


def frame_regions(line: np.ndarray, what: str = "frame") -> tuple[Regions, np.ndarray]:
    """Segment and describe one line art (the pipeline's segmentation and cache); (regions, paper mask)."""
    a = pipeline.check_lineart(line)
    if a.size == 0:
        raise ValueError(f"the {what}'s line art is empty (shape {a.shape}): give a picture with lines")
    labels, _, ink = pipeline._segmenter().submit(pipeline._segment, a).result()
    if not ink.any():
        raise ValueError(f"the {what}'s line art has no lines (blank or all paper): there are no regions to "
                         "colour; check that the right layer or file was given")
    return describe(labels, ink), ~ink


def keyframe(line: np.ndarray, colouring: np.ndarray) -> Keyframe:
    """A keyframe from its line art and its colouring (a flats layer, or a coloured picture: each region
    takes its most common colour off the lines, and off the transparent pixels of an RGBA layer), both at
    the same size."""
    a = pipeline.check_lineart(line)
    rgb = _check_rgb(colouring, "the keyframe's colouring", keep_alpha=True)
    if a.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"the keyframe's line art is {a.shape[1]}x{a.shape[0]} but its colouring is "
                         f"{rgb.shape[1]}x{rgb.shape[0]}: they must be the same size (export both from the "
                         "same canvas)")
    regions, paper = frame_regions(a, "keyframe")
    if regions.count < 2:
        raise ValueError("the keyframe's line art has no closed regions (its lines enclose nothing): keyframe "
                         "colouring needs closed areas to match; close the gaps in the lines")
    voters = paper if rgb.shape[2] == 3 else paper & (rgb[..., 3] > 0)
    return Keyframe.from_regions(regions, region_colours(regions.labels, np.ascontiguousarray(rgb[..., :3]), voters))


def colour_frame(key: Keyframe, line: np.ndarray | Regions, fallback: np.ndarray | None = None,
                 unsure_below: float = UNSURE_BELOW, use_model: bool = False, snap: bool = True) -> FrameColours:
    """Colour one frame's line art (or its Regions) from a keyframe. fallback: (H, W, 3) uint8 flats (the
    model's, or hints painted as flats) whose colour the unsure regions take; use_model: also match on the
    fallback's colour (the model's guess) against the keyframe's; snap: an unsure region takes the
    keyframe colour nearest (CIE Lab) to its fallback colour, not the fallback itself (a character's new
    region is still painted from its model sheet)."""
    regions = line if isinstance(line, Regions) else frame_regions(line)[0]
    fb = None
    if fallback is not None:
        f = _check_rgb(fallback, "the fallback colour")
        if f.shape[:2] != regions.shape:
            raise ValueError(f"the fallback colour is {f.shape[1]}x{f.shape[0]}, the frame "
                             f"{regions.shape[1]}x{regions.shape[0]}: they must be the same size")
        fb = np.zeros((regions.count + 1, 3), np.uint8)
        fb[regions.labels.ravel()] = f.reshape(-1, 3)  # flats: one colour per region, any pixel of it will do
    model = (fb, key.colours) if use_model and fb is not None else None
    result = match_regions(regions, key.regions, key.classes, model)
    unsure = result.confidence < unsure_below
    unsure[0] = False
    colours = key.colours[result.match]
    if fb is not None:
        colours[unsure] = fb[unsure] if not snap else nearest_colour(fb[unsure], key.colours[1:])
    return FrameColours(flats=paint(regions.labels, colours), unsure=np.take(unsure, regions.labels), regions=regions,
                        colours=colours, unsure_regions=unsure, assignment=result)


def keyframe_outputs(key: Keyframe, line: np.ndarray, model_flats: np.ndarray) -> dict[str, np.ndarray]:
    """The front ends' outputs for one frame: "flats" in the keyframe's colours (the unsure regions in the
    model's, snapped to the keyframe's) and "unsure", an RGB mask (white: unsure)."""
    got = colour_frame(key, line, model_flats)
    unsure = np.zeros((*got.unsure.shape, 3), np.uint8)
    unsure[got.unsure] = 255
    return {"flats": got.flats, "unsure": unsure}


def nearest_colour(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Each (N, 3) uint8 colour replaced by the nearest (CIE Lab, Euclidean) of the palette's (M, 3)."""
    if not len(colours):
        return colours
    a = rgb_to_lab(colours)
    b = rgb_to_lab(palette)
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(2)
    return palette[d.argmin(1)]


def nearest_key(index: int, keys: Sequence[int]) -> int:
    """The keyframe index nearest to a frame index (the earlier one on a tie)."""
    return min(keys, key=lambda k: (abs(k - index), k))


def colour_sequence(keys: dict[int, Keyframe], lines: Sequence[np.ndarray | Regions], chain: str = "previous",
                    fallbacks: Sequence[np.ndarray | None] | None = None) -> list[FrameColours]:
    """Colour frames 0..N-1 from keyframes at some of those (or other) indices: each frame from its nearest
    keyframe, through the frames in between, each against the one before it, coloured (chain="previous",
    the default: the more accurate of the two in docs/keyframes.md), or directly (chain="keyframe")."""
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {', '.join(CHAINS)}, got {chain!r}")
    if not keys:
        raise ValueError("give at least one keyframe")
    if fallbacks is not None and len(fallbacks) != len(lines):
        raise ValueError(f"{len(fallbacks)} fallbacks for {len(lines)} frames")
    done: dict[int, FrameColours] = {}
    order = sorted(range(len(lines)), key=lambda i: abs(i - nearest_key(i, list(keys))))
    for i in order:
        k = nearest_key(i, list(keys))
        step = 1 if i > k else -1
        base = keys[k] if chain == "keyframe" or i - step not in done or i == k else done[i - step].as_keyframe()
        done[i] = colour_frame(base, lines[i], None if fallbacks is None else fallbacks[i])
    return [done[i] for i in range(len(lines))]


