"""Start `irodori serve` from a Python environment the user names, and stop it when Krita quits.

No Qt or Krita here: the docker calls it and the unit tests run it against a fake Python.
Only endpoints on this computer are started (protocol.is_local_endpoint, the one rule the client and the
server use too): a backend for other machines is set up by hand, with CURVE keys.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from . import protocol


def python_executable(path: str, platform: str = sys.platform) -> str:
    """A Python executable from what the user typed: the executable itself or an environment folder."""
    path = os.path.expanduser(path.strip())
    if not path:
        raise ValueError("Set the Python environment where Irodori is installed (a venv folder or its python).")
    if os.path.isdir(path):
        names = (["Scripts/python.exe", "python.exe"] if platform.startswith("win")
                 else ["bin/python3", "bin/python"])
        for name in names:
            candidate = os.path.join(path, *name.split("/"))
            if os.path.isfile(candidate):
                return candidate
        raise ValueError(f"No Python found in {path} (looked for {', '.join(names)}). Name the environment "
                         "folder where `pip install irodori` was run, or its python executable.")
    if os.path.isfile(path):
        return path
    raise ValueError(f"{path} does not exist. Name the environment folder where Irodori is installed.")


def serve_command(python: str, endpoint: str, checkpoint: str = "") -> list:
    """The command line that starts the backend (the same as `irodori serve --bind ENDPOINT`)."""
    cmd = [python, "-m", "backend", "serve", "--bind", endpoint]
    if checkpoint.strip():
        cmd += ["--checkpoint", os.path.expanduser(checkpoint.strip())]
    return cmd


def child_environment(env: dict | None = None) -> dict:
    """Krita's own Python settings must not leak into the backend's (another Python, another version)."""
    env = dict(os.environ if env is None else env)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
        env.pop(name, None)
    return env


class BackendProcess:
    """At most one backend started from Krita; its output goes to a log file the docker can point to."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(tempfile.gettempdir(), "irodori-backend.log")
        self.command: list = []

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, python_path: str, endpoint: str, checkpoint: str = "") -> None:
        if self.running():
            return
        if not protocol.is_local_endpoint(endpoint):
            raise ValueError(f"Only a backend on this computer (tcp://127.0.0.1:PORT) can be started from Krita; "
                             f"{endpoint} is not one. Start that backend where it runs.")
        self.command = serve_command(python_executable(python_path), endpoint, checkpoint)
        flags = 0x08000000 if sys.platform.startswith("win") else 0  # CREATE_NO_WINDOW: no console pops up
        with open(self.log_path, "ab") as log:
            log.write(("\n$ " + " ".join(self.command) + "\n").encode())
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=child_environment(), creationflags=flags)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, chars: int = 600) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - chars))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """Ask the backend to stop (it finishes what is in flight), then kill it after `grace` seconds."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
