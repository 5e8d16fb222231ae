"""Real `irodori serve` processes for the protocol and server tests."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from backend.tools.launcher import BackendProcess, start_serving

# Several servers share a small test machine: one thread each keeps them from starving one another.
TEST_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Process(BackendProcess):
    """`python -m backend ARGS` as the tests run it (one thread; killed at once on stop)."""

    def __init__(self, *args: str) -> None:
        super().__init__(*args, env=TEST_ENV)


def wait_until_serving(endpoint: str, proc: BackendProcess, timeout: float = 90.0) -> None:
    """Ping until the server answers (model loading takes seconds)."""
    proc.wait_until_serving(endpoint, timeout)


def start_server(endpoint: str, checkpoint: Path, *extra: str) -> BackendProcess:
    return start_serving(endpoint, "serve", "--bind", endpoint, "--checkpoint", str(checkpoint), "--device", "cpu",
                         *extra, env=TEST_ENV)


# ---------------------------------------------------------------------------------------- test images
def png_bomb(width: int, height: int) -> bytes:
    """A real, fully decodable 1-bit PNG whose pixels would take width*height bytes once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def marked_line_art(h: int, w: int, k: int) -> tuple[np.ndarray, tuple[int, int]]:
    """White paper with one black row and column at a position unique to request k."""
    a = np.full((h, w), 255, np.uint8)
    y, x = (k * 7) % h, (k * 13) % w
    a[y, :] = 0
    a[:, x] = 0
    return a, (y, x)


def check_marked(result: dict, h: int, w: int, mark: tuple[int, int]) -> None:
    colour, flat = result["color"].to_array(), result["flattened"].to_array()
    assert colour.shape == flat.shape == (h, w, 4)
    y, x = mark
    ink = np.zeros((h, w), bool)
    ink[y, :] = ink[:, x] = True
    assert (flat[ink][:, :3] == 0).all()  # colour x line art is black exactly under the ink of THIS request
    assert np.abs(flat[~ink].astype(int) - colour[~ink]).max() <= 1
