"""Keyframe colouring in REAL Krita 5.1.5 against a REAL backend (`irodori serve`, tiny model, 127.0.0.1):
three keyframes of a synthetic character moving, the first coloured with its exact flats; the plugin's
scripting API colours the other two from it (issue 23), into the colour layer's keyframes, into a new
animated layer, and as pages of other documents. Every colour frame must be exactly what backend.inference's
keyframe colouring gives in this process for the same pixels (tolerance: none; a single pixel off fails).

The code that runs inside Krita is tests/host_scripts/krita_keyframes.py (one kritarunner session).
Skipped without Krita, FAILED without it when IRODORI_REQUIRE_HOSTS=1 (CI). Install: sh tests/hosts/krita.sh
"""
from __future__ import annotations

import base64

import numpy as np
import pytest

import hostlib
from backend.inference.keyframes import keyframe, keyframe_outputs
from backend.inference.pipeline import Colorizer
from backend.tools import plugins
from helpers import free_port
from krita_files import animated_kra
from server_fixtures import Process
from training.eval_keyframes import sequence

pytestmark = pytest.mark.krita
SEED, SIZE = 10_000_001, 192  # a held-out character (as test_keyframe_server.py), small frames
TIMES = (0, 2, 5)  # the line art's keyframes; the first one is coloured


def bgra(rgba: np.ndarray) -> bytes:
    return rgba[..., [2, 1, 0, 3]].tobytes()


def picture(b64: str) -> np.ndarray:
    """A layer's BGRA bytes (from Krita) as RGBA."""
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(SIZE, SIZE, 4)[..., [2, 1, 0, 3]]


@pytest.fixture(scope="module")
def character():
    """{time: line art as Krita holds it (black ink on transparent, RGBA)}, and the first frame's flats (RGBA)."""
    rendered, palette = sequence(SEED, len(TIMES), SIZE)
    lines = {}
    for t, r in zip(TIMES, rendered):
        a = np.zeros((SIZE, SIZE, 4), np.uint8)
        a[..., 3] = 255 - r.line
        lines[t] = a
    box = lines[TIMES[-1]][6:30, 6:30, 3]  # a new closed shape in the last frame: it has no counterpart
    box[:2], box[-2:], box[:, :2], box[:, -2:] = 255, 255, 255, 255
    flats = np.concatenate([palette[rendered[0].mask], np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=2)
    return lines, flats


@pytest.fixture(scope="module")
def expected(character, tiny_checkpoint):
    """In this process, what keyframe colouring gives each later frame: the tiny model's flats (the keyframe's
    colouring as the reference, as the plugin sends it), matched to the keyframe's regions."""
    lines, flats = character
    key = keyframe(lines[TIMES[0]], flats)
    colorizer = Colorizer(tiny_checkpoint, device="cpu")
    return {t: keyframe_outputs(key, lines[t], colorizer.colorize(lines[t], flats, ("flats",))["flats"])
            for t in TIMES[1:]}


@pytest.fixture(scope="module")
def krita_run(character, tiny_checkpoint, tmp_path_factory):
    hostlib.require_krita()
    lines, flats = character
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = Process("serve", "--bind", endpoint, "--checkpoint", str(tiny_checkpoint), "--device", "cpu")
    try:  # the server loads while Krita starts; the script inside waits for it
        plugin_dir = plugins.install(plugins.PLUGINS["krita"], tmp_path_factory.mktemp("pykrita"))
        data = tmp_path_factory.mktemp("krita-keyframes")
        grey = np.full((SIZE, SIZE, 4), (128, 128, 128, 255), np.uint8)  # colour frames to be overwritten
        layers = {"lines": {t: bgra(lines[t]) for t in TIMES},
                  "flats": {t: bgra(flats if t == TIMES[0] else grey) for t in TIMES}}
        (data / "anim.kra").write_bytes(animated_kra(SIZE, SIZE, layers))
        (data / "anim_still.kra").write_bytes(animated_kra(SIZE, SIZE, {"lines": layers["lines"]}))
        for t in TIMES:
            (data / f"lines_{t}.bgra").write_bytes(bgra(lines[t]))
        (data / "key_flats.bgra").write_bytes(bgra(flats))
        env = {"IRODORI_PLUGIN_DIR": str(plugin_dir), "IRODORI_DATA": str(data), "IRODORI_W": str(SIZE),
               "IRODORI_H": str(SIZE), "IRODORI_ENDPOINT": endpoint, "IRODORI_TIMES": ",".join(map(str, TIMES))}
        return hostlib.run_krita(hostlib.HOST_SCRIPTS, "krita_keyframes", "main", env=env, timeout=150).result
    finally:
        server.stop()


def check_frames(frames: dict, flats: np.ndarray, expected: dict) -> None:
    """The key frame holds the keyframe's own flats; every other frame exactly the in-process colouring."""
    assert np.array_equal(picture(frames[str(TIMES[0])]), flats)
    for t in TIMES[1:]:
        got = picture(frames[str(t)])
        assert (got[..., 3] == 255).all(), f"frame {t} covers the canvas"
        wrong = (got[..., :3] != expected[t]["flats"]).any(axis=2)
        assert not wrong.any(), f"frame {t}: {wrong.sum()} pixels differ from backend.inference's colouring"
    assert len({frames[str(t)] for t in TIMES}) == len(TIMES), "every frame its own colouring"


def check_unsure(result: dict, expected: dict) -> None:
    """The unsure layer marks exactly the regions in-process keyframe colouring marks (the new box of the last
    frame), and nothing on the keyframe."""
    marked = {t: int((expected[t]["unsure"][..., 0] == 255).sum()) for t in TIMES[1:]}
    assert marked[TIMES[-1]] >= 20 * 20, "the test's new box must be unsure in-process (else nothing is tested)"
    assert {int(t): n for t, n in result["unsure_pixels"].items()} == marked
    assert result["unsure"] == "Irodori unsure (frame 0)" and result["unsure_keys"] == list(TIMES)
    for t in TIMES[1:]:
        alpha = picture(result["unsure_frames"][str(t)])[..., 3]
        assert np.array_equal(alpha == 255, expected[t]["unsure"][..., 0] == 255), f"unsure marks of frame {t}"
    assert not picture(result["unsure_frames"][str(TIMES[0])])[..., 3].any(), "the keyframe is sure of itself"


def test_frames_are_coloured_into_the_colour_layers_keyframes(krita_run, character, expected):
    r = krita_run["in_place"]
    assert r["colour_uid"] == r["flats_uid"], "the colour layer given is the one written"
    assert r["flats_keys"] == list(TIMES) and r["line_same"] and r["key_same"]
    check_frames(r["frames"], character[1], expected)
    check_unsure(r, expected)
    assert r["stack"] == ["flats", "Irodori unsure (frame 0)", "lines"], "the marks directly above the colours"
    assert r["time"] == TIMES[0] + 1, "the playhead stays where the user left it"
    assert 0 < krita_run["seconds"] < 120


def test_a_still_colour_layer_gives_a_new_animated_layer(krita_run, character, expected):
    r = krita_run["still"]
    assert r["line_same"] and r["still_same"] and r["animated"] and r["keys"] == list(TIMES)
    assert r["colour"] == "Irodori flats (frame 0)"
    assert r["stack_before"] == ["lines", "still flats"]
    assert r["stack"] == ["Irodori flats (frame 0)", "Irodori unsure (frame 0)", "lines", "still flats"]
    check_frames(r["frames"], character[1], expected)
    check_unsure(r, expected)
    assert r["time"] == TIMES[-1] + 1


def test_bad_input_is_refused_clearly_and_adds_nothing(krita_run):
    wide = krita_run["other_size"]
    assert wide["code"] == "size_mismatch" and wide["stack_same"], wide
    assert f"{2 * SIZE}x{SIZE}" in wide["message"] and "same document" in wide["message"]
    still = krita_run["no_keyframes"]
    assert still["code"] == "not_animated" and still["stack_same"] and "no keyframes" in still["message"], still
    assert krita_run["bad_seconds"] < 60


def test_pages_of_other_documents_each_get_a_flats_layer(krita_run, expected):
    p = krita_run["pages"]
    assert p["lines_same"] and p["anim_stack"] == krita_run["still"]["stack"], "other documents untouched"
    assert p["stacks"][0] == ["Background", "page lines", "page flats"]
    assert p["stacks"][1:] == [["Background", "Irodori flats (page 1)", "page lines"],
                               ["Background", "Irodori flats (page 1)", "Irodori unsure (page 1)", "page lines"]]
    assert len(p["coloured"]) == len(TIMES) - 1
    for t, page in zip(TIMES[1:], p["coloured"]):
        assert page["colour"] == "Irodori flats (page 1)"
        got = picture(page["pixels"])
        assert np.array_equal(got[..., :3], expected[t]["flats"]) and (got[..., 3] == 255).all(), f"page at {t}"
        unsure = expected[t]["unsure"][..., 0] == 255
        assert page["unsure_pixels"] == {"None": int(unsure.sum())}
        if unsure.any():
            assert np.array_equal(picture(page["unsure_mark"])[..., 3] == 255, unsure)
        else:
            assert page["unsure"] is None
