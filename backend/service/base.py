"""The service life cycle of `irodori serve`, its signal handling and socket set-up.

Socket set-up is where the bind rule lives: a ROUTER is bound only after keys.check_bind (a bind other
machines can reach needs CURVE keys or --insecure), and with keys it becomes a CURVE server whose client
keys a ZAP authenticator checks.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, Callable

import zmq

from backend.service import keys


class Service:
    """`run()` blocks until `stop()` (thread-safe, also from signal handlers); `start_thread()` runs it in a
    daemon thread and waits until it listens (tests, embedding)."""

    name = "service"
    ready: threading.Event
    error: BaseException | None
    _stop: threading.Event

    def run(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self, timeout: float = 30.0) -> threading.Thread:
        t = threading.Thread(target=self._run_catching, name=f"irodori-{self.name}", daemon=True)
        t.start()
        if not self.ready.wait(timeout) or self.error:
            raise RuntimeError(f"{self.name} did not start: {self.error}")
        return t

    def _run_catching(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported by start_thread
            self.error = exc
            self.ready.set()


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """First SIGINT/SIGTERM: stop taking work and answer what is in flight. Second: quit at once."""
    state = {"n": 0}

    def handler(signum, frame):
        state["n"] += 1
        if state["n"] > 1:
            raise KeyboardInterrupt
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _tune(sock: zmq.Socket, max_message: int) -> None:
    """Every service socket: closes at once, drops over-long messages unread, queues deeply."""
    sock.linger = 0
    sock.setsockopt(zmq.MAXMSGSIZE, max_message)
    sock.setsockopt(zmq.SNDHWM, 10000)
    sock.setsockopt(zmq.RCVHWM, 10000)


def bind_router(ctx: zmq.Context, endpoint: str, curve_dir: Path | None, insecure: bool, max_message: int,
                what: str, auth: Any = None) -> tuple[zmq.Socket, Any]:
    """A ROUTER bound to `endpoint` under the bind rule, and the context's CURVE authenticator (`auth` when one
    runs already; started here for the first CURVE socket; None without keys). The caller stops it."""
    keys.check_bind(endpoint, curve_dir, insecure, what)
    sock = ctx.socket(zmq.ROUTER)
    started = None
    try:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a reply to a client that is gone raises instead of vanishing
        _tune(sock, max_message)
        if curve_dir:
            keys.secure_server_socket(sock, curve_dir)
            if auth is None:
                auth = started = keys.start_authenticator(ctx, curve_dir)
        sock.bind(endpoint)
    except BaseException:
        sock.close(linger=0)
        if started is not None:  # its socket would keep the context from terminating
            started.stop()
        raise
    return sock, auth
