"""The built-in transport: ZMTP 3.0 over a plain TCP socket, for Pythons without pyzmq (Krita's, GIMP's).

It speaks just what a client of an Irodori ROUTER needs (RFC 23): NULL security, the DEALER socket type,
multipart messages, and answers to ZMTP 3.1 heartbeats.
"""
from __future__ import annotations

import re
import select
import socket
import struct
import time
from typing import Any, Sequence

from .errors import BackendUnavailable, IrodoriError, unavailable


def parse_tcp(endpoint: str) -> tuple[str, int]:
    m = re.fullmatch(r"tcp://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+):(\d{1,5})", endpoint)
    if not m:
        raise ValueError(f"endpoint {endpoint!r} must look like tcp://HOST:PORT (the built-in transport speaks TCP "
                         "only)")
    return m.group(1).strip("[]"), int(m.group(2))



class ZmtpTransport:
    """ZMTP 3.0 over a plain socket (RFC 23): NULL security, speaking as a DEALER."""

    def __init__(self, endpoint: str, deadline: float, wake: socket.socket, max_frame: int) -> None:
        self.endpoint, self.wake, self.max_frame = endpoint, wake, max_frame
        host, port = parse_tcp(endpoint)
        try:
            self.sock = socket.create_connection((host, port), timeout=max(0.001, deadline - time.monotonic()))
        except (socket.timeout, TimeoutError):
            raise unavailable(endpoint, "connecting timed out") from None
        except OSError as exc:
            raise unavailable(endpoint, exc.strerror or str(exc)) from None
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake(deadline)
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self, deadline: float) -> None:
        greeting = b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
        # signature and major version first: libzmq then sends its whole greeting, so a CURVE server's
        # mechanism can be read (and named in the error) before it hangs up on our NULL
        self._sendall(greeting[:11], deadline)
        peer = self._recv_exact(64, deadline, handshake=True)
        if peer[0] != 0xFF or not peer[9] & 1:
            raise IrodoriError("protocol", f"{self.endpoint} is not a ZeroMQ endpoint (bad greeting)")
        if peer[10] < 3:
            raise IrodoriError("protocol", f"{self.endpoint} speaks ZMTP {peer[10]}; ZMTP 3 is needed")
        mechanism = bytes(peer[12:32]).rstrip(b"\0")
        if mechanism != b"NULL":
            raise IrodoriError("auth", f"{self.endpoint} requires {mechanism.decode('ascii', 'replace')} security: "
                                       "encrypted connections need the pyzmq transport (install pyzmq)")
        self._sendall(greeting[11:], deadline)
        self._send_command(b"READY", _properties({b"Socket-Type": b"DEALER"}), deadline)
        while True:
            name, body = self._read_command(deadline)
            if name == b"READY":
                sock_type = _parse_properties(body).get(b"Socket-Type", b"")
                if sock_type != b"ROUTER":
                    raise IrodoriError("protocol", f"{self.endpoint} is a ZeroMQ {sock_type.decode('ascii', '?')} "
                                                   "socket, not an Irodori backend (ROUTER)")
                return
            if name == b"ERROR":
                raise IrodoriError("auth", f"{self.endpoint} refused the handshake: {_error_reason(body)}")

    def alive(self) -> bool:
        """False when the peer has closed the connection while we were idle."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            return not readable or self.sock.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    # ---- raw I/O
    def _sendall(self, data: Any, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IrodoriError("timeout", f"timed out sending to {self.endpoint}")
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(data)
        except (socket.timeout, TimeoutError):
            raise IrodoriError("timeout", f"timed out sending to {self.endpoint}") from None
        except OSError as exc:
            raise BackendUnavailable("unavailable", f"the Irodori backend at {self.endpoint} closed the connection "
                                                    f"({exc.strerror or exc}); is it still running?") from None

    def _recv_exact(self, n: int, deadline: float, handshake: bool = False) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if handshake:
                    raise unavailable(self.endpoint, "it accepted the connection but never answered the handshake")
                raise IrodoriError("timeout", f"no reply from {self.endpoint} in time")
            readable, _, _ = select.select([self.sock, self.wake], [], [], remaining)
            if self.wake in readable:
                raise IrodoriError("cancelled", "cancelled")
            if not readable:
                continue
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except OSError as exc:
                k, why = 0, exc.strerror or str(exc)
            else:
                why = "connection closed"
            if k == 0:
                if handshake:
                    raise unavailable(self.endpoint, f"{why} during the handshake")
                raise BackendUnavailable("unavailable", f"the Irodori backend at {self.endpoint} closed the "
                                                        f"connection ({why}): it may have crashed; restart it with "
                                                        "`irodori serve`")
            got += k
        return buf

    def _read_frame(self, deadline: float) -> tuple[int, bytearray]:
        head = self._recv_exact(2, deadline)
        flags = head[0]
        if flags & 0xF8:
            raise IrodoriError("protocol", f"bad ZMTP frame flags {flags:#x} from {self.endpoint}")
        size = struct.unpack(">Q", bytes(head[1:]) + self._recv_exact(7, deadline))[0] if flags & 2 else head[1]
        if size > self.max_frame:
            raise IrodoriError("protocol", f"{self.endpoint} sent a {size}-byte frame; the limit is {self.max_frame}")
        return flags, self._recv_exact(size, deadline) if size else bytearray()

    def _read_command(self, deadline: float) -> tuple[bytes, bytes]:
        flags, body = self._read_frame(deadline)
        if not flags & 4 or not body or len(body) < 1 + body[0]:
            raise IrodoriError("protocol", f"{self.endpoint} sent a message before its READY command")
        return bytes(body[1:1 + body[0]]), bytes(body[1 + body[0]:])

    def _send_command(self, name: bytes, body: bytes, deadline: float) -> None:
        data = bytes([len(name)]) + name + body
        self._sendall(_frame_head(4, len(data)) + data, deadline)

    # ---- messages
    def send(self, frames: Sequence[Any], deadline: float) -> None:
        for i, frame in enumerate(frames):
            view = memoryview(frame).cast("B")
            head = _frame_head(0 if i == len(frames) - 1 else 1, view.nbytes)
            if view.nbytes < 65536:
                self._sendall(head + view.tobytes(), deadline)
            else:
                self._sendall(head, deadline)
                self._sendall(view, deadline)

    def recv(self, deadline: float) -> list:
        frames: list = []
        while True:
            flags, body = self._read_frame(deadline)
            if flags & 4:  # a command between messages
                name = bytes(body[1:1 + body[0]]) if body else b""
                if name == b"PING":  # ZMTP 3.1 heartbeat: answer with the ping's context
                    self._send_command(b"PONG", bytes(body[1 + body[0] + 2:]), deadline)
                elif name == b"ERROR":
                    raise IrodoriError("protocol", f"{self.endpoint} sent ERROR: {_error_reason(body[6:])}")
                continue
            frames.append(body)
            if not flags & 1:
                return frames

    def close(self) -> None:
        self.sock.close()


def _frame_head(flags: int, size: int) -> bytes:
    return bytes([flags, size]) if size < 256 else bytes([flags | 2]) + struct.pack(">Q", size)


def _properties(props: dict[bytes, bytes]) -> bytes:
    return b"".join(bytes([len(k)]) + k + struct.pack(">I", len(v)) + v for k, v in props.items())


def _parse_properties(body: bytes) -> dict[bytes, bytes]:
    out, i = {}, 0
    while i < len(body):
        n = body[i]
        key = body[i + 1:i + 1 + n]
        (size,) = struct.unpack(">I", body[i + 1 + n:i + 5 + n])
        out[key] = body[i + 5 + n:i + 5 + n + size]
        i += 5 + n + size
    return out


def _error_reason(body: bytes) -> str:
    return bytes(body[1:1 + body[0]]).decode("ascii", "replace") if body else "no reason given"
