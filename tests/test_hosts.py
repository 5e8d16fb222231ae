"""Smoke tests of the real host programs themselves (Krita 5.1.5, GIMP 3.0.4) and of tests/hostlib.py.

Skipped when a host is not installed, FAILED instead when IRODORI_REQUIRE_HOSTS=1 (CI).
Install: sh tests/hosts/krita.sh ; sh tests/hosts/gimp.sh (as root).
"""
from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hostlib
from hostlib import HostError

# ----------------------------------------------------------------------------------------------------------
# hostlib itself (no host needed)


def test_missing_host_skips_or_fails_by_env(monkeypatch):
    monkeypatch.delenv("IRODORI_REQUIRE_HOSTS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="sh tests/hosts/x.sh"):
        hostlib.require_host("X", False, "sh tests/hosts/x.sh")
    monkeypatch.setenv("IRODORI_REQUIRE_HOSTS", "1")
    with pytest.raises(pytest.fail.Exception, match="IRODORI_REQUIRE_HOSTS=1 but X is not installed"):
        hostlib.require_host("X", False, "sh tests/hosts/x.sh")
    hostlib.require_host("X", True, "unused")  # available: neither skips nor fails


def test_parse_results_reads_marker_lines_only():
    text = 'noise\nIRODORI-RESULT {"a": 1}\nprefix: IRODORI-RESULT [2, 3]\nIRODORI-RESULTS no\n'
    assert hostlib.parse_results(text) == [{"a": 1}, [2, 3]]


def test_decode_xwd_truecolor():
    # A 3x2 LSB-first 32 bpp ZPixmap dump, the layout Xvfb -screen WxHx24 produces.
    width, height, bytes_per_line = 3, 2, 16
    name = b"root\0"
    header_size = 100 + len(name)
    fields = [header_size, 7, 2, 24, width, height, 0, 0, 32, 0, 32, 32, bytes_per_line, 4,
              0xFF0000, 0x00FF00, 0x0000FF, 8, 256, 0, width, height, 0, 0, 0]
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[1, 2, 3], [250, 128, 7], [0, 0, 0]]], np.uint8)
    rows = np.zeros((height, bytes_per_line), np.uint8)
    rows[:, :width * 4] = np.concatenate([rgb[..., ::-1], np.zeros((height, width, 1), np.uint8)], -1).reshape(height, -1)
    data = np.array(fields, ">u4").tobytes() + name + rows.tobytes()
    assert np.array_equal(hostlib.decode_xwd(data), rgb)


# ----------------------------------------------------------------------------------------------------------
# Krita

KRITA_PROBE = """
import sys
from krita import Krita, InfoObject
from irodori_emit import emit

def main(args=None):
    k = Krita.instance()
    doc = k.createDocument(64, 64, "t", "RGBA", "U8", "", 120.0)
    node = doc.createNode("lines", "paintlayer")
    doc.rootNode().addChildNode(node, None)
    node.setPixelData(bytes([10, 20, 30, 255]) * (64 * 64), 0, 0, 64, 64)
    doc.refreshProjection()
    doc.setBatchmode(True)
    exported = doc.exportImage(OUT, InfoObject())
    emit({"version": k.version(), "read": list(bytes(node.pixelData(0, 0, 2, 1))),
          "channels": [c.name() for c in node.channels()], "exported": exported})
    import zmq
    emit({"zmq": zmq.__version__, "python": sys.version_info[:2]})
    raise ValueError("probe failed on purpose")
"""


@pytest.fixture(scope="module")
def krita_probe(tmp_path_factory) -> tuple[hostlib.HostRun, Path]:
    """One kritarunner run shared by the Krita script tests (each start of Krita costs ~10 s)."""
    hostlib.require_krita()
    folder = tmp_path_factory.mktemp("krita_probe")
    out = folder / "export.png"
    (folder / "probe.py").write_text(KRITA_PROBE.replace("OUT", repr(str(out))))
    return hostlib.run_krita(folder, "probe", "main"), out


@pytest.mark.krita
def test_krita_pixel_round_trip_is_bgra(krita_probe):
    run, exported_png = krita_probe
    result = run.results[0]
    assert result["version"].startswith("5.")
    assert result["read"] == [10, 20, 30, 255] * 2
    # 8-bit RGBA documents store B, G, R, A: the bytes written above are blue 10, green 20, red 30.
    assert result["channels"] == ["Blue", "Green", "Red", "Alpha"]
    assert result["exported"] is True
    assert Image.open(exported_png).convert("RGBA").getpixel((5, 5)) == (30, 20, 10, 255)


@pytest.mark.krita
def test_krita_python_imports_zmq(krita_probe):
    result = krita_probe[0].results[1]
    assert int(result["zmq"].split(".")[0]) >= 22
    assert result["python"][0] == 3


@pytest.mark.krita
def test_krita_script_exception_is_in_the_log_but_exit_is_zero(krita_probe):
    # kritarunner reports a Python exception only in its log and still exits 0: tests must rely on
    # emitted results, never on the exit status alone.
    run = krita_probe[0]
    assert run.returncode == 0
    assert len(run.results) == 2
    assert "ValueError: probe failed on purpose" in run.stdout + run.stderr


def dummy_plugin(folder: Path, name: str) -> None:
    """A pykrita plugin (NAME.desktop + NAME/__init__.py) whose import registers an extension."""
    (folder / name).mkdir(parents=True)
    (folder / f"{name}.desktop").write_text(textwrap.dedent(f"""\
        [Desktop Entry]
        Type=Service
        ServiceTypes=Krita/PythonPlugin
        X-KDE-Library={name}
        X-Python-2-Compatible=false
        Name={name}
        Comment=Registers an extension when loaded
        """))
    (folder / name / "__init__.py").write_text(textwrap.dedent(f"""\
        from krita import Krita, Extension

        class Ext_{name}(Extension):
            def setup(self):
                pass

            def createActions(self, window):
                pass

        Krita.instance().addExtension(Ext_{name}(Krita.instance()))
        """))


@pytest.mark.krita
def test_krita_loads_only_enabled_plugins_from_fresh_profile(tmp_path):
    hostlib.require_krita(gui=True)
    folder = tmp_path / "pykrita"
    dummy_plugin(folder, "irodori_on")
    dummy_plugin(folder, "irodori_off")
    check = """
        import sys
        emit({"modules": sorted(m for m in sys.modules if m.startswith("irodori")),
              "extensions": sorted(type(e).__name__ for e in Krita.instance().extensions())})
    """
    run = hostlib.run_krita_gui([folder], startup=check, enable=["irodori_on"]).check()
    assert run.results[0] == {"testkit": "loaded"}
    assert run.result["modules"] == ["irodori_on", "irodori_testkit"]
    assert {"Ext_irodori_on", "IrodoriTestKit"} <= set(run.result["extensions"])
    assert "Ext_irodori_off" not in run.result["extensions"]


def krita_leftovers() -> set[str]:
    """What Krita leaves in the system's temporary folder: an empty swap file and a frame cache folder a run."""
    return {p.name for p in Path(tempfile.gettempdir()).iterdir()
            if p.name.startswith(("KRITA_SWAP_FILE_", "KritaFrameCache"))}


@pytest.mark.krita
def test_krita_screenshot_shows_the_open_document(tmp_path):
    hostlib.require_krita(gui=True)
    doc = np.full((300, 400, 3), 255, np.uint8)
    doc[50:250, 50:350] = (220, 60, 40)
    Image.fromarray(doc).save(tmp_path / "doc.png")
    shot = tmp_path / "shot.png"
    before = krita_leftovers()
    run = hostlib.krita_screenshot(None, shot, document=tmp_path / "doc.png", size=(1024, 768), delay=3,
                                   startup='emit({"open": [d.fileName() for d in Krita.instance().documents()]})')
    assert run.result == {"open": [str(tmp_path / "doc.png")]}
    # Krita's swap file and frame cache went to the run's own TMPDIR (hostlib._base_env), deleted with it
    assert krita_leftovers() - before == set()
    pixels = np.asarray(Image.open(shot))
    assert pixels.shape == (768, 1024, 3)
    # The canvas shows the document's red block (sRGB, shown unchanged) over a good part of the screen,
    # and Krita's dark UI surrounds it: a blank or crashed screen would fail both.
    red = np.all(pixels == (220, 60, 40), axis=-1).mean()
    dark = (pixels.max(axis=-1) < 100).mean()
    assert red > 0.05, red
    assert dark > 0.10, dark


# ----------------------------------------------------------------------------------------------------------
# GIMP (in the Debian 13 chroot)

GIMP_LAYER_PROBE = """
from gi.repository import Gimp, Gegl
import zmq
img = Gimp.Image.new(64, 64, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(img, "lines", 64, 64, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(layer, None, 0)
buf = layer.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, 64, 64), "R'G'B'A u8", open("pixel.bin", "rb").read() * 64 * 64)
buf.flush()
read = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, 2, 1), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)
emit({"version": Gimp.version(), "read": list(read), "zmq": zmq.__version__,
      "layers": [l.get_name() for l in img.get_layers()]})
"""


@pytest.mark.gimp
def test_gimp_layer_round_trip_and_zmq():
    hostlib.require_gimp()
    result = hostlib.run_gimp(GIMP_LAYER_PROBE, files={"pixel.bin": bytes([10, 20, 30, 255])})
    assert result["version"].startswith("3.")
    assert result["read"] == [10, 20, 30, 255] * 2
    assert result["layers"] == ["lines"]
    assert int(result["zmq"].split(".")[0]) >= 22


@pytest.mark.gimp
def test_gimp_script_error_raises_with_traceback():
    hostlib.require_gimp()
    with pytest.raises(HostError, match="probe failed on purpose"):
        hostlib.run_gimp('raise ValueError("probe failed on purpose")')


GIMP_PLUGIN = '''\
#!/usr/bin/env python3
import sys
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject


class IrodoriProbe(Gimp.PlugIn):
    def do_query_procedures(self):
        return ["irodori-probe"]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("*")
        procedure.set_menu_label("Irodori probe")
        procedure.add_menu_path("<Image>/Filters/Irodori")
        procedure.add_string_argument("text", "Text", "layer name suffix", "", GObject.ParamFlags.READWRITE)
        return procedure

    def run(self, procedure, run_mode, image, drawables, config, data):
        import zmq
        width, height = image.get_width(), image.get_height()
        name = "probe " + config.get_property("text") + " zmq " + zmq.__version__
        layer = Gimp.Layer.new(image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, None, 0)
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, width, height), "R'G'B'A u8", bytes([1, 2, 3, 255]) * width * height)
        buf.flush()
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


Gimp.main(IrodoriProbe.__gtype__, sys.argv)
'''

CALL_GIMP_PLUGIN = """
from gi.repository import Gimp, Gegl
img = Gimp.Image.new(16, 8, Gimp.ImageBaseType.RGB)
base = Gimp.Layer.new(img, "lines", 16, 8, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(base, None, 0)
procedure = Gimp.get_pdb().lookup_procedure("irodori-probe")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", img)
config.set_core_object_array("drawables", [base])
config.set_property("text", "hello")
status = procedure.run(config).index(0)
top = img.get_layers()[0]
read = top.get_buffer().get(Gegl.Rectangle.new(0, 0, 1, 1), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)
emit({"status": status.value_nick, "layers": [l.get_name() for l in img.get_layers()], "read": list(read)})
"""


@pytest.mark.gimp
def test_gimp_runs_a_user_plugin_through_the_pdb(tmp_path):
    hostlib.require_gimp()
    (tmp_path / "irodori-probe.py").write_text(GIMP_PLUGIN)
    result = hostlib.run_gimp(CALL_GIMP_PLUGIN, plugins={"irodori-probe": tmp_path / "irodori-probe.py"})
    assert result["status"] == "success"
    assert result["layers"][1] == "lines"
    assert result["layers"][0].startswith("probe hello zmq ")
    assert result["read"] == [1, 2, 3, 255]


@pytest.mark.krita
def test_krita_gui_startup_error_raises(tmp_path):
    hostlib.require_krita(gui=True)
    with pytest.raises(HostError, match="ValueError: startup failed on purpose"):
        hostlib.run_krita_gui([], startup='raise ValueError("startup failed on purpose")')
