"""Colour hints (issue 22): the pipeline, the protocol and server, and `irodori colorize --hints`."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend import protocol as P
import torch

from backend.inference.colour import ciede2000, rgb_to_lab
from backend.inference.hints import SPECK, hint_fill, model_hints
from backend.model.preprocess import hint_planes
from backend.inference.imageio import load_image, save_image
from backend.inference.pipeline import Colorizer
from backend.protocol import Limits
from backend.service.server import Server, ServerConfig
from backend.tools.cli import main as cli
from helpers import free_port, reference, tiny_hint_checkpoint  # noqa: F401  (a fixture)
from server_fixtures import start_server

H, W = 96, 128
PINK, TEAL = (255, 0, 200), (0, 128, 128)
# small limits keep the oversize case cheap; the server gets the same ones on its command line
LIMITS = Limits(max_side=1024, max_pixels=256 * 256, max_reference_pixels=256 * 256, max_encoded_bytes=1024 ** 2)
LIMIT_FLAGS = ("--max-side", "1024", "--max-pixels", str(256 * 256), "--max-reference-pixels", str(256 * 256),
               "--max-encoded-mb", "1")


def boxed() -> np.ndarray:
    """A closed rectangle (3 px lines) on white: the inside and the outside are two regions."""
    art = np.full((H, W), 255, np.uint8)
    art[20:76, 30:33] = art[20:76, 90:93] = 0
    art[20:23, 30:93] = art[73:76, 30:93] = 0
    return art


INSIDE = (slice(30, 66), slice(40, 83))  # well inside the rectangle
OUTSIDE = (slice(0, 12), slice(0, W))  # the band above it


def dot(colour=PINK, at=(45, 60), size=3, hints: np.ndarray | None = None) -> np.ndarray:
    hints = np.zeros((H, W, 4), np.uint8) if hints is None else hints
    y, x = at
    hints[y:y + size, x:x + size] = (*colour, 255)
    return hints


def delta_e(pixels: np.ndarray, colour) -> np.ndarray:
    return ciede2000(rgb_to_lab(pixels.reshape(-1, 3)), rgb_to_lab(np.array([colour], np.uint8)))


@pytest.fixture(scope="module")
def colorizer(tiny_hint_checkpoint):
    return Colorizer(tiny_hint_checkpoint, device="cpu", limits=LIMITS)


# ------------------------------------------------------------------------------------------- pipeline
def test_a_hinted_region_takes_exactly_the_hint_colour_in_flats_and_colour(colorizer):
    art, ref = boxed(), reference()
    hints = dot(PINK, size=3)  # 9 pink pixels ...
    dot(TEAL, at=(60, 70), size=2, hints=hints)  # ... outvote 4 teal ones in the same region
    art_before, hints_before = art.copy(), hints.copy()
    out = colorizer.colorize(art, ref, ("color", "flats", "shading", "flattened"), hints=hints)
    assert (out["flats"][INSIDE] == PINK).all()
    assert (out["color"][INSIDE] == PINK).all() and delta_e(out["color"][INSIDE], PINK).max() < 1
    assert (out["shading"][INSIDE] == 128).all()  # colour and flats agree there
    assert np.array_equal(art, art_before) and np.array_equal(hints, hints_before)  # inputs never change
    soft = Colorizer(colorizer.name, device="cpu", crisp=False).colorize(art, ref, ("color",), hints=hints)
    assert delta_e(soft["color"][INSIDE], PINK).max() < 1


def test_a_hint_on_one_side_of_a_closed_line_leaves_the_other_side_alone(colorizer):
    art, ref = boxed(), reference()
    plain = colorizer.colorize(art, ref, ("color", "flats"))
    hinted = colorizer.colorize(art, ref, ("color", "flats"), hints=dot(PINK))
    assert not (plain["flats"][INSIDE] == PINK).all()  # the hint did something
    assert np.array_equal(hinted["flats"][OUTSIDE], plain["flats"][OUTSIDE])
    assert not (hinted["flats"][OUTSIDE] == PINK).all(axis=-1).any()


def test_the_generator_reads_the_hints_at_its_own_size(colorizer):
    seen = []
    hook = colorizer.generator.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["hints"]), with_kwargs=True)
    try:
        colorizer.colorize(boxed(), reference(), hints=dot(PINK, at=(45, 60), size=1))  # one pixel of 128x96
        colorizer.colorize(boxed(), reference())
    finally:
        hook.remove()
    hinted, none = seen
    assert hinted.shape == (1, 4, 24, 32)  # the model sees 24x32 (a multiple of its U-net step: no padding)
    mask = hinted[0, 3]
    assert mask.sum() == 1 and mask[45 * 24 // H, 60 * 32 // W] == 1  # the dot survives the 4x shrink
    colour = hinted[0, :3, 45 * 24 // H, 60 * 32 // W] * 255
    assert np.allclose(colour.numpy(), PINK, atol=0.5)
    assert not none.any()


def test_no_hints_is_as_before(colorizer, tiny_checkpoint):
    art, ref = boxed(), reference()
    outs = ("color", "flats", "shading", "flattened")
    none = colorizer.colorize(art, ref, outs)
    empty = colorizer.colorize(art, ref, outs, hints=np.zeros((H, W, 4), np.uint8))  # all transparent
    assert all(np.array_equal(none[k], empty[k]) for k in outs)
    plain = Colorizer(tiny_checkpoint, device="cpu")
    a = plain.colorize(art, ref, outs)
    b = plain.colorize_batch([(art, ref, outs, None, None)])[0]
    assert all(np.array_equal(a[k], b[k]) for k in outs)
    assert plain.info["hints"] is False and colorizer.info["hints"] is True


def test_hints_to_a_model_without_hint_channels_name_the_model(tiny_checkpoint):
    plain = Colorizer(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="hint_channels 4") as err:
        plain.colorize(boxed(), reference(), hints=dot())
    assert str(tiny_checkpoint) in str(err.value)


@pytest.mark.parametrize("canvas, model", [((96, 128), (24, 32)), ((100, 130), (24, 32)), ((37, 53), (10, 53)),
                                           ((20, 30), (40, 60)), ((24, 32), (24, 32))])
def test_the_model_planes_are_hint_planes_however_the_canvas_is_pooled(canvas, model):
    """model_hints works from the hint pixels alone when it shrinks; it must give hint_planes' planes."""
    rng = np.random.default_rng(sum(canvas))
    hints = np.zeros((*canvas, 4), np.uint8)
    k = canvas[0] * canvas[1] // 20
    hints[rng.integers(0, canvas[0], k), rng.integers(0, canvas[1], k)] = np.concatenate(
        [rng.integers(0, 256, (k, 3)), rng.integers(1, 256, (k, 1))], axis=1)
    t = torch.from_numpy(hints).permute(2, 0, 1)[None]
    want = hint_planes(t[:, :3].float() / 255, (t[:, 3:] > 0).float(), model)
    got = model_hints(hints, model, torch.device("cpu"))
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6)
    assert torch.equal(got[:, 3], want[:, 3])  # the same cells hinted


@pytest.mark.parametrize("h, w", [(96, 128), (600, 1100)])  # worked out at full size; shrunk 4x
def test_in_the_colour_layer_a_hint_keeps_to_the_area_the_ink_closes_around_it(h, w):
    """One region (as the segmentation leaves areas too thin for its ball) that a line splits in two, with
    a closed speck in each half: flats paint the whole region, the colour layer the hinted half alone."""
    labels = np.ones((h, w), np.int32)
    ink = np.zeros((h, w), bool)
    ink[:, w // 2:w // 2 + 2] = True
    side = max(2, int((SPECK * h * w) ** 0.5) // 2)  # a square box holding well under SPECK of the canvas
    for x in (w // 4, 3 * w // 4):
        ink[h // 4:h // 4 + side, x:x + side] = True
        ink[h // 4 + 1:h // 4 + side - 1, x + 1:x + side - 1] = False
    left, right = (slice(0, h), slice(0, w // 2 - 8)), (slice(0, h), slice(w // 2 + 10, w))
    hints = np.zeros((h, w, 4), np.uint8)
    hints[2 * h // 3:2 * h // 3 + 3, w // 8:w // 8 + 3] = (*PINK, 255)

    def painted(fill, which):
        out = np.zeros((h, w, 3), np.uint8)
        getattr(fill, which).paint(out)
        return out

    fill = hint_fill(hints, labels, ink)
    assert (painted(fill, "flats") == PINK).all()  # the region takes the hint colour exactly
    layer = painted(fill, "layer")
    assert (layer[left] == PINK).all()  # the hinted half, its speck and its side of the line included
    assert not layer[right].any()  # the other half and its speck: the model's colour, unpainted
    hints[h // 3:h // 3 + 2, 7 * w // 8:7 * w // 8 + 2] = (*TEAL, 255)  # fewer pixels than the pink dot
    fill = hint_fill(hints, labels, ink)
    assert (painted(fill, "flats") == PINK).all()  # the region's majority colour
    layer = painted(fill, "layer")
    assert (layer[left] == PINK).all() and (layer[right] == TEAL).all()  # each half its own hint
    for fill in (hint_fill(hints, labels), hint_fill(hints, labels, np.zeros((h, w), bool))):
        assert fill.layer is fill.flats  # without ink, or no line: one area, the flats' paint


def test_bad_hints_arrays_are_refused(colorizer):
    with pytest.raises(ValueError, match="RGBA"):
        colorizer.colorize(boxed(), reference(), hints=np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="the size of the line art"):
        colorizer.colorize(boxed(), reference(), hints=np.zeros((H, W + 1, 4), np.uint8))


# ------------------------------------------------------------------------------------------- server
@pytest.fixture(scope="module")
def server(tiny_hint_checkpoint):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_server(endpoint, tiny_hint_checkpoint, *LIMIT_FLAGS)
    yield endpoint
    proc.stop()


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_server_follows_hints_and_refuses_bad_ones_then_keeps_serving(server, colorizer):
    art, ref = boxed(), reference()
    bgra = dot(PINK)[..., [2, 1, 0, 3]].copy()
    with P.Client(server, timeout=60) as client:
        assert client.info()["model"]["hints"] is True
        bad = {
            "another size": np.zeros((H, W + 2, 4), np.uint8),
            "3 channels": np.zeros((H, W, 3), np.uint8),
            "a JPEG (no alpha)": png(np.zeros((H, W, 3), np.uint8), "JPEG"),
            "over the limits": np.zeros((300, 300, 4), np.uint8),
        }
        codes = {}
        for what, hints in bad.items():
            with pytest.raises(P.IrodoriError) as err:
                client.colorize(art, ref, ("flats",), hints=hints)
            codes[what] = err.value.code
            assert "hints" in err.value.message, (what, err.value.message)
        assert codes == {"another size": "bad_request", "3 channels": "bad_request",
                         "a JPEG (no alpha)": "bad_request", "over the limits": "too_large"}
        for hints in (P.Pixels(W, H, "BGRA", bgra.tobytes()), png(dot(PINK))):  # raw/shm BGRA, then a PNG
            out = client.colorize(art, ref, ("flats",), hints=hints)["flats"].to_array()
            assert (out[INSIDE][..., :3] == PINK).all()
        want = colorizer.colorize(art, ref, ("flats",), hints=dot(PINK))["flats"]
        assert np.array_equal(out[..., :3], want)  # the server gives what the pipeline gives


def test_a_server_whose_model_takes_no_hints_says_so_and_keeps_serving(tiny_checkpoint):
    srv = Server(Colorizer(tiny_checkpoint, device="cpu"), ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}"))
    thread = srv.start_thread()
    try:
        with P.Client(srv.endpoint, timeout=60) as client:
            assert client.info()["model"]["hints"] is False
            with pytest.raises(P.IrodoriError) as err:
                client.colorize(boxed(), reference(), hints=dot())
            assert err.value.code == "bad_request" and str(tiny_checkpoint) in err.value.message
            assert client.colorize(boxed(), reference())["color"].width == W
    finally:
        srv.stop()
        thread.join(30)


# ------------------------------------------------------------------------------------------- CLI
def test_cli_hints_from_a_file_a_folder_and_through_a_server(tmp_path, tiny_hint_checkpoint, server, capsys):
    save_image(tmp_path / "in" / "a.png", boxed())
    save_image(tmp_path / "in" / "b.png", boxed())
    save_image(tmp_path / "ref.png", reference())
    save_image(tmp_path / "hints" / "a.png", dot(PINK))  # none for b
    save_image(tmp_path / "one.png", dot(TEAL))
    base = ["colorize", "-r", str(tmp_path / "ref.png"), "--checkpoint", str(tiny_hint_checkpoint),
            "--output", "flats"]
    assert cli([*base, str(tmp_path / "in"), "--hints", str(tmp_path / "hints"), "-o", str(tmp_path / "dir")]) == 0
    assert capsys.readouterr().err.count("no hints file") == 1
    assert (load_image(tmp_path / "dir" / "a_flats.png")[INSIDE] == PINK).all()
    assert not (load_image(tmp_path / "dir" / "b_flats.png")[INSIDE] == PINK).all()
    for where, extra in (("file", []), ("served", ["--server", server])):
        assert cli([*base, str(tmp_path / "in" / "a.png"), "--hints", str(tmp_path / "one.png"),
                    "-o", str(tmp_path / f"{where}.png"), *extra]) == 0
        assert (load_image(tmp_path / f"{where}.png")[INSIDE] == TEAL).all()
    assert cli([*base, str(tmp_path / "in" / "a.png"), "--hints", str(tmp_path / "ref.png"),  # no alpha
                "-o", str(tmp_path / "x.png")]) == 2
    assert "RGBA" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- bench
def test_the_bench_hints_row_times_requests_with_and_without_hints(tiny_checkpoint):
    from backend.tools.bench import report
    from backend.tools.bench.hints import child_hints

    row = child_hints({"size": 64, "rounds": 1, "device": "cpu", "checkpoint": str(tiny_checkpoint)})
    assert row["plain_ms"] > 0 and row["hints_ms"] > 0 and row["plain_cpu_ms"] > 0 and row["size"] == 64
    assert "| hints | 64x64 request" in report.table({"hints": [row]})
    (target,) = report.targets({"hints": [row]})
    assert target["name"].startswith("hints 64x64") and target["met"] == (row["added_pct"] <= 5.0)
