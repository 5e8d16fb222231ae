"""`irodori serve`: the ZeroMQ backend the plugins and `irodori colorize --server` talk to (docs/protocol.md).

Two threads. The I/O thread (this module) owns the sockets: it validates every request completely (header
schema, frame count and sizes, image headers, so a decompression bomb never reaches a decoder) and answers
ping, info and every error at once; valid colorize requests go into a bounded queue (full = "busy", never
growth). The model thread (batches.py) takes batches from the queue through the Colorizer.

With `serve --ray` the model thread's Colorizer is a Ray Serve deployment instead (ray_serve.py); everything
here stays the same. The command line is backend/tools/serve.py.
"""
from __future__ import annotations

import io
import itertools
import logging
import platform
import queue
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from backend import __version__
from backend import protocol as P
from backend.inference.imageio import check_size
from backend.service.base import Service, bind_router
from backend.service.batches import REPLIES, Job, ModelThread
from backend.inference.keyframe_requests import KEYFRAME_CACHE_SIZE
from backend.service.validate import (Request, check_hint_size, check_keyframe_size, max_input_pixels,
                                      max_message_bytes, parse_request, peek_id)

log = logging.getLogger("irodori.serve")


@dataclass(frozen=True)
class ServerConfig:
    bind: str = P.DEFAULT_ENDPOINT
    max_batch: int = 4  # requests per model call
    max_wait_ms: float = 5.0  # how long the model thread waits for a batch to fill
    max_batch_pixels: int = 4 * 2048 * 2048  # line-art pixels per batch (memory bound on the GPU)
    queue_size: int = 32  # requests waiting; more are answered "busy"
    max_queue_bytes: int = 2 * 1024 ** 3  # payload bytes waiting; more are answered "busy"
    curve_dir: Path | None = None
    insecure: bool = False
    drain_timeout_s: float = 60.0  # on SIGINT/SIGTERM: how long in-flight work may take to finish
    delay_ms: float = 0.0  # added before each batch: lets tests and demos see requests in flight
    shared_memory: bool | None = None  # pixels via /dev/shm (protocol.SharedBuffer); None = when bound locally


class Server(Service):
    """Serves one Colorizer. `run()` blocks until `stop()` (thread-safe, also from signal handlers)."""

    name = "server"

    def __init__(self, colorizer: Any, config: ServerConfig = ServerConfig(), limits: P.Limits | None = None) -> None:
        self.colorizer, self.config = colorizer, config
        self.limits = limits or getattr(colorizer, "limits", P.DEFAULT_LIMITS)
        self.max_message = max_message_bytes(self.limits)
        self.ready = threading.Event()  # set once bound/connected; `endpoint` is then the real address
        self.endpoint = config.bind
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=config.queue_size)
        self._outstanding: dict[int, int] = {}  # seq -> payload bytes, for queued or running jobs
        self._seq = itertools.count(1)
        self._ctx = zmq.Context()
        self._auth = None  # CURVE client-key checker, when --curve-dir is given
        local = P.is_local_endpoint(config.bind)
        self.shared_memory = P.shm_available() and (local if config.shared_memory is None else config.shared_memory)
        self._info = self._make_info()

    # ------------------------------------------------------------------------------ public
    def run(self) -> None:
        model = ModelThread(self.colorizer, self.config, self.limits, self._queue, self._stop, self._ctx)
        worker = threading.Thread(target=model.run, name="irodori-model", daemon=True)
        pull = self._ctx.socket(zmq.PULL)
        pull.linger = 0
        pull.bind(REPLIES)
        front = None
        try:
            front = self._open_front()
            worker.start()
            self.ready.set()
            self._serve_router(front, pull)
        finally:
            self._stop.set()
            if front is not None:
                front.close(linger=0)
            pull.close(linger=0)
            if worker.ident is not None:
                worker.join(timeout=1.0)
            if self._auth is not None:
                self._auth.stop()
            if not worker.is_alive():  # else the model thread still holds a socket: leave it to process exit
                self._ctx.term()

    # ------------------------------------------------------------------------------ sockets
    def _open_front(self) -> zmq.Socket:
        cfg = self.config
        sock, self._auth = bind_router(self._ctx, cfg.bind, cfg.curve_dir, cfg.insecure, self.max_message + 4096,
                                       "irodori serve", self._auth)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("listening on %s (model on %s, max batch %d, queue %d)", self.endpoint,
                 self._info["model"].get("device"), cfg.max_batch, cfg.queue_size)
        return sock

    def _send(self, front: zmq.Socket, frames: list) -> None:
        try:
            front.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("reply dropped: the peer is not reading (its queue is full)")
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the client went away before its reply
            log.debug("reply dropped: %s", exc)

    def _forward_replies(self, front: zmq.Socket, pull: zmq.Socket) -> None:
        while pull.poll(0):
            frames = pull.recv_multipart(copy=False)
            (seq,) = struct.unpack(">Q", frames[0].bytes)
            self._outstanding.pop(seq, None)
            self._send(front, frames[1:])

    def _stopping_done(self, stop_since: float) -> bool:
        """After stop(): done when every accepted job has been answered, or the drain time is up."""
        if not self._outstanding:
            return True
        if time.monotonic() - stop_since > self.config.drain_timeout_s:
            log.warning("giving up on %d unfinished request(s) after %.0f s", len(self._outstanding),
                        self.config.drain_timeout_s)
            return True
        return False

    def _refuse_queued(self, front: zmq.Socket) -> None:
        """At the end of a drain that timed out: jobs never started get an answer instead of silence."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            self._send(front, job.route + P.error_frames(job.request.id, "shutting_down", "the server stopped "
                                                         "before this request could run; send it again"))

    def _serve_router(self, front: zmq.Socket, pull: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        stop_since = None
        while True:
            ready = dict(poller.poll(100))
            if pull in ready:
                self._forward_replies(front, pull)
            if front in ready:
                for _ in range(64):  # bounded, so replies keep flowing under a flood
                    try:
                        frames = front.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    route = [frames[0].bytes, b""]
                    if len(frames) < 2 or len(frames[1]) != 0:
                        self._send(front, route + P.error_frames(None, "bad_request", "a request starts with an "
                                   "empty delimiter frame (send b'' first from a DEALER)"))
                        continue
                    self._handle(front, route, frames[2:])
            if self._stop.is_set():
                if stop_since is None:
                    stop_since = time.monotonic()
                    log.info("stopping: answering %d request(s) in flight", len(self._outstanding))
                if self._stopping_done(stop_since):
                    self._forward_replies(front, pull)
                    self._refuse_queued(front)
                    return

    # ------------------------------------------------------------------------------ validation
    def _handle(self, front: zmq.Socket, route: list, frames: list) -> None:
        """One request (envelope removed): answer it now, or queue it after checking everything."""
        if len(frames) < 2:
            self._send(front, route + P.error_frames(None, "bad_request", "a request needs a version frame and a "
                                                                           "header frame"))
            return
        header = frames[1].buffer  # parse_request checks its size before copying it
        try:
            req = parse_request(frames[0].bytes, header, [len(f) for f in frames[2:]], self.limits)
            if req.op == "ping":
                self._send(front, route + P.reply_frames({"id": req.id, "ok": True, "op": "ping",
                                                          "irodori": __version__, "queued": self._queue.qsize()}))
                return
            if req.op == "info":
                self._send(front, route + P.reply_frames({"id": req.id, "ok": True, "op": "info",
                                                          "info": self._info}))
                return
            if self._stop.is_set():
                raise P.IrodoriError("shutting_down", f"the Irodori backend at {self.endpoint} is shutting down; "
                                     "start it again with `irodori serve`", req.id)
            job = self._make_job(route, req, frames[2:])
            self._enqueue(job)
        except P.IrodoriError as exc:
            rid = exc.request_id if exc.request_id is not None else peek_id(header)
            log.debug("refused %s: %s %s", rid, exc.code, exc.message)
            self._send(front, route + P.error_frames(rid, exc.code, exc.message))

    def _shared(self, name: str, size: int, writable: bool, what: str, rid: str) -> P.SharedBuffer:
        if not self.shared_memory:
            raise P.IrodoriError("shared_memory", f"this server ({self.endpoint}) takes no shared memory; send the "
                                                  "pixels in frames", rid)
        try:
            return P.SharedBuffer(name, size, writable)
        except (OSError, ValueError) as exc:
            raise P.IrodoriError("shared_memory", f"{what}: cannot map shared memory {name} ({exc}); a client on "
                                                  "another machine or in a container must send frames", rid) from None

    def _make_job(self, route: list, req: Request, frames: list) -> Job:
        pixels, payloads, size, sizes = 0, [], (0, 0), {}
        if any(s.role == P.HINTS_ROLE for s in req.inputs) and not self._info["model"].get("hints"):
            raise P.IrodoriError("bad_request", f"the model {self._info['model'].get('model', '(unnamed)')} was "
                                 "trained without colour hints, so it cannot follow them: send no hints, or serve "
                                 "a model trained with hint_channels 4 (info: model.hints)", req.id)
        for spec, frame in zip(req.inputs, frames):
            max_px = max_input_pixels(spec.role, self.limits)
            if spec.format == "raw":
                w, h = spec.width, spec.height
                payloads.append(frame.buffer)  # zero-copy: numpy reads the received frame in place
            elif spec.format == "shm":
                w, h = spec.width, spec.height
                payloads.append(self._shared(spec.name, spec.nbytes, False, spec.role, req.id).view)
            else:
                payloads.append(frame.bytes)
                w, h = self._sniff(spec.role, payloads[-1], max_px, req.id)
            try:
                check_size(w, h, spec.role, max_px, self.limits)
            except ValueError as exc:
                raise P.IrodoriError("bad_request", str(exc), req.id) from None
            sizes[spec.role] = (w, h)
            if spec.role == "lineart":
                pixels, size = w * h, (w, h)
        if P.HINTS_ROLE in sizes:  # also for encoded images, whose sizes are known only now
            check_hint_size(sizes[P.HINTS_ROLE], size, req.id)
        if req.keyframe:
            check_keyframe_size(*(sizes[r] for r in P.KEYFRAME_ROLES), req.id)
        nbytes = sum(len(f) for f in frames) + sum(s.nbytes for s in req.inputs if s.format == "shm")
        output = None
        opts = req.options
        if opts["output_format"] == "shm":  # checked now: a missing or small segment is refused before the work
            need = len(opts["outputs"]) * size[0] * size[1] * P.LAYOUT_CHANNELS[opts["output_layout"]]
            output = self._shared(opts["output_shm"], need, True, "outputs", req.id)
        return Job(next(self._seq), route, req, payloads, nbytes, pixels, output=output)

    def _sniff(self, role: str, data: bytes, max_pixels: int, rid: str) -> tuple[int, int]:
        """An encoded image's size from its header alone: a bomb is refused before anything is decoded."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data), formats=P.ENCODED_FORMATS) as img:
                w, h = img.size
        except Image.DecompressionBombError as exc:
            raise P.IrodoriError("too_large", f"{role}: {exc}", rid) from None
        except Exception:
            raise P.IrodoriError("bad_request", f"{role} is not a readable {'/'.join(P.ENCODED_FORMATS)} file",
                                 rid) from None
        if max(w, h) > self.limits.max_side or w * h > max_pixels:
            raise P.IrodoriError("too_large", f"{role} is {w}x{h} = {w * h} pixels; at most {max_pixels} and "
                                              f"{self.limits.max_side} px a side", rid)
        return w, h

    def _enqueue(self, job: Job) -> None:
        rid = job.request.id
        if sum(self._outstanding.values()) + job.nbytes > self.config.max_queue_bytes:
            raise P.IrodoriError("busy", "the server's queue is full (bytes); try again shortly", rid)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise P.IrodoriError("busy", f"the server's queue is full ({self.config.queue_size} requests); try "
                                         "again shortly", rid) from None
        self._outstanding[job.seq] = job.nbytes
        log.debug("queued colorize %s (%d px, %d bytes)", rid, job.pixels, job.nbytes)

    # ------------------------------------------------------------------------------ info
    def _make_info(self) -> dict:
        cfg = self.config
        model = dict(getattr(self.colorizer, "info", {}))
        model_config = getattr(self.colorizer, "config", None)
        limits = {k: getattr(self.limits, k) for k in self.limits.__dataclass_fields__}
        return {
            "protocol": {"version": P.PROTOCOL_VERSION, "supported_versions": list(P.SUPPORTED_VERSIONS),
                         "ops": list(P.OPS), "input_layouts": list(P.LAYOUT_CHANNELS),
                         "input_formats": [f for f in P.INPUT_FORMATS if f != "shm" or self.shared_memory],
                         "encoded_formats": list(P.ENCODED_FORMATS), "output_layouts": list(P.OUTPUT_LAYOUTS),
                         "output_formats": [f for f in P.OUTPUT_FORMATS if f != "shm" or self.shared_memory],
                         "outputs": list(model.get("outputs", P.OUTPUTS))},
            "server": {"irodori": __version__, "python": platform.python_version(), "pyzmq": zmq.pyzmq_version(),
                       "libzmq": zmq.zmq_version(), "mode": "server",
                       "curve": cfg.curve_dir is not None, "shared_memory": self.shared_memory},
            "model": model,
            "limits": {**limits, "max_message_bytes": self.max_message, "max_header_bytes": P.MAX_HEADER_BYTES},
            # options.resolution: null = "default", else from min to max and a multiple of the model's U-net step
            "resolution": {"default": getattr(model_config, "resolution", None), "min": P.MIN_RESOLUTION,
                           "max": P.MAX_RESOLUTION, "multiple": getattr(model_config, "multiple", 1)},
            "batching": {"max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms,
                         "max_batch_pixels": cfg.max_batch_pixels, "queue_size": cfg.queue_size},
            # keyframe colouring runs in this process, whatever colours the frames (a Colorizer or Ray)
            "keyframes": {"supported": True, "roles": list(P.KEYFRAME_ROLES), "outputs": [P.UNSURE_OUTPUT],
                          "cache_size": KEYFRAME_CACHE_SIZE},
        }

