"""`irodori serve` as a real process on 127.0.0.1, spoken to by both client transports."""
from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq
from PIL import Image

from backend import protocol as P
from backend.protocol import Limits
from backend.service.validate import max_message_bytes
from helpers import free_port, line_art, reference, run_in_threads
from server_fixtures import Process, check_marked, marked_line_art, png_bomb, start_server

TRANSPORTS = ["pyzmq", "zmtp"]
# small limits keep the oversize cases cheap; the server gets the same ones on its command line
LIMITS = Limits(max_side=1024, max_pixels=512 * 512, max_reference_pixels=256 * 256, max_encoded_bytes=1024 ** 2)
LIMIT_FLAGS = ("--max-side", "1024", "--max-pixels", str(512 * 512), "--max-reference-pixels", str(256 * 256),
               "--max-encoded-mb", "1")
SERVER_CODES = {"bad_request", "too_large", "unsupported_version", "unknown_op", "busy"}


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_server(endpoint, tiny_checkpoint, *LIMIT_FLAGS, "--max-batch", "4", "--max-wait-ms", "5")
    yield endpoint, proc
    proc.stop()


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint):
    from backend.inference.pipeline import Colorizer

    return Colorizer(tiny_checkpoint, device="cpu", limits=LIMITS)


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# ============================================================================================ basics
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ping_and_info(server, colorizer, transport):
    endpoint, _ = server
    with P.Client(endpoint, timeout=30, transport=transport) as client:
        pong = client.ping()
        assert pong["ok"] is True and pong["op"] == "ping" and pong["irodori"]
        info = client.info()
    assert info["protocol"]["version"] == 1 and info["protocol"]["ops"] == list(P.OPS)
    assert info["server"]["mode"] == "server" and info["server"]["libzmq"] == zmq.zmq_version()
    assert info["model"]["device"] == "cpu" and info["model"]["torch"]
    assert info["limits"]["max_pixels"] == LIMITS.max_pixels
    assert info["limits"]["max_message_bytes"] == max_message_bytes(LIMITS)
    assert info["batching"]["max_batch"] == 4
    assert info["server"]["shared_memory"] is P.shm_available()  # bound to loopback
    assert info["resolution"] == {"default": colorizer.config.resolution, "min": P.MIN_RESOLUTION,
                                  "max": P.MAX_RESOLUTION, "multiple": colorizer.config.multiple}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_colorize_matches_the_in_process_pipeline(server, colorizer, transport):
    endpoint, _ = server
    la, ref = line_art(70, 90, seed=3), reference(seed=3)
    expected = colorizer.colorize(la, ref, ("color", "flattened"))
    with P.Client(endpoint, timeout=60, transport=transport) as client:
        out = client.colorize(la, ref, outputs=("color", "flattened"), output_layout="RGB")
        assert set(out) == {"color", "flattened"}
        for name in out:
            px = out[name]
            assert (px.width, px.height, px.layout) == (90, 70, "RGB")
            assert np.abs(px.to_array().astype(int) - expected[name]).max() <= 1
        t = client.last_timings
        assert {"queue_ms", "decode_ms", "colorize_ms", "encode_ms", "server_ms", "roundtrip_ms"} <= set(t)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_input_layout_and_format_gives_the_same_colours(server, transport):
    endpoint, _ = server
    grey = line_art(48, 64, seed=5)
    rgba = np.zeros((48, 64, 4), np.uint8)  # the same strokes as a layer: black ink on transparent
    rgba[..., 3] = 255 - grey
    bgra = rgba[..., [2, 1, 0, 3]]
    ref = reference(seed=5)
    inputs = [grey, np.repeat(grey[..., None], 3, 2), rgba, P.Pixels.from_array(bgra, "BGRA"), png(grey)]
    refs = [ref, P.Pixels.from_array(np.dstack([ref, np.full(ref.shape[:2], 255, np.uint8)])), png(ref)]
    with P.Client(endpoint, timeout=60, transport=transport) as client:
        results = [client.colorize(la, refs[i % len(refs)])["color"] for i, la in enumerate(inputs)]
        first = results[0].to_array()
        assert first.shape == (48, 64, 4) and (first[..., 3] == 255).all()
        for px in results[1:]:
            assert np.array_equal(px.to_array(), first)
        bgra_out = client.colorize(grey, ref, output_layout="BGRA")["color"].to_array()
        assert np.array_equal(bgra_out, first[..., [2, 1, 0, 3]])
        as_png = client.colorize(grey, ref, output_format="png", output_layout="RGB")["color"]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(bytes(as_png)))), first[..., :3])
        near_jpeg = client.colorize(grey, jpeg(ref))["color"].to_array()  # JPEG is lossy: close, not equal
        assert np.abs(near_jpeg.astype(int) - first).mean() < 8


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_requests_get_error_codes_and_the_client_keeps_working(server, transport):
    endpoint, _ = server
    la, ref = line_art(32, 32), reference()
    cases = [
        (lambda c: c.request("explode"), "unknown_op"),
        (lambda c: c.request("ping", version=b"irodori/99"), "unsupported_version"),
        (lambda c: c.request("colorize", {}, [({"role": "lineart", "format": "raw", "width": 32, "height": 32,
                                                "layout": "RGB"}, la.tobytes()), ({"role": "reference",
                                                                                   "format": "encoded"}, png(ref))]),
         "bad_request"),  # 1024 bytes for 32x32 RGB
        (lambda c: c.colorize(np.zeros((600, 500), np.uint8), ref), "too_large"),
        (lambda c: c.colorize(la, np.zeros((300, 300, 3), np.uint8)), "too_large"),
        (lambda c: c.colorize(png_bomb(20000, 20000), ref), "too_large"),
        (lambda c: c.colorize(png(la)[:60], ref), "bad_request"),  # truncated: decoding fails in the model thread
        (lambda c: c.colorize(b"GIF89a not really", ref), "bad_request"),
        (lambda c: c.colorize(la[:1], ref), "bad_request"),  # 1 pixel high: below the pipeline's minimum
        (lambda c: c.colorize(la, ref, outputs=("sepia",)), "bad_request"),
        (lambda c: c.colorize(la, ref, options={"resolution": 33}), "bad_request"),  # not a multiple: pipeline says
    ]
    with P.Client(endpoint, timeout=60, transport=transport) as client:
        for call, code in cases:
            with pytest.raises(P.IrodoriError) as info:
                call(client)
            assert info.value.code == code, info.value.message
            assert client.ping()["ok"] is True


# ============================================================================================ load
def test_16_concurrent_clients_get_their_own_replies(server):
    endpoint, _ = server
    ref = reference()
    failures: list[str] = []
    done = [0] * 16

    def run(c: int) -> None:
        transport = TRANSPORTS[c % 2]
        with P.Client(endpoint, timeout=120, transport=transport) as client:
            for i in range(20):
                h, w = 40 + i, 40 + c  # a unique size per request
                la, mark = marked_line_art(h, w, c * 20 + i)
                try:
                    check_marked(client.colorize(la, ref, outputs=("color", "flattened")), h, w, mark)
                    done[c] += 1
                except Exception as exc:  # collected: assertion errors in threads would be lost
                    failures.append(f"client {c} request {i} ({transport}): {exc!r}")

    run_in_threads(run, [(c,) for c in range(16)])
    assert not failures, failures[:5]
    assert done == [20] * 16


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_colorize_many_keeps_requests_in_flight(server, transport):
    endpoint, _ = server
    ref = reference()
    jobs, marks = [], []
    for k in range(10):
        la, mark = marked_line_art(36, 30 + k, k)
        jobs.append({"lineart": la, "reference": ref, "outputs": ("color", "flattened")})
        marks.append(mark)
    jobs.insert(5, {"lineart": la, "reference": ref, "outputs": ("bogus",)})
    seen = {}
    for index, result in P.colorize_many(lambda: P.Client(endpoint, timeout=60, transport=transport), jobs, 4):
        seen[index] = result
    assert sorted(seen) == list(range(11))
    assert isinstance(seen[5], P.IrodoriError) and seen[5].code == "bad_request"
    for index, result in seen.items():
        if index != 5:
            k = index if index < 5 else index - 1
            check_marked(result, 36, 30 + k, marks[k])


def test_fuzz_every_malformed_message_is_answered_or_dropped(server):
    endpoint, proc = server
    rng = random.Random(1234)
    la, ref = line_art(24, 24), reference(16, 16)
    valid = {"op": "colorize", "id": "f", "options": {"outputs": ["color"]},
             "inputs": [{"role": "lineart", "format": "raw", "width": 24, "height": 24, "layout": "L"},
                        {"role": "reference", "format": "encoded"}]}
    ref_png, la_png = png(ref), png(la)
    bomb = png_bomb(9000, 9000)

    def mutate(doc):
        doc = json.loads(json.dumps(doc))
        choice = rng.randrange(9)
        target = doc["inputs"][0]
        if choice == 0:
            del doc[rng.choice(["op", "id", "inputs"])]
        elif choice == 1:
            target[rng.choice(["width", "height"])] = rng.choice([0, -1, 2 ** 40, 1.5, "24", None, [], True])
        elif choice == 2:
            target["layout"] = rng.choice(["", "rgb", "CMYK", 3, None])
        elif choice == 3:
            doc["options"] = rng.choice([None, [], {"outputs": "color"}, {"outputs": [1]}, {"x": 1}])
        elif choice == 4:
            doc["op"] = rng.choice(["", "Colorize", "ping ", "\u00e9", "x" * 500, "info"])
        elif choice == 5:
            doc["id"] = rng.choice(["", "x" * 100, 5, None, "a\nb"])
        elif choice == 6:
            doc["inputs"] = rng.choice([[], {}, None, doc["inputs"] * 2, [doc["inputs"][1]] * 2])
        elif choice == 7:
            doc[rng.choice(["extra", "Inputs", "version"])] = 1
        else:
            target["role"] = rng.choice(["reference", "sketch", ""])
        return doc

    def message(k: int) -> list[bytes]:
        kind = k % 12
        blob = lambda n: bytes(rng.getrandbits(8) for _ in range(n))  # noqa: E731
        if kind == 0:  # random frames
            return [b""] + [blob(rng.randrange(0, 40)) for _ in range(rng.randrange(1, 6))]
        if kind == 1:  # no delimiter
            return [blob(rng.randrange(1, 20)) or b"x"] + [blob(5)] * rng.randrange(0, 3)
        if kind == 2:  # bad JSON
            text = json.dumps(valid).encode()
            cut = rng.randrange(len(text))
            return [b"", P.VERSION_FRAME, text[:cut] + blob(rng.randrange(0, 4)), la.tobytes(), ref_png]
        if kind == 3:  # schema violations
            return [b"", P.VERSION_FRAME, P.json_bytes(mutate(valid)), la.tobytes(), ref_png]
        if kind == 4:  # wrong raw sizes / frame counts
            frames = [b"", P.VERSION_FRAME, P.json_bytes(valid), la.tobytes()[:rng.randrange(576)], ref_png]
            return frames if rng.random() < 0.7 else frames[:rng.randrange(3, 5)] + [b"?"] * rng.randrange(0, 3)
        if kind == 5:  # truncated or corrupted encoded images (a flipped byte may go unnoticed: id t...)
            data = bytearray(ref_png[:rng.randrange(1, len(ref_png))])
            if data and rng.random() < 0.5:
                data[rng.randrange(len(data))] ^= 0xFF
            return [b"", P.VERSION_FRAME, P.json_bytes({**valid, "id": f"t{k}"}), la.tobytes(), bytes(data)]
        if kind == 6:  # decompression bomb as the line art
            doc = json.loads(json.dumps(valid))
            doc["inputs"][0] = {"role": "lineart", "format": "encoded"}
            return [b"", P.VERSION_FRAME, P.json_bytes(doc), bomb, ref_png]
        if kind == 7:  # oversized images declared
            doc = json.loads(json.dumps(valid))
            doc["inputs"][0].update(width=4000, height=4000)
            return [b"", P.VERSION_FRAME, P.json_bytes(doc), la.tobytes(), ref_png]
        if kind == 8:  # unknown versions
            return [b"", rng.choice([b"irodori/0", b"irodori/2", b"irodori/", b"IRODORI/1", b""]),
                    P.json_bytes({"op": "ping", "id": "v"})]
        if kind == 9:  # unknown operations
            return [b"", P.VERSION_FRAME, P.json_bytes({"op": blob(6).hex(), "id": "o"})]
        if kind == 10:  # only a delimiter (+ version)
            return [b"", P.VERSION_FRAME][: rng.randrange(1, 3)]
        doc = json.loads(json.dumps(valid))  # encoded line art that is not an image at all
        doc["inputs"][0] = {"role": "lineart", "format": "encoded"}
        return [b"", P.VERSION_FRAME, P.json_bytes(doc), rng.choice([la_png[:8], blob(300), b"\x89PNG\r\n"]),
                ref_png]

    ctx = zmq.Context()
    total, codes = 0, {}
    try:
        for batch in range(6):  # 6 x 500 = 3000 messages from 6 connections
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(endpoint)
            for k in range(batch * 500, batch * 500 + 500):
                sock.send_multipart(message(k))
            for _ in range(500):
                assert sock.poll(60_000), f"a reply is missing after {total} ({proc.log[-2000:]})"
                reply = sock.recv_multipart()
                assert reply[0] == b"" and reply[1] == P.VERSION_FRAME
                head = json.loads(reply[2])
                total += 1
                if head["ok"]:  # only a damaged image that still decodes may succeed, and then correctly
                    assert head["id"].startswith("t") and head["outputs"][0]["width"] == 24, head
                    assert len(reply) == 4 and len(reply[3]) == 24 * 24 * 4
                    continue
                codes[head["error"]["code"]] = codes.get(head["error"]["code"], 0) + 1
            assert not sock.poll(50)  # exactly one reply per message
            sock.close()
        assert total == 3000 and set(codes) <= SERVER_CODES
        assert sum(codes.values()) > 2900  # nearly all are errors
        assert {"bad_request", "too_large", "unsupported_version", "unknown_op"} <= set(codes)

        # a message over the size limit is dropped with its connection, and only that connection
        big = ctx.socket(zmq.DEALER)
        big.linger = 0
        big.connect(endpoint)
        big.send_multipart([b"", P.VERSION_FRAME, P.json_bytes(valid), b"\0" * (max_message_bytes(LIMITS) + 8192)])
        assert not big.poll(500)
    finally:
        ctx.destroy(linger=0)

    # raw TCP garbage: bad greetings, bad frames, absurd frame lengths
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    greeting = b"\xff" + b"\0" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" * 32
    ready = b"\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER"
    for k in range(200):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            payload = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))),
                       greeting[:rng.randrange(1, 64)],
                       greeting + bytes(rng.getrandbits(8) for _ in range(50)),
                       greeting + ready + b"\x02" + struct.pack(">Q", 2 ** 62),
                       greeting + ready + b"\x01\x00\x00\x05hello"][k % 5]
            try:
                s.sendall(payload)
            except OSError:
                pass
    assert proc.proc.poll() is None, proc.log[-2000:]
    with P.Client(endpoint, timeout=60) as client:  # and a valid request right after succeeds
        la2, mark = marked_line_art(30, 30, 1)
        check_marked(client.colorize(la2, ref, outputs=("color", "flattened")), 30, 30, mark)


# ============================================================================================ failures
def test_sigkill_mid_request_then_restart_then_sigterm_drains(tiny_checkpoint):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    flags = ("--delay-ms", "1500", "--max-batch", "1", "-v")
    proc = start_server(endpoint, tiny_checkpoint, *flags)
    clients = {t: P.Client(endpoint, timeout=60, transport=t) for t in TRANSPORTS}
    la, ref = line_art(32, 40), reference()
    try:
        errors: dict[str, BaseException] = {}

        def call(t: str) -> None:
            try:
                clients[t].colorize(la, ref)
            except BaseException as exc:
                errors[t] = exc

        threads = [threading.Thread(target=call, args=(t,)) for t in TRANSPORTS]
        for t in threads:
            t.start()
        for t in TRANSPORTS:
            proc.wait_for(rf"queued colorize {clients[t]._prefix}\.")
        proc.signal(signal.SIGKILL)
        for t in threads:
            t.join(60)
        for t in TRANSPORTS:
            assert isinstance(errors.get(t), P.BackendUnavailable), errors
            assert "irodori serve" in str(errors[t])
        proc.wait()

        proc = start_server(endpoint, tiny_checkpoint, *flags)
        for t in TRANSPORTS:  # the very same client objects work again
            assert clients[t].colorize(la, ref)["color"].to_array().shape == (32, 40, 4)

        # SIGTERM while a request runs: it is still answered, and the server exits cleanly
        result: dict = {}
        th = threading.Thread(target=lambda: result.update(clients["zmtp"].colorize(la, ref)))
        th.start()
        mark = len(proc.lines)
        proc.wait_for(rf"queued colorize {clients['zmtp']._prefix}\.", start=mark)
        proc.signal(signal.SIGTERM)
        proc.wait_for("stopping", start=mark)
        with pytest.raises(P.BackendUnavailable):  # no new work while draining (or already gone)
            clients["pyzmq"].colorize(la, ref)
        th.join(60)
        assert result["color"].to_array().shape == (32, 40, 4)
        assert proc.wait(30) == 0
    finally:
        proc.stop()
        for c in clients.values():
            c.close()


def test_a_full_queue_answers_busy(colorizer):
    from backend.service.server import Server, ServerConfig

    srv = Server(colorizer, ServerConfig(bind="tcp://127.0.0.1:*", queue_size=1, max_batch=1, delay_ms=1500), LIMITS)
    thread = srv.start_thread()
    la, ref = line_art(32, 32), reference()
    outcomes: list = []
    lock = threading.Lock()

    def call() -> None:
        with P.Client(srv.endpoint, timeout=60) as client:
            try:
                client.colorize(la, ref)
                result = "ok"
            except P.IrodoriError as exc:
                result = exc.code
        with lock:
            outcomes.append(result)

    try:
        run_in_threads(call, [()] * 6, timeout=60)
    finally:
        srv.stop()
        thread.join(30)
    assert len(outcomes) == 6 and set(outcomes) == {"ok", "busy"}, outcomes
    assert outcomes.count("ok") >= 2  # the running one and the queued one


def test_queued_requests_are_batched_and_match_unbatched_results(colorizer):
    from backend.service.server import Server, ServerConfig

    # the model thread sleeps 1 s before each batch, so the requests sent meanwhile form one batch
    srv = Server(colorizer, ServerConfig(bind="tcp://127.0.0.1:*", max_batch=4, delay_ms=1000), LIMITS)
    thread = srv.start_thread()
    ref = reference()
    arts = [marked_line_art(40, 48, k) for k in range(5)]
    replies: dict[int, tuple] = {}

    def call(k: int) -> None:
        with P.Client(srv.endpoint, timeout=60, transport=TRANSPORTS[k % 2]) as client:
            out = client.colorize(arts[k][0], ref, outputs=("color", "flattened"))
            replies[k] = (out, client.last_header["batch_size"])

    try:
        run_in_threads(call, [(k,) for k in range(5)], timeout=60)
    finally:
        srv.stop()
        thread.join(30)
    assert sorted(replies) == list(range(5))
    assert max(size for _, size in replies.values()) >= 2
    for k, (out, _) in replies.items():
        check_marked(out, 40, 48, arts[k][1])
        alone = colorizer.colorize(arts[k][0], ref, ("color",))["color"]
        assert np.abs(out["color"].to_array()[..., :3].astype(int) - alone).max() <= 1


def test_an_idle_server_gives_kept_memory_back_once(colorizer, monkeypatch):
    import time

    import backend.service.batches as batches
    from backend.service.server import Server, ServerConfig

    calls: list[float] = []
    monkeypatch.setattr(batches, "IDLE_RELEASE_S", 0.3)
    monkeypatch.setattr(batches, "release_freed_memory", lambda: calls.append(time.monotonic()))
    srv = Server(colorizer, ServerConfig(bind="tcp://127.0.0.1:*"), LIMITS)
    thread = srv.start_thread()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(calls) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    try:
        with P.Client(srv.endpoint, timeout=60) as client:
            time.sleep(1.0)
            assert calls == []  # nothing to give back before any request
            client.colorize(line_art(32, 32), reference())
            done = time.monotonic()
            wait_for(1)
            assert len(calls) == 1 and calls[0] - done >= 0.15  # waited for the idle spell (0.3 s)
            time.sleep(1.0)
            assert len(calls) == 1  # once per idle spell, not every poll
            client.colorize(line_art(32, 32), reference())
            wait_for(2)
            assert len(calls) == 2
    finally:
        srv.stop()
        thread.join(30)


# ============================================================================================ security
def test_non_loopback_bind_is_refused_without_keys(tiny_checkpoint):
    for cmd in (["serve", "--bind", f"tcp://0.0.0.0:{free_port()}", "--checkpoint", str(tiny_checkpoint)],
                ["serve", "--bind", f"tcp://*:{free_port()}", "--checkpoint", str(tiny_checkpoint)]):
        proc = Process(*cmd)
        assert proc.wait(60) == 2, proc.log
        assert "refusing to bind" in proc.log and "irodori keys" in proc.log and "--insecure" in proc.log


def test_curve_round_trip(colorizer, tmp_path):
    from backend.service import keys
    from backend.service.server import Server, ServerConfig

    keys.make_keys(tmp_path / "keys", ["client"])
    keys.make_keys(tmp_path / "other", ["client"])  # a pair this server has never seen
    port = free_port()
    srv = Server(colorizer, ServerConfig(bind=f"tcp://0.0.0.0:{port}", curve_dir=tmp_path / "keys"), LIMITS)
    thread = srv.start_thread()
    endpoint = f"tcp://127.0.0.1:{port}"
    la, ref = line_art(32, 48), reference()
    try:
        with P.Client(endpoint, timeout=30, curve=P.CurveKeys.from_dir(tmp_path / "keys")) as client:
            assert client.info()["server"]["curve"] is True
            assert client.colorize(la, ref)["color"].to_array().shape == (32, 48, 4)
        wrong = P.CurveKeys.from_dir(tmp_path / "other")
        stranger = P.CurveKeys(P.CurveKeys.from_dir(tmp_path / "keys").server_public, wrong.public, wrong.secret)
        with P.Client(endpoint, timeout=5, curve=stranger) as client:
            with pytest.raises(P.IrodoriError) as info:
                client.ping()
            assert info.value.code == "auth"
        for transport in TRANSPORTS:  # no keys at all
            with P.Client(endpoint, timeout=5, transport=transport) as client:
                with pytest.raises(P.IrodoriError) as info:
                    client.ping()
                assert info.value.code in ("auth", "unavailable"), info.value
                if transport == "zmtp":
                    assert info.value.code == "auth" and "pyzmq" in info.value.message
    finally:
        srv.stop()
        thread.join(30)


# ============================================================================================ shared memory
def _shm_request(client: P.Client, line: dict, ref_png: bytes, **options) -> None:
    client.request("colorize", {"outputs": ["color"], **options}, [(line, b""), ({"role": "reference",
                                                                                  "format": "encoded"}, ref_png)])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_local_clients_send_pixels_through_shared_memory(server, transport):
    endpoint, _ = server
    la, ref = line_art(70, 90, rgba=True, seed=4), reference(seed=4)
    with P.Client(endpoint, timeout=60, transport=transport) as shm, \
            P.Client(endpoint, timeout=60, transport=transport, shared_memory=False) as frames:
        assert shm.shared_memory and not frames.shared_memory  # on by itself for a loopback endpoint
        info = shm.info()
        assert info["server"]["shared_memory"] is True and "shm" in info["protocol"]["input_formats"]
        bgra = P.Pixels.from_array(np.ascontiguousarray(la[..., [2, 1, 0, 3]]), "BGRA")
        a = shm.colorize(bgra, ref, outputs=("color", "flats"), output_layout="BGRA")
        b = frames.colorize(la, ref, outputs=("color", "flats"), output_layout="BGRA")
        assert shm.shared_memory, "the server took the segments"
        assert shm.last_header["outputs"][1]["format"] == "shm" and not frames.last_header["outputs"][0].get("offset")
        for name in ("color", "flats"):
            assert np.array_equal(a[name].to_array(), b[name].to_array())
        paths = [seg.path for seg in shm._segments.values()]
        assert len(paths) == 3 and all(os.stat(p).st_mode & 0o777 == 0o600 for p in paths)
        kept = a["color"].to_array().copy()
        shm.colorize(line_art(70, 90, seed=9), ref)  # writes the same segments again
        assert np.array_equal(a["color"].to_array(), kept), "results are copies, not views of the segment"
    assert not any(os.path.exists(p) for p in paths), "close() removes the segments"


def test_shared_memory_requests_are_checked_before_any_work(server):
    endpoint, _ = server
    ref_png = png(reference())
    seg = P.SharedBuffer.create(32 * 32)
    np.frombuffer(seg.view, np.uint8)[:] = line_art(32, 32).ravel()
    line = {"role": "lineart", "format": "shm", "width": 32, "height": 32, "layout": "L", "name": seg.name}
    out = P.SharedBuffer.create(32 * 32 * 4)
    small = P.SharedBuffer.create(100)
    target = P.SharedBuffer.create(32 * 32)
    link = f"irodori-{os.getpid()}-{'0' * 32}"
    os.symlink(target.path, os.path.join(P.SHM_DIR, link))
    cases = [
        ({**line, "name": "../../etc/passwd"}, {}, "bad_request"),
        ({**line, "name": f"irodori-{os.getpid()}-{'f' * 32}"}, {}, "shared_memory"),  # no such segment
        ({**line, "name": small.name}, {}, "shared_memory"),  # smaller than 32x32
        ({**line, "name": link}, {}, "shared_memory"),  # links are not followed
        ({**line, "width": 33}, {}, "shared_memory"),  # 33x32 does not fit the segment
        (line, {"output_format": "shm"}, "bad_request"),  # no output_shm
        (line, {"output_format": "shm", "output_shm": small.name}, "shared_memory"),  # outputs do not fit
        ({**line, "format": "raw"}, {}, "bad_request"),  # name on a raw image
    ]
    try:
        with P.Client(endpoint, timeout=60) as client:
            for desc, options, code in cases:
                with pytest.raises(P.IrodoriError) as info:
                    _shm_request(client, desc, ref_png, **options)
                assert info.value.code == code, (desc, options, info.value.message)
                assert client.ping()["ok"] is True
            with pytest.raises(P.IrodoriError) as info:  # a shm image carries no payload
                client.request("colorize", {}, [(line, b"x"), ({"role": "reference", "format": "encoded"}, ref_png)])
            assert info.value.code == "bad_request"
            _shm_request(client, line, ref_png, output_format="shm", output_shm=out.name)
            first = client.last_header["outputs"][0]
            assert first == {"name": "color", "format": "shm", "width": 32, "height": 32, "layout": "RGBA",
                             "offset": 0}
            expected = client.colorize(line_art(32, 32), reference())["color"].to_array()
            assert np.array_equal(np.frombuffer(out.view, np.uint8).reshape(32, 32, 4), expected)
    finally:
        os.unlink(os.path.join(P.SHM_DIR, link))
        for s in (seg, out, small, target):
            s.unlink()


def test_a_server_without_shared_memory_gets_frames_instead(colorizer):
    from backend.service.server import Server, ServerConfig

    srv = Server(colorizer, ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", shared_memory=False), LIMITS)
    thread = srv.start_thread()
    la, ref = line_art(40, 56), reference()
    try:
        with P.Client(srv.endpoint, timeout=30) as client:
            assert client.shared_memory and "shm" not in client.info()["protocol"]["input_formats"]
            out = client.colorize(la, ref)["color"].to_array()
            assert not client.shared_memory, "told 'shared_memory', the client switched to frames"
            assert client.last_header["outputs"][0]["format"] == "raw"
            assert np.array_equal(out[..., :3], colorizer.colorize(la, ref)["color"])
            assert not client._segments
    finally:
        srv.stop()
        thread.join(30)


def test_segments_of_dead_clients_are_removed(monkeypatch):
    from backend.protocol import shm

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = os.path.join(P.SHM_DIR, f"irodori-{dead.pid}-{'a' * 32}")
    alive = os.path.join(P.SHM_DIR, f"irodori-{os.getpid()}-{'b' * 32}")
    for path in (stale, alive):
        with open(path, "wb") as f:
            f.write(b"x")
    monkeypatch.setattr(shm, "_stale_checked", False)
    try:
        seg = P.SharedBuffer.create(8)
        assert not os.path.exists(stale) and os.path.exists(alive) and os.path.exists(seg.path)
        seg.unlink()
        assert not os.path.exists(seg.path)
    finally:
        for path in (stale, alive):
            if os.path.exists(path):
                os.unlink(path)
