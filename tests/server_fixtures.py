"""Real `irodori serve` / `irodori broker` processes for the protocol, server and broker tests."""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from backend.protocol import Client, IrodoriError
from backend.protocol import wait_until_serving as protocol_wait

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """`python -m backend ARGS` with its stderr collected line by line (so tests can wait for log lines)."""

    def __init__(self, *args: str) -> None:
        self.args = [sys.executable, "-m", "backend", *args]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match:
        """The first log line (from line `start` on) matching `pattern`; fails if the process dies first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and self.proc.stdout.closed:
                    break
                if time.monotonic() > deadline:
                    break
                self._changed.wait(0.1)
        raise AssertionError(f"no log line matching {pattern!r} in {timeout} s (exit code {self.proc.poll()}):\n"
                             f"{self.log[-3000:]}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def wait_until_serving(endpoint: str, proc: Process, timeout: float = 90.0) -> None:
    """Ping until the server answers (model loading takes seconds)."""
    try:
        protocol_wait(endpoint, timeout, exited=lambda: proc.proc.poll() is not None)
    except IrodoriError as exc:
        raise AssertionError(f"{exc} (exit code {proc.proc.poll()}):\n{proc.log[-3000:]}") from None


def start_server(endpoint: str, checkpoint: Path, *extra: str) -> Process:
    proc = Process("serve", "--bind", endpoint, "--checkpoint", str(checkpoint), "--device", "cpu", *extra)
    try:
        wait_until_serving(endpoint, proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_worker(broker_workers: str, checkpoint: Path, *extra: str) -> Process:
    proc = Process("serve", "--connect", broker_workers, "--checkpoint", str(checkpoint), "--device", "cpu", *extra)
    return proc


def start_broker(endpoint: str, workers: str, *extra: str) -> Process:
    proc = Process("broker", "--bind", endpoint, "--workers", workers, *extra)
    try:
        wait_until_serving(endpoint, proc, timeout=30.0)
    except BaseException:
        proc.stop()
        raise
    return proc


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
