"""Keyframe colouring (issue 23): matching a frame's regions to a coloured keyframe's, chains, the synthetic
sequences it is measured on, the evaluation and the CLI. Real segmentation, real synthetic characters."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.inference.keyframes import (Keyframe, colour_frame, colour_sequence, frame_regions, keyframe,
                                         nearest_key, paint, region_colours)
from training.eval_keyframes import MIN_REGION, evaluate, sequence, truth
from training.synth import Character, character_frames, random_character, random_palette, render, write_dataset
from training.synth.base import Rng
from training.synth.character import Placement, draw_figure
from training.synth.figure import Builder, random_figure

SEED = 10_000_000  # a held-out character


@pytest.fixture(scope="module")
def frames():
    rendered, palette = sequence(SEED, 3, 256)
    return rendered, palette


def _counted(regions) -> np.ndarray:
    keep = regions.area >= MIN_REGION
    keep[0] = False
    return keep


def _assert_exact(got, line: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> None:
    """Every region of >= MIN_REGION px has exactly its part's colour."""
    regions = got.regions
    part = truth(regions.labels, mask, frame_regions(line)[1])
    keep = _counted(regions)
    wrong = np.flatnonzero(keep & ~(got.colours == palette[part]).all(1))
    assert wrong.size == 0, f"regions {wrong.tolist()} wrongly coloured"


def test_identical_frame_is_coloured_exactly(frames):
    rendered, palette = frames
    r = rendered[0]
    key = keyframe(r.line, palette[r.mask])
    got = colour_frame(key, r.line)
    assert np.array_equal(got.flats, paint(key.regions.labels, key.colours))
    assert not got.unsure.any()
    assert np.array_equal(got.assignment.match[1:], np.arange(1, key.regions.count + 1))
    _assert_exact(got, r.line, r.mask, palette)
    # the model's guess as a matching term; a colour layer on transparent: its clear pixels do not vote
    assert np.array_equal(colour_frame(key, r.line, got.flats, use_model=True).flats, got.flats)
    rgba = np.dstack([palette[r.mask], np.full(r.mask.shape, 255, np.uint8)])
    rgba[:, np.arange(rgba.shape[1]) % 3 != 0] = 0  # two columns in three transparent (and black)
    assert np.array_equal(keyframe(r.line, rgba).colours, key.colours)


def _placed(scale: float, x: float, y: float, size: int = 384):
    """The held-out character drawn whole inside the frame (head radius `scale`, head centre x, y in frame
    units), in its own palette: (line, mask)."""
    rng = Rng(f"irodori-synth-character-{SEED}")  # random_character's stream: the same drawing
    fig = random_figure(rng)
    b = Builder(tilt=fig.tilt)
    draw_figure(b, rng, fig)
    character = Character(SEED, b.shapes(Placement(scale, x, y, 0.0, 1.0).to_frame), (0.0, 0.0), (0.0, 0.0), None)
    r = render(character, random_palette(SEED), size)
    assert (r.mask[[0, -1]] == 0).all() and (r.mask[:, [0, -1]] == 0).all()  # nothing cut by the frame
    return r.line, r.mask


def test_translated_and_scaled_copy_is_coloured_exactly(frames):
    _, palette = frames
    key_line, key_mask = _placed(0.09, 0.4, 0.25)
    key = keyframe(key_line, palette[key_mask])
    m = np.array([[1.2, 0, 40.0], [0, 1.2, -30.0]], np.float32)  # 20% larger, moved right and up
    line = cv2.warpAffine(key_line, m, key_line.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=255)
    mask = cv2.warpAffine(key_mask, m, key_line.shape[::-1], flags=cv2.INTER_NEAREST, borderValue=0)
    got = colour_frame(key, line)
    _assert_exact(got, line, mask, palette)
    assert not got.unsure.any()


def test_new_region_without_counterpart_is_unsure(frames):
    rendered, palette = frames
    r = rendered[0]
    key = keyframe(r.line, palette[r.mask])
    line = r.line.copy()
    cv2.rectangle(line, (4, 4), (40, 40), 0, 2)  # a closed box in the corner of the background: new
    cv2.line(line, (4, 22), (40, 22), 0, 2)  # ... split in two, so neither half resembles the background
    got = colour_frame(key, line)
    inside = np.zeros(line.shape, bool)
    inside[8:19, 8:37] = True
    inside[26:37, 8:37] = True
    assert got.unsure[inside].all()
    fallback = np.full((*line.shape, 3), 7, np.uint8)  # the model's flats: unsure regions take their colour,
    fallback[..., 0] = 250  # snapped to the nearest keyframe colour
    got = colour_frame(key, line, fallback, snap=False)
    assert (got.flats[inside] == (250, 7, 7)).all()
    assert not got.unsure[r.mask == 2].any()  # the skin, unchanged, stays sure


def test_bad_input_gets_clear_errors(frames):
    rendered, palette = frames
    r = rendered[0]
    with pytest.raises(ValueError, match="same size"):
        keyframe(r.line, palette[r.mask][:100])
    with pytest.raises(ValueError, match="no lines"):
        keyframe(np.full((64, 64), 255, np.uint8), np.zeros((64, 64, 3), np.uint8))
    scribble = np.full((64, 64), 255, np.uint8)
    cv2.line(scribble, (20, 30), (40, 30), 0, 2)  # ink that encloses nothing
    with pytest.raises(ValueError, match="no closed regions"):
        keyframe(scribble, np.zeros((64, 64, 3), np.uint8))
    key = keyframe(r.line, palette[r.mask])
    with pytest.raises(ValueError, match="empty"):
        colour_frame(key, np.zeros((0, 0), np.uint8))
    with pytest.raises(ValueError, match="no lines"):
        colour_frame(key, np.full((64, 64), 255, np.uint8))
    with pytest.raises(ValueError, match="8-bit"):
        colour_frame(key, r.line.astype(np.float32))
    with pytest.raises(ValueError, match="same size"):
        colour_frame(key, r.line, np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="chain"):
        colour_sequence({0: key}, [r.line], chain="sideways")


def test_chains_and_the_nearest_keyframe(frames):
    rendered, palette = frames
    assert nearest_key(3, [0, 5]) == 5 and nearest_key(2, [0, 4]) == 0 and nearest_key(9, [0, 5]) == 5
    regions = [frame_regions(r.line) for r in rendered]
    keys = {}
    for i, (r, (reg, paper)) in enumerate(zip(rendered, regions)):
        keys[i] = Keyframe.from_regions(reg, region_colours(reg.labels, palette[r.mask], paper))
    other = palette[::-1].copy()  # frame 2's keyframe in another palette: frame 2 and only it takes it
    r2, (reg2, paper2) = rendered[2], regions[2]
    keys2 = Keyframe.from_regions(reg2, region_colours(reg2.labels, other[r2.mask], paper2))
    for chain in ("keyframe", "previous"):
        got = colour_sequence({0: keys[0], 2: keys2}, [reg for reg, _ in regions], chain)
        assert np.array_equal(got[0].colours, keys[0].colours) and np.array_equal(got[2].colours, keys2.colours)
        reg, paper = regions[1]
        part = truth(reg.labels, rendered[1].mask, paper)
        keep = _counted(reg)
        assert (got[1].colours[keep] == palette[part][keep]).all(1).mean() >= 0.9  # frame 1: nearer frame 0


def test_synthetic_sequences_move_and_are_deterministic(tmp_path):
    seq = character_frames(SEED, 4)
    assert seq[0] == random_character(SEED)  # frame 0 is the still character
    assert seq == character_frames(SEED, 4)
    assert seq[1] != seq[0] and seq[3] != seq[1]
    with pytest.raises(ValueError, match="frames"):
        character_frames(SEED, 0)
    write_dataset(tmp_path / "s", count=2, size=32, seed=3, frames=3)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["frames"] == 3 and len(meta["items"]) == 6
    assert meta["items"][4]["frame"] == 1 and len(meta["items"][4]["part_colors"]) == 9
    a, b = (np.asarray(Image.open(tmp_path / "s" / f"00001_00{t}_mask.png")) for t in (0, 2))
    assert a.shape == (32, 32) and not np.array_equal(a, b)
    from backend.tools.cli import main

    assert main(["synth", "--out", str(tmp_path / "c"), "--count", "1", "--frames", "2", "--size", "32"]) == 0
    assert (tmp_path / "c" / "00000_001_line.png").is_file()
    assert main(["synth", "--out", str(tmp_path / "d"), "--count", "1", "--frames", "0"]) == 2


def test_evaluation_runs_and_meets_its_targets_on_a_small_set():
    result = evaluate(count=1, frames=6, size=160, model=None)
    pairs = result["pairs"]
    assert pairs["consecutive"]["keyframes"]["regions"] > 100
    assert pairs["consecutive"]["keyframes"]["exact"] >= 0.9
    assert pairs["5 apart"]["keyframes"]["exact"] >= 0.75
    assert set(result["chains"]) == {"keyframe", "previous"} and "5" in result["chains"]["keyframe"]


def test_cli_colours_a_folder_from_a_keyframe(tmp_path, tiny_checkpoint):
    from backend.tools.cli import main

    rendered, palette = sequence(SEED, 3, 96)
    Image.fromarray(rendered[0].line).save(tmp_path / "key_line.png")
    Image.fromarray(palette[rendered[0].mask]).save(tmp_path / "key_flats.png")
    (tmp_path / "frames").mkdir()
    for t in (1, 2):
        Image.fromarray(rendered[t].line).save(tmp_path / "frames" / f"f{t}.png")
    out = tmp_path / "out"
    assert main(["colorize", str(tmp_path / "frames"), "--keyframe", str(tmp_path / "key_line.png"),
                 str(tmp_path / "key_flats.png"), "-o", str(out), "--checkpoint", str(tiny_checkpoint)]) == 0
    flats = np.asarray(Image.open(out / "f1_flats.png"))
    unsure = np.asarray(Image.open(out / "f1_unsure.png"))
    assert flats.shape == (96, 96, 3) and unsure.shape == (96, 96, 3)
    colours = {tuple(c) for c in palette}
    sure = unsure[..., 0] == 0
    assert sure.mean() > 0.8 and all(tuple(c) in colours for c in np.unique(flats[sure], axis=0))
    bad = Image.new("L", (50, 40), 255)
    bad.save(tmp_path / "small.png")
    assert main(["colorize", str(tmp_path / "frames"), "--keyframe", str(tmp_path / "small.png"),
                 str(tmp_path / "key_flats.png"), "-o", str(tmp_path / "o2"),
                 "--checkpoint", str(tiny_checkpoint)]) == 2
