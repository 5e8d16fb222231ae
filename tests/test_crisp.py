"""Crisp colour (issue 21, item 4): the colour layer stops at the lines of the line art."""
from __future__ import annotations

import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend.inference import flats as flats_mod
from backend.inference.pipeline import Colorizer, colour_layer, crisp_colour
from helpers import reference

SIZE = 1024
NEAR = 3  # px from a line
DEMO = Path(__file__).resolve().parents[1] / "backend" / "demo" / "model"
crisp_module = importlib.import_module("backend.inference.flats.crisp")  # the module, which flats.crisp hides


def _figure() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin (2 px) black lines on white splitting the canvas into closed areas -> (line art, ink mask,
    area of every pixel: 1.. off the lines, 0 on them)."""
    line = np.full((SIZE, SIZE), 255, np.uint8)
    cv2.line(line, (SIZE // 2, 0), (SIZE // 2, SIZE - 1), 0, 2)
    cv2.line(line, (0, SIZE // 2), (SIZE - 1, SIZE // 2), 0, 2)
    cv2.circle(line, (SIZE // 4, SIZE // 4), SIZE // 7, 0, 2, cv2.LINE_AA)
    cv2.rectangle(line, (SIZE * 5 // 8, SIZE // 8), (SIZE * 7 // 8, SIZE * 3 // 8), 0, 2)
    cv2.ellipse(line, (SIZE * 3 // 4, SIZE * 3 // 4), (SIZE // 6, SIZE // 12), 30, 0, 360, 0, 2, cv2.LINE_AA)
    ink = line < 128
    _, areas = cv2.connectedComponents((~ink).astype(np.uint8), connectivity=4)
    return line, ink, areas


def _near_lines(ink: np.ndarray) -> np.ndarray:
    return (cv2.distanceTransform((~ink).astype(np.uint8), cv2.DIST_L2, 5) <= NEAR) & ~ink


def _own_share(colour: np.ndarray, areas: np.ndarray, palette: np.ndarray, where: np.ndarray) -> float:
    """Share of the pixels `where` whose colour is nearest to their own area's palette entry."""
    got = colour[where].astype(np.float32)
    dist = ((got[:, None, :] - palette[None, 1:, :]) ** 2).sum(-1)  # to every area's colour
    own = areas[where] - 1
    return float((dist[np.arange(len(own)), own] <= dist.min(axis=1)).mean())


def test_colour_stops_at_the_lines_of_a_drawn_figure():
    # A blurred low-res colour field as the model's colour: the soft resize bleeds across the lines, the
    # crisp colour does not.
    line, ink, areas = _figure()
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (areas.max() + 1, 3)).astype(np.float32)
    truth = palette[areas]
    truth[ink] = 20.0  # the model paints the lines dark too
    small = cv2.GaussianBlur(cv2.resize(truth, (256, 256), interpolation=cv2.INTER_AREA), (0, 0), 1.5)
    model = torch.from_numpy(small / 255.0).permute(2, 0, 1)[None].float()
    soft = colour_layer(model, (SIZE, SIZE))

    labels, votes, ink_mask = flats_mod.regions_and_votes(line)
    sharp = crisp_colour(soft, labels, votes, ink_mask, (256, 256))
    near = _near_lines(ink)
    assert _own_share(sharp, areas, palette, near) >= 0.95
    assert _own_share(soft, areas, palette, near) < 0.9  # the test can fail: the soft colour bleeds
    # interiors keep the model's smooth colour (its shading)
    far = cv2.distanceTransform((~ink).astype(np.uint8), cv2.DIST_L2, 5) > 32
    assert np.array_equal(sharp[far], soft[far])


def test_colour_stops_at_the_lines_on_the_cell_grid():
    # A model 32x smaller than the canvas: the margin (48 px) puts the nearest-core look-up on a grid of
    # 4 px cells (flats.crisp_plan), where a cell beside a line can find the core across it. Each pixel
    # still takes its own area's colour, and the cores keep the model's colour exactly.
    line, ink, areas = _figure()
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (areas.max() + 1, 3)).astype(np.float32)
    truth = palette[areas]
    truth[ink] = 20.0
    small = cv2.GaussianBlur(cv2.resize(truth, (32, 32), interpolation=cv2.INTER_AREA), (0, 0), 0.7)
    soft = colour_layer(torch.from_numpy(small / 255.0).permute(2, 0, 1)[None].float(), (SIZE, SIZE))
    labels, votes, ink_mask = flats_mod.regions_and_votes(line)
    margin = flats_mod.crisp_margin((SIZE, SIZE), (32, 32))
    assert crisp_module.crisp_plan(labels, margin, ink_mask).step == 4  # the grid, not the exact per-pixel path
    sharp = crisp_colour(soft, labels, votes, ink_mask, (32, 32))
    near = _near_lines(ink)
    assert _own_share(sharp, areas, palette, near) >= 0.95
    assert _own_share(soft, areas, palette, near) < 0.9  # the test can fail: the soft colour bleeds
    far = cv2.distanceTransform((~ink).astype(np.uint8), cv2.DIST_L2, 5) > 2 * margin
    assert np.array_equal(sharp[far], soft[far])


@pytest.mark.parametrize("margin, size", [(6, 700), (30, 700), (50, 1400)])  # cells of 1 (exact), 2 and 4 px
def test_every_pixel_takes_a_colour_of_its_own_region(margin, size):
    # Each region one colour of its own: whatever core, cell, interpolation or flat colour a pixel's colour
    # comes from, it must be its own region's, so the output is exactly that colour everywhere (also on a
    # canvas that is no multiple of the cell size), even from a colour that bleeds across the borders.
    from backend.inference.flats import bench_images

    line, _ = bench_images(size, seed=5)
    line = np.ascontiguousarray(line[: size - 57, : size - 183])
    labels, _, ink = flats_mod.regions_and_votes(line)
    palette = np.random.default_rng(2).integers(0, 256, (labels.max() + 1, 3)).astype(np.uint8)
    colour = palette[labels]
    assert crisp_module.crisp_plan(labels, margin, ink).step == max(1, margin // crisp_module.CELLS_PER_MARGIN)
    assert np.array_equal(flats_mod.crisp(colour, labels, colour, margin, ink), colour)
    # a colour bleeding 4 px (less than the margin) across every border: the bleed is gone
    blurred = cv2.blur(colour, (9, 9))
    assert not np.array_equal(blurred, colour)  # the test can fail
    assert np.array_equal(flats_mod.crisp(blurred, labels, colour, margin, ink), colour)


def test_crisp_plan_is_kept_for_read_only_regions(monkeypatch):
    # The pipeline's cached regions are read-only: the plan worked out for them is reused by the next
    # colour (identity, not contents), and gives what a fresh plan gives; writable regions always get a
    # fresh one (they may change).
    from backend.inference.flats import bench_images

    line, color = bench_images(512, seed=4)
    labels, votes, ink = flats_mod.regions_and_votes(line)
    flat = flats_mod.fill(labels, color, votes=votes)
    margin = 30  # cells of 2 px
    want = flats_mod.crisp(color, labels, flat, margin, ink)
    planned = []
    real = crisp_module.crisp_plan
    monkeypatch.setattr(crisp_module, "crisp_plan", lambda *a: planned.append(1) or real(*a))
    for frozen in (labels, ink):
        frozen.setflags(write=False)
    other = np.ascontiguousarray(color[::-1])
    assert np.array_equal(flats_mod.crisp(color, labels, flat, margin, ink), want)
    flats_mod.crisp(other, labels, flat, margin, ink)
    assert len(planned) == 1  # the second colour reused the plan
    assert np.array_equal(flats_mod.crisp(other, labels, flat, margin, ink),
                          flats_mod.crisp(other, labels.copy(), flat, margin, ink.copy()))
    assert len(planned) == 2  # the writable copies were planned afresh


def _nearest_inside_share(colour: np.ndarray, ink: np.ndarray, areas: np.ndarray) -> float:
    """Share of the pixels near a line whose colour is at least as close to the colour of the nearest
    inside pixel (> 24 px from the lines) of their own area as to that of the nearest other area's."""
    inside = cv2.distanceTransform((~ink).astype(np.uint8), cv2.DIST_L2, 5) > 24
    near = np.flatnonzero(_near_lines(ink))
    dists, colours = [], []
    for area in range(1, areas.max() + 1):
        keep = inside & (areas == area)
        dist, nearest = cv2.distanceTransformWithLabels((~keep).astype(np.uint8), cv2.DIST_L2, 3,
                                                        labelType=cv2.DIST_LABEL_PIXEL)
        source = np.flatnonzero(keep.ravel())[nearest.ravel()[near] - 1]
        dists.append(dist.ravel()[near])
        colours.append(colour.reshape(-1, 3)[source].astype(np.float32))
    dists, colours = np.stack(dists), np.stack(colours)  # (areas, near pixels[, 3])
    own = areas.ravel()[near] - 1
    cols = np.arange(len(near))
    dists[own, cols] = np.inf
    other = dists.argmin(axis=0)
    got = colour.reshape(-1, 3)[near].astype(np.float32)
    to_own = ((got - colours[own, cols]) ** 2).sum(-1)
    to_other = ((got - colours[other, cols]) ** 2).sum(-1)
    return float((to_own <= to_other).mean())


@pytest.mark.skipif(not (DEMO / "config.json").is_file(), reason="no bundled demo model")
def test_colorizer_colour_stops_at_the_lines():
    # Through the real Colorizer with the bundled demo model: pixels near a line are coloured like the
    # inside of their own area, not like the area across the line (the soft colour is not).
    line, ink, areas = _figure()
    ref = reference(colour=(230, 120, 40))
    out = Colorizer(DEMO, device="cpu").colorize(line, ref, ("color", "flattened"))
    colour = out["color"]
    assert _nearest_inside_share(colour, ink, areas) >= 0.95
    soft = Colorizer(DEMO, device="cpu", crisp=False).colorize(line, ref)["color"]
    assert _nearest_inside_share(soft, ink, areas) < 0.9  # the test can fail: the soft colour bleeds
    grey = line.astype(np.float32)[..., None] / 255
    assert np.abs(out["flattened"].astype(np.float32) - colour * grey).max() <= 1  # crisp colour x line art


def test_crisp_off_gives_the_soft_colour(tiny_checkpoint):
    # Colorizer(crisp=False) is the old pipeline: the model's colour resized, flats from it.
    from backend.inference.flats import bench_images, flats, shading

    line, _ = bench_images(200, seed=3)
    ref = reference()
    soft = Colorizer(tiny_checkpoint, device="cpu", crisp=False)
    sharp = Colorizer(tiny_checkpoint, device="cpu")
    outputs = ("color", "flattened", "flats", "shading")
    a, b = soft.colorize(line, ref, outputs), sharp.colorize(line, ref, outputs)
    assert not np.array_equal(a["color"], b["color"])
    for out in (a, b):
        assert np.array_equal(out["flats"], flats(line, out["color"]))
        assert np.array_equal(out["shading"], shading(out["color"], out["flats"]))


def test_crisp_off_is_the_pipeline_without_its_crisp_step(tiny_checkpoint, monkeypatch):
    # Colorizer(crisp=False) gives, byte for byte, what the pipeline gives with the crisp step taken out
    # (and the line art's regions then only worked out for flats and shading, as before).
    from backend.inference import pipeline
    from backend.inference.flats import bench_images

    line, _ = bench_images(200, seed=3)
    outputs = ("color", "flattened", "flats", "shading")
    off = Colorizer(tiny_checkpoint, device="cpu", crisp=False)
    got = [off.colorize(line, reference(), outputs), off.colorize(line, reference(seed=2), ("color", "flattened"))]
    monkeypatch.setattr(pipeline, "crisp_colour", lambda color, *args: color)
    bare = Colorizer(tiny_checkpoint, device="cpu")
    want = [bare.colorize(line, reference(), outputs), bare.colorize(line, reference(seed=2), ("color", "flattened"))]
    for a, b in zip(got, want):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
