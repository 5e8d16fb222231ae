"""The generator, the frozen style encoder and the checkpoint format."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from backend.model.config import ModelConfig, apply_overrides, from_dict, to_dict
from backend.model.preprocess import hint_planes
from backend.model.networks import (Generator, StyleEncoder, normalize_style, shared_style_encoder, style_target,
                                    weights_sha256)
from helpers import TINY, make_tiny_checkpoint


def test_config_round_trip_and_unknown_keys():
    assert from_dict(ModelConfig, to_dict(TINY)) == TINY
    with pytest.raises(ValueError, match="unknown key.*colour_depth"):
        from_dict(ModelConfig, {**to_dict(TINY), "colour_depth": 3})
    cfg = apply_overrides(ModelConfig, TINY, ["--base_channels=4", "--vgg_weights=random:7"])
    assert cfg.base_channels == 4 and cfg.vgg_weights == "random:7"
    with pytest.raises(ValueError, match="unknown key"):
        apply_overrides(ModelConfig, TINY, ["--nope=1"])
    with pytest.raises(ValueError, match="multiple of"):
        ModelConfig(resolution=100)


def test_generator_shapes_and_guides():
    gen = Generator(TINY, guides=True)
    sketch = torch.rand(2, 1, 32, 48)
    style = torch.randn(2, 4096)
    out, g1, g2 = gen(sketch, style, guides=True)
    assert out.shape == (2, 3, 32, 48) and g1.shape == (2, 1, 32, 48) and g2.shape == (2, 3, 32, 48)
    inference = Generator(TINY)
    assert inference.guide1 is None
    with pytest.raises(RuntimeError, match="guide decoders"):
        inference(sketch, style, guides=True)
    assert not any(k.startswith("guide") for k in gen.inference_state_dict())


def test_style_changes_output():
    """The style vector must reach the output: two references give two different colourings."""
    torch.manual_seed(0)
    gen = Generator(TINY).eval()
    sketch = torch.rand(1, 1, 32, 32)
    a, b = gen(sketch, torch.randn(1, 4096)), gen(sketch, torch.randn(1, 4096))
    assert (a - b).abs().mean() > 1e-4


def test_gradients_reach_every_parameter_and_vgg_stays_frozen():
    torch.manual_seed(0)
    gen = Generator(TINY, guides=True)
    enc = shared_style_encoder(TINY.vgg_weights)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-3)
    enc.train()  # must stay in eval mode anyway
    assert not enc.training
    ref = torch.rand(2, 3, 32, 32, requires_grad=False)
    style = normalize_style(enc(ref))
    out, g1, g2 = gen(torch.rand(2, 1, 32, 32), style, guides=True)
    loss = out.abs().mean() + g1.abs().mean() + g2.abs().mean()
    loss.backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert all(not p.requires_grad for p in enc.parameters())
    opt.step()
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), f"VGG19 weight {k} changed"


def test_folded_pool_matches_the_plain_forward():
    enc = shared_style_encoder("random:0")
    for size in (32, 96, 224):
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            want = enc(x)
            got = enc(x, fold_pool=True)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), size
    assert (3, 3, "cpu") in enc._folded and (7, 7, "cpu") not in enc._folded  # 224 px needs no fold
    assert enc.sha256 == weights_sha256(enc)  # the folded copies are no weights


def test_random_vgg_is_deterministic_and_hashed():
    a = shared_style_encoder("random:0")
    b = StyleEncoder("random:0")
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(a(x), b(x))
    t = style_target(a(x))
    assert t.shape == (1, 4096) and 0 < t.min() and t.max() < 1


def test_checkpoint_round_trip_identical(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "ck", seed=3)
    ck = load_checkpoint(path)
    assert not ck.generator.training and all(not p.requires_grad for p in ck.generator.parameters())
    save_checkpoint(tmp_path / "ck2", ck.generator, ck.style_sha256)
    ck2 = load_checkpoint(tmp_path / "ck2")
    sketch, style = torch.rand(1, 1, 32, 32), torch.randn(1, 4096)
    assert torch.equal(ck.generator(sketch, style), ck2.generator(sketch, style))


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    path = make_tiny_checkpoint(tmp_path / "ck")
    cfg_path = path / "config.json"
    good = cfg_path.read_text()

    (path / "generator.safetensors").rename(path / "moved")
    with pytest.raises(CheckpointError, match="generator.safetensors is missing"):
        load_checkpoint(path)
    (path / "moved").rename(path / "generator.safetensors")

    cfg_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)

    doc = json.loads(good)
    cfg_path.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)

    cfg_path.write_text(json.dumps({**doc, "model": {**doc["model"], "base_channels": 16}}))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(path)

    cfg_path.write_text(json.dumps({**doc, "style_encoder": {**doc["style_encoder"], "sha256": "0" * 64}}))
    with pytest.raises(CheckpointError, match="style encoder"):
        load_checkpoint(path)

    cfg_path.write_text(good)
    tensors = load_file(str(path / "generator.safetensors"))
    tensors.pop("out.bias")
    save_file(tensors, str(path / "generator.safetensors"))
    with pytest.raises(CheckpointError, match="missing.*out.bias"):
        load_checkpoint(path)

    (path / "generator.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_looks_linear_vgg_keeps_pictures_apart():
    # Independent random weights wash out the differences between pictures over sixteen ReLU layers;
    # mirrored (looks-linear) pairs keep them. Measured as the mean cosine between the standardised fc1
    # vectors of different random pictures.
    a = StyleEncoder("looks-linear:0")
    assert a.sha256 == StyleEncoder("looks-linear:0").sha256 != shared_style_encoder("random:0").sha256
    assert a.sha256 != StyleEncoder("looks-linear:1").sha256
    pictures = torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(3))

    def mean_cosine(encoder: StyleEncoder) -> float:
        v = torch.nn.functional.normalize(normalize_style(encoder(pictures)), dim=1)
        c = v @ v.T
        return c[~torch.eye(len(v), dtype=torch.bool)].mean().item()

    collapsed, kept = mean_cosine(shared_style_encoder("random:0")), mean_cosine(a)
    assert collapsed > 0.97 and kept < 0.93, (collapsed, kept)
    # The mirrored structure itself: each conv's second half of filters is the negated first half.
    w = a.features[2].weight
    assert torch.equal(w[w.shape[0] // 2:], -w[: w.shape[0] // 2])


def test_vgg_weight_specs_are_validated():
    assert apply_overrides(ModelConfig, TINY, ["--vgg_weights=looks-linear:5"]).vgg_weights == "looks-linear:5"
    for bad in ("looks-linear:x", "linear:0", "random:", "random:-1"):
        with pytest.raises(ValueError, match="vgg_weights"):
            apply_overrides(ModelConfig, TINY, [f"--vgg_weights={bad}"])


def test_shared_encoder_is_one_per_device_and_the_cpu_one_stays_put():
    # A Colorizer on the GPU once moved the process's only encoder there (Module.to() works in place), and
    # every CPU user after it failed with "tensors on two devices". "meta" stands in for a GPU here.
    cpu = shared_style_encoder("random:0")
    other = shared_style_encoder("random:0", "meta")
    assert other is not cpu and other.fc1.weight.device.type == "meta" and other.sha256 == cpu.sha256
    assert cpu.fc1.weight.device.type == "cpu" and shared_style_encoder("random:0", torch.device("cpu")) is cpu
    assert shared_style_encoder("random:0", "meta") is other


def test_hint_channels_feed_the_generator_and_old_configs_load():
    """A hint model reads hints (and runs without them); a model without hint channels refuses hints."""
    hinted = replace(TINY, hint_channels=4)
    torch.manual_seed(0)
    gen = Generator(hinted).eval()
    sketch, style = torch.rand(1, 1, 32, 32), torch.randn(1, 4096)
    hints = torch.zeros(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(gen(sketch, style), gen(sketch, style, hints=hints))  # no hint = all-zero planes
        hints[:, :3, 8:12, 8:12] = torch.tensor([1.0, 0.2, 0.6])[:, None, None]
        hints[:, 3, 8:12, 8:12] = 1.0
        assert not torch.allclose(gen(sketch, style), gen(sketch, style, hints=hints))
    with pytest.raises(ValueError, match="without colour hints"):
        Generator(TINY)(sketch, style, hints=hints)
    with pytest.raises(ValueError, match="hint_channels"):
        replace(TINY, hint_channels=3)
    old = to_dict(TINY)
    del old["hint_channels"]  # a checkpoint written before hints existed
    assert from_dict(ModelConfig, old).hint_channels == 0


def test_hint_planes_keep_every_dot_at_the_model_size():
    colour = torch.zeros(1, 3, 512, 512)
    mask = torch.zeros(1, 1, 512, 512)
    colour[..., 100:103, 200:203] = torch.tensor([0.9, 0.1, 0.3])[:, None, None]
    mask[..., 100:103, 200:203] = 1.0  # a 3 px dot: a tenth of one model pixel at 32 px
    planes = hint_planes(colour, mask, (32, 32))
    assert planes.shape == (1, 4, 32, 32) and int(planes[0, 3].sum()) == 1
    y, x = (planes[0, 3] > 0).nonzero()[0].tolist()
    assert (y, x) == (100 // 16, 200 // 16)
    assert torch.allclose(planes[0, :3, y, x], torch.tensor([0.9, 0.1, 0.3]), atol=1e-5)
    assert float(planes[0, :3].sum()) == pytest.approx(1.3, abs=1e-4)  # no colour where there is no hint
    grown = hint_planes(colour[..., 96:104, 196:204], mask[..., 96:104, 196:204], (16, 16))  # nearest when growing
    assert set(grown[0, 3].unique().tolist()) == {0.0, 1.0}
