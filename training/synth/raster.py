"""Rendering a character in a palette: supersampled polygons, cel shading, tone shapes, ink multiplied over
the colours, then a box filter down to the asked size (see the package docstring for what comes out)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from training.synth.base import BASE, BG, HIGHLIGHT, SHADOW, Character, Palette, Rendered, check_size
from training.synth.palette import part_tones

SUPERSAMPLE = 2  # draw at 2x, box-filter colour and line art down; the mask takes the nearest sample


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """out[y, x] = a[y + dy, x + dx], clamped at the borders."""
    h, w = a.shape
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    return a[ys[:, None], xs[None, :]] if (dx or dy) else a


def _box2(a: np.ndarray) -> np.ndarray:
    """Sum of each 2x2 block (the caller divides, so rounding happens once)."""
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def render(character: Character, palette: Palette, size: int) -> Rendered:
    """Draw the character at `size` x `size` with the palette's colours. Same inputs, same bytes."""
    big = check_size(size) * SUPERSAMPLE
    px_scale = size / 128 * SUPERSAMPLE  # line widths are given at 128 px

    id_img = Image.new("L", (big, big), 0)  # 0 = background, k = k-th fill
    line_img = Image.new("L", (big, big), 255)
    tone_img = Image.new("L", (big, big), 0)  # 0 = none, k = k-th tone shape
    draw_id, draw_line, draw_tone = ImageDraw.Draw(id_img), ImageDraw.Draw(line_img), ImageDraw.Draw(tone_img)

    part_lut, tone_lut, group_lut, cast_lut = [BG], [BASE], [0], [0]
    tshape_part, tshape_tone = [255], [BASE]  # 255 matches no part
    for sh in character.shapes:
        xy = [v * big - 0.5 for v in sh.points]  # pixel centres sit at integer coordinates
        if sh.kind == "fill":
            part_lut.append(sh.part)
            tone_lut.append(sh.tone)
            group_lut.append(sh.group)
            cast_lut.append(sh.group if sh.casts else 0)
            draw_id.polygon(xy, fill=len(part_lut) - 1)
            draw_line.polygon(xy, fill=255)
            if sh.width > 0:
                w = max(1, round(sh.width * px_scale))
                draw_line.line(xy + xy[:2], fill=0, width=w, joint="curve")
        elif sh.kind == "ink":
            draw_line.polygon(xy, fill=0)
        elif sh.kind == "stroke":
            draw_line.line(xy, fill=0, width=max(1, round(sh.width * px_scale)), joint="curve")
        elif sh.kind == "tone":
            tshape_part.append(sh.part)
            tshape_tone.append(sh.tone)
            draw_tone.polygon(xy, fill=len(tshape_part) - 1)
        else:
            raise ValueError(f"unknown shape kind {sh.kind!r}")

    ids = np.asarray(id_img)
    part_of, tone_of = np.array(part_lut, np.uint8), np.array(tone_lut, np.uint8)
    group_of, cast_of = np.array(group_lut, np.int16), np.array(cast_lut, np.int16)
    part = part_of[ids]
    tone = tone_of[ids]
    group = group_of[ids]

    # Cel shading: cast shadow where a shape in front lies towards the light; form shadow where the shape's
    # own silhouette ends (something behind it) away from the light.
    shade = np.zeros(ids.shape, bool)
    dx, dy = (round(v * big) for v in character.cast_shadow)
    if dx or dy:
        shade |= _shift(cast_of[ids], dx, dy) > group
    dx, dy = (round(v * big) for v in character.form_shadow)
    if dx or dy:
        shade |= _shift(group, -dx, -dy) < group
    shade &= (tone == BASE) & (part != BG)
    tone[shade] = SHADOW

    if len(tshape_part) > 1:  # tone shapes repaint base pixels of their part
        tid = np.asarray(tone_img)
        hit = (tid > 0) & (tone == BASE) & (part == np.array(tshape_part, np.uint8)[tid])
        tone[hit] = np.array(tshape_tone, np.uint8)[tid][hit]

    tones = part_tones(palette)
    rgb = tones.reshape(-1, 3)[part.astype(np.intp) * 3 + tone].astype(np.uint32)
    if character.gradient is not None:  # background: base -> highlight along the gradient direction
        gx, gy = character.gradient
        ramp = (np.arange(big, dtype=np.float32) + 0.5) / big
        t = gx * ramp[None, :] + gy * ramp[:, None]
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        lo, hi = tones[BG, BASE].astype(np.float32), tones[BG, HIGHLIGHT].astype(np.float32)
        grad = np.rint(lo + t[..., None] * (hi - lo)).astype(np.uint32)
        bg = part == BG
        rgb[bg] = grad[bg]

    line_big = np.asarray(line_img).astype(np.uint32)
    inked = rgb * line_big[..., None]  # multiply the ink over the colours
    n = SUPERSAMPLE * SUPERSAMPLE
    color = ((_box2(inked) + n * 255 // 2) // (n * 255)).astype(np.uint8)
    line = ((_box2(line_big) + n // 2) // n).astype(np.uint8)
    mask = np.ascontiguousarray(part[0::2, 0::2])
    return Rendered(color=color, line=line, mask=mask)
