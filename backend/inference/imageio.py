"""Reading and writing 8-bit images with size limits (a decompression bomb is refused before decoding)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from backend.protocol import DEFAULT_LIMITS, Limits  # the size limits are part of the protocol (info reports them)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def check_size(width: int, height: int, what: str = "image", max_pixels: int | None = None,
               limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse empty, degenerate or oversized images with a message that says the limit."""
    max_pixels = limits.max_pixels if max_pixels is None else max_pixels
    if width < 2 or height < 2:
        raise ValueError(f"{what} is {width}x{height}: it must be at least 2x2 pixels")
    if max(width, height) > limits.max_side:
        raise ValueError(f"{what} is {width}x{height}: the longest side may be at most {limits.max_side} px")
    if width * height > max_pixels:
        raise ValueError(f"{what} is {width}x{height} = {width * height} pixels: at most {max_pixels} are accepted")


def _to_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 L, RGB or RGBA (alpha kept where the file has it)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8))
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if img.mode == "L":
        return np.asarray(img)
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))


def decode_image(data: bytes, what: str = "image", max_pixels: int | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode PNG/JPEG/WebP/... bytes; the header's size is checked BEFORE the pixels are decoded."""
    if len(data) > limits.max_encoded_bytes:
        raise ValueError(f"{what} file is {len(data)} bytes: at most {limits.max_encoded_bytes} are accepted")
    try:
        img = Image.open(io.BytesIO(data))
        check_size(img.width, img.height, what, max_pixels, limits)
        img.load()
        return _to_array(img)
    except Image.DecompressionBombError as exc:  # PIL's own guard fired before ours could read the header
        raise ValueError(f"{what} is too large to decode safely ({exc})") from exc
    except ValueError:
        raise
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{what} is not a readable image ({exc})") from exc


def load_image(path: str | Path, what: str | None = None, max_pixels: int | None = None,
               limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    path = Path(path)
    what = what or str(path)
    if not path.is_file():
        raise ValueError(f"{what}: no such file")
    if os.path.getsize(path) > limits.max_encoded_bytes:
        raise ValueError(f"{what}: file larger than {limits.max_encoded_bytes} bytes")
    return decode_image(path.read_bytes(), what, max_pixels, limits)


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def save_image(path: str | Path, array: np.ndarray) -> Path:
    """Write atomically (temp file, then rename) so a crash never leaves a half-written picture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG")
    Image.fromarray(array).save(tmp, format=fmt)
    os.replace(tmp, path)
    return path


def side_by_side(images: list[np.ndarray], height: int = 256, gap: int = 4) -> np.ndarray:
    """A row of pictures scaled to one height, on white: for demo and evaluation grids."""
    tiles = []
    for im in images:
        pil = Image.fromarray(im if im.ndim == 3 else np.stack([im] * 3, -1)).convert("RGB")
        w = max(1, round(pil.width * height / pil.height))
        tiles.append(np.asarray(pil.resize((w, height), Image.LANCZOS)))
    total = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = np.full((height, total, 3), 255, np.uint8)
    x = 0
    for t in tiles:
        out[:, x:x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out
