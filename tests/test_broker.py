"""`irodori broker` with two `irodori serve --connect` workers, all real processes on 127.0.0.1."""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from backend import protocol as P
from helpers import free_port, line_art, reference, run_in_threads
from server_fixtures import Process, check_marked, marked_line_art, png_bomb, start_broker, start_worker

TRANSPORTS = ["pyzmq", "zmtp"]
WORKER_FLAGS = ("--heartbeat", "0.2", "--delay-ms", "800", "--max-batch", "2", "-v")


def broker_stats(endpoint: str) -> dict:
    with P.Client(endpoint, timeout=10) as client:
        return client.ping()["broker"]


def wait_for_workers(endpoint: str, n: int, procs: list[Process], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while broker_stats(endpoint)["workers"] != n:
        for p in procs:
            assert p.proc.poll() is None, p.log[-3000:]
        assert time.monotonic() < deadline, f"{n} workers never registered"
        time.sleep(0.2)


def worker_running(workers: list[Process], client: P.Client, timeout: float = 60.0) -> int:
    """Index of the worker that has queued a request of `client` (from its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, w in enumerate(workers):
            if f"queued colorize {client._prefix}." in w.log:
                return i
        time.sleep(0.02)
    raise AssertionError("no worker received the request")


@pytest.fixture(scope="module")
def cluster(tiny_checkpoint):
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = start_broker(front, back, "--heartbeat", "0.2", "--liveness", "3", "--wait-timeout", "3", "-v")
    workers = [start_worker(back, tiny_checkpoint, *WORKER_FLAGS) for _ in range(2)]
    try:
        wait_for_workers(front, 2, [broker, *workers])
        yield front, broker, workers
    finally:
        for p in (*workers, broker):
            p.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_broker_answers_ping_and_info(cluster, transport):
    front, _, _ = cluster
    with P.Client(front, timeout=10, transport=transport) as client:
        stats = client.ping()["broker"]
        info = client.info()
    assert stats["workers"] == 2 and stats["free_slots"] == 4
    assert info["server"]["mode"] == "worker" and info["model"]["device"] == "cpu" and info["broker"]["workers"] == 2


def test_requests_are_spread_over_both_workers(cluster):
    front, _, workers = cluster
    before = [w.log.count("queued colorize") for w in workers]
    ref = reference()
    failures: list[str] = []

    def run(c: int) -> None:
        with P.Client(front, timeout=60, transport=TRANSPORTS[c % 2]) as client:
            for i in range(2):
                h, w = 30 + i, 30 + c
                la, mark = marked_line_art(h, w, c * 2 + i)
                try:
                    check_marked(client.colorize(la, ref, outputs=("color", "flattened")), h, w, mark)
                except Exception as exc:
                    failures.append(f"{c}/{i}: {exc!r}")

    run_in_threads(run, [(c,) for c in range(4)])
    assert not failures, failures
    after = [w.log.count("queued colorize") for w in workers]
    assert sum(after) - sum(before) == 8
    assert all(a > b for a, b in zip(after, before)), (before, after)  # each worker took some


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_errors_pass_through_the_broker(cluster, transport):
    front, _, _ = cluster
    with P.Client(front, timeout=30, transport=transport) as client:
        for call, code in [(lambda: client.request("explode"), "unknown_op"),
                           (lambda: client.request("ping", version=b"irodori/7"), "unsupported_version"),
                           (lambda: client.colorize(png_bomb(20000, 20000), reference()), "too_large")]:
            with pytest.raises(P.IrodoriError) as info:
                call()
            assert info.value.code == code, info.value.message


def test_killing_workers_mid_request(cluster):
    front, broker, workers = cluster
    la, ref = line_art(32, 40), reference()
    clients = [P.Client(front, timeout=60, transport=t) for t in TRANSPORTS]
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = clients[i].colorize(la, ref)
        except P.IrodoriError as exc:
            results[i] = exc

    try:
        # two requests, one per worker; kill the worker running the first: it is retried on the other
        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        victim = worker_running(workers, clients[0])
        worker_running(workers, clients[1])
        workers[victim].signal(signal.SIGKILL)
        for t in threads:
            t.join(60)
        for i in range(2):
            assert isinstance(results[i], dict), results[i]
            assert np.asarray(results[i]["color"].to_array()).shape == (32, 40, 4)
        broker.wait_for("missed its heartbeats|cannot be reached")
        assert broker_stats(front)["workers"] == 1

        # the last worker dies mid-request: no worker is left to retry on, the client gets a clean error
        survivor = workers[1 - victim]
        mark = len(survivor.lines)
        t = threading.Thread(target=call, args=(0,))
        t.start()
        survivor.wait_for(rf"queued colorize {clients[0]._prefix}\.", start=mark)
        survivor.signal(signal.SIGKILL)
        t.join(60)
        assert isinstance(results[0], P.BackendUnavailable) and results[0].code == "no_workers", results[0]
        assert "irodori serve --connect" in results[0].message
        assert broker.proc.poll() is None and broker_stats(front)["workers"] == 0
        with pytest.raises(P.BackendUnavailable) as info:
            clients[1].info()
        assert info.value.code == "no_workers"
    finally:
        for c in clients:
            c.close()


# ============================================================================================ fake workers
class FakeWorker:
    """A worker speaking the broker's worker protocol by hand: it answers only when told, and can play dead."""

    def __init__(self, endpoint: str, name: str, slots: int = 1) -> None:
        import queue

        import zmq

        self.zmq, self.name, self.slots = zmq, name, slots
        self.requests: list[tuple[bytes, str]] = []  # (broker key, request id) in arrival order
        self.commands: queue.Queue = queue.Queue()
        self.alive = True
        self.got_disconnect = threading.Event()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._loop, args=(endpoint,), daemon=True)
        self._thread.start()

    def _loop(self, endpoint: str) -> None:
        import json

        from backend.protocol import DISCONNECT, HEARTBEAT, READY, REPLY, REQUEST, WORKER_PROTO

        zmq = self.zmq
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(endpoint)
        limits = {"max_side": 64, "max_pixels": 4096, "max_reference_pixels": 4096, "max_encoded_bytes": 1000}
        sock.send_multipart([WORKER_PROTO, READY, P.json_bytes(
            {"slots": self.slots, "heartbeat_s": 0.1, "info": {"limits": limits, "model": {"device": self.name}}})])
        next_beat = 0.0
        while not self._stop.is_set():
            if sock.poll(10):
                frames = sock.recv_multipart()
                if frames[1] == REQUEST:
                    self.requests.append((frames[2], json.loads(frames[5])["id"]))
                elif frames[1] == DISCONNECT:
                    self.got_disconnect.set()
            while not self.commands.empty():
                key, rid = self.commands.get()
                reply = P.reply_frames({"id": rid, "ok": True, "op": "colorize", "worker": self.name, "outputs": []})
                sock.send_multipart([WORKER_PROTO, REPLY, key, b"", *reply])
            if self.alive and time.monotonic() > next_beat:
                sock.send_multipart([WORKER_PROTO, HEARTBEAT])
                next_beat = time.monotonic() + 0.1
        sock.close(linger=0)
        self._ctx.term()

    def answer(self, index: int) -> None:
        self.commands.put(self.requests[index])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def wait(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def raw_colorize(client: P.Client) -> dict:
    """A valid request under the fake workers' limits; returns the reply header."""
    inputs = [({"role": "lineart", "format": "raw", "width": 2, "height": 2, "layout": "L"}, b"\0" * 4),
              ({"role": "reference", "format": "raw", "width": 2, "height": 2, "layout": "L"}, b"\0" * 4)]
    return client.request("colorize", {}, inputs)[0]


def test_broker_retries_on_live_workers_and_drops_late_replies():
    from backend.service.broker import Broker, BrokerConfig

    broker = Broker(BrokerConfig(bind="tcp://127.0.0.1:*", workers="tcp://127.0.0.1:*", heartbeat_s=0.1,
                                 liveness=3, retries=1, queue_size=2, wait_timeout_s=1.0))
    thread = broker.start_thread()
    workers: list[FakeWorker] = []
    results: dict[int, object] = {}

    def call(i: int, transport: str = "pyzmq") -> threading.Thread:
        def run() -> None:
            with P.Client(broker.endpoint, timeout=30, transport=transport) as client:
                try:
                    results[i] = raw_colorize(client)
                except P.IrodoriError as exc:
                    results[i] = exc
        t = threading.Thread(target=run)
        t.start()
        return t

    try:
        a, b = FakeWorker(broker.worker_endpoint, "a"), FakeWorker(broker.worker_endpoint, "b")
        workers += [a, b]
        wait(lambda: broker_stats(broker.endpoint)["workers"] == 2)
        with P.Client(broker.endpoint, timeout=10) as client:  # refused by the broker itself, with the limits
            with pytest.raises(P.IrodoriError) as info:   # the workers reported
                client.colorize(np.zeros((65, 2), np.uint8), np.zeros((2, 2), np.uint8))
            assert info.value.code == "too_large"

        # one request per worker: each has one slot
        t0, t1 = call(0), call(1, "zmtp")
        wait(lambda: len(a.requests) == 1 and len(b.requests) == 1)
        a.alive = False  # a stops heartbeating and never answers: its request moves to b once b is free
        b.answer(0)
        wait(lambda: len(b.requests) == 2)
        assert b.requests[1] == a.requests[0]  # the same request (same broker key), retried
        b.answer(1)
        t0.join(30)
        t1.join(30)
        assert {results[0]["worker"], results[1]["worker"]} == {"b"}
        a.answer(0)  # a late reply from the "dead" worker: dropped, and a is told to register again
        assert a.got_disconnect.wait(10)

        # retries exhausted: the request dies with two workers in a row
        b.alive = False
        c = FakeWorker(broker.worker_endpoint, "c")
        workers.append(c)
        wait(lambda: broker_stats(broker.endpoint)["workers"] == 1)  # b buried, c registered
        t2 = call(2)
        wait(lambda: len(c.requests) == 1)
        c.alive = False
        d = FakeWorker(broker.worker_endpoint, "d")
        workers.append(d)
        wait(lambda: len(d.requests) == 1)
        d.alive = False
        t2.join(30)
        assert isinstance(results[2], P.IrodoriError) and results[2].code == "worker_lost"

        # no workers left: the bounded queue answers busy, and waiting requests get no_workers
        wait(lambda: broker_stats(broker.endpoint)["workers"] == 0)
        threads = [call(i) for i in (3, 4, 5)]
        for t in threads:
            t.join(30)
        codes = sorted(results[i].code for i in (3, 4, 5))
        assert codes == ["busy", "no_workers", "no_workers"], codes
        assert all(isinstance(results[i], P.BackendUnavailable) for i in (3, 4, 5) if results[i].code != "busy")
    finally:
        for w in workers:
            w.close()
        broker.stop()
        thread.join(30)
