"""Pixel helpers that need neither Krita nor numpy (Krita's bundled Python has no numpy).

Krita hands 8-bit RGBA layers over as B, G, R, A bytes. The backend is asked for BGRA replies too, so on
the normal path nothing is converted here; these helpers cover the other layouts a server may send and
the checks made before anything goes over the network.
"""
from __future__ import annotations

from .protocol import LAYOUT_CHANNELS

MAX_NAME_CHARS = 60


def swap_red_blue(data: bytes) -> bytes:
    """RGBA <-> BGRA (the same swap both ways). Slices, because they run in C (Krita's Python has no numpy)."""
    if len(data) % 4:
        raise ValueError(f"4-channel pixels need a multiple of 4 bytes, got {len(data)}")
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


def to_bgra(width: int, height: int, layout: str, data) -> bytes:
    """Any 8-bit layout the protocol knows -> BGRA bytes (alpha 255 where the source has none)."""
    if layout not in LAYOUT_CHANNELS:
        raise ValueError(f"unknown pixel layout {layout!r}")
    data = bytes(data)
    n = width * height
    if len(data) != n * LAYOUT_CHANNELS[layout]:
        raise ValueError(f"{width}x{height} {layout} needs {n * LAYOUT_CHANNELS[layout]} bytes, got {len(data)}")
    if layout == "BGRA":
        return data
    if layout == "RGBA":
        return swap_red_blue(data)
    out = bytearray(b"\xff" * (n * 4))
    if layout == "RGB":
        out[0::4] = data[2::3]
        out[1::4] = data[1::3]
        out[2::4] = data[0::3]
    else:  # "L"
        out[0::4] = data
        out[1::4] = data
        out[2::4] = data
    return bytes(out)


def is_transparent(bgra: bytes) -> bool:
    """True when every pixel of BGRA/RGBA bytes has alpha 0 (an empty Krita layer)."""
    alpha = bgra[3::4]
    return not alpha.strip(b"\x00")


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size scaled down (never up) so that the longer side is at most max_side, aspect kept."""
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {width}x{height}")
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


OUTPUT_LABELS = {"color": "colour", "flattened": "flattened", "flats": "flats"}
HINT_LAYER_NAME = "Irodori hints"  # the layer "New hint layer" adds above the line art


def layer_name(output: str, reference_name: str, frame: int | None = None) -> str:
    """Name of a new layer, e.g. "Irodori colour (ref)" or "Irodori colour (ref) frame 12"."""
    ref = " ".join(str(reference_name).split()) or "reference"
    if len(ref) > MAX_NAME_CHARS:
        ref = ref[:MAX_NAME_CHARS - 1] + "\u2026"
    name = f"Irodori {OUTPUT_LABELS.get(output, output)} ({ref})"
    return name if frame is None else f"{name} frame {frame}"


def unsure_marks(width: int, height: int, layout: str, data) -> tuple[bytes, int]:
    """The backend's "unsure" mask (white: a region with no good match in the keyframe) -> the BGRA bytes of a
    layer that is opaque magenta there and transparent elsewhere, and how many pixels are marked. Magenta,
    because no flat colour of a character is likely to be it; the layer's opacity lets the flats show through."""
    bgra = to_bgra(width, height, layout, data)
    mask = bgra[0::4]  # 0 or 255, the same in every colour channel
    out = bytearray(len(bgra))
    out[0::4] = mask  # blue
    out[2::4] = mask  # red
    out[3::4] = mask
    return bytes(out), len(mask) - mask.count(0)
