"""Synthetic characters: determinism, re-rendering with another palette, masks that match colours and lines."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from training import synth
from training.synth import PARTS, Palette, item_seed, part_tones, random_character, random_palette, render

PART = {name: i for i, name in enumerate(PARTS)}


def _flat_interior(color: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one colour and no ink: free of antialiasing and lines."""
    c = color.astype(np.int16)
    same = np.ones(line.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= (np.roll(c, (dy, dx), (0, 1)) == c).all(-1)
    same &= ndimage.minimum_filter(line, 3) == 255
    same[[0, -1], :] = False
    same[:, [0, -1]] = False
    return same


def _tone_index(color: np.ndarray, tones: np.ndarray) -> np.ndarray:
    """For each pixel (N,3) the index of the matching tone (N,) or -1."""
    hit = (color[:, None, :].astype(np.int16) == tones[None].astype(np.int16)).all(-1)
    return np.where(hit.any(1), hit.argmax(1), -1)


def _boundaries(mask: np.ndarray) -> np.ndarray:
    b = np.zeros(mask.shape, bool)
    b[:, :-1] |= mask[:, 1:] != mask[:, :-1]
    b[:-1] |= mask[1:] != mask[:-1]
    return b


def test_api_shapes_and_parts():
    assert PARTS[0] == "background"
    assert {"hair", "skin", "eyes", "mouth", "top", "bottom", "collar", "accessory"} <= set(PARTS)
    pal = random_palette(3)
    assert len(pal.colors) == len(PARTS)
    with pytest.raises(ValueError):
        Palette(pal.colors[:-1])
    with pytest.raises(ValueError):
        Palette(((300, 0, 0),) * len(PARTS))


@pytest.mark.parametrize("size", [16, 63, 128])
def test_sizes_are_respected(size):
    r = render(random_character(5), random_palette(5), size)
    assert r.color.shape == (size, size, 3) and r.color.dtype == np.uint8
    assert r.line.shape == (size, size) and r.line.dtype == np.uint8
    assert r.mask.shape == (size, size) and r.mask.dtype == np.uint8
    assert r.mask.max() < len(PARTS)
    assert r.line.max() == 255 and r.line.min() < 64  # paper and real ink


def test_bad_sizes_and_seeds_are_refused():
    ch, pal = random_character(0), random_palette(0)
    for size in (8, 4096, 64.0, True):
        with pytest.raises(ValueError):
            render(ch, pal, size)
    with pytest.raises(TypeError):
        random_character("1")
    with pytest.raises(ValueError):
        random_palette(2**70)


def test_same_seed_gives_identical_bytes():
    a = render(random_character(11), random_palette(11), 96)
    b = render(random_character(11), random_palette(11), 96)
    assert random_character(11) == random_character(11)
    for field in ("color", "line", "mask"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()


def test_different_seeds_differ():
    renders = [render(random_character(s), random_palette(s), 64) for s in range(6)]
    for i in range(len(renders)):
        for j in range(i + 1, len(renders)):
            assert not np.array_equal(renders[i].mask, renders[j].mask)
            assert not np.array_equal(renders[i].line, renders[j].line)
    palettes = {random_palette(s) for s in range(20)}
    assert len(palettes) == 20


def test_rerender_keeps_geometry_and_swaps_only_colours():
    for seed in (1, 2, 3):
        ch = random_character(seed)
        pal_a, pal_b = random_palette(seed), random_palette(seed + 100)
        a, b = render(ch, pal_a, 128), render(ch, pal_b, 128)
        assert np.array_equal(a.line, b.line)
        assert np.array_equal(a.mask, b.mask)
        assert not np.array_equal(a.color, b.color)
        tones_a, tones_b = part_tones(pal_a), part_tones(pal_b)
        flat = _flat_interior(a.color, a.line)
        bg = (ndimage.minimum_filter(a.line, 3) == 255) & (ndimage.maximum_filter(a.mask, 3) == 0)
        assert (flat | bg).mean() > 0.4  # the checks below cover much of the picture
        for p in range(1, len(PARTS)):
            sel = flat & (a.mask == p)
            if not sel.any():
                continue
            t = _tone_index(a.color[sel], tones_a[p])
            assert (t >= 0).all(), f"part {PARTS[p]} has colours outside its palette tones"
            # the same tone of the other palette, pixel by pixel
            assert np.array_equal(b.color[sel], tones_b[p][t]), f"part {PARTS[p]} did not swap cleanly"
        # background: base colour or its gradient towards the highlight, in the new palette
        lo = np.minimum(tones_b[0, 0], tones_b[0, 2]).astype(int) - 1
        hi = np.maximum(tones_b[0, 0], tones_b[0, 2]).astype(int) + 1
        assert bg.any() and ((b.color[bg] >= lo) & (b.color[bg] <= hi)).all()


def test_mask_parts_carry_their_palette_colours():
    """Every part present in the colour image shows that part's base/shadow/highlight tone (not another's)."""
    for size in (64, 128, 256):
        for seed in range(6):
            pal = random_palette(seed)
            r = render(random_character(seed), pal, size)
            tones = part_tones(pal)
            flat = _flat_interior(r.color, r.line)
            paper = r.line == 255
            for p in range(1, len(PARTS)):
                # away from lines and tone edges: exactly one of the part's three tones
                sel = flat & (r.mask == p)
                assert (_tone_index(r.color[sel], tones[p]) >= 0).all(), f"{seed}/{size}: {PARTS[p]} off-palette"
                # anywhere off the ink (small parts too): inside the part's tone range, mostly exactly a tone
                sel = paper & (r.mask == p)
                if sel.sum() < 20:
                    continue
                c = r.color[sel].astype(int)
                lo, hi = tones[p].min(0).astype(int) - 1, tones[p].max(0).astype(int) + 1
                outside = (~((c >= lo) & (c <= hi)).all(1)).sum()  # rare: a 2x2 block across a thin line's gap
                assert outside <= max(2, 0.01 * len(c)), f"{seed}/{size}: {PARTS[p]} off its tones"
                if sel.sum() >= 200:  # small parts (mouth) are mostly blended tone edges
                    assert (_tone_index(r.color[sel], tones[p]) >= 0).mean() > 0.6, f"{seed}/{size}: {PARTS[p]}"
            if size >= 128:
                for p in ("background", "hair", "skin", "top"):
                    assert (flat & (r.mask == PART[p])).sum() > 50, f"{seed}/{size}: {p} has no flat colour"
                # cel shading is there: hair and skin show more than one tone
                for p in (PART["hair"], PART["skin"]):
                    used = set(_tone_index(r.color[flat & (r.mask == p)], tones[p]).tolist())
                    assert len(used) >= 2, f"seed {seed}: {PARTS[p]} has no cel shading"


@pytest.mark.parametrize("size", [64, 128])
def test_every_part_boundary_is_inked(size):
    for seed in range(6):
        r = render(random_character(seed), random_palette(seed), size)
        bnd = _boundaries(r.mask)
        near_ink = ndimage.binary_dilation(r.line < 200, iterations=1)
        assert bnd.sum() > 0 and not (bnd & ~near_ink).any()


def test_lines_lie_on_part_boundaries():
    for seed in range(6):
        r = render(random_character(seed), random_palette(seed), 128)
        ink = r.line < 128
        near_bnd = ndimage.binary_dilation(_boundaries(r.mask), iterations=2)
        # most ink lies on part boundaries (the rest: strand lines, folds, lashes, limb joints)
        assert (ink & near_bnd).sum() / ink.sum() > 0.7
        # the same lines moved off their places no longer fit (so the check above can fail)
        moved = np.roll(ink, (6, 6), (0, 1))
        assert (moved & near_bnd).sum() / moved.sum() < 0.6


def test_parts_are_big_enough_to_colour():
    area = {p: [] for p in PARTS}
    for seed in range(20):
        m = render(random_character(seed), random_palette(seed), 64).mask
        for i, p in enumerate(PARTS):
            area[p].append((m == i).mean())
    for p in ("background", "hair", "skin", "top"):
        assert min(area[p]) > 0.03, p
    for p in ("eyes", "mouth"):
        assert min(area[p]) > 0.0, p
    for p in ("bottom", "collar", "accessory"):
        assert np.mean(np.array(area[p]) > 0) >= 0.8, p
    figure = 1 - np.array(area["background"])
    assert figure.mean() > 0.35  # the character fills much of the frame


def test_palettes_are_varied_with_ordered_tones():
    pals = [random_palette(s) for s in range(60)]
    lum = np.array([0.299, 0.587, 0.114])
    for pal in pals:
        t = part_tones(pal).astype(float)
        for p in range(len(PARTS)):
            assert t[p, 1] @ lum < t[p, 0] @ lum < t[p, 2] @ lum, "shadow darker than base, base darker than highlight"
    hair = np.array([pal.colors[PART["hair"]] for pal in pals], float)
    top = np.array([pal.colors[PART["top"]] for pal in pals], float)
    assert hair.std(0).min() > 40 and top.std(0).min() > 40  # references differ clearly in colour
    # hair and clothes are drawn independently, not one scheme
    assert np.mean(np.abs(hair - top).sum(1) > 60) > 0.8


def test_write_dataset_is_deterministic_and_rerenderable(tmp_path, capsys):
    paths = synth.write_dataset(tmp_path / "a", count=3, size=48, seed=7)
    assert "3/3" in capsys.readouterr().err  # a progress bar for N > 1
    synth.write_dataset(tmp_path / "b", count=3, size=48, seed=7)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert len(names) == 3 * 3 + 1
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert [p.name for p in paths] == [f"{i:05d}_color.png" for i in range(3)]

    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["parts"] == list(PARTS) and meta["size"] == 48 and len(meta["items"]) == 3
    for i, item in enumerate(meta["items"]):
        assert item["character_seed"] == item["palette_seed"] == 7 * 1_000_003 + i == item_seed(7, i)
        r = render(random_character(item["character_seed"]), random_palette(item["palette_seed"]), item["size"])
        assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / item["color"])), r.color)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / item["line"])), r.line)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / item["mask"])), r.mask)

    other = synth.write_dataset(tmp_path / "c", count=1, size=48, seed=8)
    assert (tmp_path / "c" / "00000_mask.png").read_bytes() != (tmp_path / "a" / "00000_mask.png").read_bytes()
    assert len(other) == 1


def test_cli_writes_files_and_refuses_bad_input(tmp_path):
    from backend.tools.cli import main

    out = tmp_path / "set"
    assert main(["synth", "--out", str(out), "--count", "2", "--size", "32", "--seed", "3",
                 "--preview", str(tmp_path / "p.png")]) == 0
    assert (out / "00001_line.png").is_file() and (out / "meta.json").is_file()
    assert Image.open(tmp_path / "p.png").size == (4 * 32, 2 * 32)
    assert main(["synth", "--out", str(tmp_path / "x"), "--count", "0"]) == 2
    assert main(["synth", "--out", str(tmp_path / "y"), "--size", "5000"]) == 2
    (tmp_path / "file").write_text("not a folder")
    assert main(["synth", "--out", str(tmp_path / "file"), "--count", "1"]) == 2
