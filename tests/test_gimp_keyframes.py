"""The GIMP 3 batch procedure with a keyframe (issue 23), inside REAL GIMP 3.0 against a REAL backend.

A folder holds three frames of a synthetic character moving, and the keyframe: frame 0's line art and its
exact flats. The plug-in (installed and served as in test_gimp_plugin.py) colours the folder from the
keyframe in one gimp-console session (tests/host_scripts/gimp_keyframes.py); each frame must come out as
`irodori colorize FRAMES --keyframe LINE COLOUR`, run in-process here, writes it. Skipped without the chroot.
"""
from __future__ import annotations

import base64
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

import hostlib
from test_gimp_plugin import backend, installed_plugin, ok, png_bytes  # noqa: F401  (fixtures)
from training.eval_keyframes import sequence

SEED, SIZE = 10_000_001, 192  # a held-out character (as in test_keyframe_server.py), small frames
FRAMES = ("f1", "f2", "f3")


@pytest.fixture(scope="module")
def frames():
    """Line art (grey, anti-aliased) of frames 0..3, and frame 0's exact flats (each part's colour). Frame 3
    has a new closed box in the corner, split in two, that the keyframe has no counterpart for: unsure."""
    rendered, palette = sequence(SEED, 1 + len(FRAMES), SIZE)
    lines = [r.line.copy() for r in rendered]
    cv2.rectangle(lines[3], (4, 4), (40, 40), 0, 2)
    cv2.line(lines[3], (4, 22), (40, 22), 0, 2)
    return lines, palette[rendered[0].mask]


@pytest.fixture(scope="module")
def cli_outputs(frames, tiny_checkpoint, tmp_path_factory) -> dict[str, np.ndarray]:
    """What `irodori colorize f1.png f2.png f3.png --keyframe key.png key_flats.png` writes, in-process, with
    the served model: {"f1_flats": ..., "f1_unsure": ...}."""
    from backend.inference.imageio import load_image, save_image
    from backend.tools.cli import main as cli

    lines, flats = frames
    tmp = tmp_path_factory.mktemp("cli")
    paths = [save_image(tmp / f"{name}.png", line) for name, line in zip(FRAMES, lines[1:])]
    save_image(tmp / "key.png", lines[0])
    save_image(tmp / "key_flats.png", flats)
    assert cli(["colorize", *map(str, paths), "--keyframe", str(tmp / "key.png"), str(tmp / "key_flats.png"),
                "--checkpoint", str(tiny_checkpoint), "-o", str(tmp / "out")]) == 0
    return {p.stem: load_image(p) for p in sorted((tmp / "out").glob("*.png"))}


@pytest.fixture(scope="module")
def session(installed_plugin, backend, frames) -> dict:  # noqa: F811  (fixtures imported above)
    lines, flats = frames
    files = {f"frame_{name}.png": png_bytes(line) for name, line in zip(FRAMES, lines[1:])}
    files.update({"frame_key.png": png_bytes(lines[0]), "frame_key_flats.png": png_bytes(flats),
                  "small_flats.png": png_bytes(flats[:100]),
                  "params.json": json.dumps({"endpoint": backend}).encode()})
    return hostlib.run_gimp((hostlib.HOST_SCRIPTS / "gimp_keyframes.py").read_text(), files, timeout=150)


def layer_pixels(layer: dict) -> np.ndarray:
    w, h = layer["size"]
    return np.frombuffer(base64.b64decode(layer["pixels"]), np.uint8).reshape(h, w, 4)


@pytest.mark.gimp
def test_batch_colours_each_frame_from_the_keyframe_as_the_cli_does(session, frames, cli_outputs):
    """xcf keeps the layers: the flats equal the CLI's pixel for pixel, and the unsure mask rides along hidden.
    The keyframe's own two files sit in the folder and are skipped."""
    lines, key_flats = frames
    report = ok(session["xcf"])
    assert report["status"] == "success", report.get("message")
    assert report["written"] == 3 and sorted(report["outputs"]) == [f"{name}.xcf" for name in FRAMES]
    key_colours = {tuple(c) for c in key_flats.reshape(-1, 3)}
    for name, line in zip(FRAMES, lines[1:]):
        layers = report["outputs"][f"{name}.xcf"]
        assert [layer["name"] for layer in layers[1:]] == ["Irodori unsure", "Irodori flats"], name
        assert layers[0]["mode"] == "multiply" and all(layer["size"] == [SIZE, SIZE] for layer in layers)
        assert np.array_equal(layer_pixels(layers[0])[..., 0], line)  # the line art as it was
        flats = layer_pixels(layers[2])
        assert (flats[..., 3] == 255).all()
        assert np.array_equal(flats[..., :3], cli_outputs[f"{name}_flats"]), name
        assert {tuple(c) for c in flats[..., :3].reshape(-1, 3)} <= key_colours  # only the keyframe's colours
        unsure = layer_pixels(layers[1])
        assert not layers[1]["visible"]
        want = cli_outputs[f"{name}_unsure"][..., 0]  # white on the unsure regions, else black
        assert np.array_equal(unsure[..., 3], want), name
        assert (unsure[want > 0][:, :3] == 255).all()
    assert cli_outputs["f3_unsure"][8:19, 8:37].all() and not cli_outputs["f1_unsure"].any()  # the new box


@pytest.mark.gimp
def test_batch_with_a_keyframe_and_default_arguments_writes_the_flats_under_the_line_art(session, frames,
                                                                                      cli_outputs):
    """No reference file (the keyframe's colouring is the reference), output color, png: the keyframe's flats
    multiplied by the line art: the flats exactly on the paper, black on the ink."""
    lines, _ = frames
    report = ok(session["png"])
    assert report["status"] == "success", report.get("message")
    assert sorted(report["outputs"]) == [f"{name}.png" for name in FRAMES]
    for name, line in zip(FRAMES, lines[1:]):
        out = np.array(Image.open(io.BytesIO(base64.b64decode(report["outputs"][f"{name}.png"]))).convert("RGB"))
        paper, ink = line == 255, line == 0
        assert paper.mean() > 0.5 and ink.any()
        assert np.array_equal(out[paper], cli_outputs[f"{name}_flats"][paper]), name
        assert (out[ink] == 0).all()


@pytest.mark.gimp
def test_flattened_output_with_a_keyframe_is_one_layer(session, frames, cli_outputs):
    report = ok(session["flattened"])
    assert report["status"] == "success", report.get("message")
    [layer] = report["outputs"]["f1.xcf"]
    assert layer["name"] == "Irodori flattened"
    out, line = layer_pixels(layer)[..., :3], frames[0][1]
    assert np.array_equal(out[line == 255], cli_outputs["f1_flats"][line == 255]) and (out[line == 0] == 0).all()


@pytest.mark.gimp
def test_bad_keyframes_are_refused_with_a_fix_and_nothing_is_written(session):
    """A missing file never reaches the plug-in: GIMP itself refuses a file argument that does not exist."""
    for step, (status, phrases) in {
            "sizes_differ": ("execution-error", ("is 192x192 but its colouring", "is 192x100", "the same size")),
            "missing": ("calling-error", ("argument 'keyframe-lineart'", "out of range")),
            "half": ("execution-error", ("a keyframe is two files",))}.items():
        report = ok(session[step])
        assert report["status"] == status, (step, report)
        assert all(p in report["message"] for p in phrases), (step, report["message"])
        assert not report["folder_exists"] and not report["outputs"], step


@pytest.mark.gimp
def test_one_layer_procedure_takes_a_keyframe_as_two_layers(session, cli_outputs):
    """Colorize from Reference with keyframe layers of other open images and no reference: the flats (as the
    CLI's) and the hidden unsure mask go under the line art; keyframe layers of two sizes add nothing."""
    report = ok(session["one_layer"])
    assert report["status"] == "success", report.get("message")
    layers = report["layers"]
    assert [layer["name"] for layer in layers[1:]] == ["Irodori unsure", "Irodori flats"]
    assert np.array_equal(layer_pixels(layers[2])[..., :3], cli_outputs["f1_flats"])
    assert not layers[1]["visible"] and not layer_pixels(layers[1])[..., 3].any()
    refused = ok(session["one_layer_sizes_differ"])
    assert refused["status"] == "execution-error"
    assert "is 192x192 but its colouring layer is 192x100" in refused["message"], refused["message"]
    assert len(refused["layers"]) == 1
