"""Procedural anime-like characters with known parts, for training and for measuring reference-following.

Why synthetic: real illustrations give no ground truth for "this sketch in that reference's colours". Here the
geometry (a `Character`) and the colours (a `Palette`) are separate, so one character can be re-rendered with
any other character's palette: `render(a, palette_of_b)` is the true target for "sketch of a, coloured like b".

Each render gives three aligned images of the same figure:
  color  (S,S,3) uint8  cel-shaded colour image WITH the ink lines (colour * line / 255), like a finished picture
  line   (S,S)   uint8  line art: 255 = paper, 0 = ink (antialiased outlines of every part plus a few details)
  mask   (S,S)   uint8  part label per pixel, an index into PARTS (crisp: nearest sample, no blending)

Colours: every pixel of part p is one of p's three tones (base, shadow, highlight; see `part_tones`), except
where antialiasing blends neighbours and under ink. The background is its base colour or a linear gradient
from its base to its highlight tone. Shadows are hard-edged (cel shading): a part is shaded where a shape in
front of it lies towards the light (cast shadow) or where its own silhouette ends away from the light (form
shadow). Line art draws an outline round every filled shape, so every part boundary is inked.

Seeds: item i of a data set made with seed K uses character seed = palette seed = K * 1_000_003 + i
(`item_seed`). Evaluation can hold out a K whose range of seeds never meets the training range.
Random numbers come only from `random.Random(str).random()`, which Python keeps stable across versions, so a
seed gives the same images wherever Pillow and NumPy are the same versions. MAX_COUNT < SEED_STRIDE, so the seed
ranges of different K never overlap.

Modules, in the order the data flows:
  base       part labels, Palette / Shape / Character / Rendered, seeds, the stable random stream
  palette    random_palette, part_tones
  geometry   drawing primitives (ellipses, splines, ribbons, capsules)
  figure     Figure (proportions, line widths, style choices) and Builder (the shape list steps add to)
  head, body the drawing steps; character: random_character calls them in order and places the figure
  raster     render
  frames     character_frames: one character moving over a sequence (for keyframe colouring)
  command    `irodori synth`: write_dataset, preview, the CLI
"""
from __future__ import annotations

from training.synth.base import (ACCESSORY, BASE, BG, BOTTOM, COLLAR, EYES, HAIR, HIGHLIGHT, MAX_SEED, MAX_SIZE,
                                 MIN_SIZE, MOUTH, PARTS, SEED_STRIDE, SHADOW, SKIN, TOP, Character, Palette,
                                 Rendered, Shape, item_seed)
from training.synth.character import random_character
from training.synth.command import (MASK_VIS, MAX_COUNT, META_FORMAT, add_arguments, main, mask_to_rgb, preview,
                                    write_dataset)
from training.synth.frames import MAX_FRAMES, character_frames
from training.synth.palette import part_tones, random_palette
from training.synth.raster import SUPERSAMPLE, render

__all__ = [
    "ACCESSORY", "BASE", "BG", "BOTTOM", "COLLAR", "EYES", "HAIR", "HIGHLIGHT", "MASK_VIS", "MAX_COUNT", "MAX_FRAMES",
    "MAX_SEED", "MAX_SIZE", "META_FORMAT", "MIN_SIZE", "MOUTH", "PARTS", "SEED_STRIDE", "SHADOW", "SKIN",
    "SUPERSAMPLE", "TOP", "Character", "Palette", "Rendered", "Shape", "add_arguments", "character_frames",
    "item_seed", "main", "mask_to_rgb", "part_tones", "preview", "random_character", "random_palette", "render",
    "write_dataset",
]
