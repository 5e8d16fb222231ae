"""The pyzmq transport: a DEALER socket, used when pyzmq imports (it can also do CURVE encryption)."""
from __future__ import annotations

import socket
import time
from typing import Any, Sequence

from .curve import CurveKeys
from .errors import BackendUnavailable, IrodoriError, unavailable

# libzmq's monitor event numbers (zmq.h); older pyzmq releases do not name all of them
_EVENTS = {"HANDSHAKE_FAILED_NO_DETAIL": 0x0800, "HANDSHAKE_SUCCEEDED": 0x1000, "HANDSHAKE_FAILED_PROTOCOL": 0x2000,
           "HANDSHAKE_FAILED_AUTH": 0x4000}


class PyzmqTransport:
    """A pyzmq DEALER; a socket monitor turns refused connections and disconnects into prompt errors."""

    def __init__(self, endpoint: str, wake: socket.socket, curve: CurveKeys | None, max_message: int) -> None:
        import zmq

        self.zmq, self.endpoint, self.wake = zmq, endpoint, wake
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.MAXMSGSIZE, max_message)
        if curve is not None:
            self.sock.curve_serverkey = curve.server_public.encode("ascii")
            self.sock.curve_publickey = curve.public.encode("ascii")
            self.sock.curve_secretkey = curve.secret.encode("ascii")
        # libzmq >= 4.3 reports the end of the handshake; older ones only the TCP connection
        self.ev_ok = _EVENTS["HANDSHAKE_SUCCEEDED"] if zmq.zmq_version_info() >= (4, 3) else zmq.EVENT_CONNECTED
        events = (self.ev_ok | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED | _EVENTS["HANDSHAKE_FAILED_AUTH"]
                  | _EVENTS["HANDSHAKE_FAILED_NO_DETAIL"] | _EVENTS["HANDSHAKE_FAILED_PROTOCOL"])
        self.monitor = self.sock.get_monitor_socket(events)
        self.curve = curve is not None
        self.connected = False
        self.sock.connect(endpoint)

    def _events(self) -> None:
        """Reads pending monitor events; raises on the ones that mean the backend is not there."""
        from zmq.utils.monitor import recv_monitor_message

        zmq = self.zmq
        events = []
        while self.monitor.poll(0):
            events.append(recv_monitor_message(self.monitor)["event"])
        early_drop = (zmq.EVENT_DISCONNECTED, zmq.EVENT_CONNECT_RETRIED)
        if self.curve and not self.connected and any(e in early_drop for e in events):
            # a refused CURVE key also drops the connection: give the (more useful) auth event a moment to arrive
            while self.monitor.poll(200):
                events.append(recv_monitor_message(self.monitor)["event"])
        failures = {_EVENTS["HANDSHAKE_FAILED_AUTH"], _EVENTS["HANDSHAKE_FAILED_PROTOCOL"],
                    _EVENTS["HANDSHAKE_FAILED_NO_DETAIL"]}
        events.sort(key=lambda e: e not in failures)  # handshake failures explain a drop: report them first
        for event in events:
            if event == self.ev_ok:
                self.connected = True
            elif event == zmq.EVENT_CONNECT_RETRIED and not self.connected:
                raise unavailable(self.endpoint, "connection refused")
            elif event == zmq.EVENT_DISCONNECTED:
                if not self.connected:
                    raise unavailable(self.endpoint, "it closed the connection during the handshake; a CURVE "
                                                      "server needs keys (Client(curve=...))")
                raise BackendUnavailable("unavailable", f"the Irodori backend at {self.endpoint} closed the "
                                                        "connection: it may have crashed; restart it with "
                                                        "`irodori serve`")
            elif event == _EVENTS["HANDSHAKE_FAILED_AUTH"]:
                raise IrodoriError("auth", f"{self.endpoint} refused this client's CURVE key; add its public key "
                                           "to the server's authorized_clients folder (`irodori keys`)")
            elif event in (_EVENTS["HANDSHAKE_FAILED_PROTOCOL"], _EVENTS["HANDSHAKE_FAILED_NO_DETAIL"]):
                raise IrodoriError("auth", f"the security handshake with {self.endpoint} failed: check that both "
                                           "sides use CURVE with matching keys, or neither does")

    def alive(self) -> bool:
        try:
            self._events()
        except IrodoriError:
            return False
        return True

    def send(self, frames: Sequence[Any], deadline: float) -> None:
        try:
            self.sock.send_multipart(frames, flags=self.zmq.NOBLOCK, copy=False)
        except self.zmq.Again:
            raise unavailable(self.endpoint, "cannot queue the request") from None

    def recv(self, deadline: float, connect_deadline: float) -> list:
        zmq = self.zmq
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        poller.register(self.wake.fileno(), zmq.POLLIN)
        while True:
            now = time.monotonic()
            if not self.connected and now >= connect_deadline:
                raise unavailable(self.endpoint, "could not connect in time")
            if now >= deadline:
                raise IrodoriError("timeout", f"no reply from {self.endpoint} in time")
            limit = deadline if self.connected else min(deadline, connect_deadline)
            ready = dict(poller.poll(max(1, int((limit - now) * 1000) + 1)))
            if self.sock in ready:  # a reply wins over a disconnect that came right after it
                return [f.buffer if len(f) >= 65536 else f.bytes for f in self.sock.recv_multipart(copy=False)]
            if self.monitor in ready:
                self._events()
            if self.wake.fileno() in ready:
                raise IrodoriError("cancelled", "cancelled")

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except self.zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


def pyzmq_available() -> bool:
    try:
        import zmq  # noqa: F401
    except ImportError:
        return False
    return True
