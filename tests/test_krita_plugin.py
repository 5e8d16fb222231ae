"""The Krita plugin in REAL Krita 5.1.5 against a REAL backend (`irodori serve`, tiny model, 127.0.0.1).

Two Krita runs: kritarunner (offscreen) drives the scripting API; the full app under Xvfb loads the plugin
from a fresh profile after Krita's own "Import Python Plugin from File..." code installed the built zip,
then colours through the docker's button (worker thread) and is photographed.
Skipped without Krita, FAILED without it when IRODORI_REQUIRE_HOSTS=1 (CI). Install: sh tests/hosts/krita.sh

The code that runs inside Krita is in tests/host_scripts/: krita_checks.py (kritarunner), krita_import.py
(Krita's plugin importer) and krita_docker.py (the full app); each emits what it found and the tests here
assert on it.

IRODORI_KRITA_SCREENSHOT=docs/krita-docker.png also writes the docker screenshot there (docs/krita.md);
IRODORI_KRITA_CHECKPOINT=DIR serves that model instead of the tiny untrained one (nicer screenshot).
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hostlib
from backend.tools import plugins
from backend.protocol import Client, Pixels
from backend.inference.colour import ciede2000, rgb_to_lab
from backend.model.checkpoint import read_config
from helpers import free_port, tiny_hint_checkpoint  # noqa: F401  (a fixture)
from krita_files import animated_kra
from server_fixtures import Process, start_server, wait_until_serving

pytestmark = pytest.mark.krita
W, H = 96, 64


def bgra_lines(width: int, height: int, shift: int = 0) -> np.ndarray:
    """Black strokes on a TRANSPARENT background, as Krita holds an inked layer (B, G, R, A)."""
    a = np.zeros((height, width, 4), np.uint8)
    a[8:10, 4:-4, 3] = 255
    a[height - 12:height - 10, 4:-4, 3] = 255
    a[8:-10, 10 + shift:12 + shift, 3] = 255
    a[8:-10, width // 2 + shift:width // 2 + 3 + shift, 3] = 255
    return a


def bgra_reference(width: int, height: int) -> np.ndarray:
    a = np.empty((height, width, 4), np.uint8)
    a[:] = (40, 60, 200, 255)  # red-ish in BGRA
    a[height // 2:, :, :3] = (200, 160, 30)  # blue-ish lower half
    return a


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    hostlib.require_krita()
    if os.environ.get("IRODORI_KRITA_CHECKPOINT"):
        return Path(os.environ["IRODORI_KRITA_CHECKPOINT"])
    from helpers import make_tiny_checkpoint
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def backend(checkpoint):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_server(endpoint, checkpoint)
    yield endpoint
    proc.stop()


@pytest.fixture(scope="module")
def hint_backend(tiny_hint_checkpoint):
    """A second server whose tiny model takes hints (hint_channels 4); started without waiting, so that it
    loads while `backend` starts (the first use waits for it)."""
    hostlib.require_krita()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = Process("serve", "--bind", endpoint, "--checkpoint", str(tiny_hint_checkpoint), "--device", "cpu")
    yield endpoint, proc
    proc.stop()


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    """The BUILT plugin in a pykrita-style folder (irodori.desktop + irodori/ holding a copy of the protocol)."""
    return plugins.install(plugins.PLUGINS["krita"], tmp_path_factory.mktemp("pykrita"))


# ---------------------------------------------------------------------------------------------- kritarunner
HINT_RGB = (230, 80, 160)  # a pink no tiny untrained model paints by itself
DOT = (29, 29, 3, 3)  # x, y, w, h: inside the closed box of bgra_lines (x 12..47, y 10..51)
BOX = (slice(12, 50), slice(14, 46))  # rows, columns of that box, 2 px in from its lines


def hint_dot() -> np.ndarray:
    return np.tile(np.array([*HINT_RGB[::-1], 255], np.uint8), (DOT[3], DOT[2], 1))  # BGRA


@pytest.fixture(scope="module")
def runner_results(hint_backend, backend, plugin_dir, tmp_path_factory):
    """One kritarunner session runs every scripted scenario (Krita starts once: the file stays fast)."""
    wait_until_serving(*hint_backend)
    tmp = tmp_path_factory.mktemp("krita-data")
    (tmp / "lines.bgra").write_bytes(bgra_lines(W, H).tobytes())
    ref = bgra_reference(W, H)
    (tmp / "reference.bgra").write_bytes(ref.tobytes())
    Image.fromarray(ref[..., [2, 1, 0, 3]]).save(tmp / "reference.png")
    frames = {t: bgra_lines(W, H, shift=4 * i).tobytes() for i, t in enumerate((0, 2, 5))}
    (tmp / "anim.kra").write_bytes(animated_kra(W, H, {"anim lines": frames}))
    (tmp / "hint_dot.bgra").write_bytes(hint_dot().tobytes())
    env = {"IRODORI_PLUGIN_DIR": str(plugin_dir), "IRODORI_DATA": str(tmp), "IRODORI_W": str(W),
           "IRODORI_H": str(H), "IRODORI_ENDPOINT": backend, "IRODORI_HINT_ENDPOINT": hint_backend[0],
           "IRODORI_HINT_DOT": ",".join(map(str, DOT)),
           "IRODORI_DEAD_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"}
    run = hostlib.run_krita(hostlib.HOST_SCRIPTS, "krita_checks", "main", env=env, timeout=150)
    return run.result


def test_colour_layer_goes_directly_under_the_line_art(runner_results, plugin_dir, backend):
    r = runner_results
    assert r["plugin_file"].startswith(str(plugin_dir)) and r["has_protocol"]
    assert r["protocol_file"].startswith(str(plugin_dir)), "the plugin's own copy of the protocol package"
    basic = r["basic"]
    assert basic["stack"] == ["Background", "reference", "Irodori colour (reference)", "lines"]
    assert basic["bounds"] == [0, 0, W, H]
    assert basic["line_same"] and basic["line_uid_same"]
    layer = np.frombuffer(base64.b64decode(basic["pixels"]), np.uint8).reshape(H, W, 4)
    assert (layer[..., 3] == 255).all(), "the colour layer covers the whole canvas"
    # exactly what the backend computes for this line art and reference (sent here as BGRA too)
    with Client(backend, timeout=60) as client:
        expect = client.colorize(Pixels(W, H, "BGRA", bgra_lines(W, H).tobytes()),
                                 Pixels(W, H, "BGRA", bgra_reference(W, H).tobytes()), output_layout="BGRA")
    assert bytes(expect["color"].data) == layer.tobytes()
    assert layer[..., :3].reshape(-1, 3).std(axis=0).max() > 0, "a real picture, not one flat colour"


def test_builtin_zmtp_client_gives_the_same_layer(runner_results):
    z = runner_results["zmtp"]
    assert runner_results["basic"]["transport"] == "pyzmq" and z["transport"] == "zmtp"
    assert z["same"]
    assert z["stack"] == ["Background", "reference", "Irodori colour (reference)", "Irodori colour (reference)",
                          "lines"]


def test_line_art_at_the_bottom_of_a_group(runner_results):
    assert runner_results["bottom"]["stack"] == ["Irodori colour (reference)", "group lines", "notes"]
    assert runner_results["bottom"]["line_same"]


def test_outputs_references_and_batch(runner_results):
    assert runner_results["variants"]["stack"] == [
        "Background", "reference", "Irodori flats (reference.png)", "Irodori colour (image)",
        "Irodori colour (refdoc)", "lines", "Irodori flattened (reference)"]
    batch = runner_results["batch"]
    assert batch["stack"] == ["Background", "reference", "Irodori colour (reference)", "lines",
                              "Irodori colour (reference)", "lines 2"]
    assert len(batch["made"]) == 2  # the reference layer itself was skipped


def test_keyframes_become_one_animated_colour_layer(runner_results, backend):
    anim = runner_results["anim"]
    assert anim["line_keys"] == [0, 2, 5] and anim["line_same"]
    assert anim["stack"] == ["Irodori colour (reference)", "Irodori colour (reference) frames", "anim lines",
                             "reference"]
    assert anim["animated"] and anim["keys"] == [0, 2, 5], "the line art's keyframes, no more, no fewer"
    with Client(backend, timeout=60) as client:
        for i, b64 in enumerate(anim["frames"]):
            expect = client.colorize(Pixels(W, H, "BGRA", bgra_lines(W, H, shift=4 * i).tobytes()),
                                     Pixels(W, H, "BGRA", bgra_reference(W, H).tobytes()), output_layout="BGRA")
            assert bytes(expect["color"].data) == base64.b64decode(b64), f"keyframe {i}"
    assert len(set(anim["frames"])) == 3
    # the per-keyframe fallback: the same pictures, only the frame under the cursor (time 3 -> frame 2) shown
    assert anim["group"] == [["frame 0", False], ["frame 2", True], ["frame 5", False]] and anim["group_same"]
    assert anim["time"] == 3, "the user's place on the timeline is kept"
    assert runner_results["dialogs"] == []


def test_errors_are_clear_and_add_no_layer(runner_results):
    dead = runner_results["dead"]
    assert dead["error"] == "BackendUnavailable" and dead["code"] == "unavailable"
    assert "irodori serve" in dead["message"] and dead["stack_same"]
    assert dead["seconds"] < 8, "the error must come within the client timeout"
    empty = runner_results["empty"]
    assert empty["code"] == "empty_layer" and '"empty" is empty' in empty["message"] and empty["stack_same"]
    u16 = runner_results["u16"]
    assert u16["code"] == "not_rgba8" and "8-bit RGBA" in u16["message"] and u16["stack_same"]
    assert runner_results["not_animated"]["code"] == "not_animated"


def test_hint_layer_colours_its_closed_area_and_changes_no_layer(runner_results, hint_backend, backend):
    r = runner_results["hints"]
    # "New hint layer": directly above the line art (under the notes above it)
    assert r["new_stack"] == ["Background", "reference", "lines", "Irodori hints", "notes"]
    assert r["stack"] == ["Background", "reference", "Irodori colour (reference)", "Irodori colour (reference)",
                          "lines", "Irodori hints", "notes"]
    assert r["line_same"] and r["hints_same"], "the line-art and hint layers are byte-for-byte unchanged"
    painted = np.zeros((H, W, 4), np.uint8)
    painted[DOT[1]:DOT[1] + DOT[3], DOT[0]:DOT[0] + DOT[2]] = hint_dot()
    assert base64.b64decode(r["hints_pixels"]) == painted.tobytes()

    plain, hinted = (np.frombuffer(base64.b64decode(r[k]), np.uint8).reshape(H, W, 4) for k in ("plain", "hinted"))
    box = hinted[BOX][..., 2::-1].reshape(-1, 3)  # BGRA -> RGB
    distance = ciede2000(rgb_to_lab(box), rgb_to_lab(np.array([HINT_RGB], np.uint8)))
    assert distance.max() < 5, f"the hinted box is up to {distance.max():.1f} from the hint colour"
    assert ciede2000(rgb_to_lab(plain[BOX][..., 2::-1].reshape(-1, 3)),
                     rgb_to_lab(np.array([HINT_RGB], np.uint8))).min() > 20, "without the hint it is not pink"
    with Client(hint_backend[0], timeout=60) as client:  # exactly the backend's answer to lines + hints
        expect = client.colorize(Pixels(W, H, "BGRA", bgra_lines(W, H).tobytes()),
                                 Pixels(W, H, "BGRA", bgra_reference(W, H).tobytes()), output_layout="BGRA",
                                 hints=Pixels(W, H, "BGRA", painted.tobytes()))
    assert bytes(expect["color"].data) == hinted.tobytes()

    refused = r["refused"]  # the model at `backend` has no hint channels: a clear error, no layer added
    assert refused["error"] == "IrodoriError" and "hint" in refused["message"] and refused["stack_same"], refused
    with Client(backend, timeout=60) as client:  # an empty hint layer is the same as none
        expect = client.colorize(Pixels(W, H, "BGRA", bgra_lines(W, H).tobytes()),
                                 Pixels(W, H, "BGRA", bgra_reference(W, H).tobytes()), output_layout="BGRA")
    assert bytes(expect["color"].data) == base64.b64decode(r["empty_hints"])
    assert r["same_layer"]["code"] == "same_layer"


# ---------------------------------------------------------------------------------------------- the full app
def character_pictures(size: int):
    """Line art of one synthetic character (ink on transparent) and a picture of another one as reference."""
    from training import synth

    a = synth.render(synth.random_character(11), synth.random_palette(11), size)
    b = synth.render(synth.random_character(11), synth.random_palette(29), size)
    lines = np.zeros((size, size, 4), np.uint8)
    lines[..., 3] = 255 - a.line  # ink opacity from the line art (255 = paper)
    ref = np.concatenate([b.color[..., ::-1], np.full((size, size, 1), 255, np.uint8)], axis=2)
    return lines, ref


def test_zip_installs_loads_and_docker_colours_in_the_real_app(backend, hint_backend, checkpoint, tmp_path):
    hostlib.require_krita(gui=True)
    # a backend that takes 5 s per batch, to press Cancel while it works (started now, used later)
    slow_endpoint = f"tcp://127.0.0.1:{free_port()}"
    slow = Process("serve", "--bind", slow_endpoint, "--checkpoint", str(checkpoint), "--device", "cpu",
                   "--delay-ms", "5000")
    try:
        _real_app_checks(backend, slow, slow_endpoint, tmp_path, hint_backend, checkpoint)
    finally:
        slow.stop()


def paper_dot(lines: np.ndarray, size: int = 3) -> tuple[int, int, int, int]:
    """x, y, w, h of a size x size dot on paper, at least 3 px from any ink, nearest the picture's centre."""
    ink = lines[..., 3] > 0
    h, w = ink.shape
    ys, xs = np.mgrid[0:h, 0:w]
    best = None
    for y, x in sorted(zip(ys.ravel(), xs.ravel()), key=lambda p: abs(p[0] - h // 2) + abs(p[1] - w // 2)):
        if 3 <= y < h - size - 3 and 3 <= x < w - size - 3 and not ink[y - 3:y + size + 3, x - 3:x + size + 3].any():
            best = (int(x), int(y), size, size)
            break
    assert best is not None, "no paper in the line art"
    return best


def _real_app_checks(backend: str, slow: Process, slow_endpoint: str, tmp_path: Path, hint_backend,
                     checkpoint: Path) -> None:
    # 1. Krita's own importer (Tools > Scripts > Import Python Plugin from File...) unpacks the built zip
    zip_path = plugins.build_zip(plugins.PLUGINS["krita"], tmp_path / "zip")
    resources = tmp_path / "resources"
    resources.mkdir()
    imported = hostlib.run_krita(hostlib.HOST_SCRIPTS, "krita_import", "main", timeout=60,
                                 env={"IRODORI_ZIP": str(zip_path), "IRODORI_RESOURCES": str(resources)})
    assert imported.result == ["irodori"]
    pykrita = resources / "pykrita"
    assert sorted(p.name for p in pykrita.iterdir()) == ["irodori", "irodori.desktop"]

    # 2. the full app with a fresh profile: the plugin is found, enabled, its docker works
    size = 512
    data = tmp_path / "data"
    data.mkdir()
    lines, ref = character_pictures(size)
    (data / "character_lines.bgra").write_bytes(lines.tobytes())
    (data / "character_ref.bgra").write_bytes(ref.tobytes())
    grey = np.full((H, W, 4), 128, np.uint8).tobytes()  # colour frames the docker must overwrite
    (data / "anim.kra").write_bytes(animated_kra(W, H, {
        "lines": {t: bgra_lines(W, H, shift=4 * i).tobytes() for i, t in enumerate((0, 2, 5))},
        "flats": {0: bgra_reference(W, H).tobytes(), 2: grey, 5: grey}}))
    shot = tmp_path / "krita-docker.png"
    wait_until_serving(slow_endpoint, slow)
    wait_until_serving(*hint_backend)
    try:
        run = hostlib.run_krita_gui([pykrita], startup=(hostlib.HOST_SCRIPTS / "krita_docker.py").read_text(),
                                    screenshot=shot, delay=2.0, timeout=170,
                                    env={"IRODORI_DATA": str(data), "IRODORI_ENDPOINT": backend,
                                         "IRODORI_SIZE": str(size), "IRODORI_HINT_ENDPOINT": hint_backend[0],
                                         "IRODORI_HINT_DOT": ",".join(map(str, (*paper_dot(lines),
                                                                                *HINT_RGB[::-1]))),
                                         "IRODORI_DEAD_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
                                         "IRODORI_SLOW_ENDPOINT": slow_endpoint})
    except hostlib.HostError as exc:
        steps = (data / "steps.txt").read_text() if (data / "steps.txt").exists() else "(none)"
        pytest.fail(f"{exc}\nsteps reached:\n{steps}", pytrace=False)
    results = [r for r in run.results if isinstance(r, dict) and "loaded" in r]
    assert results, run.results
    r = results[-1]
    assert r["loaded"] and "/krita/pykrita/irodori/" in r["plugin_file"] and r["docker_found"] == 1

    dead = r["dead"]
    assert dead["message"].startswith("No Irodori backend answers at tcp://127.0.0.1:"), dead
    assert "irodori serve" in dead["message"] and dead["start_offered"]
    assert dead["stack"] == ["Background", "reference", "line art"]

    cancel = r["cancel"]
    assert cancel["message"] == "Cancelled." and cancel["stack"] == ["Background", "reference", "line art"]
    assert cancel["seconds"] < 5, "the docker stopped waiting before the backend answered"

    d = r["docker"]
    assert not r["slot_errors"], r["slot_errors"][0]
    assert d["message"].startswith("Done in") and "Irodori colour (reference)" in d["message"], d
    assert d["stack"] == ["Background", "reference", "Irodori colour (reference)", "line art"]
    assert r["worker_started"] and d["ui_ticks"] > 1 and d["visible"]
    assert d["status"].startswith("\u25cf connected") and d["saved_endpoint"] == backend

    # "New hint layer": directly above the line art and picked as the hints; the line art stays picked. (Which
    # layer is active is not checked: Document.setActiveNode has no effect under Xvfb, with no window manager.)
    h = r["hints"]
    assert h["stack"] == ["Background", "reference", "Irodori colour (reference)", "line art", "Irodori hints"]
    assert h["picked"] == "Irodori hints" and h["line_pinned"], h
    assert h["message"].startswith('Added "Irodori hints" above "line art"'), h["message"]
    plain = read_config(checkpoint)["model"].get("hint_channels", 0) == 0  # a screenshot run may serve a hint model
    assert h["note_on_plain_model"] == plain and not h["note_on_hint_model"], "the docker says when hints cannot work"
    assert h["done"].startswith("Done in"), h["done"]
    assert h["after"] == ["Background", "reference", "Irodori colour (reference)", "Irodori colour (reference)",
                          "line art", "Irodori hints"]
    assert h["unchanged"], "the line-art and hint layers are byte-for-byte unchanged"
    dot = np.array([h["dot"][2::-1]], np.uint8)  # BGRA -> RGB
    assert ciede2000(rgb_to_lab(dot), rgb_to_lab(np.array([HINT_RGB], np.uint8)))[0] < 5, h["dot"]

    # "Every keyframe, from the coloured frame at the playhead": the flats layer's other keyframes are written
    k = r["keyframes"]
    assert k["active"] and k["message"].startswith("Done in"), k
    assert 'Coloured 2 frame(s) of "flats" from frame 0.' in k["message"], k["message"]
    assert k["stack"] == ["flats", "lines"] and k["lines_same"] and k["key_same"] and k["changed"] == [True, True]
    assert k["time"] == 1

    # 3. the screenshot shows a real window with the docker drawn in it, after one plain colouring
    assert r["scene"][:4] == ["Background", "reference", "Irodori colour (reference)", "line art"], r["scene"]
    assert r["scene"][4].startswith("Done in"), r["scene"]
    img = np.asarray(Image.open(shot).convert("RGB"))
    x, y, w, h = d["rect"]
    assert w > 150 and h > 300 and 0 <= x < img.shape[1] and 0 <= y < img.shape[0]
    assert img[y:y + h, x:x + w].std() > 10, "the docker area is not blank"
    target = os.environ.get("IRODORI_KRITA_SCREENSHOT")
    if target:
        shutil.copy(shot, target)
