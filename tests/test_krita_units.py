"""The Krita plugin's pure parts, outside Krita: pixel layouts, layer placement, settings, what it reads from
`info`, keyframes, error texts, backend start-up, and `irodori plugin` (build, zip, install) for Krita and GIMP.

Like the Krita tests, these import the BUILT plugin (the build copies backend/protocol/ in where the source
tree links to it).
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import shutil
import socket
import stat
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backend.tools import plugins
from backend import protocol as P

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def plug(tmp_path_factory):
    """The built plugin's pure modules, imported from a fresh build (no Krita here)."""
    dest = tmp_path_factory.mktemp("built")
    plugins.copy_plugin(plugins.PLUGINS["krita"], dest)
    sys.path.insert(0, str(dest))
    try:
        for name in [m for m in sys.modules if m == "irodori" or m.startswith("irodori.")]:
            del sys.modules[name]
        mods = {name: importlib.import_module(f"irodori.{name}")
                for name in ("pixels", "layers", "settings", "server_facts", "errors", "timeline", "backend_process",
                             "protocol")}
        yield type("Plugin", (), mods)
    finally:
        sys.path.remove(str(dest))
        for name in [m for m in sys.modules if m == "irodori" or m.startswith("irodori.")]:
            del sys.modules[name]


# ------------------------------------------------------------------------------------------ pixels
def test_bgra_conversions_match_numpy(plug):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    bgra = rgba[..., [2, 1, 0, 3]]
    assert plug.pixels.swap_red_blue(rgba.tobytes()) == bgra.tobytes()
    assert plug.pixels.swap_red_blue(bgra.tobytes()) == rgba.tobytes()
    assert plug.pixels.to_bgra(7, 5, "RGBA", rgba.tobytes()) == bgra.tobytes()
    assert plug.pixels.to_bgra(7, 5, "BGRA", memoryview(bgra.tobytes())) == bgra.tobytes()
    rgb = rgba[..., :3]
    expect = np.concatenate([rgb[..., ::-1], np.full((5, 7, 1), 255, np.uint8)], axis=2)
    assert plug.pixels.to_bgra(7, 5, "RGB", rgb.tobytes()) == expect.tobytes()
    grey = rgba[..., 0]
    expect = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=2)
    assert plug.pixels.to_bgra(7, 5, "L", grey.tobytes()) == expect.tobytes()


def test_bgra_conversions_refuse_bad_sizes(plug):
    with pytest.raises(ValueError, match="multiple of 4"):
        plug.pixels.swap_red_blue(b"\x00" * 6)
    with pytest.raises(ValueError, match="needs 12 bytes"):
        plug.pixels.to_bgra(1, 3, "RGBA", b"\x00" * 11)
    with pytest.raises(ValueError, match="unknown pixel layout"):
        plug.pixels.to_bgra(1, 1, "ARGB", b"\x00" * 4)


def test_transparency_size_and_names(plug):
    px = plug.pixels
    assert px.is_transparent(bytes(4 * 100))
    assert not px.is_transparent(bytes(4 * 50) + bytes([0, 0, 0, 1]) + bytes(4 * 49))
    assert px.fit_within(4000, 2000, 1024) == (1024, 512)
    assert px.fit_within(300, 200, 1024) == (300, 200)  # never scaled up
    assert px.fit_within(1, 5000, 1024) == (1, 1024)
    assert px.layer_name("color", "ref") == "Irodori colour (ref)"
    assert px.layer_name("flats", "a   b\n") == "Irodori flats (a b)"
    long = px.layer_name("color", "x" * 200)
    assert len(long) < 90 and long.endswith("\u2026)")


def test_unsure_marks_are_magenta_where_the_backend_is_unsure(plug):
    """The backend's unsure mask (white = no good match in the keyframe) -> the marks layer's BGRA pixels."""
    mask = np.zeros((3, 4, 4), np.uint8)
    mask[..., 3] = 255
    mask[1, 1:3, :3] = 255
    marks, count = plug.pixels.unsure_marks(4, 3, "RGBA", mask.tobytes())
    want = np.zeros((3, 4, 4), np.uint8)
    want[1, 1:3] = (255, 0, 255, 255)  # B, G, R, A: opaque magenta
    assert marks == want.tobytes() and count == 2
    assert plug.pixels.unsure_marks(4, 3, "RGB", bytes(36)) == (bytes(48), 0)  # nothing unsure: transparent
    with pytest.raises(ValueError, match="needs 48 bytes"):
        plug.pixels.unsure_marks(4, 3, "RGBA", bytes(47))


# ------------------------------------------------------------------------------------------ layer placement
class FakeNode:
    """A stand-in for krita.Node with the semantics probed in real Krita 5.1.5 (see irodori/layers.py)."""

    def __init__(self, name: str):
        self._name, self.children, self.parent = name, [], None
        self.pixels = os.urandom(16)

    def name(self):
        return self._name

    def uniqueId(self):
        return id(self)

    def childNodes(self):
        # Krita hands out fresh wrapper objects on every call: identity must not be relied on
        return [Wrapper(c) for c in self.children]

    def addChildNode(self, child, above):
        child = getattr(child, "node", child)
        if child in self.children:
            return False
        if above is None:
            self.children.append(child)  # None = the TOP of the stack (children are bottom to top)
        else:
            above = getattr(above, "node", above)
            self.children.insert(self.children.index(above) + 1, child)
        child.parent = self
        return True

    def removeChildNode(self, child):
        self.children.remove(getattr(child, "node", child))
        return True


class Wrapper:
    def __init__(self, node):
        self.node = node

    def __getattr__(self, name):
        return getattr(self.node, name)


def stack(*names):
    parent = FakeNode("group")
    nodes = {n: FakeNode(n) for n in names}
    for n in names:
        parent.addChildNode(nodes[n], None)
    return parent, nodes


def test_insert_below_goes_directly_under_the_line_art(plug):
    parent, n = stack("background", "sketch", "lines", "notes")
    new = FakeNode("colour")
    plug.layers.insert_below(parent, new, Wrapper(n["lines"]))
    assert plug.layers.stack_names(parent) == ["background", "sketch", "colour", "lines", "notes"]


def test_insert_below_the_bottom_layer_keeps_the_same_line_art_node(plug):
    parent, n = stack("lines", "notes")
    pixels = n["lines"].pixels
    new = FakeNode("colour")
    plug.layers.insert_below(parent, new, Wrapper(n["lines"]))
    assert plug.layers.stack_names(parent) == ["colour", "lines", "notes"]
    assert parent.children[1] is n["lines"] and n["lines"].pixels == pixels


def test_insert_above_and_missing_node(plug):
    parent, n = stack("lines", "notes")
    plug.layers.insert_above(parent, FakeNode("flat"), Wrapper(n["lines"]))
    assert plug.layers.stack_names(parent) == ["lines", "flat", "notes"]
    with pytest.raises(ValueError, match="not a child"):
        plug.layers.insert_below(parent, FakeNode("x"), FakeNode("elsewhere"))


# ------------------------------------------------------------------------------------------ settings
def test_settings_round_trip_through_a_store(plug):
    s = plug.settings
    store: dict = {}
    chosen = s.Settings(endpoint="tcp://127.0.0.1:6000", timeout=45.0, output="flats", resolution=512,
                        scope="playhead", reference_kind="file", reference_file="/x/ref.png", python="/venv")
    s.save(chosen, lambda group, key, value: store.__setitem__((group, key), value))
    assert all(isinstance(v, str) and g == "irodori" for (g, _), v in store.items())
    loaded = s.load(lambda group, key, default: store.get((group, key), default))
    assert loaded == chosen


def test_settings_defaults_and_bad_values(plug):
    s = plug.settings
    assert s.load(lambda g, k, default: default) == s.Settings()
    bad = {"endpoint": "http://x", "timeout": "soon", "output": "shading", "resolution": "333", "scope": "all",
           "reference_kind": "web"}
    loaded = s.load(lambda g, k, default: bad.get(k, default))
    assert loaded == s.Settings()
    assert s.validated(s.Settings(timeout=0.0, output="x")) == s.Settings()
    assert s.DEFAULT_ENDPOINT == plug.protocol.DEFAULT_ENDPOINT == P.DEFAULT_ENDPOINT


def test_offered_outputs_are_the_protocols_and_each_has_a_layer_label(plug):
    choices = plug.settings.OUTPUT_CHOICES
    assert choices == ("color", "flattened", "flats") and set(choices) <= set(P.OUTPUTS)
    assert set(plug.pixels.OUTPUT_LABELS) == set(choices)
    assert plug.pixels.LAYOUT_CHANNELS == P.LAYOUT_CHANNELS


# ------------------------------------------------------------------------------------------ what `info` tells
def test_server_facts_from_info(plug):
    f = plug.server_facts
    default = f.ServerFacts()
    assert default.reference_side() == f.REFERENCE_SEND_SIDE == 1024  # the protocol's default limits allow it
    assert default.max_reference_file_bytes() == f.MAX_REFERENCE_FILE_BYTES == 64 * 2**20
    info = {"limits": {"max_side": 16384, "max_pixels": 8192 * 8192, "max_reference_pixels": 4096 * 4096,
                       "max_encoded_bytes": 256 * 2**20, "max_message_bytes": 1, "max_header_bytes": 2},
            "model": {"config": {"reference_size": 224}}}
    facts = f.ServerFacts.from_info(info)
    assert facts.reference_size == 224 and dataclasses.astuple(facts.limits) == dataclasses.astuple(P.DEFAULT_LIMITS)
    assert facts.reference_side() == 1024  # a 224 px model: the transfer policy decides
    info["model"]["config"]["reference_size"] = 2048
    assert f.ServerFacts.from_info(info).reference_side() == 2048  # a model that uses more gets more
    info["limits"].update(max_reference_pixels=600 * 600, max_encoded_bytes=2**20)
    small = f.ServerFacts.from_info(info)
    assert small.reference_side() == 600 and small.max_reference_file_bytes() == 2**20  # the backend's limits rule
    for bad in (None, {}, {"limits": {"max_side": "x"}, "model": {"config": {"reference_size": True}}}):
        assert f.ServerFacts.from_info(bad) == default


def test_server_facts_say_whether_the_model_takes_hints(plug):
    f = plug.server_facts
    assert f.ServerFacts().hints is None and f.ServerFacts.from_info({"model": {}}).hints is None  # not known
    assert f.ServerFacts.from_info({"model": {"hints": True}}).hints is True
    assert f.ServerFacts.from_info({"model": {"hints": False}}).hints is False
    assert f.ServerFacts.from_info({"model": {"hints": 1}}).hints is None  # malformed: not known


# ------------------------------------------------------------------------------------------ errors, keyframes
def test_friendly_errors_say_what_to_do(plug):
    e = plug.errors
    text = e.friendly(P.BackendUnavailable("unavailable", "no server"), "tcp://127.0.0.1:5717", 30)
    assert "tcp://127.0.0.1:5717" in text and "irodori serve" in text
    assert "30 s" in e.friendly(P.IrodoriError("timeout", "slow"), "tcp://h:1", 30)
    assert e.friendly(e.empty_layer("lines")).startswith('The layer "lines" is empty (fully transparent)')
    assert e.empty_layer("lines", 12).message.startswith('The layer "lines" is empty at frame 12 (')
    assert "8-bit RGBA" in e.friendly(e.not_rgba8("The document", "GRAYA", "U16"))
    assert "weird" in e.friendly(P.IrodoriError("internal", "weird"))


def test_describe_backend(plug):
    info = {"model": {"model": "/models/demo/", "device": "cuda", "untrained": False}}
    assert plug.errors.describe_backend(info) == "connected: model demo on cuda"
    info["model"].update(model="C:\\m\\tiny", untrained=True)
    assert plug.errors.describe_backend(info).startswith("connected: model tiny on cuda (untrained")
    assert plug.errors.describe_backend({"server": {}}) == "connected"


def test_shown_keyframe(plug):
    t = plug.timeline
    assert t.shown_keyframe([0, 2, 4], 3) == 2 and t.shown_keyframe([4, 0, 2], 4) == 4
    assert t.shown_keyframe([2, 4], 0) == 2  # before the first keyframe Krita shows the first one
    with pytest.raises(ValueError):
        t.shown_keyframe([], 0)


# ------------------------------------------------------------------------------------------ backend start-up
def test_backend_command_and_python_lookup(plug, tmp_path):
    b = plug.backend_process
    local = plug.protocol.is_local_endpoint  # the one rule, which the plugin asks (next test)
    assert local("tcp://127.0.0.1:5717") and local("tcp://localhost:1")
    assert not local("tcp://10.0.0.2:5717") and not local("tcp://127.0.0.1:x")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "Scripts").mkdir()
    (venv / "Scripts" / "python.exe").write_text("")
    assert b.python_executable(str(venv), "linux") == str(venv / "bin" / "python")
    assert b.python_executable(str(venv), "win32") == str(venv / "Scripts" / "python.exe")
    with pytest.raises(ValueError, match="No Python found"):
        b.python_executable(str(tmp_path), "linux")
    with pytest.raises(ValueError, match="Set the Python environment"):
        b.python_executable("  ")
    assert b.serve_command("py", "tcp://127.0.0.1:9", "") == ["py", "-m", "backend", "serve", "--bind",
                                                             "tcp://127.0.0.1:9"]
    env = b.child_environment({"PYTHONPATH": "/krita", "PYTHONHOME": "/k", "PATH": "/bin"})
    assert env == {"PATH": "/bin"}
    with pytest.raises(ValueError, match="Only a backend on this computer"):
        b.BackendProcess().start(sys.executable, "tcp://10.1.2.3:5717")


def test_backend_start_asks_the_protocols_local_endpoint_rule(plug, monkeypatch):
    """Whether Krita may start a backend is decided by protocol.is_local_endpoint, not by a rule of its own."""
    assert not hasattr(plug.backend_process, "is_local_endpoint") and not hasattr(plug.backend_process, "LOCAL_HOSTS")
    asked = []
    monkeypatch.setattr(plug.protocol, "is_local_endpoint", lambda endpoint: asked.append(endpoint) or False)
    with pytest.raises(ValueError, match="Only a backend on this computer"):
        plug.backend_process.BackendProcess().start(sys.executable, "tcp://127.0.0.1:5717")
    assert asked == ["tcp://127.0.0.1:5717"]


def test_backend_process_starts_and_stops_a_real_server(plug, tiny_checkpoint, tmp_path):
    """What the docker's "Start backend" does: run `irodori serve` from a Python environment, then stop it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = plug.backend_process.BackendProcess()
    proc.log_path = str(tmp_path / "backend.log")
    proc.start(sys.executable, endpoint, str(tiny_checkpoint))
    try:
        deadline = time.monotonic() + 120
        with P.Client(endpoint, timeout=2.0) as client:
            while True:
                assert proc.running(), f"backend exited {proc.exit_code()}:\n{proc.log_tail(2000)}"
                try:
                    assert client.ping()["ok"]
                    break
                except P.BackendUnavailable:
                    assert time.monotonic() < deadline, proc.log_tail(2000)
                    time.sleep(0.5)
            info = client.info()
        child = proc.proc
    finally:
        proc.stop(grace=20)
    assert child.poll() is not None and not proc.running()
    assert "serve --bind " + endpoint in Path(proc.log_path).read_text()
    # what the plugin reads from a real server's `info`: its limits and its model's reference size
    facts = plug.server_facts.ServerFacts.from_info(info)
    assert dataclasses.astuple(facts.limits) == dataclasses.astuple(P.Limits.from_info(info["limits"]))
    assert facts.reference_size == info["model"]["config"]["reference_size"] > 0


# ------------------------------------------------------------------------------------------ plugin source rules
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), feature_version=(3, 10))  # Krita 5.2 bundles Python 3.10
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_plugin_needs_nothing_compiled_inside_krita():
    """Official Krita builds bundle Python without pyzmq or numpy: stdlib, Qt and krita only."""
    allowed = set(sys.stdlib_module_names) | {"krita", "PyQt5", "PyQt6"}
    sources = sorted((ROOT / "plugin_krita" / "irodori").glob("*.py"))
    assert sources and (ROOT / "plugin_krita" / "irodori" / "protocol").is_symlink()
    for path in sources:
        assert _imports(path) <= allowed, f"{path.name} imports {_imports(path) - allowed}"
    # the protocol package (linked in, copied at build time) imports pyzmq and numpy only inside functions
    for path in sorted((ROOT / "backend" / "protocol").glob("*.py")):
        tree = ast.parse(path.read_text(), feature_version=(3, 10))
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert top <= set(sys.stdlib_module_names), (path.name, top - set(sys.stdlib_module_names))


def test_plugins_decide_no_shared_fact_themselves():
    """One source per fact: both plugins take the local-endpoint rule and the default endpoint from the
    protocol package instead of writing their own."""
    sources = sorted((ROOT / "plugin_krita" / "irodori").glob("*.py")) + \
        sorted((ROOT / "plugin_gimp" / "irodori").glob("*.py"))
    for path in sources:
        tree = ast.parse(path.read_text())
        functions = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets
                    if isinstance(t, ast.Name)}
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert "is_local_endpoint" not in functions and "LOCAL_HOSTS" not in assigned, path.name
        assert P.DEFAULT_ENDPOINT not in strings, f"{path.name} restates the default endpoint"


# ------------------------------------------------------------------------------------------ irodori plugin
def test_default_install_dirs_per_os():
    home = Path("/home/u")
    d = plugins.default_install_dir
    assert d("krita", "linux", {}, home) == home / ".local/share/krita/pykrita"
    assert d("krita", "linux", {"XDG_DATA_HOME": "/xdg"}, home) == Path("/xdg/krita/pykrita")
    assert d("krita", "win32", {"APPDATA": r"C:\Users\u\AppData\Roaming"}, home) == \
        Path(r"C:\Users\u\AppData\Roaming") / "krita" / "pykrita"
    assert d("krita", "darwin", {}, home) == home / "Library/Application Support/krita/pykrita"
    assert d("gimp", "linux", {}, home) == home / ".config/GIMP/3.0/plug-ins"
    assert d("gimp", "win32", {"APPDATA": "A"}, home) == Path("A") / "GIMP" / "3.0" / "plug-ins"
    assert d("gimp", "darwin", {}, home) == home / "Library/Application Support/GIMP/3.0/plug-ins"


def test_krita_zip_layout_and_reproducible(tmp_path):
    a = plugins.build_zip(plugins.PLUGINS["krita"], tmp_path / "a")
    b = plugins.build_zip(plugins.PLUGINS["krita"], tmp_path / "b")
    assert a.read_bytes() == b.read_bytes(), "the same sources must give the same zip"
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
        assert "irodori.desktop" in names and "irodori/" in names and "irodori/__init__.py" in names
        assert {n[len("irodori/protocol/"):]: zf.read(n) for n in names
                if n.startswith("irodori/protocol/") and not n.endswith("/")} == protocol_files()
        assert {n.split("/")[0] for n in names} == {"irodori.desktop", "irodori"}
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        desktop = zf.read("irodori.desktop").decode()
    assert "X-KDE-Library=irodori" in desktop and "ServiceTypes=Krita/PythonPlugin" in desktop


def protocol_files(folder: Path = ROOT / "backend" / "protocol") -> dict[str, bytes]:
    """Every file of a protocol package by relative path (caches left out): what a build must ship."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def fake_source(tmp_path: Path, host: str) -> plugins.PluginSpec:
    src = tmp_path / f"plugin_{host}"
    (src / "irodori").mkdir(parents=True)
    if host == "gimp":
        (src / "irodori" / "irodori.py").write_text("#!/usr/bin/env python3\nprint('plug-in')\n")
        (src / "irodori" / "irodori.py").chmod(0o644)  # the build must make it executable anyway
    else:
        (src / "irodori.desktop").write_text("[Desktop Entry]\nX-KDE-Library=irodori\nName=x\n")
        (src / "irodori" / "__init__.py").write_text("")
    (src / "irodori" / "__pycache__").mkdir()
    (src / "irodori" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    spec = plugins.PLUGINS[host]
    (src / "irodori" / spec.protocol_name).symlink_to(plugins.PROTOCOL)
    return plugins.PluginSpec(spec.host, src, spec.package, spec.protocol_name, spec.top_files, spec.executable,
                              spec.required)


def test_gimp_install_and_zip_copy_protocol_and_keep_plug_in_executable(tmp_path):
    spec = fake_source(tmp_path, "gimp")
    target = tmp_path / "plug-ins"
    (target / "irodori").mkdir(parents=True)
    (target / "irodori" / "stale.py").write_text("old")  # from an older install: must go
    plugins.install(spec, target)
    files = sorted(p.name for p in (target / "irodori").iterdir())
    assert files == ["irodori.py", "irodori_protocol"]
    assert not (target / "irodori" / "irodori_protocol").is_symlink(), "the build ships a copy, not a link"
    assert protocol_files(target / "irodori" / "irodori_protocol") == protocol_files()
    assert os.stat(target / "irodori" / "irodori.py").st_mode & stat.S_IXUSR
    z = plugins.build_zip(spec, tmp_path / "zip")
    with zipfile.ZipFile(z) as zf:
        prefix = "irodori/irodori_protocol/"
        shipped = sorted(n for n in zf.namelist() if not n.startswith(prefix) or n == prefix)
        assert shipped == ["irodori/", "irodori/irodori.py", "irodori/irodori_protocol/"]
        assert (zf.getinfo("irodori/irodori.py").external_attr >> 16) & 0o111
        assert not (zf.getinfo("irodori/irodori_protocol/__init__.py").external_attr >> 16) & 0o111


def test_build_refuses_a_protocol_that_is_not_the_link(tmp_path):
    spec = fake_source(tmp_path, "krita")
    link = spec.source / "irodori" / "protocol"
    link.unlink()
    link.mkdir()
    (link / "__init__.py").write_text("# stale hand copy")
    with pytest.raises(FileExistsError, match="symbolic link to"):
        plugins.build_zip(spec, tmp_path / "out")
    shutil.rmtree(link)
    other = tmp_path / "other_protocol"
    other.mkdir()
    (other / "__init__.py").write_text("# a fork")
    link.symlink_to(other)
    with pytest.raises(FileExistsError, match="symbolic link to"):
        plugins.build_zip(spec, tmp_path / "out")
    missing = plugins.PluginSpec("gimp", tmp_path / "nowhere", "irodori", "irodori_protocol",
                                 executable="irodori.py", required=("irodori.py",))
    with pytest.raises(FileNotFoundError, match="irodori.py missing"):
        plugins.install(missing, tmp_path / "t")


def test_cli_zip_and_install(tmp_path, capsys):
    from backend.tools.cli import main

    assert main(["plugin", "krita", "--zip", str(tmp_path / "z")]) == 0
    out = capsys.readouterr()
    zips = list((tmp_path / "z").glob("irodori-krita-*.zip"))
    assert len(zips) == 1 and str(zips[0]) in out.out and "Python Plugin Manager" in out.err
    assert main(["plugin", "krita", "--install", str(tmp_path / "pykrita")]) == 0
    out = capsys.readouterr().out
    assert "Python Plugin Manager" in out
    assert protocol_files(tmp_path / "pykrita" / "irodori" / "protocol") == protocol_files()
    assert (tmp_path / "pykrita" / "irodori.desktop").is_file()
