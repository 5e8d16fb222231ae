"""Palettes: a random base colour per part, and the shadow and highlight tones derived from it."""
from __future__ import annotations

import colorsys

import numpy as np

from training.synth.base import (ACCESSORY, BASE, BG, BOTTOM, COLLAR, EYES, HAIR, HIGHLIGHT, MOUTH, PARTS, SHADOW,
                                 SKIN, TOP, Palette, Rng, check_seed)


def hls(h: float, l: float, s: float) -> tuple[int, int, int]:
    """An HLS colour (hue wrapped, lightness and saturation clipped to 0..1) as 8-bit RGB."""
    r, g, b = colorsys.hls_to_rgb(h % 1.0, min(max(l, 0.0), 1.0), min(max(s, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def random_palette(seed: int) -> Palette:
    """Random hues per part with plausible lightness: natural-ish skin (sometimes fantasy), reddish mouth,
    anything for hair, eyes, clothes and accessory. Lightness stays inside 0.12..0.9 so tones differ."""
    rng = Rng(f"irodori-synth-palette-{check_seed(seed)}")
    colors = [None] * len(PARTS)
    colors[BG] = hls(rng.u(0, 1), rng.u(0.55, 0.9), rng.u(0.1, 0.7))
    if rng.chance(0.2):  # black or very dark hair
        colors[HAIR] = hls(rng.u(0, 1), rng.u(0.12, 0.22), rng.u(0.1, 0.5))
    else:
        colors[HAIR] = hls(rng.u(0, 1), rng.u(0.25, 0.8), rng.u(0.2, 0.9))
    if rng.chance(0.1):  # fantasy skin
        colors[SKIN] = hls(rng.u(0, 1), rng.u(0.65, 0.88), rng.u(0.15, 0.45))
    else:
        light = 0.92 - 0.36 * rng.u(0, 1) ** 2  # mostly pale, sometimes tan; pale skin is more saturated in HLS
        colors[SKIN] = hls(rng.u(0.02, 0.1), light, rng.u(0.25, 0.45) + (light - 0.56) * 1.4)
    colors[EYES] = hls(rng.u(0, 1), rng.u(0.3, 0.6), rng.u(0.5, 1.0))
    colors[MOUTH] = hls(rng.u(-0.06, 0.03), rng.u(0.35, 0.6), rng.u(0.45, 0.85))
    top_hue = rng.u(0, 1)
    colors[TOP] = hls(top_hue, rng.u(0.2, 0.85), rng.u(0.1, 0.9))
    colors[BOTTOM] = hls(rng.u(0, 1), rng.u(0.15, 0.75), rng.u(0.1, 0.9))
    collar_hue = top_hue + rng.u(0.3, 0.7) if rng.chance(0.6) else rng.u(0, 1)
    colors[COLLAR] = hls(collar_hue, rng.u(0.2, 0.85), rng.u(0.2, 0.95))
    colors[ACCESSORY] = hls(rng.u(0, 1), rng.u(0.3, 0.8), rng.u(0.4, 1.0))
    return Palette(tuple(colors))


def part_tones(palette: Palette) -> np.ndarray:
    """(len(PARTS), 3, 3) uint8: [part, tone] -> RGB with tone BASE, SHADOW (darker, same hue, a little more
    saturated) and HIGHLIGHT (lighter, same hue)."""
    out = np.zeros((len(PARTS), 3, 3), np.uint8)
    for p, (r, g, b) in enumerate(palette.colors):
        h, l, s = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
        out[p, BASE] = (r, g, b)
        out[p, SHADOW] = hls(h, l * 0.72, s * 1.1 + 0.05)
        out[p, HIGHLIGHT] = hls(h, l + (1 - l) * 0.55, s * 0.9)
    return out
