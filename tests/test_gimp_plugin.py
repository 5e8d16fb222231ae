"""The GIMP 3 plug-in (plugin_gimp/irodori/irodori.py) inside REAL GIMP 3.0 against a REAL backend.

The plug-in is installed with `irodori plugin gimp --install` into the chroot's /root profile, so these
tests cover the built package (irodori.py, its sibling modules and the irodori_protocol package the build
copies in). A tiny backend runs on the host's 127.0.0.1, which the chroot shares. All GIMP-side steps run
in ONE gimp-console session (a start costs seconds; the steps are tests/host_scripts/gimp_session.py); each
test then checks its part of that session's report against what the same backend answers to the same
request sent from here.

Skipped without the chroot (sh tests/hosts/gimp.sh, as root); FAILED instead when IRODORI_REQUIRE_HOSTS=1.
"""
from __future__ import annotations

import ast
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hostlib
from helpers import free_port, line_art, reference, tiny_hint_checkpoint  # noqa: F401  (a fixture)
from server_fixtures import Process

from backend import protocol
from backend.inference.colour import ciede2000, rgb_to_lab

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SRC = ROOT / "plugin_gimp" / "irodori"
PLUGINS_IN_CHROOT = "root/.config/GIMP/3.0/plug-ins"
H, W = 48, 64  # line-art layer size
OFFSET = (5, 7)  # where the line-art layer sits in its 80x60 image


# ----------------------------------------------------------------------------------------------------------
# no GIMP needed


def test_plugin_source_is_a_gimp3_plugin_file():
    """GIMP 3 runs NAME/NAME.py only when it is executable with a shebang; the protocol is never hand-copied."""
    main = PLUGIN_SRC / "irodori.py"
    text = main.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    assert os.access(main, os.X_OK), "plugin_gimp/irodori/irodori.py must be executable (chmod +x)"
    link = PLUGIN_SRC / "irodori_protocol"
    assert link.is_symlink() and link.resolve() == (ROOT / "backend" / "protocol").resolve(), \
        "irodori_protocol must be the link to backend/protocol/: a copy in the repo would drift from it"
    assert not (PLUGIN_SRC / "irodori_protocol.py").exists()
    modules = {p.stem for p in PLUGIN_SRC.glob("*.py")}
    allowed = set(sys.stdlib_module_names) | {"gi", "irodori_protocol"} | modules
    for path in sorted(PLUGIN_SRC.glob("*.py")):
        tree = ast.parse(path.read_text(), feature_version=(3, 10))  # GIMP's bundled Pythons are older than 3.13
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert imported <= allowed, f"{path.name} imports {imported - allowed}: GIMP's Python has no more"
    for name in ("python-fu-irodori-colorize", "python-fu-irodori-colorize-files",
                 "<Image>/Filters/Irodori", "Colorize from Reference"):
        assert name in text


# ----------------------------------------------------------------------------------------------------------
# fixtures: installed plug-in, backend, one GIMP session


@pytest.fixture(scope="module")
def installed_plugin() -> Path:
    hostlib.require_gimp()
    dest = hostlib.gimp_chroot() / PLUGINS_IN_CHROOT
    out = subprocess.run([sys.executable, "-m", "backend", "plugin", "gimp", "--install", str(dest)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"`irodori plugin gimp --install` failed:\n{out.stdout}\n{out.stderr}"
    return dest / "irodori"


@pytest.fixture(scope="module")
def backend(installed_plugin, tiny_checkpoint, tmp_path_factory):
    """`irodori serve` with a tiny untrained model on the host's loopback (the chroot shares it)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("backend") / "serve.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--bind", endpoint,
                                 "--checkpoint", str(tiny_checkpoint)], cwd=ROOT, stdout=log_file,
                                stderr=subprocess.STDOUT)
    try:
        try:
            protocol.wait_until_serving(endpoint, 120, exited=lambda: proc.poll() is not None, interval=0.3)
        except protocol.IrodoriError:
            raise RuntimeError(f"the backend did not start:\n{log.read_text()[-3000:]}") from None
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def hint_backend(installed_plugin, tiny_hint_checkpoint):
    """A second server whose tiny model takes hints (hint_channels 4); the session waits for it."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = Process("serve", "--bind", endpoint, "--checkpoint", str(tiny_hint_checkpoint), "--device", "cpu")
    yield endpoint, proc
    proc.stop()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def decode(b64: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(shape)


LINEART = line_art(H, W, rgba=True, seed=1)  # black strokes on a transparent layer
REFERENCE = reference(40, 40, seed=2)
BATCH_INPUTS = {"a.png": line_art(40, 56, seed=3), "b.png": line_art(32, 32, seed=4)}  # greyscale, white paper
HINT_RGB = (230, 80, 160)  # a pink no tiny untrained model paints by itself
DOT = (28, 22, 3, 3)  # x, y, w, h of the hint dot in the line-art layer, inside BOX's box
INSIDE = (slice(12, 36), slice(14, 48))  # rows, columns of the box, 2 px in from its lines


def box_lines() -> np.ndarray:
    """Black 2 px box (x 10..51, y 8..39) on a transparent W x H layer: one closed area to hint."""
    a = np.zeros((H, W, 4), np.uint8)
    a[8:40, 10:52, 3] = 255
    a[10:38, 12:50, 3] = 0
    return a


def hint_picture() -> np.ndarray:
    """RGBA of the line art's size: transparent but for the dot."""
    a = np.zeros((H, W, 4), np.uint8)
    x, y, w, h = DOT
    a[y:y + h, x:x + w] = (*HINT_RGB, 255)
    return a


def box_paper() -> np.ndarray:
    """The box as a batch input file holds it: greyscale, black ink on white paper."""
    return np.where(box_lines()[..., 3] > 0, 0, 255).astype(np.uint8)


def near_hint(rgb: np.ndarray) -> float:
    """The largest CIEDE2000 distance of the (..., 3) pixels from the hint colour."""
    return float(ciede2000(rgb_to_lab(rgb.reshape(-1, 3)), rgb_to_lab(np.array([HINT_RGB], np.uint8))).max())


@pytest.fixture(scope="module")
def session(installed_plugin, hint_backend, backend) -> dict:
    hint_backend[1].wait_until_serving(hint_backend[0], 120)
    files = {"lineart.rgba": LINEART.tobytes(), "reference.png": png_bytes(REFERENCE),
             "broken.png": b"\x89PNG\r\n\x1a\n not really a PNG", "box.rgba": box_lines().tobytes(),
             "box.png": png_bytes(box_paper()), "hints.png": png_bytes(hint_picture()),
             "hint_box.png": png_bytes(hint_picture())}
    files.update({f"in_{name}": png_bytes(img) for name, img in BATCH_INPUTS.items()})
    files["params.json"] = json.dumps({"endpoint": backend, "dead": f"tcp://127.0.0.1:{free_port()}",
                                       "w": W, "h": H, "ox": OFFSET[0], "oy": OFFSET[1],
                                       "hint_endpoint": hint_backend[0], "dot": [*DOT, *HINT_RGB]}).encode()
    return hostlib.run_gimp((hostlib.HOST_SCRIPTS / "gimp_session.py").read_text(), files, timeout=150)


def expected(endpoint: str, lineart: np.ndarray, output: str = "color", hints: np.ndarray | None = None
             ) -> np.ndarray:
    """What the backend answers to the plug-in's request, sent from here: line art (and hints) as RGBA pixels."""
    if lineart.ndim == 2:
        lineart = np.repeat(lineart[..., None], 3, axis=2)
    if lineart.shape[2] == 3:
        lineart = np.concatenate([lineart, np.full(lineart.shape[:2] + (1,), 255, np.uint8)], axis=2)
    ref = np.concatenate([REFERENCE, np.full(REFERENCE.shape[:2] + (1,), 255, np.uint8)], axis=2)
    with protocol.Client(endpoint, timeout=60) as client:
        result = client.colorize(protocol.Pixels.from_array(np.ascontiguousarray(lineart)),
                                 protocol.Pixels.from_array(ref), outputs=(output,),
                                 hints=None if hints is None else protocol.Pixels.from_array(hints))
    return np.array(result[output].to_array())


def ok(report: dict) -> dict:
    assert "crash" not in report, report["crash"]
    return report


def refused(report: dict, *phrases: str) -> None:
    """The run failed with a message holding every phrase, and the image kept exactly its layers."""
    ok(report)
    assert report["status"] == "execution-error"
    for phrase in phrases:
        assert phrase in report["message"], report["message"]
    assert [layer["name"] for layer in report["layers"]] == ["notes", "lines", "paper"]


# ----------------------------------------------------------------------------------------------------------
# in GIMP


def package_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path (caches left out; links followed)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.gimp
def test_installed_package_holds_the_protocol_package(installed_plugin):
    assert os.access(installed_plugin / "irodori.py", os.X_OK)
    shipped = sorted(p.name for p in installed_plugin.iterdir() if p.name != "__pycache__")
    assert shipped == sorted(p.name for p in PLUGIN_SRC.iterdir() if p.name != "__pycache__")
    for module in PLUGIN_SRC.glob("*.py"):  # irodori.py and the modules next to it, as they are in the source
        assert (installed_plugin / module.name).read_bytes() == module.read_bytes(), module.name
    assert not (installed_plugin / "irodori_protocol").is_symlink()
    assert package_files(installed_plugin / "irodori_protocol") == package_files(ROOT / "backend" / "protocol")


@pytest.mark.gimp
def test_procedures_are_registered(session):
    found = ok(session["registered"])
    colorize, files = found["python-fu-irodori-colorize"], found["python-fu-irodori-colorize-files"]
    assert colorize is not None and files is not None
    assert colorize["menu"] == ["<Image>/Filters/Irodori"]
    for arg in ("reference-layer", "reference-file", "endpoint", "output", "transport", "hints-layer", "hints-file"):
        assert arg in colorize["args"]
    for arg in ("input-files", "input-folder", "reference-file", "output-folder", "hints-folder"):
        assert arg in files["args"]


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
@pytest.mark.gimp
def test_colour_layer_goes_directly_under_the_line_art(session, backend, transport):
    """pyzmq with the reference as a layer of another image; the built-in ZMTP client with a reference file."""
    report = ok(session[transport])
    assert report["status"] == "success", report.get("message")
    names = [layer["name"] for layer in report["layers"]]
    assert names == ["notes", "lines", "Irodori colour", "paper"]
    colour = report["layers"][2]
    assert colour["size"] == [W, H] and colour["offset"] == list(OFFSET)
    assert report["layers"][1]["mode"] == "normal"  # transparent line art keeps its mode
    assert report["lineart_unchanged"]
    assert report["returned_layer_is_new"]
    got = decode(report["colour"], (H, W, 4))
    assert (got[..., 3] == 255).all()  # opaque colour everywhere, under every stroke
    assert np.array_equal(got, expected(backend, LINEART))  # exactly the backend's answer, no colour shift
    assert len(np.unique(got[..., :3].reshape(-1, 3), axis=0)) > 1


@pytest.mark.gimp
def test_flattened_output_is_a_new_image(session, backend):
    report = ok(session["flattened"])
    assert report["status"] == "success", report.get("message")
    assert [layer["name"] for layer in report["layers"]] == ["notes", "lines", "paper"]  # original untouched
    assert report["new_image"]["size"] == [W, H]
    got = decode(report["new_image"]["pixels"], (H, W, 4))
    assert np.array_equal(got, expected(backend, LINEART, "flattened"))


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
@pytest.mark.gimp
def test_no_backend_is_an_error_that_says_what_to_do(session, transport):
    refused(session[f"dead_{transport}"], "irodori serve", "tcp://127.0.0.1:")


@pytest.mark.gimp
def test_greyscale_image_is_refused_with_a_fix(session):
    refused(session["grey"], "Image > Mode > RGB")


@pytest.mark.gimp
def test_missing_reference_is_refused_with_a_fix(session):
    refused(session["no_reference"], "choose a layer of an open image or a picture file")


@pytest.mark.gimp
def test_reference_over_the_limit_is_scaled_down_not_refused(session):
    report = ok(session["big_reference"])
    assert report["status"] == "success", report.get("message")
    assert [layer["name"] for layer in report["layers"]] == ["notes", "lines", "Irodori colour", "paper"]
    assert report["reference_size"] == [4200, 4000]  # the user's layer itself is not scaled


@pytest.mark.gimp
def test_batch_writes_one_coloured_file_per_input(session, backend):
    report = ok(session["batch"])
    assert report["status"] == "success", report.get("message")
    assert report["written"] == len(BATCH_INPUTS)
    assert sorted(report["outputs"]) == sorted(BATCH_INPUTS)
    for name, lineart in BATCH_INPUTS.items():
        out = np.array(Image.open(io.BytesIO(base64.b64decode(report["outputs"][name]))).convert("RGB"))
        assert out.shape[:2] == lineart.shape
        colour = expected(backend, lineart)[..., :3]
        ink = lineart == 0
        # The opaque line art is multiplied over its colour layer: colour on the paper, black strokes.
        assert np.array_equal(out[~ink], colour[~ink])
        assert (out[ink] == 0).all()


@pytest.mark.gimp
def test_batch_keeps_going_past_a_bad_file_and_says_which(session):
    """Input files given as a list; flats as a layer under the line art, kept as layers in XCF."""
    report = ok(session["batch_xcf"])
    assert report["status"] == "execution-error"
    assert "1 of 2 files failed (1 written)" in report["message"] and "broken.png" in report["message"]
    assert list(report["outputs"]) == ["a.xcf"]
    layers = report["outputs"]["a.xcf"]
    assert [layer["name"] for layer in layers][1:] == ["Irodori flats"]
    assert layers[0]["mode"] == "multiply"  # opaque line art over its flats
    assert all(layer["size"] == [56, 40] for layer in layers)


@pytest.mark.gimp
def test_hint_layer_colours_its_closed_area_and_changes_no_layer(session, hint_backend):
    """The hint layer is the image's size at offset 0 (the line art sits at OFFSET): it is read where it lies."""
    report = ok(session["hints_layer"])
    assert report["status"] == "success", report.get("message")
    assert [layer["name"] for layer in report["layers"]] == ["hints", "notes", "lines", "Irodori colour", "paper"]
    assert report["unchanged"], "the line-art and hint layers are byte-for-byte unchanged"
    got = decode(report["colour"], (H, W, 4))
    assert near_hint(got[INSIDE][..., :3]) < 5, "the hinted box takes the hint colour"
    assert np.array_equal(got, expected(hint_backend[0], box_lines(), hints=hint_picture()))
    plain = expected(hint_backend[0], box_lines())
    assert ciede2000(rgb_to_lab(plain[INSIDE][..., :3].reshape(-1, 3)),
                     rgb_to_lab(np.array([HINT_RGB], np.uint8))).min() > 20, "without the hint it is not pink"
    from_file = ok(session["hints_file"])
    assert from_file["status"] == "success", from_file.get("message")
    assert from_file["unchanged"] and from_file["colour"] == report["colour"], "a hints file gives the same"


@pytest.mark.gimp
def test_hints_for_a_model_without_hints_or_of_another_size_are_refused(session):
    report = ok(session["hints_refused"])
    assert report["status"] == "execution-error" and "hint" in report["message"], report
    assert [layer["name"] for layer in report["layers"]] == ["hints", "notes", "lines", "paper"]
    assert report["unchanged"]
    wrong = ok(session["hints_wrong_size"])  # a hints file must be the line art's size
    assert wrong["status"] == "execution-error" and "is 40x40 but the line art is 64x48" in wrong["message"], wrong
    assert [layer["name"] for layer in wrong["layers"]] == ["notes", "lines", "paper"]


@pytest.mark.gimp
def test_batch_takes_hints_from_a_folder_by_file_name(session, hint_backend):
    """box.png has a hint picture of the same name; b.png has none and is coloured without hints."""
    report = ok(session["batch_hints"])
    assert report["status"] == "success", report.get("message")
    assert report["written"] == 2 and sorted(report["outputs"]) == ["b.png", "box.png"]
    box = np.array(Image.open(io.BytesIO(base64.b64decode(report["outputs"]["box.png"]))).convert("RGB"))
    assert near_hint(box[INSIDE]) < 5
    out = np.array(Image.open(io.BytesIO(base64.b64decode(report["outputs"]["b.png"]))).convert("RGB"))
    lineart = BATCH_INPUTS["b.png"]
    colour = expected(hint_backend[0], lineart)[..., :3]
    assert np.array_equal(out[lineart != 0], colour[lineart != 0])


# ----------------------------------------------------------------------------------------------------------
# the interactive dialog: the full GIMP app under Xvfb (its X socket bind-mounted into the chroot)

def x_window_titles(display: str) -> list[str]:
    out = subprocess.run(["xwininfo", "-root", "-tree"], env={**os.environ, "DISPLAY": display},
                         capture_output=True, text=True, timeout=30)
    return [line.split('"')[1] for line in out.stdout.splitlines() if line.count('"') >= 2]


@pytest.mark.gimp
def test_interactive_run_shows_the_procedure_dialog(installed_plugin, tmp_path):
    hostlib.require_host("Xvfb and xwininfo", bool(shutil.which("Xvfb") and shutil.which("xwininfo")),
                         "apt-get install xvfb x11-utils")
    root = hostlib.gimp_chroot()
    run_dir = Path(tempfile.mkdtemp(prefix="irodori-gimp-ui-", dir=root / "tmp"))
    try:
        shutil.copy(hostlib.HOST_SCRIPTS / "gimp_dialog.py", run_dir / "dialog.py")
        inner = f"/tmp/{run_dir.name}/dialog.py"
        with hostlib.Xvfb((1024, 768)) as xvfb:
            inside = ["env", "-i", "HOME=/root", f"DISPLAY={xvfb.display}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                      "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1", "gimp-3.0", "--no-splash",
                      "--batch-interpreter", "python-fu-eval", "-b", f'exec(open("{inner}").read())']
            mount = ('mount -t proc proc "$1/proc" && mkdir -p "$1/tmp/.X11-unix" && '
                     'mount --bind /tmp/.X11-unix "$1/tmp/.X11-unix" && shift && exec chroot "$@"')
            log = tmp_path / "gimp.log"
            with open(log, "w") as log_file:
                proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh",
                                         str(root), str(root), *inside], stdin=subprocess.DEVNULL, stdout=log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            try:
                deadline = time.monotonic() + 120
                titles: list[str] = []
                while "Irodori: Colorize from Reference" not in titles:
                    assert proc.poll() is None, f"GIMP exited {proc.returncode}:\n{log.read_text()[-3000:]}"
                    assert time.monotonic() < deadline, f"no dialog; windows: {titles}\n{log.read_text()[-3000:]}"
                    time.sleep(1.0)
                    titles = x_window_titles(xvfb.display)
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert "Traceback" not in log.read_text()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
