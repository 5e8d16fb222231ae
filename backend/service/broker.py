"""`irodori broker`: one endpoint for clients, many `irodori serve --connect` workers behind it.

Clients speak the ordinary protocol (docs/protocol.md) to the broker's front ROUTER and cannot tell it
from a server. Workers connect to the back ROUTER, announce READY with a number of slots, and are handed
requests only while they have a free slot (load balancing by idleness, not round robin, because GPU
requests vary a lot in time). Heartbeats go both ways; a worker that misses `liveness` of them, or that
cannot be reached, is dead: its requests are handed to another worker (up to --retries times) or answered
with "worker_lost". Requests wait in a bounded queue while every worker is busy ("busy" when it is full,
"no_workers" when there has been no worker at all for --wait-timeout seconds).

Worker protocol (each message starts with b"irodori-worker/1"):
    worker -> broker  READY {json: slots, heartbeat_s, info} | HEARTBEAT | REPLY key b"" reply... |
                      DRAINING (take no new work) | DISCONNECT
    broker -> worker  REQUEST key b"" request... | HEARTBEAT | DISCONNECT (register again)
The frames are protocol constants (backend/protocol/constants.py); the command line is backend/tools/broker.py.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from backend import __version__
from backend import protocol as P
from backend.protocol import DISCONNECT, DRAINING, HEARTBEAT, READY, REPLY, REQUEST, WORKER_PROTO
from backend.service.base import Service, bind_router
from backend.service.validate import parse_request, peek_id

log = logging.getLogger("irodori.broker")
DEFAULT_WORKER_ENDPOINT = "tcp://127.0.0.1:5718"


@dataclass(frozen=True)
class BrokerConfig:
    bind: str = P.DEFAULT_ENDPOINT  # clients connect here
    workers: str = DEFAULT_WORKER_ENDPOINT  # workers connect here
    heartbeat_s: float = 1.0
    liveness: int = 5  # missed heartbeats before a worker is dead
    queue_size: int = 256  # requests waiting for a free worker; more are answered "busy"
    wait_timeout_s: float = 20.0  # with no worker at all for this long, waiting requests get "no_workers"
    retries: int = 1  # times a dead worker's request is handed to another worker
    max_message_bytes: int = 1024 ** 3
    curve_dir: Path | None = None
    insecure: bool = False
    drain_timeout_s: float = 60.0


@dataclass
class Worker:
    identity: bytes
    slots: int
    heartbeat_s: float
    info: dict
    expiry: float
    next_heartbeat: float = 0.0
    inflight: set = field(default_factory=set)
    draining: bool = False
    last_dispatch: float = 0.0


@dataclass
class Pending:
    key: bytes
    client: bytes
    frames: list  # version, header, payloads (zmq.Frame, sent again as is on a retry)
    request_id: str | None
    received: float
    attempts: int = 0
    worker: bytes | None = None


class Broker(Service):
    name = "broker"

    def __init__(self, config: BrokerConfig = BrokerConfig()) -> None:
        self.config = config
        self.ready = threading.Event()
        self.endpoint, self.worker_endpoint = config.bind, config.workers
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._auth = None
        self._workers: dict[bytes, Worker] = {}
        self._pending: collections.deque[Pending] = collections.deque()
        self._inflight: dict[bytes, Pending] = {}
        self._keys = itertools.count(1)
        self._limits = None  # the first worker's limits: lets the broker refuse bad requests itself
        self._alone_since: float | None = None  # since when no worker can take work

    # ------------------------------------------------------------------------------ sockets
    def _socket(self, endpoint: str) -> zmq.Socket:
        cfg = self.config
        sock, self._auth = bind_router(self._ctx, endpoint, cfg.curve_dir, cfg.insecure, cfg.max_message_bytes,
                                       "irodori broker", self._auth)
        return sock

    def run(self) -> None:
        front = back = None
        try:
            front = self._socket(self.config.bind)
            back = self._socket(self.config.workers)
            self.endpoint = front.getsockopt_string(zmq.LAST_ENDPOINT)
            self.worker_endpoint = back.getsockopt_string(zmq.LAST_ENDPOINT)
            log.info("clients: %s, workers: %s", self.endpoint, self.worker_endpoint)
            self.ready.set()
            self._loop(front, back)
        finally:
            for s in (front, back):
                if s is not None:
                    s.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()

    def _loop(self, front: zmq.Socket, back: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        tick = max(10, int(self.config.heartbeat_s * 250))
        stop_since = None
        while True:
            ready = dict(poller.poll(tick))
            if back in ready:
                self._drain(back, lambda frames: self._from_worker(front, back, frames))
            if front in ready:
                self._drain(front, lambda frames: self._from_client(front, frames))
            now = time.monotonic()
            self._expire_workers(front, now)
            self._expire_pending(front, now)
            self._dispatch(front, back, now)
            self._heartbeat(back, now)
            if self._stop.is_set():
                if stop_since is None:
                    stop_since = now
                    log.info("stopping: %d request(s) in flight, %d waiting", len(self._inflight), len(self._pending))
                if (not self._inflight and not self._pending) or now - stop_since > self.config.drain_timeout_s:
                    for p in list(self._pending) + list(self._inflight.values()):
                        self._error(front, p, "shutting_down", "the broker stopped before this request finished")
                    return

    @staticmethod
    def _drain(sock: zmq.Socket, handle) -> None:
        for _ in range(256):
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handle(frames)

    def _send(self, sock: zmq.Socket, frames: list) -> bool:
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as exc:  # peer gone (EHOSTUNREACH) or not reading (EAGAIN)
            log.debug("could not send to %r: %s", frames[0][:8], exc)
            return False

    def _error(self, front: zmq.Socket, p: Pending, code: str, message: str) -> None:
        self._send(front, [p.client, b"", *P.error_frames(p.request_id, code, message)])

    # ------------------------------------------------------------------------------ clients
    def _from_client(self, front: zmq.Socket, frames: list) -> None:
        client = frames[0].bytes
        if len(frames) < 4 or len(frames[1]) != 0:
            self._send(front, [client, b"", *P.error_frames(None, "bad_request", "a request is: empty delimiter, "
                                                                                  "version, header, payloads")])
            return
        version, header, payloads = frames[2].bytes, frames[3].buffer, frames[4:]
        rid = peek_id(header)
        op = None
        if version == P.VERSION_FRAME and len(header) <= P.MAX_HEADER_BYTES:
            try:
                op = json.loads(bytes(header)).get("op")
            except (ValueError, AttributeError):
                pass
        if op in ("ping", "info") and rid is not None and not payloads:
            self._send(front, [client, b"", *self._local_reply(op, rid)])
            return
        if self._limits is not None:
            try:
                parse_request(version, header, [len(f) for f in payloads], self._limits)
            except P.IrodoriError as exc:
                self._send(front, [client, b"", *P.error_frames(exc.request_id or rid, exc.code, exc.message)])
                return
        if self._stop.is_set():
            self._send(front, [client, b"", *P.error_frames(rid, "shutting_down", f"the broker at {self.endpoint} "
                                                                                 "is shutting down")])
        elif len(self._pending) >= self.config.queue_size:
            self._send(front, [client, b"", *P.error_frames(rid, "busy", "every worker is busy and the broker's "
                                                                          "queue is full; try again shortly")])
        else:
            key = struct.pack(">Q", next(self._keys))
            self._pending.append(Pending(key, client, frames[2:], rid, time.monotonic()))

    def _local_reply(self, op: str, rid: str) -> list:
        stats = {"workers": len(self._workers), "pending": len(self._pending), "in_flight": len(self._inflight),
                 "free_slots": sum(max(0, w.slots - len(w.inflight)) for w in self._workers.values()
                                   if not w.draining)}
        if op == "ping":
            return P.reply_frames({"id": rid, "ok": True, "op": "ping", "irodori": __version__, "broker": stats})
        infos = [w.info for w in self._workers.values() if w.info]
        if not infos:
            return P.error_frames(rid, "no_workers", f"the broker at {self.endpoint} has no workers: start some with "
                                                     f"`irodori serve --connect {self.worker_endpoint}`")
        return P.reply_frames({"id": rid, "ok": True, "op": "info", "info": {**infos[-1], "broker": stats}})

    # ------------------------------------------------------------------------------ workers
    def _from_worker(self, front: zmq.Socket, back: zmq.Socket, frames: list) -> None:
        wid = frames[0].bytes
        if len(frames) < 3 or frames[1].bytes != WORKER_PROTO:
            log.warning("ignored a message on the worker socket that is not from an Irodori worker")
            return
        cmd, now = frames[2].bytes, time.monotonic()
        worker = self._workers.get(wid)
        if cmd == READY:
            try:
                doc = json.loads(frames[3].bytes) if len(frames) > 3 else {}
                slots = min(256, max(1, int(doc.get("slots", 1))))
                hb = min(60.0, max(0.01, float(doc.get("heartbeat_s", self.config.heartbeat_s))))
                info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
            except (ValueError, TypeError, AttributeError):
                log.warning("worker sent a bad READY; ignored")
                return
            if worker is not None:
                self._bury(front, worker, "registered again")
            self._workers[wid] = Worker(wid, slots, hb, info, now + self._patience(hb))
            if self._limits is None and isinstance(info.get("limits"), dict):
                self._limits = P.Limits.from_info(info["limits"])
            log.info("worker %s ready (%d slots, %s); %d worker(s)", wid.hex(), slots,
                     info.get("model", {}).get("device", "?"), len(self._workers))
            return
        if worker is None:  # e.g. the broker restarted: make the worker register again
            self._send(back, [wid, WORKER_PROTO, DISCONNECT])
            if cmd != REPLY:
                return
        else:
            worker.expiry = now + self._patience(worker.heartbeat_s)
        if cmd == REPLY and len(frames) >= 5:
            key = frames[3].bytes
            p = self._inflight.pop(key, None)
            if worker is not None:
                worker.inflight.discard(key)
            if p is not None:  # None: answered already (by a retry) or unknown: drop it
                self._send(front, [p.client, b"", *frames[5:]])
        elif cmd == DRAINING and worker is not None:
            worker.draining = True
            log.info("worker %s is draining", wid.hex())
        elif cmd == DISCONNECT and worker is not None:
            self._bury(front, worker, "disconnected")

    def _patience(self, heartbeat_s: float) -> float:
        return max(heartbeat_s, self.config.heartbeat_s) * self.config.liveness

    def _bury(self, front: zmq.Socket, worker: Worker, why: str) -> None:
        """Forget a worker; its requests go to another worker or, out of retries, get "worker_lost"."""
        self._workers.pop(worker.identity, None)
        lost = [self._inflight.pop(k) for k in worker.inflight if k in self._inflight]
        log.warning("worker %s %s with %d request(s) in flight; %d worker(s) left", worker.identity.hex(), why,
                    len(lost), len(self._workers))
        for p in reversed(lost):
            p.attempts += 1
            if p.attempts > self.config.retries:
                self._error(front, p, "worker_lost", "the worker running this request died (tried "
                                                     f"{p.attempts} time(s)); send it again")
            else:
                p.worker, p.received = None, time.monotonic()  # waits for a worker afresh
                self._pending.appendleft(p)

    def _expire_workers(self, front: zmq.Socket, now: float) -> None:
        for worker in [w for w in self._workers.values() if now > w.expiry]:
            self._bury(front, worker, "missed its heartbeats")

    def _expire_pending(self, front: zmq.Socket, now: float) -> None:
        """Waiting requests fail only when NO worker is there: busy workers are waited for (the queue is bounded)."""
        if any(not w.draining for w in self._workers.values()):
            self._alone_since = None
            return
        if self._alone_since is None:
            self._alone_since = now
        timeout = self.config.wait_timeout_s
        keep = collections.deque()
        for p in self._pending:
            if now - max(p.received, self._alone_since) > timeout:
                self._error(front, p, "no_workers", f"no worker was available for {timeout:.0f} s; start workers "
                                                    f"with `irodori serve --connect {self.worker_endpoint}`")
            else:
                keep.append(p)
        self._pending = keep

    def _dispatch(self, front: zmq.Socket, back: zmq.Socket, now: float) -> None:
        while self._pending:
            free = [w for w in self._workers.values() if not w.draining and len(w.inflight) < w.slots]
            if not free:
                return
            worker = max(free, key=lambda w: (w.slots - len(w.inflight), -w.last_dispatch))
            p = self._pending.popleft()
            if not self._send(back, [worker.identity, WORKER_PROTO, REQUEST, p.key, b"", *p.frames]):
                self._pending.appendleft(p)
                self._bury(front, worker, "cannot be reached")
                continue
            p.worker = worker.identity
            worker.inflight.add(p.key)
            worker.last_dispatch = now
            self._inflight[p.key] = p

    def _heartbeat(self, back: zmq.Socket, now: float) -> None:
        for w in list(self._workers.values()):
            if now >= w.next_heartbeat:
                w.next_heartbeat = now + w.heartbeat_s
                self._send(back, [w.identity, WORKER_PROTO, HEARTBEAT])
