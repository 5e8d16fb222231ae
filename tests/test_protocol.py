"""The wire protocol and both client transports, against plain libzmq sockets (no model needed)."""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from backend import protocol as P
from backend.protocol import DEFAULT_LIMITS, Limits
from backend.service import keys, validate
from backend.tools import keys as keys_command
from helpers import free_port

TRANSPORTS = ["pyzmq", "zmtp"]


class FakeServer:
    """A pyzmq ROUTER speaking just enough protocol: 'echo' sends the payload frames back, 'silent' never answers."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:*", mode: str = "echo") -> None:
        self.mode = mode
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(20):
                continue
            frames = self.sock.recv_multipart()
            self.received += 1
            if self.mode == "silent":
                continue
            ident, delim, version, header, payload = frames[0], frames[1], frames[2], frames[3], frames[4:]
            head = json.loads(header)
            reply = {"id": head["id"], "ok": True, "op": head["op"], "delimiter": delim.hex(),
                     "version": version.decode(), "sizes": [len(f) for f in payload], "timings": {"queue_ms": 1.5}}
            self.sock.send_multipart([ident, b"", P.VERSION_FRAME, P.json_bytes(reply), *payload])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def fake():
    server = FakeServer()
    yield server
    server.close()


# ============================================================================================ header schema
def colorize_header(**overrides) -> dict:
    doc = {"op": "colorize", "id": "r1", "options": {"outputs": ["color", "flattened"], "resolution": 64},
           "inputs": [{"role": "lineart", "format": "raw", "width": 4, "height": 3, "layout": "RGBA"},
                      {"role": "reference", "format": "encoded"}]}
    doc.update(overrides)
    return doc


def parse(doc, sizes=(48, 100), version=P.VERSION_FRAME, limits=DEFAULT_LIMITS):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return validate.parse_request(version, raw, list(sizes), limits)


def test_valid_requests_parse_with_defaults():
    req = parse(colorize_header())
    assert (req.op, req.id) == ("colorize", "r1")
    assert req.options == {"outputs": ["color", "flattened"], "resolution": 64, "output_layout": "RGBA",
                           "output_format": "raw", "output_shm": None}
    assert req.inputs[0] == validate.ImageSpec("lineart", "raw", 4, 3, "RGBA") and req.inputs[1].format == "encoded"
    assert parse({"op": "ping", "id": "x"}, sizes=()).op == "ping"
    minimal = parse(colorize_header(options={}))
    assert minimal.options["outputs"] == ["color"] and minimal.options["resolution"] is None


SMALL = Limits(max_side=100, max_pixels=1000, max_reference_pixels=500, max_encoded_bytes=1000)


def lineart(**kw) -> dict:
    return {"role": "lineart", "format": "raw", "width": 4, "height": 3, "layout": "RGBA", **kw}


REF = {"role": "reference", "format": "encoded"}
SHM_NAME = "irodori-1-" + "a" * 32

BAD = [  # (header or raw bytes, payload sizes, version, expected code, id echoed)
    (b"\xff\xfe not json", (48, 100), P.VERSION_FRAME, "bad_request", None),
    (b"[1, 2]", (48, 100), P.VERSION_FRAME, "bad_request", None),
    (b" " * (P.MAX_HEADER_BYTES + 1), (), P.VERSION_FRAME, "too_large", None),
    ({"op": "ping"}, (), P.VERSION_FRAME, "bad_request", None),
    ({"op": "ping", "id": "x" * 65}, (), P.VERSION_FRAME, "bad_request", None),
    ({"op": "ping", "id": "a b"}, (), P.VERSION_FRAME, "bad_request", None),
    ({"op": "ping", "id": "r1"}, (), b"irodori/2", "unsupported_version", "r1"),
    ({"op": "ping", "id": "r1"}, (), b"HTTP/1.1", "bad_request", "r1"),
    ({"op": "explode", "id": "r1"}, (), P.VERSION_FRAME, "unknown_op", "r1"),
    ({"op": 7, "id": "r1"}, (), P.VERSION_FRAME, "bad_request", "r1"),
    ({"op": "ping", "id": "r1", "extra": 1}, (), P.VERSION_FRAME, "bad_request", "r1"),
    ({"op": "ping", "id": "r1"}, (10,), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(inputs=[lineart()]), (48,), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(), (48,), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(), (48, 100, 5), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(), (47, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(inputs=[lineart(), lineart()]), (48, 48), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(inputs=[lineart(layout="CMYK"), REF]), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(inputs=[lineart(width=4.0), REF]), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(inputs=[lineart(width=True), REF]), (12, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(inputs=[lineart(width=-4), REF]), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(inputs=[lineart(width=101, height=1), REF]), (404, 100), P.VERSION_FRAME, "too_large", "r1"),
    (colorize_header(inputs=[lineart(width=40, height=40), REF]), (6400, 100), P.VERSION_FRAME, "too_large", "r1"),
    (colorize_header(inputs=[lineart(), {**REF, "width": 3}]), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(), (48, 1001), P.VERSION_FRAME, "too_large", "r1"),
    (colorize_header(), (48, 0), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"outputs": []}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"outputs": ["color", "color"]}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"outputs": ["sepia"]}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"resolution": 8}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"resolution": "256"}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"output_layout": "L"}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"output_format": "png", "output_layout": "BGRA"}), (48, 100), P.VERSION_FRAME,
     "bad_request", "r1"),
    (colorize_header(options={"seed": 3}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"output_format": "shm"}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"output_shm": SHM_NAME}), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options={"output_format": "shm", "output_shm": "/dev/shm/" + SHM_NAME}), (48, 100),
     P.VERSION_FRAME, "bad_request", "r1"),
    (colorize_header(options=[]), (48, 100), P.VERSION_FRAME, "bad_request", "r1"),
]


@pytest.mark.parametrize("doc,sizes,version,code,rid", BAD)
def test_malformed_requests_get_stable_codes(doc, sizes, version, code, rid):
    with pytest.raises(P.IrodoriError) as info:
        parse(doc, sizes, version, SMALL)
    assert info.value.code == code, info.value.message
    assert info.value.request_id == rid
    assert info.value.code in P.ERROR_CODES and info.value.message


@pytest.mark.parametrize("options,says", [
    ({"output_format": "shm"}, 'output_format "shm" needs options.output_shm'),
    ({"output_shm": SHM_NAME}, 'output_shm is used only with options.output_format "shm"'),
    ({"output_format": "shm", "output_shm": "/dev/shm/" + SHM_NAME}, "a bare name (not a /dev/shm path)")])
def test_output_shm_errors_say_what_is_missing(options, says):
    with pytest.raises(P.IrodoriError) as info:
        parse(colorize_header(options=options))
    assert says in info.value.message
    assert parse(colorize_header(options={"output_format": "shm", "output_shm": SHM_NAME})).options["output_shm"] \
        == SHM_NAME


def test_limits_from_a_servers_info():
    info = {"max_side": 100, "max_pixels": 1000, "max_reference_pixels": 500, "max_encoded_bytes": 1000,
            "max_message_bytes": 9999}
    assert Limits.from_info(info) == SMALL
    assert Limits.from_info({**info, "max_side": "x"}) is None and Limits.from_info(None) is None


def test_error_frames_and_message_size_limit():
    version, header = P.error_frames("r9", "unsupported_version", "no")
    assert version == P.VERSION_FRAME
    assert json.loads(header) == {"id": "r9", "ok": False, "error": {"code": "unsupported_version", "message": "no"},
                                  "supported_versions": [1]}
    # the largest valid request fits in the limit the server sets on its socket
    assert validate.max_message_bytes(SMALL) >= 1000 * 4 + 1000 + P.MAX_HEADER_BYTES


def test_pixels_check_their_size_and_round_trip_numpy():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    px = P.Pixels.from_array(a, "BGRA")
    assert (px.width, px.height, px.channels) == (3, 2, 4)
    assert np.array_equal(px.to_array(), a)
    assert P.Pixels.from_array(a[..., 0]).layout == "L"
    assert np.array_equal(P.Pixels.from_array(a[:, ::-1]).to_array(), a[:, ::-1])  # non-contiguous is copied
    with pytest.raises(ValueError, match="needs 24 bytes"):
        P.Pixels(3, 2, "RGBA", b"\0" * 23)
    with pytest.raises(ValueError, match="uint8"):
        P.Pixels.from_array(a.astype(np.float32))
    with pytest.raises(ValueError, match="layout"):
        P.Pixels.from_array(a, "RGB")


# ============================================================================================ transports
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_frames_of_every_size_cross_intact(fake, transport):
    rng = np.random.default_rng(0)
    sizes = [0, 1, 255, 256, 65535, 65536, 10 * 1024 * 1024 + 3]
    payloads = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    inputs = [({"role": "x", "n": i}, p) for i, p in enumerate(payloads)]
    with P.Client(fake.endpoint, timeout=20, transport=transport) as client:
        assert client.transport == transport
        header, frames = client.request("colorize", {"k": 1}, inputs)
        assert header["sizes"] == sizes and header["delimiter"] == "" and header["version"] == "irodori/1"
        assert [bytes(f) for f in frames] == payloads
        assert client.last_timings["queue_ms"] == 1.5 and client.last_timings["roundtrip_ms"] > 0
        for _ in range(3):  # the connection is reused
            assert client.ping()["op"] == "ping"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_absent_server_is_reported_and_the_client_recovers(transport):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    client = P.Client(endpoint, timeout=5, transport=transport)
    with pytest.raises(P.BackendUnavailable) as info:
        client.ping()
    assert info.value.code == "unavailable"
    assert f"no Irodori backend at {endpoint}: start it with `irodori serve`" in str(info.value)
    server = FakeServer(endpoint)
    try:
        assert client.ping()["ok"] is True
    finally:
        server.close()
        client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_silent_server_times_out_then_the_same_client_works(fake, transport):
    fake.mode = "silent"
    with P.Client(fake.endpoint, timeout=0.5, transport=transport) as client:
        with pytest.raises(P.IrodoriError) as info:
            client.ping()
        assert info.value.code == "timeout" and not isinstance(info.value, P.BackendUnavailable)
        fake.mode = "echo"
        assert client.ping()["ok"] is True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_from_another_thread(fake, transport):
    fake.mode = "silent"
    with P.Client(fake.endpoint, timeout=60, transport=transport) as client:
        before = fake.received
        timer = threading.Thread(target=lambda: (_wait_for(lambda: fake.received > before), client.cancel()))
        timer.start()
        with pytest.raises(P.IrodoriError) as info:
            client.ping()
        timer.join()
        assert info.value.code == "cancelled"
        fake.mode = "echo"
        assert client.ping()["ok"] is True  # a stale cancel does not leak into the next call


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_vanishing_mid_request_is_unavailable(transport):
    fake = FakeServer(mode="silent")
    with P.Client(fake.endpoint, timeout=30, transport=transport) as client:
        closer = threading.Thread(target=lambda: (_wait_for(lambda: fake.received > 0), fake.close()))
        closer.start()
        with pytest.raises(P.BackendUnavailable):
            client.ping()
        closer.join()


def _wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_zmtp_refuses_peers_that_are_not_irodori_routers():
    # a plain TCP service that is not ZeroMQ at all
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def http():
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 64)
        time.sleep(0.5)
        conn.close()

    t = threading.Thread(target=http, daemon=True)
    t.start()
    with P.Client(f"tcp://127.0.0.1:{listener.getsockname()[1]}", timeout=5, transport="zmtp") as client:
        with pytest.raises(P.IrodoriError) as info:
            client.ping()
    assert info.value.code == "protocol" and "not a ZeroMQ endpoint" in info.value.message
    t.join()
    listener.close()

    # a ZeroMQ socket of the wrong type
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.linger = 0
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    with P.Client(f"tcp://127.0.0.1:{port}", timeout=5, transport="zmtp") as client:
        with pytest.raises(P.IrodoriError, match="REP socket"):
            client.ping()
    rep.close()
    ctx.term()


def test_client_arguments_are_checked():
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        P.Client("ipc:///tmp/x", transport="zmtp")
    with pytest.raises(ValueError, match="transport"):
        P.Client(transport="carrier-pigeon")
    with pytest.raises(ValueError, match="pyzmq"):
        P.Client(transport="zmtp", curve=P.CurveKeys("a" * 40, "b" * 40, "c" * 40))


# ============================================================================================ keys
def test_keys_are_readable_by_the_stdlib_client_and_by_pyzmq(tmp_path):
    import zmq.auth

    import argparse

    assert keys_command.main(argparse.Namespace(dir=tmp_path / "k", clients=["client", "laptop"], force=False)) == 0
    ck = P.CurveKeys.from_dir(tmp_path / "k", "laptop")
    server_public, _ = zmq.auth.load_certificate(str(tmp_path / "k" / "server.key"))
    public, secret = zmq.auth.load_certificate(str(tmp_path / "k" / "laptop.key_secret"))
    assert (ck.server_public, ck.public, ck.secret) == (server_public.decode(), public.decode(), secret.decode())
    assert sorted(p.name for p in (tmp_path / "k" / "authorized_clients").iterdir()) == ["client.key", "laptop.key"]
    assert (tmp_path / "k" / "server.key_secret").stat().st_mode & 0o077 == 0
    first = (tmp_path / "k" / "server.key").read_text()
    keys.make_keys(tmp_path / "k")  # kept, not replaced
    assert (tmp_path / "k" / "server.key").read_text() == first
    with pytest.raises(ValueError, match="irodori keys"):
        P.CurveKeys.from_dir(tmp_path / "nothing")


@pytest.mark.parametrize("endpoint,local", [
    ("tcp://127.0.0.1:5717", True), ("tcp://127.8.9.1:1", True), ("tcp://localhost:5717", True),
    ("tcp://[::1]:5717", True), ("ipc:///tmp/irodori", True), ("tcp://0.0.0.0:5717", False),
    ("tcp://*:5717", False), ("tcp://192.168.1.4:5717", False), ("tcp://eth0:5717", False),
    ("tcp://[::]:5717", False), ("tcp://example.com:5717", False), ("tcp://127.0.0.1:*", True),
    ("tcp://127.0.0.1:x", False), ("tcp://127.0.0.1:70000", False), ("inproc://w", True), ("ipc://", False)])
def test_one_local_endpoint_rule_decides_binds_without_keys(endpoint, local, tmp_path):
    """The one rule (protocol.is_local_endpoint) for shared memory, key-less binds and Krita's own backend."""
    assert P.is_local_endpoint(endpoint) is local
    if local:
        keys.check_bind(endpoint, None, False)
    else:
        with pytest.raises(ValueError, match="irodori keys"):
            keys.check_bind(endpoint, None, False)
        keys.check_bind(endpoint, tmp_path, False)
        keys.check_bind(endpoint, None, True)


# ============================================================================================ standalone
STANDALONE = r"""
import importlib.util, sys
sys.modules["zmq"] = None      # as in Krita's and GIMP's own Pythons on Windows/macOS: no compiled packages
sys.modules["numpy"] = None
spec = importlib.util.spec_from_file_location("irodori_protocol", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules["irodori_protocol"] = mod
spec.loader.exec_module(mod)
with mod.Client(sys.argv[2], timeout=20) as client:
    head, frames = client.request("colorize", {}, [({"role": "lineart"}, mod.Pixels(2, 1, "BGRA", b"12345678").data)])
    print(client.transport, head["sizes"], bytes(frames[0]))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("backend", "zmq", "numpy") and sys.modules[m] is not None))
"""


def test_protocol_module_works_alone_without_pyzmq_or_numpy(fake, tmp_path):
    """What the plugins get: this package, copied as is, in a Python without compiled packages."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "standalone.py"
    script.write_text(STANDALONE)
    out = subprocess.run([sys.executable, "-I", str(script), str(Path(P.__file__)), fake.endpoint],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["zmtp [8] b'12345678'", "[]"]


def test_protocol_module_imports_only_the_standard_library():
    import ast
    import sys
    from pathlib import Path

    files = sorted(Path(P.__file__).parent.glob("*.py"))
    assert len(files) > 5, files
    top: set = set()
    for path in files:
        tree = ast.parse(path.read_text())
        found = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        found |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        top |= found
        module_level = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        module_level |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert not module_level & {"zmq", "numpy"}, path.name
    assert top - set(sys.stdlib_module_names) == {"zmq", "numpy"}  # both imported lazily, inside functions


# ============================================================================================ the document
DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def doc_rows() -> dict[tuple[str, ...], list[tuple[str, list[str]]]]:
    """docs/protocol.md's tables, by header row: (a row's first `name`, the `quoted` tokens of its other cells)."""
    tables: dict[tuple[str, ...], list[tuple[str, list[str]]]] = {}
    header: tuple[str, ...] | None = None
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = tuple(cells)
            assert header not in tables, f"two tables with the header {header}: the test cannot tell them apart"
            tables[header] = []
        elif not set(line) <= set("|-: "):
            name = re.findall(r"`([^`]*)`", cells[0])
            tables[header].append((name[0] if name else cells[0],
                                   [t for c in cells[1:] for t in re.findall(r"`([^`]*)`", c)]))
    return tables


def doc_tables() -> dict[tuple[str, ...], dict[str, list[str]]]:
    """doc_rows() by each row's first name (tables whose first column names things)."""
    return {header: dict(rows) for header, rows in doc_rows().items()}


def rendered(value) -> list[str]:
    """A package value as the doc writes it: one `token` per item, byte strings as b"..."."""
    if isinstance(value, dict):
        return [f"{k}: {v}" for k, v in value.items()]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in rendered(v)]
    if isinstance(value, bytes):
        return [f'b"{value.decode("ascii")}"']
    return [str(value)]


def test_doc_reference_values_are_the_packages_constants():
    from backend.protocol import constants, shm

    table = doc_tables()[("name", "value")]
    for name, tokens in table.items():
        assert tokens == rendered(getattr(P, name)), f"docs/protocol.md says {name} = {tokens}"
    defined = {n for mod in (constants, shm) for n in vars(mod) if n.isupper() and not n.startswith("_")}
    assert set(table) == defined - {"DEFAULT_LIMITS", "SHM_NAME_FORM"}  # the limits have their own table
    limits = doc_tables()[("limit", "default")]
    assert {k: v[0] for k, v in limits.items()} == {k: str(v) for k, v in vars(DEFAULT_LIMITS).items()}


def test_doc_tables_name_exactly_the_packages_codes_ops_outputs_layouts_and_formats():
    tables = doc_tables()
    assert list(tables[("code", "sent by", "when")]) == list(P.ERROR_CODES)
    header = tables[("key", "type", "meaning")]
    assert header["op"] == list(P.OPS) and P.ID_PATTERN in header["id"]
    image = tables[("key", "values")]
    assert (image["role"], image["format"], image["layout"]) == (list(P.ROLES), list(P.INPUT_FORMATS),
                                                                 list(P.LAYOUT_CHANNELS))
    assert any(re.fullmatch(P.SHM_NAME_PATTERN, t) for t in image["name"])
    options = {k: list(dict.fromkeys(v[1:])) for k, v in tables[("key", "default", "values")].items()}  # [0]: default
    assert (options["outputs"], options["output_layout"], options["output_format"]) == (
        list(P.OUTPUTS), list(P.OUTPUT_LAYOUTS), list(P.OUTPUT_FORMATS))
    output = tables[("output key", "values")]
    assert (output["name"], output["format"], output["layout"]) == (list(P.OUTPUTS), list(P.OUTPUT_FORMATS),
                                                                    list(P.OUTPUT_LAYOUTS))


def test_doc_names_every_info_key_the_server_sends():
    from types import SimpleNamespace

    from backend.service.server import Server

    fake = SimpleNamespace(info={"device": "cpu"}, limits=DEFAULT_LIMITS,
                           config=SimpleNamespace(resolution=256, multiple=16))
    server = Server(fake)
    try:
        info = server._make_info()
    finally:
        server._ctx.term()
    sections = doc_tables()[("section", "keys")]
    assert set(sections) == set(info)
    for name, keys_ in info.items():
        if name != "model":  # the pipeline's own, described in prose
            assert set(sections[name]) == set(keys_), name
