"""The evaluation's cases: held-out characters rendered as sketch, two references from other characters, and
the true targets (the sketch's character in each reference's palette). The layout is in training/eval.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from backend.model.config import read_json
from training import synth

MAX_META_BYTES = 64 * 1024 * 1024  # the largest meta.json --data reads


@dataclass(frozen=True)
class Case:
    """One sketch, its two references (other characters) and the true targets for each."""

    seed: int  # the sketch character's seed (drawing and palette)
    line: np.ndarray  # (S,S) uint8, 255 = paper
    mask: np.ndarray  # (S,S) uint8 part labels (synth.PARTS)
    ref_seeds: tuple[int, int]
    references: tuple[np.ndarray, np.ndarray]  # (R,R,3) the other characters in their own palettes (R >= S)
    targets: tuple[np.ndarray, np.ndarray]  # (S,S,3) this character in the references' palettes


def iter_cases(seeds: Sequence[int], size: int, palette_seeds: Sequence[int] | None = None,
               reference_size: int | None = None) -> Iterator[Case]:
    """Render the cases for characters `seeds` one at a time (memory stays flat for any count). The palette
    seed is the character seed unless `palette_seeds` is given; references are rendered at
    max(size, reference_size). See training/eval.py for the layout."""
    seeds = [int(s) for s in seeds]
    palette_seeds = seeds if palette_seeds is None else [int(s) for s in palette_seeds]
    if len(seeds) < 3:
        raise ValueError(f"evaluation needs at least 3 characters (a sketch and two others), got {len(seeds)}")
    if len(palette_seeds) != len(seeds):
        raise ValueError("give one palette seed per character seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError("evaluation seeds must be distinct")
    n = len(seeds)
    ref_side = max(size, reference_size or size)
    for i in range(n):
        a, b = (i + 1) % n, (i + 2) % n
        character = synth.random_character(seeds[i])
        own = synth.render(character, synth.random_palette(palette_seeds[i]), size)
        refs = tuple(synth.render(synth.random_character(seeds[j]), synth.random_palette(palette_seeds[j]), ref_side).color
                     for j in (a, b))
        # the same drawing, so the same line and mask: only the colours change with the palette
        targets = tuple(synth.render(character, synth.random_palette(palette_seeds[j]), size).color for j in (a, b))
        yield Case(seed=seeds[i], line=own.line, mask=own.mask, ref_seeds=(seeds[a], seeds[b]),
                   references=refs, targets=targets)  # type: ignore[arg-type]


def make_cases(seeds: Sequence[int], size: int, palette_seeds: Sequence[int] | None = None,
               reference_size: int | None = None) -> list[Case]:
    """All cases at once (small counts: tests, notebooks)."""
    return list(iter_cases(seeds, size, palette_seeds, reference_size))


def seeds_from_folder(folder: str | Path) -> tuple[list[int], list[int]]:
    """(character seeds, palette seeds) of a folder written by `irodori synth`, from its meta.json."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: --data takes a folder written by `irodori synth`")
    meta = read_json(path, "synth metadata", MAX_META_BYTES)
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("irodori-synth/"):
        raise ValueError(f"{path} is not an `irodori synth` meta.json (no format irodori-synth/...)")
    items = meta.get("items")
    try:
        pairs = [(item["character_seed"], item["palette_seed"]) for item in items]
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{path}: every item needs character_seed and palette_seed ({exc!r})") from exc
    if not all(isinstance(v, int) and not isinstance(v, bool) for pair in pairs for v in pair):
        raise ValueError(f"{path}: seeds must be integers")
    return [c for c, _ in pairs], [p for _, p in pairs]
