"""Irodori's wire protocol (docs/protocol.md) and its client, in ONE module.

This file is imported by the server, the broker, the CLI and both plugins, and is copied into the plugin
packages when they are built. It must therefore import only the standard library: Krita's and GIMP's own
Pythons on Windows and macOS cannot load compiled packages. pyzmq is used when it imports; otherwise the
client speaks ZMTP 3.0 (NULL security, DEALER semantics) over a plain TCP socket itself.

Messages (after the ROUTER's identity frame): b"" delimiter, b"irodori/1", a JSON header, binary frames.
"""
from __future__ import annotations

import itertools
import json
import mmap
import os
import re
import select
import socket
import stat
import struct
import sys
import threading
import time
import weakref
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from .endpoints import is_local_endpoint

PROTOCOL_VERSION = 1
VERSION_PREFIX = b"irodori/"
VERSION_FRAME = VERSION_PREFIX + str(PROTOCOL_VERSION).encode()
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5717"

OPS = ("ping", "info", "colorize")
OUTPUTS = ("color", "flattened", "flats", "shading")  # same names as backend.inference.pipeline.OUTPUTS
ROLES = ("lineart", "reference")
INPUT_FORMATS = ("raw", "encoded", "shm")  # encoded = PNG, JPEG or WebP file bytes; shm = see SharedBuffer
LAYOUT_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4, "BGRA": 4}
OUTPUT_LAYOUTS = ("RGB", "RGBA", "BGRA")
OUTPUT_FORMATS = ("raw", "png", "shm")
MAX_HEADER_BYTES = 64 * 1024
MIN_RESOLUTION, MAX_RESOLUTION = 32, 4096
_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")

# Stable error codes. The first group comes from servers and brokers, the second from the client itself.
ERROR_CODES = {
    "bad_request": "the message, its header or an image is malformed",
    "too_large": "an image or the message is over the server's limits (see `info`)",
    "unsupported_version": "the protocol version is not spoken by this server",
    "unknown_op": "the operation is not known to this server",
    "busy": "the server's queue is full; try again later",
    "shutting_down": "the server is stopping and takes no new work",
    "no_workers": "the broker has no worker to run the request",
    "worker_lost": "the worker running the request died and it could not be retried",
    "internal": "the server failed unexpectedly (see its log)",
    "shared_memory": "the server cannot use the request's shared memory (not on this machine, or turned off)",
    "unavailable": "no backend answers at the endpoint",
    "timeout": "no reply within the client's timeout",
    "cancelled": "the call was cancelled by the caller",
    "auth": "the security handshake failed (CURVE keys)",
    "protocol": "the peer sent something that is not this protocol",
}
_UNAVAILABLE_CODES = ("unavailable", "shutting_down", "no_workers")


class IrodoriError(Exception):
    """An error with a stable `code` (see ERROR_CODES) and a human `message`."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class BackendUnavailable(IrodoriError):
    """No server (absent, crashed, stopping, or a broker without workers)."""


def make_error(code: str, message: str, request_id: str | None = None) -> IrodoriError:
    cls = BackendUnavailable if code in _UNAVAILABLE_CODES else IrodoriError
    return cls(code, message, request_id)


# ============================================================================================ wire format
def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def reply_frames(header: dict, payloads: Sequence[Any] = ()) -> list:
    """A reply without its envelope: version, header, payload frames."""
    return [VERSION_FRAME, json_bytes(header), *payloads]


def error_frames(request_id: str | None, code: str, message: str) -> list:
    header: dict[str, Any] = {"id": request_id, "ok": False, "error": {"code": code, "message": message}}
    if code == "unsupported_version":
        header["supported_versions"] = list(SUPPORTED_VERSIONS)
    return reply_frames(header)


def peek_id(header: bytes) -> str | None:
    """The request id of a header that may be invalid, so that even an error reply can carry it."""
    if len(header) > MAX_HEADER_BYTES:
        return None
    try:
        rid = json.loads(bytes(header).decode("utf-8")).get("id")
    except (ValueError, AttributeError):
        return None
    return rid if isinstance(rid, str) and _ID_RE.match(rid) else None


@dataclass(frozen=True)
class ImageSpec:
    """One input image as the header describes it; width/height/layout for formats "raw" and "shm"."""

    role: str
    format: str
    width: int = 0
    height: int = 0
    layout: str = ""
    name: str = ""  # format "shm": the shared memory segment that holds the pixels

    @property
    def nbytes(self) -> int:
        return self.width * self.height * self.channels

    @property
    def channels(self) -> int:
        return LAYOUT_CHANNELS[self.layout]


@dataclass(frozen=True)
class Request:
    """A request header that passed `parse_request`: every field has the right type and range."""

    op: str
    id: str
    options: dict
    inputs: tuple[ImageSpec, ...] = ()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _keys(obj: dict, allowed: Iterable[str], where: str, rid: str | None) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise IrodoriError("bad_request", f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                          f"known: {', '.join(allowed)}", rid)


def parse_request(version: bytes, header: bytes, payload_sizes: Sequence[int], limits: Any) -> Request:
    """Check a request strictly (version, header schema, frame count and sizes) before any work is queued.

    `limits` has max_side, max_pixels, max_reference_pixels and max_encoded_bytes (backend.inference.imageio.Limits).
    Raises IrodoriError with the stable code and the request id when it could be read.
    """
    version = bytes(version)
    if version != VERSION_FRAME:
        rid = peek_id(header)
        if version.startswith(VERSION_PREFIX):
            raise IrodoriError("unsupported_version", f"protocol version {version[len(VERSION_PREFIX):]!r} is "
                               f"not supported; this server speaks {VERSION_FRAME.decode()}", rid)
        raise IrodoriError("bad_request", f"not an Irodori request: the first frame after the empty delimiter "
                           f"must be {VERSION_FRAME!r}", rid)
    if len(header) > MAX_HEADER_BYTES:
        raise IrodoriError("too_large", f"header is {len(header)} bytes; at most {MAX_HEADER_BYTES}")
    try:
        doc = json.loads(bytes(header).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IrodoriError("bad_request", f"header is not UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise IrodoriError("bad_request", "header must be a JSON object")
    rid = doc.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise IrodoriError("bad_request", "header 'id' must be a string of 1-64 characters from A-Z a-z 0-9 . _ : -")
    _keys(doc, ("op", "id", "options", "inputs"), "header", rid)
    op = doc.get("op")
    if not isinstance(op, str):
        raise IrodoriError("bad_request", "header 'op' must be a string", rid)
    if op not in OPS:
        raise IrodoriError("unknown_op", f"unknown operation {op[:40]!r}; known: {', '.join(OPS)}", rid)
    if op != "colorize":
        if "options" in doc or "inputs" in doc or payload_sizes:
            raise IrodoriError("bad_request", f"'{op}' takes no options, inputs or payload frames", rid)
        return Request(op=op, id=rid, options={})
    return Request(op=op, id=rid, options=_parse_options(doc.get("options", {}), rid),
                   inputs=_parse_inputs(doc.get("inputs"), payload_sizes, limits, rid))


def _parse_options(opts: Any, rid: str) -> dict:
    if not isinstance(opts, dict):
        raise IrodoriError("bad_request", "'options' must be a JSON object", rid)
    _keys(opts, ("outputs", "resolution", "output_layout", "output_format", "output_shm"), "options", rid)
    outputs = opts.get("outputs", ["color"])
    if (not isinstance(outputs, list) or not outputs or len(outputs) > len(OUTPUTS)
            or not all(isinstance(o, str) and o in OUTPUTS for o in outputs) or len(set(outputs)) != len(outputs)):
        raise IrodoriError("bad_request", f"options.outputs must be a non-empty list of distinct names from "
                                          f"{', '.join(OUTPUTS)}", rid)
    resolution = opts.get("resolution")
    if resolution is not None and (not _is_int(resolution) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION):
        raise IrodoriError("bad_request", f"options.resolution must be null or an integer from {MIN_RESOLUTION} "
                                          f"to {MAX_RESOLUTION}", rid)
    layout = opts.get("output_layout", "RGBA")
    if layout not in OUTPUT_LAYOUTS:
        raise IrodoriError("bad_request", f"options.output_layout must be one of {', '.join(OUTPUT_LAYOUTS)}", rid)
    fmt = opts.get("output_format", "raw")
    if fmt not in OUTPUT_FORMATS:
        raise IrodoriError("bad_request", f"options.output_format must be one of {', '.join(OUTPUT_FORMATS)}", rid)
    if fmt == "png" and layout == "BGRA":
        raise IrodoriError("bad_request", "output_layout BGRA needs output_format raw (PNG is RGB or RGBA)", rid)
    shm = opts.get("output_shm")
    if (fmt == "shm") != (shm is not None) or (shm is not None and not valid_shm_name(shm)):
        raise IrodoriError("bad_request", "output_format shm needs options.output_shm, the name of a shared memory "
                                          "segment (irodori-PID-32 hex digits), and output_shm needs it", rid)
    return {"outputs": list(outputs), "resolution": resolution, "output_layout": layout, "output_format": fmt,
            "output_shm": shm}


def _parse_inputs(inputs: Any, sizes: Sequence[int], limits: Any, rid: str) -> tuple[ImageSpec, ...]:
    if not isinstance(inputs, list) or len(inputs) != len(ROLES):
        raise IrodoriError("bad_request", "'inputs' must list exactly two images: lineart and reference", rid)
    if len(sizes) != len(inputs):
        raise IrodoriError("bad_request", f"header lists {len(inputs)} inputs but {len(sizes)} payload frames "
                                          "follow it", rid)
    specs = []
    for i, (d, size) in enumerate(zip(inputs, sizes)):
        where = f"inputs[{i}]"
        if not isinstance(d, dict):
            raise IrodoriError("bad_request", f"{where} must be a JSON object", rid)
        _keys(d, ("role", "format", "width", "height", "layout", "name"), where, rid)
        role, fmt = d.get("role"), d.get("format")
        if role not in ROLES:
            raise IrodoriError("bad_request", f"{where}.role must be one of {', '.join(ROLES)}", rid)
        if fmt not in INPUT_FORMATS:
            raise IrodoriError("bad_request", f"{where}.format must be one of {', '.join(INPUT_FORMATS)}", rid)
        max_pixels = limits.max_pixels if role == "lineart" else limits.max_reference_pixels
        if fmt == "encoded":
            if set(d) - {"role", "format"}:
                raise IrodoriError("bad_request", f"{where}: an encoded image takes only role and format", rid)
            if size == 0:
                raise IrodoriError("bad_request", f"{where} ({role}) is an empty frame", rid)
            if size > limits.max_encoded_bytes:
                raise IrodoriError("too_large", f"{role} file is {size} bytes; at most {limits.max_encoded_bytes}",
                                   rid)
            specs.append(ImageSpec(role, fmt))
            continue
        if "name" in d and fmt != "shm":
            raise IrodoriError("bad_request", f"{where}: name is for format shm only", rid)
        w, h, layout = d.get("width"), d.get("height"), d.get("layout")
        if not (_is_int(w) and _is_int(h)) or w < 1 or h < 1:
            raise IrodoriError("bad_request", f"{where}: width and height must be positive integers", rid)
        if layout not in LAYOUT_CHANNELS:
            raise IrodoriError("bad_request", f"{where}.layout must be one of {', '.join(LAYOUT_CHANNELS)}", rid)
        if max(w, h) > limits.max_side:
            raise IrodoriError("too_large", f"{role} is {w}x{h}; the longest side may be at most "
                                            f"{limits.max_side}", rid)
        if w * h > max_pixels:
            raise IrodoriError("too_large", f"{role} is {w}x{h} = {w * h} pixels; at most {max_pixels}", rid)
        expected = w * h * LAYOUT_CHANNELS[layout]
        if fmt == "shm":
            if not valid_shm_name(d.get("name")):
                raise IrodoriError("bad_request", f"{where}.name must name a shared memory segment "
                                                  "(irodori-PID-32 hex digits)", rid)
            if size:
                raise IrodoriError("bad_request", f"{where}: a shm image's payload frame must be empty", rid)
            specs.append(ImageSpec(role, fmt, w, h, layout, d["name"]))
            continue
        if size != expected:
            raise IrodoriError("bad_request", f"{role} frame has {size} bytes; {w}x{h} {layout} needs {expected}",
                               rid)
        specs.append(ImageSpec(role, fmt, w, h, layout))
    if sorted(s.role for s in specs) != sorted(ROLES):
        raise IrodoriError("bad_request", "'inputs' must hold one lineart and one reference", rid)
    return tuple(specs)


def max_message_bytes(limits: Any) -> int:
    """The biggest valid request under `limits`: servers set ZMQ MAXMSGSIZE to this."""
    line = max(limits.max_pixels * 4, limits.max_encoded_bytes)
    ref = max(limits.max_reference_pixels * 4, limits.max_encoded_bytes)
    return line + ref + MAX_HEADER_BYTES + 1024


# ============================================================================================ shared memory
SHM_DIR = "/dev/shm"
_SHM_NAME_RE = re.compile(r"irodori-([0-9]{1,10})-[0-9a-f]{32}\Z")


def valid_shm_name(name: Any) -> bool:
    """Only names this module makes (irodori-PID-random): a request cannot point the server at other files."""
    return isinstance(name, str) and _SHM_NAME_RE.match(name) is not None


def shm_available() -> bool:
    """Shared memory is a Linux tmpfs here (/dev/shm); elsewhere requests carry their pixels in frames."""
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR)


class SharedBuffer:
    """Pixels in a file under /dev/shm, mapped into memory by the client and the server.

    A local client writes its line art there once and the server reads it in place, and the server writes
    the outputs straight into the client's segment: no trip through the kernel's socket buffers (two copies
    of every byte each way, ~10 ms for 2 x 16 MB on loopback). The client owns its segments (create(),
    reused from request to request, unlinked on close); the server only opens names that match
    valid_shm_name(), owned by its own user, regular files at least as large as the request says, and
    never follows links. Segments left by a killed client are removed by the next one (their PID is gone).
    """

    def __init__(self, name: str, size: int, writable: bool) -> None:
        if not valid_shm_name(name):
            raise ValueError(f"{name!r} is not an Irodori shared memory name")
        if size < 1:
            raise ValueError("a shared buffer holds at least one byte")
        self.name, self.size, self.path = name, size, os.path.join(SHM_DIR, name)
        fd = os.open(self.path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise ValueError(f"{self.path} is not a file of this user")
            if st.st_size < size:
                raise ValueError(f"{self.path} holds {st.st_size} bytes; {size} are needed")
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))
        finally:
            os.close(fd)
        self.view = memoryview(self._map)

    @classmethod
    def create(cls, size: int) -> "SharedBuffer":
        """A new segment of `size` bytes owned by this process (mode 0600)."""
        remove_stale_segments()
        name = f"irodori-{os.getpid()}-{os.urandom(16).hex()}"
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        buf = cls(name, size, writable=True)
        buf._finalizer = weakref.finalize(buf, _unlink_quietly, buf.path)  # also at interpreter exit
        return buf

    def unlink(self) -> None:
        """Remove the segment (the memory goes once every mapping is gone)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        else:
            _unlink_quietly(self.path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_stale_checked = False


def remove_stale_segments() -> None:
    """Once per process: unlink this user's Irodori segments whose creating process no longer runs."""
    global _stale_checked
    if _stale_checked:
        return
    _stale_checked = True
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return
    for name in names:
        m = _SHM_NAME_RE.match(name)
        if not m:
            continue
        try:
            if os.stat(os.path.join(SHM_DIR, name)).st_uid != os.geteuid():
                continue
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            _unlink_quietly(os.path.join(SHM_DIR, name))
        except OSError:  # alive but not ours to signal, or gone already
            pass


# ============================================================================================ pixels
@dataclass
class Pixels:
    """8-bit pixels, rows top to bottom, channels interleaved in `layout` order ("L", "RGB", "RGBA", "BGRA").

    `data` is any bytes-like object (bytes, bytearray, memoryview); replies use zero-copy views, so call
    bytes(p.data) where an API insists on bytes.
    """

    width: int
    height: int
    layout: str
    data: Any

    def __post_init__(self) -> None:
        if self.layout not in LAYOUT_CHANNELS:
            raise ValueError(f"layout {self.layout!r} must be one of {', '.join(LAYOUT_CHANNELS)}")
        n = memoryview(self.data).nbytes
        if n != self.width * self.height * self.channels:
            raise ValueError(f"{self.width}x{self.height} {self.layout} needs "
                             f"{self.width * self.height * self.channels} bytes, got {n}")

    @property
    def channels(self) -> int:
        return LAYOUT_CHANNELS[self.layout]

    @classmethod
    def from_array(cls, array: Any, layout: str | None = None) -> "Pixels":
        """From a uint8 numpy array (H,W), (H,W,3) or (H,W,4); numpy itself is not imported here."""
        if str(getattr(array, "dtype", "")) != "uint8":
            raise ValueError(f"pixels must be uint8, got {getattr(array, 'dtype', type(array).__name__)}")
        shape = tuple(array.shape)
        channels = 1 if len(shape) == 2 else shape[2] if len(shape) == 3 else 0
        default = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
        if default is None:
            raise ValueError(f"pixels must be (H,W), (H,W,3) or (H,W,4), got shape {shape}")
        layout = layout or default
        if LAYOUT_CHANNELS.get(layout) != channels:
            raise ValueError(f"layout {layout} does not fit shape {shape}")
        if not array.flags["C_CONTIGUOUS"]:
            array = array.copy()
        return cls(shape[1], shape[0], layout, memoryview(array).cast("B"))

    def to_array(self) -> Any:
        """A read-only numpy view (H,W) or (H,W,C); needs numpy."""
        import numpy as np

        a = np.frombuffer(self.data, np.uint8)
        return a.reshape(self.height, self.width) if self.channels == 1 else a.reshape(
            self.height, self.width, self.channels)


# ============================================================================================ CURVE keys
@dataclass(frozen=True)
class CurveKeys:
    """A client's CURVE keys (Z85 text, 40 characters each). Only the pyzmq transport can use them."""

    server_public: str
    public: str
    secret: str

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, client: str = "client") -> "CurveKeys":
        """Reads DIR/server.key and DIR/CLIENT.key_secret as written by `irodori keys DIR`."""
        server = _read_cert(os.path.join(os.fspath(directory), "server.key"))
        mine = _read_cert(os.path.join(os.fspath(directory), f"{client}.key_secret"))
        if "secret-key" not in mine:
            raise ValueError(f"{client}.key_secret in {directory} holds no secret-key")
        return cls(server["public-key"], mine["public-key"], mine["secret-key"])


def _read_cert(path: str) -> dict[str, str]:
    """The key lines of a ZeroMQ certificate file (ZPL text: `public-key = "..."`)."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ValueError(f"cannot read CURVE key file {path} ({exc.strerror}); make keys with `irodori keys DIR`")
    found = dict(re.findall(r'^\s*(public-key|secret-key)\s*=\s*"([^"]{40})"', text, re.M))
    if "public-key" not in found:
        raise ValueError(f"{path} is not a ZeroMQ CURVE certificate (no public-key)")
    return found


# ============================================================================================ transports
def _parse_tcp(endpoint: str) -> tuple[str, int]:
    m = re.fullmatch(r"tcp://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+):(\d{1,5})", endpoint)
    if not m:
        raise ValueError(f"endpoint {endpoint!r} must look like tcp://HOST:PORT (the built-in transport speaks TCP "
                         "only)")
    return m.group(1).strip("[]"), int(m.group(2))


def _unavailable(endpoint: str, why: str) -> BackendUnavailable:
    return BackendUnavailable("unavailable", f"no Irodori backend at {endpoint}: start it with `irodori serve` "
                                             f"({why})")


class _ZmtpTransport:
    """ZMTP 3.0 over a plain socket (RFC 23): NULL security, speaking as a DEALER."""

    def __init__(self, endpoint: str, deadline: float, wake: socket.socket, max_frame: int) -> None:
        self.endpoint, self.wake, self.max_frame = endpoint, wake, max_frame
        host, port = _parse_tcp(endpoint)
        try:
            self.sock = socket.create_connection((host, port), timeout=max(0.001, deadline - time.monotonic()))
        except (socket.timeout, TimeoutError):
            raise _unavailable(endpoint, "connecting timed out") from None
        except OSError as exc:
            raise _unavailable(endpoint, exc.strerror or str(exc)) from None
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
                    raise _unavailable(self.endpoint, "it accepted the connection but never answered the handshake")
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
                    raise _unavailable(self.endpoint, f"{why} during the handshake")
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


# libzmq's monitor event numbers (zmq.h); older pyzmq releases do not name all of them
_EVENTS = {"HANDSHAKE_FAILED_NO_DETAIL": 0x0800, "HANDSHAKE_SUCCEEDED": 0x1000, "HANDSHAKE_FAILED_PROTOCOL": 0x2000,
           "HANDSHAKE_FAILED_AUTH": 0x4000}


class _PyzmqTransport:
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
                raise _unavailable(self.endpoint, "connection refused")
            elif event == zmq.EVENT_DISCONNECTED:
                if not self.connected:
                    raise _unavailable(self.endpoint, "it closed the connection during the handshake; a CURVE "
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
            raise _unavailable(self.endpoint, "cannot queue the request") from None

    def recv(self, deadline: float, connect_deadline: float) -> list:
        zmq = self.zmq
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        poller.register(self.wake.fileno(), zmq.POLLIN)
        while True:
            now = time.monotonic()
            if not self.connected and now >= connect_deadline:
                raise _unavailable(self.endpoint, "could not connect in time")
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


# ============================================================================================ the client
class Client:
    """One connection to an Irodori backend (server or broker); one request at a time per Client.

    Use one Client per thread; `cancel()` is the only method another thread may call. Every call either
    returns within `timeout` seconds or raises IrodoriError (BackendUnavailable when nothing answers). After
    any failure the connection is dropped and the next call reconnects, so the same Client works again once
    the server is back.
    """

    _counter = itertools.count(1)

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 60.0, transport: str = "auto", *,
                 connect_timeout: float | None = None, curve: CurveKeys | None = None,
                 max_reply_bytes: int = 2 ** 31, shared_memory: bool | None = None) -> None:
        if transport == "auto":
            transport = os.environ.get("IRODORI_TRANSPORT", "auto")
        if transport == "auto":
            transport = "pyzmq" if pyzmq_available() else "zmtp"
        if transport not in ("pyzmq", "zmtp"):
            raise ValueError(f"transport {transport!r} must be auto, pyzmq or zmtp")
        if transport == "pyzmq" and not pyzmq_available():
            raise ValueError("transport pyzmq was asked for, but pyzmq does not import here; use transport='zmtp'")
        if curve is not None and transport != "pyzmq":
            raise ValueError("CURVE encryption needs the pyzmq transport (pyzmq is not available here)")
        if transport == "zmtp":
            _parse_tcp(endpoint)  # fail now, not at the first call
        if timeout <= 0:
            raise ValueError("timeout must be positive (seconds)")
        self.endpoint, self.timeout, self.transport = endpoint, float(timeout), transport
        self.connect_timeout = float(connect_timeout) if connect_timeout else min(self.timeout, 10.0)
        self.curve, self.max_reply_bytes = curve, max_reply_bytes
        self.last_timings: dict[str, float] = {}
        self.last_header: dict = {}  # the last successful reply's header (e.g. batch_size)
        self._conn: _ZmtpTransport | _PyzmqTransport | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._prefix = f"{os.getpid():x}.{next(Client._counter)}"
        self._seq = itertools.count(1)
        # Raw pixels through /dev/shm (SharedBuffer) when the server runs on this machine; None = decide here.
        if shared_memory is None:
            shared_memory = shm_available() and is_local_endpoint(endpoint)
        self.shared_memory = bool(shared_memory) and shm_available()
        self._segments: dict[str, SharedBuffer] = {}

    # ---- operations
    def ping(self) -> dict:
        """The server's ping reply header (a broker adds a "broker" section with its worker count)."""
        return self.request("ping")[0]

    def info(self) -> dict:
        """Versions, model, device, limits and batching settings of the server."""
        return self.request("info")[0]["info"]

    def colorize(self, lineart: Any, reference: Any, outputs: Sequence[str] = ("color",),
                 options: dict | None = None, output_layout: str = "RGBA",
                 output_format: str = "raw") -> dict[str, Any]:
        """Colour `lineart` from `reference`; each is Pixels, a uint8 numpy array, or encoded file bytes.

        Returns {output name: Pixels} (output_format "raw", pixels in output_layout with alpha 255) or
        {output name: PNG bytes} (output_format "png"). `options` may add "resolution" (and overrides the
        keyword arguments). Timings of the reply are in `self.last_timings` (milliseconds).
        """
        opts = {"outputs": list(outputs), "output_layout": output_layout, "output_format": output_format,
                **(options or {})}
        inputs = [_input("lineart", lineart), _input("reference", reference)]
        if self.shared_memory and opts["output_format"] == "raw" and inputs[0][0]["format"] == "raw":
            try:
                return self._colorize_shared(opts, inputs)
            except IrodoriError as exc:
                if exc.code != "shared_memory":
                    raise
                self.shared_memory = False  # the server cannot see this machine's segments: frames from now on
                self._free_segments()
        header, payloads = self.request("colorize", opts, inputs)
        specs = header.get("outputs")
        if not isinstance(specs, list) or len(specs) != len(payloads):
            raise IrodoriError("protocol", "the reply's outputs do not match its frames")
        result: dict[str, Any] = {}
        try:
            for spec, data in zip(specs, payloads):
                if spec["format"] == "raw":
                    result[spec["name"]] = Pixels(spec["width"], spec["height"], spec["layout"], data)
                else:
                    result[spec["name"]] = data
        except (KeyError, TypeError, ValueError) as exc:
            raise IrodoriError("protocol", f"bad output description in the reply: {exc!r}") from None
        return result

    def _segment(self, key: str, size: int) -> SharedBuffer:
        """This client's segment for `key` (lineart, reference, outputs), reused while it is big enough."""
        seg = self._segments.get(key)
        if seg is None or seg.size < size:
            if seg is not None:
                seg.unlink()
            seg = self._segments[key] = SharedBuffer.create(size)
        return seg

    def _free_segments(self) -> None:
        for seg in self._segments.values():
            seg.unlink()
        self._segments.clear()

    def _colorize_shared(self, opts: dict, inputs: list[tuple[dict, Any]]) -> dict[str, Any]:
        """colorize() with raw pixels in this client's shared memory both ways (see SharedBuffer)."""
        sent = []
        for desc, data in inputs:
            if desc["format"] == "raw":
                view = memoryview(data).cast("B")
                seg = self._segment(desc["role"], view.nbytes)
                seg.view[:view.nbytes] = view
                desc, data = {**desc, "format": "shm", "name": seg.name}, b""
            sent.append((desc, data))
        line = inputs[0][0]
        per_output = line["width"] * line["height"] * LAYOUT_CHANNELS[opts["output_layout"]]
        out = self._segment("outputs", per_output * len(opts["outputs"]))
        header, payloads = self.request("colorize", {**opts, "output_format": "shm", "output_shm": out.name}, sent)
        specs = header.get("outputs")
        result: dict[str, Any] = {}
        try:
            if not isinstance(specs, list) or payloads:
                raise ValueError("outputs in shared memory come without payload frames")
            for spec in specs:
                start = spec["offset"]
                n = spec["width"] * spec["height"] * LAYOUT_CHANNELS[spec["layout"]]
                if spec["format"] != "shm" or not 0 <= start <= out.size - n:
                    raise ValueError(f"output {spec['name']!r} is not inside the segment")
                # copied out (~0.7 ms at 2048^2): the segment is written again by the next request
                result[spec["name"]] = Pixels(spec["width"], spec["height"], spec["layout"],
                                              bytes(out.view[start:start + n]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IrodoriError("protocol", f"bad output description in the reply: {exc!r}") from None
        return result

    def request(self, op: str, options: dict | None = None, inputs: Sequence[tuple[dict, Any]] = (), *,
                timeout: float | None = None, version: bytes = VERSION_FRAME) -> tuple[dict, list]:
        """Send one request and wait for its reply: (reply header, payload frames). Raises IrodoriError.

        `inputs` are (descriptor, payload) pairs as in docs/protocol.md. An error reply raises.
        """
        rid = f"{self._prefix}.{next(self._seq)}"
        header: dict[str, Any] = {"op": op, "id": rid}
        if options is not None:
            header["options"] = options
        if inputs:
            header["inputs"] = [d for d, _ in inputs]
        frames = [b"", version, json_bytes(header), *[p for _, p in inputs]]
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        self._drain_wake()
        try:
            reply = self._exchange(frames, deadline)
        except IrodoriError as exc:
            self._reset()
            if exc.code == "timeout":
                raise IrodoriError("timeout", f"no reply from {self.endpoint} within {deadline - start:g} s: the "
                                   "server may be busy with large images; raise the timeout or check the server's "
                                   "log", rid) from None
            raise
        except OSError as exc:
            self._reset()
            raise _unavailable(self.endpoint, f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # a peer that breaks ZMTP in ways the parser did not foresee
            self._reset()
            raise IrodoriError("protocol", f"bad data from {self.endpoint}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            self._reset()
            raise
        rtt = (time.monotonic() - start) * 1e3
        try:
            if len(reply) < 3 or len(reply[0]) != 0:
                raise ValueError("missing delimiter, version or header frame")
            if bytes(reply[1]) != VERSION_FRAME:
                raise ValueError(f"the server speaks {bytes(reply[1])[:32]!r}, this client {VERSION_FRAME!r}")
            head = json.loads(bytes(reply[2]).decode("utf-8"))
            if not isinstance(head, dict) or head.get("id") not in (rid, None):
                raise ValueError("the reply is not for this request")
        except ValueError as exc:
            self._reset()
            raise IrodoriError("protocol", f"bad reply from {self.endpoint}: {exc}") from None
        if not head.get("ok"):
            err = head.get("error") if isinstance(head.get("error"), dict) else {}
            raise make_error(str(err.get("code", "protocol")), str(err.get("message", "error without a message")),
                             rid)
        timings = head.get("timings") if isinstance(head.get("timings"), dict) else {}
        self.last_timings = {**timings, "roundtrip_ms": rtt}
        self.last_header = head
        return head, reply[3:]

    def _exchange(self, frames: list, deadline: float) -> list:
        if self._conn is not None and not self._conn.alive():
            self._reset()
        connect_deadline = min(deadline, time.monotonic() + self.connect_timeout)
        if self._conn is None:
            if self.transport == "zmtp":
                self._conn = _ZmtpTransport(self.endpoint, connect_deadline, self._wake_r, self.max_reply_bytes)
            else:
                self._conn = _PyzmqTransport(self.endpoint, self._wake_r, self.curve, self.max_reply_bytes)
        self._conn.send(frames, deadline)
        if isinstance(self._conn, _PyzmqTransport):
            return self._conn.recv(deadline, connect_deadline)
        return self._conn.recv(deadline)

    # ---- lifetime
    def cancel(self) -> None:
        """From another thread: the call in progress raises IrodoriError('cancelled') promptly."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _reset(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def close(self) -> None:
        self._reset()
        self._free_segments()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _input(role: str, image: Any) -> tuple[dict, Any]:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return {"role": role, "format": "encoded"}, image
    if not isinstance(image, Pixels):
        image = Pixels.from_array(image)
    desc = {"role": role, "format": "raw", "width": image.width, "height": image.height, "layout": image.layout}
    return desc, image.data


def wait_until_serving(endpoint: str, timeout: float = 90.0, exited: Callable[[], bool] | None = None,
                       interval: float = 0.2) -> None:
    """Ping until a backend answers (loading a model takes seconds). Raises BackendUnavailable when
    `timeout` passes or `exited()` says the process that should serve has ended."""
    deadline = time.monotonic() + timeout
    with Client(endpoint, timeout=2.0) as client:
        while True:
            if exited is not None and exited():
                raise _unavailable(endpoint, "the server process exited")
            try:
                client.ping()
                return
            except IrodoriError:
                if time.monotonic() > deadline:
                    raise _unavailable(endpoint, f"nothing answered within {timeout:.0f} s") from None
                time.sleep(interval)


def colorize_many(client_factory: Callable[[], Client], jobs: Iterable[dict], max_in_flight: int = 4
                  ) -> Iterator[tuple[int, Any]]:
    """Run `client.colorize(**job)` for every job with up to `max_in_flight` requests outstanding.

    Yields (job index, result dict or the IrodoriError it raised) in completion order. One Client per
    worker thread (made by `client_factory`), all closed at the end; jobs are read lazily.
    """
    local = threading.local()
    clients: list[Client] = []
    lock = threading.Lock()

    def run(job: dict) -> Any:
        if not hasattr(local, "client"):
            local.client = client_factory()
            with lock:
                clients.append(local.client)
        try:
            return local.client.colorize(**job)
        except IrodoriError as exc:
            return exc

    try:
        with ThreadPoolExecutor(max_workers=max(1, max_in_flight)) as pool:
            pending: dict = {}
            it = iter(enumerate(jobs))
            while True:
                for index, job in it:
                    pending[pool.submit(run, job)] = index
                    if len(pending) >= max_in_flight:
                        break
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
    finally:
        for c in clients:
            c.close()
