"""The model thread of `irodori serve`: batches of queued requests through the Colorizer, replies encoded.

It takes up to max_batch jobs from the server's bounded queue (waiting at most max_wait_ms for more, and
only when requests queued up during the last batch), decodes their images, runs them through
backend.inference.pipeline.Colorizer.colorize_batch and hands each reply to the I/O thread over an inproc
PUSH socket (ZeroMQ sockets must not be shared between threads). Every job is answered exactly once.
"""
from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from backend import protocol as P
from backend import release_freed_memory
from backend.inference.imageio import decode_image, encode_png
from backend.inference.hints import check_hints
from backend.inference import keyframe_requests
from backend.service.validate import Request, max_input_pixels

if TYPE_CHECKING:
    from backend.inference.keyframes import Keyframe
    from backend.service.server import ServerConfig

log = logging.getLogger("irodori.serve")

REPLIES = "inproc://replies"  # model thread (PUSH) -> I/O thread (PULL)
IDLE_RELEASE_S = 2.0  # no request for this long: give the memory kept between requests back to the system


@dataclass
class Job:
    seq: int
    route: list  # frames put before the reply: [identity, b""]
    request: Request
    payloads: list  # per input, in header order: memoryview of a raw frame or shm segment, or file bytes
    nbytes: int
    pixels: int
    output: P.SharedBuffer | None = None  # output_format shm: the client's segment for the outputs
    received: float = field(default_factory=time.monotonic)
    keyframe: dict | None = None  # with a keyframe: the reply's "keyframe" facts (cached, regions)
    keyframe_timings: dict = field(default_factory=dict)  # with a keyframe: keyframe_ms, match_ms


class ModelThread:
    """Runs in its own thread (`run`) until the server stops and its queue is empty."""

    def __init__(self, colorizer: Any, config: "ServerConfig", limits: P.Limits, jobs: "queue.Queue[Job]",
                 stop: threading.Event, ctx: zmq.Context) -> None:
        self.colorizer, self.config, self.limits = colorizer, config, limits
        self._queue, self._stop, self._ctx = jobs, stop, ctx
        self.keyframes = keyframe_requests.KeyframeCache()  # only this thread uses it

    def run(self) -> None:
        push = self._ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(REPLIES)
        carry: Job | None = None
        last_batch: float | None = None  # set while freed memory is kept for the next request
        crowded = False  # requests queued up while the last batch ran: worth waiting for a batch to fill
        try:
            while True:
                batch, carry = self._next_batch(carry, crowded)
                if batch:
                    self._run_batch(batch, push)
                    last_batch = time.monotonic()
                    crowded = carry is not None or not self._queue.empty()
                elif self._stop.is_set() and self._queue.empty() and carry is None:
                    return
                elif last_batch is not None and time.monotonic() - last_batch > IDLE_RELEASE_S:
                    release_freed_memory()  # idle: the kept activations go back to the system
                    last_batch = None
        finally:
            push.close(linger=0)

    def _next_batch(self, carry: Job | None, wait: bool) -> tuple[list[Job], Job | None]:
        """Up to max_batch queued jobs (and the job that starts the next batch, if one did not fit).

        Waits up to max_wait_ms for more only when `wait`: a lone client sending one request at a time would
        otherwise pay that wait on every request for a batch that never fills (docs/performance.md)."""
        cfg = self.config
        if carry is None:
            try:
                carry = self._queue.get(timeout=0.1)
            except queue.Empty:
                return [], None
        batch, pixels = [carry], carry.pixels
        deadline = time.monotonic() + (cfg.max_wait_ms / 1e3 if wait else 0.0)
        while len(batch) < cfg.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if pixels + job.pixels > cfg.max_batch_pixels:
                return batch, job  # starts the next batch
            batch.append(job)
            pixels += job.pixels
        return batch, None

    def _run_batch(self, batch: list[Job], push: zmq.Socket) -> None:
        if self.config.delay_ms:
            time.sleep(self.config.delay_ms / 1e3)
        t0 = time.monotonic()
        ready, answered = [], set()
        for job in batch:
            try:
                la, ref, hints, pair = self._decode(job)
                ready.append((job, (la, ref, hints, None if pair is None else self._keyframe(job, pair))))
            except Exception as exc:  # one bad image (or keyframe) must not fail its batch
                self._reply_error(push, job, exc)
                answered.add(job.seq)
        t1 = time.monotonic()
        results: list = []
        timings: dict = {}
        if ready:
            try:
                # a request without hints stays a 4-tuple: colorizers that take no hints read those alone
                results = self.colorizer.colorize_batch(
                    [(la, ref, _model_outputs(j, key), j.request.options["resolution"])
                     + (() if hints is None else (hints,)) for j, (la, ref, hints, key) in ready], timings)
            except Exception:
                results = []
                for job, (la, ref, hints, key) in ready:  # find which request failed; the rest still succeed
                    extra = {} if hints is None else {"hints": hints}
                    try:
                        results.append(self.colorizer.colorize(la, ref, _model_outputs(job, key),
                                                               job.request.options["resolution"], **extra))
                    except Exception as exc:
                        results.append(exc)
        t2 = time.monotonic()
        results = list(results)
        self._match_keyframes(ready, results)
        for (job, _), result in zip(ready, results):
            try:
                if isinstance(result, Exception):
                    raise result
                self._reply_result(push, job, result, len(ready), {
                    "queue_ms": (t0 - job.received) * 1e3, "decode_ms": (t1 - t0) * 1e3,
                    "colorize_ms": (t2 - t1) * 1e3, **{k: v for k, v in timings.items() if k != "total_ms"},
                    **job.keyframe_timings})
            except Exception as exc:
                self._reply_error(push, job, exc)
            answered.add(job.seq)
        for job in batch:  # every job is answered exactly once, whatever happened
            if job.seq not in answered:
                self._reply_error(push, job, RuntimeError("no result"))

    @staticmethod
    def _match_keyframes(ready: list, results: list) -> None:
        """Each keyframe job's result (in place): the frame's regions matched to its keyframe's, after the
        model. Last job first: the pipeline keeps the regions of the line arts it segmented last, so in this
        order a batch of frames reuses them rather than evicting each one just before it is needed."""
        for i in reversed(range(len(results))):
            job, (la, _, _, key) = ready[i]
            if key is None or isinstance(results[i], Exception):
                continue
            m0 = time.monotonic()
            try:
                results[i] = keyframe_requests.finish(key, la, results[i])
            except Exception as exc:  # this frame's refusal, not its batch's
                results[i] = exc
            job.keyframe_timings["match_ms"] = (time.monotonic() - m0) * 1e3

    def _keyframe(self, job: Job, pair: tuple[np.ndarray, np.ndarray]) -> "Keyframe":
        """The job's keyframe, segmented once per keyframe (the cache); its refusals are the job's errors."""
        k0 = time.monotonic()
        key, cached = self.keyframes.get(*pair)
        job.keyframe = {"cached": cached, "regions": key.regions.count}
        job.keyframe_timings["keyframe_ms"] = (time.monotonic() - k0) * 1e3
        return key

    def _decode(self, job: Job) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                         tuple[np.ndarray, np.ndarray] | None]:
        """(line art, reference, hints or None, keyframe (line art, colouring) or None) as arrays; the hints
        as RGBA at the line art's size."""
        arrays = {}
        for spec, frame in zip(job.request.inputs, job.payloads):
            if spec.format in ("raw", "shm"):
                a = np.frombuffer(frame, np.uint8, spec.nbytes)
                a = a.reshape(spec.height, spec.width, spec.channels) if spec.channels > 1 else a.reshape(
                    spec.height, spec.width)
                if spec.layout == "BGRA":  # OpenCV's SIMD swap: far faster than numpy's fancy indexing
                    import cv2

                    a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA)
            else:
                a = decode_image(frame, spec.role, max_input_pixels(spec.role, self.limits), self.limits)
            arrays[spec.role] = a
        hints = arrays.get(P.HINTS_ROLE)
        if hints is not None:  # a decoded file may lack the alpha that says where the hints are
            hints = check_hints(hints, arrays["lineart"].shape[:2])
        pair = tuple(arrays[r] for r in P.KEYFRAME_ROLES) if job.request.keyframe else None
        return arrays["lineart"], arrays["reference"], hints, pair

    def _reply_result(self, push: zmq.Socket, job: Job, result: dict, batch_size: int, timings: dict) -> None:
        t = time.monotonic()
        opts = job.request.options
        descs, payloads, offset = [], [], 0
        for name in opts["outputs"]:
            rgb = result[name]
            h, w = rgb.shape[:2]
            desc = {"name": name, "format": opts["output_format"], "width": w, "height": h}
            if opts["output_format"] != "png":
                desc["layout"] = opts["output_layout"]
            if job.output is not None:  # written straight into the client's segment
                n = w * h * P.LAYOUT_CHANNELS[opts["output_layout"]]
                dst = np.frombuffer(job.output.view, np.uint8, n, offset).reshape(h, w, -1)
                _encode_output(rgb, opts["output_layout"], "raw", dst)
                desc["offset"] = offset
                offset += n
            else:
                payloads.append(_encode_output(rgb, opts["output_layout"], opts["output_format"]))
            descs.append(desc)
        done = time.monotonic()
        timings.update(encode_ms=(done - t) * 1e3, server_ms=(done - job.received) * 1e3)
        header = {"id": job.request.id, "ok": True, "op": "colorize", "outputs": descs, "batch_size": batch_size,
                  "timings": {k: round(v, 3) for k, v in timings.items()}}
        if job.keyframe is not None:
            header["keyframe"] = job.keyframe
        push.send_multipart([struct.pack(">Q", job.seq), *job.route, *P.reply_frames(header, payloads)], copy=False)

    def _reply_error(self, push: zmq.Socket, job: Job, exc: BaseException) -> None:
        if isinstance(exc, P.IrodoriError):
            code, message = exc.code, exc.message
        elif isinstance(exc, ValueError):
            code, message = "bad_request", str(exc)
        elif isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            code, message = "too_large", f"the server ran out of memory on this request ({exc}); send smaller images"
        else:
            log.exception("request %s failed", job.request.id, exc_info=exc)
            code, message = "internal", f"the server failed: {type(exc).__name__}: {exc}"
        push.send_multipart([struct.pack(">Q", job.seq), *job.route,
                             *P.error_frames(job.request.id, code, message)])


def _model_outputs(job: Job, key: "Keyframe | None") -> tuple[str, ...]:
    """The outputs a job asks of the colorizer: with a keyframe, those keyframe colouring needs."""
    outputs = job.request.options["outputs"]
    return tuple(outputs) if key is None else keyframe_requests.model_outputs(outputs)


def _encode_output(rgb: np.ndarray, layout: str, fmt: str, dst: np.ndarray | None = None) -> Any:
    """(H,W,3) RGB -> the wire: raw RGB/RGBA/BGRA (alpha 255) or a PNG (RGB or RGBA); into `dst` if given.

    OpenCV's SIMD channel shuffles rather than numpy's per-channel copies (the reply's only full-size copy on
    the server; docs/performance.md has the figures).
    """
    import cv2

    rgb = np.ascontiguousarray(rgb)
    if layout == "RGB":
        out = rgb
        if dst is not None:
            np.copyto(dst, rgb)
            out = dst
    else:
        code = cv2.COLOR_RGB2BGRA if layout == "BGRA" else cv2.COLOR_RGB2RGBA
        out = cv2.cvtColor(rgb, code) if dst is None else cv2.cvtColor(rgb, code, dst=dst)
    return encode_png(out) if fmt == "png" else memoryview(out).cast("B")
