"""The inference pipeline and `irodori colorize`, on a tiny seeded checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backend.tools.cli import main as cli
from backend.inference.imageio import decode_image, encode_png, load_image, save_image
from backend.inference.pipeline import Colorizer, grey_u8, model_size, to_grey
from helpers import line_art, reference


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint):
    return Colorizer(tiny_checkpoint, device="cpu")


def test_odd_sizes_come_back_at_full_size(colorizer):
    for h, w in [(333, 517), (517, 333), (7, 3), (2, 2)]:
        out = colorizer.colorize(line_art(h, w), reference(), ("color", "flattened"))
        assert out["color"].shape == (h, w, 3) and out["color"].dtype == np.uint8
        assert out["flattened"].shape == (h, w, 3)


def test_tiny_images_refused_clearly(colorizer):
    with pytest.raises(ValueError, match="at least 2x2"):
        colorizer.colorize(np.zeros((1, 1), np.uint8), reference())
    with pytest.raises(ValueError, match="8-bit"):
        colorizer.colorize(np.zeros((8, 8), np.float32), reference())
    with pytest.raises(ValueError, match="unknown output"):
        colorizer.colorize(line_art(8, 8), reference(), ("sparkles",))


def test_large_image_handled(colorizer):
    out = colorizer.colorize(line_art(4000, 3000), reference())
    assert out["color"].shape == (4000, 3000, 3)
    assert model_size(4000, 3000, 32) == (32, 24)


def test_rgba_transparent_equals_white_background(colorizer):
    """A transparent layer is line art on white paper: same result as the opaque greyscale version."""
    rgba = line_art(60, 90, rgba=True)
    grey = np.where(rgba[..., 3] > 0, 0, 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, -1)
    a = colorizer.colorize(rgba, reference())["color"]
    b = colorizer.colorize(grey, reference())["color"]
    c = colorizer.colorize(rgb, reference())["color"]
    assert np.array_equal(a, b) and np.array_equal(b, c)
    assert to_grey(rgba)[0, 0] == 1.0


def test_grey_conversion_matches_the_luma_formula_for_every_layout():
    """grey_u8 (OpenCV, 8-bit) against lum * alpha + 255 * (1 - alpha) in float64: at most 1 level apart."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    rgba[0, :4, 3] = (0, 255, 0, 255)
    f = rgba.astype(np.float64)
    lum = f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114
    alpha = f[..., 3] / 255
    cases = [(rgba, lum * alpha + 255 * (1 - alpha)), (np.ascontiguousarray(rgba[..., :3]), lum),
             (np.ascontiguousarray(rgba[..., [0, 3]]), f[..., 0] * alpha + 255 * (1 - alpha)),
             (rgba[..., 0], f[..., 0])]
    for image, expected in cases:
        grey = grey_u8(image)
        assert grey.dtype == np.uint8 and grey.shape == (40, 50)
        assert np.abs(grey - expected).max() <= 1.0, image.shape
        assert np.array_equal(to_grey(image), grey.astype(np.float32) / 255)
    assert (grey_u8(rgba)[0, [0, 2]] == 255).all()  # fully transparent = paper, whatever its colour


def test_flattened_keeps_lines_dark_and_sharp(colorizer):
    art = line_art(64, 64)
    out = colorizer.colorize(art, reference(), ("color", "flattened"))
    ink = art == 0
    assert out["flattened"][ink].max() == 0  # exactly black where the line art is black, at full resolution
    assert np.array_equal(out["flattened"][~ink], out["color"][~ink])


def test_reference_changes_the_output(colorizer):
    art = line_art(64, 64)
    a = colorizer.colorize(art, reference(colour=(250, 10, 10)))["color"].astype(int)
    b = colorizer.colorize(art, reference(colour=(10, 10, 250), seed=5))["color"].astype(int)
    assert not np.array_equal(a, b)  # untrained, so only "it reaches the output" is asserted here


def test_deterministic_on_cpu(colorizer, tiny_checkpoint):
    art, ref = line_art(50, 70), reference()
    a = colorizer.colorize(art, ref)["color"]
    b = Colorizer(tiny_checkpoint, device="cpu").colorize(art, ref)["color"]
    assert np.array_equal(a, b)


def test_batch_equals_single(colorizer):
    reqs = [(line_art(40, 40, seed=i), reference(seed=i), ("color",), None) for i in range(3)]
    reqs.append((line_art(30, 60), reference(), ("color",), None))
    batch = colorizer.colorize_batch(reqs)
    for (art, ref, outs, res), got in zip(reqs, batch):
        single = colorizer.colorize(art, ref, outs, res)["color"]
        assert np.abs(single.astype(int) - got["color"].astype(int)).max() <= 1


def test_colour_layer_in_8_bits_matches_the_float_resize():
    # On the CPU the colour layer is clamped and rounded to 8 bits at the model's size and resized in 8 bits;
    # it must stay within one step of resizing the clamped floats and rounding at full size, up and down.
    import torch
    import torch.nn.functional as F

    from backend.inference.pipeline import colour_layer

    colour = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1  # a bit out of range
    for size in [(333, 517), (40, 56), (17, 23)]:
        got = colour_layer(colour, size)
        shrink = size[0] < 40
        ref = F.interpolate(colour.clamp(0, 1), size=size, mode="bilinear", align_corners=False, antialias=shrink)
        want = (ref[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        assert got.shape == (*size, 3) and got.dtype == np.uint8 and got.flags["C_CONTIGUOUS"]
        assert np.abs(got.astype(int) - want).max() <= 1, size


def test_decode_refuses_bombs_and_garbage():
    with pytest.raises(ValueError, match="not a readable image"):
        decode_image(b"\x89PNG\r\n\x1a\nrubbish")
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, format="PNG")  # a few KB that would decode to 400 MB
    with pytest.raises(ValueError, match="longest side|too large"):
        decode_image(buf.getvalue())
    arr = decode_image(encode_png(line_art(10, 12, rgba=True)))
    assert arr.shape == (10, 12, 4)


def test_cli_files_folders_and_never_overwrites_inputs(tmp_path, tiny_checkpoint, capsys):
    save_image(tmp_path / "in" / "a.png", line_art(40, 30, rgba=True))
    save_image(tmp_path / "in" / "sub" / "b.png", line_art(20, 50))
    save_image(tmp_path / "ref.jpg", reference())
    args = ["colorize", str(tmp_path / "in"), "-r", str(tmp_path / "ref.jpg"), "-o", str(tmp_path / "out"),
            "--checkpoint", str(tiny_checkpoint), "--output", "color", "--output", "flattened"]
    assert cli(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_color.png", "a_flattened.png", "b_color.png", "b_flattened.png"]
    assert load_image(tmp_path / "out" / "a_color.png").shape == (40, 30, 3)
    assert cli(args) == 2  # outputs exist: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    before = (tmp_path / "in" / "a.png").read_bytes()
    assert cli(["colorize", str(tmp_path / "in" / "a.png"), "-r", str(tmp_path / "ref.jpg"),
                "-o", str(tmp_path / "in" / "a.png"), "--checkpoint", str(tiny_checkpoint), "--overwrite"]) == 2
    assert (tmp_path / "in" / "a.png").read_bytes() == before


def test_cli_soft_color_writes_the_colour_of_a_colorizer_without_crisp_colour(tmp_path, tiny_checkpoint):
    art = line_art(40, 30)
    save_image(tmp_path / "a.png", art)
    save_image(tmp_path / "ref.png", reference())
    base = ["colorize", str(tmp_path / "a.png"), "-r", str(tmp_path / "ref.png"), "--checkpoint", str(tiny_checkpoint)]
    assert cli(base + ["-o", str(tmp_path / "soft.png"), "--soft-color"]) == 0
    assert cli(base + ["-o", str(tmp_path / "crisp.png")]) == 0
    soft = Colorizer(tiny_checkpoint, device="cpu", crisp=False).colorize(art, reference())["color"]
    crisp = Colorizer(tiny_checkpoint, device="cpu").colorize(art, reference())["color"]
    assert np.array_equal(load_image(tmp_path / "soft.png"), soft)
    assert np.array_equal(load_image(tmp_path / "crisp.png"), crisp)
    assert cli(base + ["-o", str(tmp_path / "x.png"), "--soft-color", "--server", "tcp://127.0.0.1:1"]) == 2


def test_demo_writes_the_overview_and_the_flats_picture(tmp_path, tiny_checkpoint, capsys):
    assert cli(["demo", "--out", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 0
    coloured = sorted(tmp_path.glob("sketch_*_with_reference_*.png"))
    assert len(coloured) == 9  # 3 bundled sketches x 3 bundled references
    overview = load_image(tmp_path / "demo.png")
    assert overview.shape[0] == 3 * 192 + 2 * 4  # one row per sketch
    flats_row = load_image(tmp_path / "flats.png")
    assert flats_row.shape[0] == 192 and flats_row.shape[1] == 5 * 192 + 4 * 4  # five square tiles
    out = capsys.readouterr().out
    assert "flats under the line art" in out
    assert not (tmp_path / "hints.png").exists() and "hint dots" not in out  # the tiny model takes no hints


def test_demo_with_a_hint_model_shows_each_dot_in_exactly_its_colour(tmp_path):
    from backend.tools.demo import HINT_DOTS
    from helpers import make_tiny_hint_checkpoint

    ckpt = make_tiny_hint_checkpoint(tmp_path / "tiny-hints")
    assert cli(["demo", "--out", str(tmp_path / "out"), "--checkpoint", str(ckpt), "--device", "cpu"]) == 0
    row = load_image(tmp_path / "out" / "hints.png")
    assert row.shape == (256, 5 * 256 + 4 * 4, 3)  # line art | reference | colour | dots | colour with hints
    plain, dots, hinted = (row[:, i * 260:i * 260 + 256].astype(int) for i in (2, 3, 4))
    for colour, centres in HINT_DOTS.items():
        for y, x in centres:  # each dot's area takes its colour exactly, whatever the untrained model says
            assert tuple(dots[y, x]) == colour and tuple(hinted[y, x]) == colour
    assert np.abs(hinted - plain).mean() > 5  # whole areas changed, not just the dots


_ALLOCATOR_PROBE = """
import json, sys
import numpy as np
import backend

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

base = rss_mib()
blocks = [np.ones(2 << 20, np.float32) for _ in range(40)]  # 40 x 8 MiB, like a forward's activations
del blocks
kept = rss_mib()
backend.release_freed_memory()
print(json.dumps({"keeps": backend.KEEPS_FREED_MEMORY, "kept": kept - base, "released": rss_mib() - base}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_memory_is_kept_between_calls_and_given_back_on_request():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    run = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], env=env, capture_output=True, text=True,
                         check=True)
    probe = json.loads(run.stdout)
    assert probe["keeps"] and probe["kept"] > 200, probe  # 320 MiB freed but kept for the next call
    assert probe["released"] < probe["kept"] - 200, probe  # and handed back to the system
    run = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], env={**env, "MALLOC_ARENA_MAX": "2"},
                         capture_output=True, text=True, check=True)
    assert not json.loads(run.stdout)["keeps"]  # a user's own malloc settings win
