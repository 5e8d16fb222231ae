"""Start the real `irodori` command (`python -m backend ...`) in a subprocess and wait until it serves.

One launcher for everything that needs a real server: `irodori bench` measures through one, and the
tests drive them. Both need the same things: this checkout's code in the child, its output kept (to wait for
a log line, or to show why it did not start), a ping loop until it answers, and a stop that cannot hang.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback TCP port that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(overrides: Mapping[str, str] = {}) -> dict[str, str]:
    """This process's environment with this checkout first on PYTHONPATH (an existing PYTHONPATH kept after
    it), so the child runs the same code as the parent whether or not the package is installed."""
    env = {**os.environ, **overrides}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return env


class BackendProcess:
    """`python -m backend ARGS` with its output (stdout and stderr) collected line by line.

    `stop_grace` > 0: stop() sends SIGINT (the server drains, then exits) and kills only after that many
    seconds; 0: stop() kills at once (tests that only need the process gone)."""

    def __init__(self, *args: str, env: Mapping[str, str] = {}, stop_grace: float = 0.0) -> None:
        self.args = [sys.executable, "-m", "backend", *args]
        self.stop_grace = stop_grace
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=child_env(env), stdin=subprocess.DEVNULL,
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
        """The first log line (from line `start` on) matching `pattern`; raises if the process ends first."""
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
        raise RuntimeError(f"no log line matching {pattern!r} in {timeout} s (exit code {self.proc.poll()}):\n"
                           f"{self.log[-3000:]}")

    def wait_until_serving(self, endpoint: str, timeout: float = 90.0) -> None:
        """Ping `endpoint` until it answers (loading a model takes seconds); raises with the log if it never
        does or the process ends."""
        from backend.protocol import IrodoriError, wait_until_serving

        try:
            wait_until_serving(endpoint, timeout, exited=lambda: self.proc.poll() is not None)
        except IrodoriError as exc:
            raise RuntimeError(f"`irodori {self.args[3]}` did not start serving ({exc}; exit code "
                               f"{self.proc.poll()}):\n{self.log[-3000:]}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.stop_grace else signal.SIGKILL)
            try:
                self.proc.wait(self.stop_grace or 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(30)

    def __enter__(self) -> "BackendProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_serving(endpoint: str, *args: str, timeout: float = 90.0, env: Mapping[str, str] = {},
                  stop_grace: float = 0.0) -> BackendProcess:
    """`python -m backend ARGS`, returned once `endpoint` answers; stopped again if it never does."""
    proc = BackendProcess(*args, env=env, stop_grace=stop_grace)
    try:
        proc.wait_until_serving(endpoint, timeout)
    except BaseException:
        proc.stop()
        raise
    return proc
