"""The client: one connection to a server, over pyzmq or the built-in ZMTP transport."""
from __future__ import annotations

import itertools
import json
import os
import random
import select
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator, Sequence

from .constants import DEFAULT_ENDPOINT, HINTS_ROLE, KEYFRAME_ROLES, LAYOUT_CHANNELS, UNSURE_OUTPUT, VERSION_FRAME
from .curve import CurveKeys
from .endpoints import is_local_endpoint
from .errors import IrodoriError, make_error, unavailable
from .frames import json_bytes
from .pixels import Pixels
from .pyzmq_transport import PyzmqTransport, pyzmq_available
from .shm import SharedBuffer, shm_available
from .zmtp import ZmtpTransport, parse_tcp

# Backoff between resends of a batch request the server refused as `busy` (seconds): doubling from the
# first to the cap, each wait drawn between half and all of it so that clients refused together spread out.
BUSY_FIRST_WAIT = 0.1
BUSY_MAX_WAIT = 2.0


class Client:
    """One connection to an Irodori backend (`irodori serve`); one request at a time per Client.

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
            parse_tcp(endpoint)  # fail now, not at the first call
        if timeout <= 0:
            raise ValueError("timeout must be positive (seconds)")
        self.endpoint, self.timeout, self.transport = endpoint, float(timeout), transport
        self.connect_timeout = float(connect_timeout) if connect_timeout else min(self.timeout, 10.0)
        self.curve, self.max_reply_bytes = curve, max_reply_bytes
        self.last_timings: dict[str, float] = {}
        self.last_header: dict = {}  # the last successful reply's header (e.g. batch_size)
        self._conn: ZmtpTransport | PyzmqTransport | None = None
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
        """The server's ping reply header."""
        return self.request("ping")[0]

    def info(self) -> dict:
        """Versions, model, device, limits and batching settings of the server."""
        return self.request("info")[0]["info"]

    def colorize(self, lineart: Any, reference: Any = None, outputs: Sequence[str] | None = None,
                 options: dict | None = None, output_layout: str = "RGBA",
                 output_format: str = "raw", *, timeout: float | None = None, hints: Any = None,
                 keyframe: tuple[Any, Any] | None = None) -> dict[str, Any]:
        """Colour `lineart` from `reference`; each is Pixels, a uint8 numpy array, or encoded file bytes.

        `hints` (optional, the same kinds): colour hints at the line art's size, RGBA or BGRA, transparent
        where there is no hint; only a model that takes hints (info()["model"]["hints"]) accepts them.
        `keyframe` (optional): (its line art, its flats or colour picture), the same kinds and one size: the
        flats come back region by region in the keyframe's colours, and the "unsure" output marks the
        regions without a good match. With a keyframe, `reference` defaults to its colouring and `outputs`
        to ("flats", "unsure"); otherwise `reference` is required and `outputs` defaults to ("color",).

        Returns {output name: Pixels} (output_format "raw", pixels in output_layout with alpha 255) or
        {output name: PNG bytes} (output_format "png"). `options` may add "resolution" (and overrides the
        keyword arguments). Timings of the reply are in `self.last_timings` (milliseconds). A full server
        queue raises IrodoriError("busy") at once: a person waiting on one picture should hear it now;
        batch work calls colorize_patiently instead. `timeout` (seconds) overrides the client's for this call.
        """
        if keyframe is not None and (not isinstance(keyframe, (tuple, list)) or len(keyframe) != 2):
            raise ValueError("keyframe must be a pair: (its line art, its colouring)")
        if reference is None:
            if keyframe is None:
                raise ValueError("give a reference (the coloured picture to take colours from), or a keyframe")
            reference = keyframe[1]
        if outputs is None:
            outputs = ("color",) if keyframe is None else ("flats", UNSURE_OUTPUT)
        opts = {"outputs": list(outputs), "output_layout": output_layout, "output_format": output_format,
                **(options or {})}
        inputs = [_input("lineart", lineart), _input("reference", reference)]
        if hints is not None:
            inputs.append(_input(HINTS_ROLE, hints))
        if keyframe is not None:
            inputs += [_input(role, image) for role, image in zip(KEYFRAME_ROLES, keyframe)]
        if self.shared_memory and opts["output_format"] == "raw" and inputs[0][0]["format"] == "raw":
            try:
                return self._colorize_shared(opts, inputs, timeout)
            except IrodoriError as exc:
                if exc.code != "shared_memory":
                    raise
                self.shared_memory = False  # the server cannot see this machine's segments: frames from now on
                self._free_segments()
        header, payloads = self.request("colorize", opts, inputs, timeout=timeout)
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

    def colorize_patiently(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """colorize() for batch work: on `busy`, wait (capped exponential backoff with jitter) and resend.

        A full queue is the server's honest answer to more work than it holds; a batch that sends many
        requests at once (or several batches against one server) must wait its turn, not fail. The whole
        call, waits and resends included, stays within the client's timeout; when that runs out the
        IrodoriError("busy") says how long it tried. cancel() ends a wait at once.
        """
        start = time.monotonic()
        deadline = start + self.timeout
        wait_cap, tries = BUSY_FIRST_WAIT, 0
        while True:
            try:
                return self.colorize(*args, timeout=max(deadline - time.monotonic(), 1e-3), **kwargs)
            except IrodoriError as exc:
                if exc.code != "busy":
                    raise
                tries += 1
                pause = random.uniform(wait_cap / 2, wait_cap)
                if time.monotonic() + pause >= deadline:
                    raise IrodoriError("busy", f"{exc.message} (this client resent the request {tries - 1} "
                                       f"time(s) over {time.monotonic() - start:.1f} s, its timeout being "
                                       f"{self.timeout:g} s): raise the timeout, send fewer requests at once, "
                                       "or ask the server for a larger --queue-size", exc.request_id) from None
                self._pause(pause)
                wait_cap = min(wait_cap * 2, BUSY_MAX_WAIT)

    def _pause(self, seconds: float) -> None:
        """Sleep that cancel() interrupts (it writes to the same wake-up socket the transports watch)."""
        readable, _, _ = select.select([self._wake_r], [], [], seconds)
        if readable:
            self._drain_wake()
            raise IrodoriError("cancelled", "cancelled")

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

    def _colorize_shared(self, opts: dict, inputs: list[tuple[dict, Any]], timeout: float | None
                         ) -> dict[str, Any]:
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
        header, payloads = self.request("colorize", {**opts, "output_format": "shm", "output_shm": out.name}, sent,
                                        timeout=timeout)
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
                # copied out: the segment is written again by the next request
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
            raise unavailable(self.endpoint, f"{type(exc).__name__}: {exc}") from None
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
                self._conn = ZmtpTransport(self.endpoint, connect_deadline, self._wake_r, self.max_reply_bytes)
            else:
                self._conn = PyzmqTransport(self.endpoint, self._wake_r, self.curve, self.max_reply_bytes)
        self._conn.send(frames, deadline)
        if isinstance(self._conn, PyzmqTransport):
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
                raise unavailable(endpoint, "the server process exited")
            try:
                client.ping()
                return
            except IrodoriError:
                if time.monotonic() > deadline:
                    raise unavailable(endpoint, f"nothing answered within {timeout:.0f} s") from None
                time.sleep(interval)


def colorize_many(client_factory: Callable[[], Client], jobs: Iterable[dict], max_in_flight: int = 4,
                  retry_busy: bool = True) -> Iterator[tuple[int, Any]]:
    """Run `client.colorize_patiently(**job)` for every job with up to `max_in_flight` requests outstanding.

    Yields (job index, result dict or the IrodoriError it raised) in completion order. One Client per
    worker thread (made by `client_factory`), all closed at the end; jobs are read lazily. With
    retry_busy=False a full server queue fails the job at once (`client.colorize`), for a person waiting
    on a single picture.
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
            client = local.client
            return client.colorize_patiently(**job) if retry_busy else client.colorize(**job)
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
