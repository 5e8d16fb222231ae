"""GAN training: data, extractors, losses, the loop, exact resume, crash safety, DDP, export to the backend.

Everything runs on CPU with tiny models (32 px, 8 channels) and one torch thread per process: on a shared
2-core machine, more threads mostly wait on each other.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from backend.model.config import to_dict
from backend.model.networks import weights_sha256
from training import extract, synth
from training.config import DataConfig, TrainConfig, load_config
from training.data import EpochSampler, TrainingData
from training.hints import sample_hints
from training.losses import d_loss, g_loss
from training.distributed import Dist
from training.state import list_states
from training.train import train
from training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "training" / "configs"
STEP_KEYS = ("line", "color", "grey", "reference")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    """Eight synthetic characters at 64 px: colour pictures in colors/ (one nested, one JPEG) and their real
    line art in lines/ (paired by file name), plus one corrupt file."""
    root = tmp_path_factory.mktemp("art")
    (root / "colors" / "sub").mkdir(parents=True)
    (root / "lines").mkdir()
    for i in range(8):
        r = synth.render(synth.random_character(i), synth.random_palette(i), 64)
        folder = root / "colors" / ("sub" if i == 3 else "")
        Image.fromarray(r.color).save(folder / (f"c{i}.jpg" if i == 5 else f"c{i}.png"))
        if i == 2:  # ink on transparent, as a line layer exported from a paint program
            ink = np.zeros((64, 64, 4), np.uint8)
            ink[..., 3] = 255 - r.line
            Image.fromarray(ink).save(root / "lines" / f"c{i}.png")
        else:
            Image.fromarray(r.line).save(root / "lines" / f"c{i}.png")
    (root / "colors" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


def tiny_config(run_dir: Path, art: Path | None = None, **top) -> TrainConfig:
    cfg = load_config(CONFIGS / "tiny.json", [f"--run_dir={run_dir}", "--progress=false", "--threads=1"])
    if art is not None:
        cfg = replace(cfg, data=replace(cfg.data, source="folder", folder=str(art / "colors"), crop_size=64,
                                        lines_folder=str(art / "lines"), real_lines_ratio=0.5))
    return replace(cfg, **top)


def batch_of(ds: TrainingData, n: int, epoch: int = 0) -> dict[str, torch.Tensor]:
    items = [ds[(i, epoch)] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in STEP_KEYS}


def gen_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = list_states(run_dir / "checkpoints")[-1]
    return {k: v for k, v in load_file(str(state / "model.safetensors")).items() if k.startswith(("G.", "ema."))}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# ----------------------------------------------------------------------------------------- config and CLI
def test_configs_load_and_overrides():
    paper = load_config(CONFIGS / "paper.json")
    assert (paper.model.resolution, paper.data.crop_size, paper.batch_size) == (256, 512, 4)
    assert paper.model.vgg_weights == "imagenet" and paper.loss.alpha == 0.3 and paper.loss.beta == 0.9
    assert paper.loss.gan == 0.01
    demo = load_config(CONFIGS / "demo.json", ["--model.base_channels=16", "--data.reference=self"])
    assert demo.model.base_channels == 16 and demo.data.reference == "self" and demo.data.source == "synth"
    with pytest.raises(ValueError, match="unknown key"):
        load_config(CONFIGS / "tiny.json", ["--model.colour_depth=3"])
    with pytest.raises(ValueError, match="unknown key"):
        load_config(CONFIGS / "tiny.json", ["--stepz=3"])
    with pytest.raises(ValueError, match="gan_modes"):
        load_config(CONFIGS / "tiny.json", ['--loss.gan_modes=["wgan"]'])
    with pytest.raises(ValueError, match="palette_pair"):
        DataConfig(source="folder", folder="x", reference="palette_pair")


def test_cli_refuses_unknown_keys(tmp_path, capsys):
    from backend.tools.cli import main

    assert main(["train", str(CONFIGS / "tiny.json"), "--model.colour_depth=3"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert main(["train", str(CONFIGS / "tiny.json"), "--steps=5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 5


# ----------------------------------------------------------------------------------------- extractors and data
def test_extractors_find_edges_and_leave_flat_paper():
    img = np.full((48, 48, 3), 0.9, np.float32)
    img[12:36, 12:36] = (0.8, 0.2, 0.2)  # a red square on light paper
    for line in (extract.dilate_diff(img), extract.xdog(img), extract.highpass(img)):
        assert line.shape == (48, 48) and line.dtype == np.float32 and 0.0 <= line.min() and line.max() <= 1.0
        assert line[2:8, 2:8].min() > 0.9  # flat paper stays paper
        assert line[10:14, 10:38].min() < 0.5  # the square's top edge is inked
    rng = np.random.default_rng(0)
    styles = {float(extract.random_lines(img, rng, ("dilate", "xdog", "highpass")).mean()) for _ in range(8)}
    assert len(styles) > 4  # extractor and parameters vary per call


def test_extractors_draw_edges_between_colours_of_equal_lightness():
    # Dark hair on a dark blue sky differs in hue, not in lightness: a person draws its silhouette, and the
    # faces' regions leaked into the background where the luminance extractors drew none.
    img = np.zeros((64, 64, 3), np.float32)
    img[:, :32] = (0.25, 0.15, 0.45)  # violet ...
    img[:, 32:] = (0.15, 0.25, 0.20)  # ... against green-grey: the same luminance to 0.001
    assert abs(float(extract.luminance(img[:1, :1]).item()) - float(extract.luminance(img[:1, -1:]).item())) < 0.001
    for fn in (extract.xdog, extract.highpass, extract.dilate_diff):
        line = fn(img)
        assert line[8:56, 28:36].min(axis=1).max() < 0.5  # the edge is ink all along
        assert line[8:56, 4:20].min() > 0.9 and line[8:56, 44:60].min() > 0.9  # the areas stay paper
        assert fn(img, per_channel=False).min() > 0.9  # on luminance alone there is no edge at all
    grey = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    for fn in (extract.xdog, extract.highpass):  # on grey pictures, the same as on their luminance
        np.testing.assert_array_equal(fn(np.repeat(grey[..., None], 3, 2)), fn(grey, per_channel=False))


def test_extractors_draw_edges_between_dark_colours():
    # Black hair against a night-blue sky, beside a light face: a small step in the picture's values, which
    # dilate-and-diff drew only as a grey smudge; drawn on the square root too (with_darks), it is ink.
    img = np.full((96, 96, 3), 0.9, np.float32)
    img[:, 48:] = 0.02  # black hair ...
    img[:, 72:] = (0.08, 0.10, 0.22)  # ... against a night-blue sky
    edge = (slice(8, 88), slice(68, 76))
    assert extract.dilate_diff(img)[edge].min(axis=1).max() < 0.3  # ink all along
    assert extract.dilate_diff(img, darks=False)[edge].min(axis=1).max() > 0.4
    for fn in (extract.xdog, extract.highpass, extract.dilate_diff):  # the flat areas stay paper
        line = fn(img)
        assert line[8:88, 4:16].min() > 0.9 and line[8:88, 82:92].min() > 0.9


def test_folder_data_skips_corrupt_files_and_pairs_lines(art):
    with pytest.warns(UserWarning, match="broken.png"):
        items, skipped = _folder_items(art)
    assert skipped >= 1  # broken.png was hit, skipped and counted
    for it in items:
        assert it["line"].shape == (1, 32, 32) and it["color"].shape == (3, 32, 32)
        assert it["grey"].shape == (1, 32, 32) and it["reference"].shape == (3, 32, 32)
        assert float(it["line"].min()) >= 0 and float(it["line"].max()) <= 1
    ds2 = TrainingData(DataConfig(source="folder", folder=str(art / "colors"), crop_size=64), tiny_config(art).model, 0)
    assert len(ds2) == 9  # recursive: eight pictures (png, jpg, one nested) and the corrupt file
    a, b = ds2[(2, 5)], ds2[(2, 5)]
    assert all(torch.equal(a[k], b[k]) for k in STEP_KEYS)  # a sample is a pure function of (index, epoch)


def _folder_items(art):
    """With crop 1.0, no flip and real line art always: the line art IS the paired file, resized."""
    cfg = DataConfig(source="folder", folder=str(art / "colors"), crop_size=64, crop_scale=(1.0, 1.0), flip=False,
                     lines_folder=str(art / "lines"), real_lines_ratio=1.0, line_augment=False)
    ds = TrainingData(cfg, tiny_config(art).model, seed=0)
    broken = [i for i, p in enumerate(ds.files) if p.name == "broken.png"][0]
    items = [ds[(i, 0)] for i in range(len(ds))]
    for name in ("c1", "c2"):  # c2's line art is ink on transparent: composited on white
        index = [i for i, p in enumerate(ds.files) if p.stem == name][0]
        line = synth.render(synth.random_character(int(name[1])), synth.random_palette(int(name[1])), 64).line
        want = np.asarray(Image.fromarray(line).resize((32, 32), Image.BILINEAR), np.float32) / 255
        assert np.abs(items[index]["line"][0].numpy() - want).max() < 2 / 255, name
    return items, int(items[broken]["skipped"])


@pytest.mark.filterwarnings("ignore:skipping unreadable training image")
def test_mixed_source(art):
    cfg = DataConfig(source="mixed", folder=str(art / "colors"), crop_size=64, synth_ratio=0.5,
                     reference="palette_pair", synth_seed_count=20)
    ds = TrainingData(cfg, tiny_config(art).model, 0)
    batch = batch_of(ds, 6)
    assert batch["color"].shape == (6, 3, 32, 32) and batch["reference"].shape == (6, 3, 32, 32)


def test_synth_references_self_and_palette_pair():
    model = tiny_config(Path("unused")).model
    plain = dict(source="synth", synth_seed_count=50, ref_augment=False, flip=False, crop_scale=(1.0, 1.0),
                 synth_size=32)
    it = TrainingData(DataConfig(**plain), model, 0)[(3, 0)]
    assert torch.allclose(it["reference"], it["color"], atol=1e-6)  # "self", un-augmented: V(y)
    pair = TrainingData(DataConfig(**plain, reference="palette_pair", pair_ratio=1.0), model, 0)[(3, 0)]
    assert torch.equal(pair["color"], it["color"])  # same character, same palette
    assert (pair["reference"] - pair["color"]).abs().mean() > 0.02  # but another character as reference
    aug = TrainingData(DataConfig(**{**plain, "ref_augment": True}), model, 0)[(3, 0)]
    assert (aug["reference"] - it["color"]).abs().mean() > 0.01  # augmentation moves pixels...
    assert (aug["reference"].mean((1, 2)) - it["color"].mean((1, 2))).abs().max() < 0.1  # ...not the colours


def test_palette_pair_reference_is_drawn_at_the_encoders_size(monkeypatch):
    # A reference bigger than the training images is rendered at its own size, not upscaled from a small
    # render: the detail a larger VGG19 input is there to see must be in it.
    model = replace(tiny_config(Path("unused")).model, reference_size=64)
    sizes: list[int] = []
    real_render = synth.render
    monkeypatch.setattr(synth, "render", lambda c, p, size: sizes.append(size) or real_render(c, p, size))
    cfg = DataConfig(source="synth", synth_seed_count=50, ref_augment=False, flip=False, crop_scale=(1.0, 1.0),
                     synth_size=32, reference="palette_pair", pair_ratio=1.0)
    item = TrainingData(cfg, model, 0)[(3, 0)]
    assert sizes == [32, 64] and item["reference"].shape == (3, 64, 64)
    assert item["color"].shape == (3, 32, 32)


def test_epoch_sampler_resumes_mid_epoch_and_splits_ranks():
    data = list(range(10))
    full = EpochSampler(data, batch_size=2, world=1, rank=0, seed=1)
    stream = iter(full)
    keys = [next(stream) for _ in range(14)]  # 5 steps per epoch: crosses into epoch 2
    later = iter(EpochSampler(data, batch_size=2, world=1, rank=0, seed=1, start_step=3))
    assert [next(later) for _ in range(8)] == keys[6:14]
    r0 = iter(EpochSampler(data, 2, world=2, rank=0, seed=1))
    r1 = iter(EpochSampler(data, 2, world=2, rank=1, seed=1))
    a, b = {next(r0)[0] for _ in range(4)}, {next(r1)[0] for _ in range(4)}
    assert not a & b  # ranks see different samples in an epoch


# ----------------------------------------------------------------------------------------- model pieces
def test_losses_have_the_paper_optima():
    t = torch.tensor([[0.2, 0.7, 0.9]])
    logit = torch.logit(t).requires_grad_(True)
    zero = {"ac": torch.full_like(t, -30.0)}
    d_loss("acgan", {"ac": logit}, zero, t).backward()
    assert logit.grad.abs().max() < 1e-6  # D(real) = norm(V(y)) is the discriminator's optimum
    fake = torch.zeros(1, 3, requires_grad=True)
    g_loss("acgan", {"ac": fake}, t).backward()
    assert (fake.grad[0] * (torch.sigmoid(fake[0]) - t[0]).sign() > 0).all()  # G pulls D(fake) towards t
    for mode in ("acgan_paper", "lsgan", "dcgan"):
        real = {"ac": torch.full((1, 3), 3.0), "ls": torch.ones(1, 1), "dc": torch.full((1, 1), 5.0)}
        fake = {"ac": torch.full((1, 3), -3.0), "ls": torch.zeros(1, 1), "dc": torch.full((1, 1), -5.0)}
        good, bad = d_loss(mode, real, fake, t), d_loss(mode, fake, real, t)
        assert good < bad and g_loss(mode, real, t) < g_loss(mode, fake, t), mode


def test_rare_colour_weights_favour_small_parts():
    from training.config import LossConfig
    from training.losses import l1_losses, rare_colour_weights

    # a 32x32 picture: 90% one colour, a 10x10 patch of a second, a 3x3 patch of a third (a "collar")
    color = torch.zeros(2, 3, 32, 32)
    color[:, 0] = 0.8
    color[:, :, 2:12, 2:12] = torch.tensor([0.1, 0.6, 0.2])[:, None, None]
    color[:, :, 20:23, 20:23] = torch.tensor([0.9, 0.9, 0.1])[:, None, None]
    w = rare_colour_weights(color, 0.5)
    assert w.shape == (2, 1, 32, 32) and torch.allclose(w.mean((1, 2, 3)), torch.ones(2))
    big, mid, small = w[0, 0, 30, 30], w[0, 0, 5, 5], w[0, 0, 21, 21]
    assert small > mid > big
    assert small / big == pytest.approx((915 / 9) ** 0.5, rel=1e-4)  # shares 915 and 9 of 1024 pixels
    assert torch.allclose(rare_colour_weights(color, 0.0), torch.ones(2, 1, 32, 32))
    # the loss: plain L1 at 0; a wrong small patch costs more with the weights than without
    out = color.clone()
    out[:, :, 20:23, 20:23] = 0.5
    grey = color.mean(1, keepdim=True)
    plain = l1_losses(out, grey, out, color, grey, LossConfig())
    rare = l1_losses(out, grey, out, color, grey, LossConfig(rare_colour=0.5))
    assert plain["l1"] == pytest.approx((out - color).abs().mean().item())
    assert rare["l1"] > 5 * plain["l1"] and rare["guide1"] == plain["guide1"]
    with pytest.raises(ValueError, match="rare_colour"):
        LossConfig(rare_colour=1.5)


@pytest.mark.parametrize("modes", [("acgan",), ("acgan_paper", "lsgan", "dcgan")])
def test_step_keeps_vgg_frozen_and_reaches_every_generator_parameter(tmp_path, modes):
    cfg = tiny_config(tmp_path)
    cfg = replace(cfg, loss=replace(cfg.loss, gan_modes=modes, acgan_target="target"))
    trainer = Trainer(cfg, Dist(0, 1, 0, torch.device("cpu")))
    before = weights_sha256(trainer.encoder)
    g_before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    batch = batch_of(TrainingData(cfg.data, cfg.model, 0), 4)
    logs = trainer.step(batch, step=0)
    assert all(torch.isfinite(v) for v in logs.values())
    assert weights_sha256(trainer.encoder) == before == trainer.encoder.sha256
    assert not any(p.requires_grad or p.grad is not None for p in trainer.encoder.parameters())
    for name, p in trainer.G.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"no gradient reaches {name}"
        assert not torch.equal(p.detach(), g_before[name]), f"{name} did not move"
    assert any(n.startswith("guide1.") for n, _ in trainer.G.named_parameters())
    assert all(p.grad is not None for p in trainer.D.parameters())
    assert "gan_g" in logs and "loss_d" in logs


# ----------------------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def tiny_run(art, tmp_path_factory) -> dict:
    """300 steps on eight 64 px pictures (folder source, extracted and real line art), 32 px model."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    torch.set_num_threads(1)
    cfg = tiny_config(run, art, steps=300, sample_every=150, checkpoint_every=150, log_every=5)
    with pytest.warns(UserWarning, match="broken.png"):
        return train(cfg)


def test_tiny_run_loss_falls(tiny_run):
    run = Path(tiny_run["run_dir"])
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    l1 = [r["train/l1"] for r in rows if "train/l1" in r]
    assert len(l1) == 60
    first, last = l1[0], np.mean(l1[-6:])  # steps 1-5 against steps 271-300
    assert last < 0.7 * first, (first, last)  # typically 0.24 -> 0.15
    assert rows[-1]["step"] == 300 and any("eval/ref_sensitivity" in r for r in rows)
    assert tiny_run["counters"]["skipped"] >= 1  # the corrupt file, counted
    assert json.loads((run / "config.json").read_text())["steps"] == 300
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000000150.png", "step_000000300.png"]
    grid = np.asarray(Image.open(run / "samples" / "step_000000300.png"))
    assert grid.shape == (4 * 32, 5 * 32, 3)  # 4 rows of sketch | reference | output | target | swapped ref
    assert list((run / "tb").iterdir())


def test_export_loads_in_the_backend_and_colours(tiny_run):
    from backend.inference.pipeline import Colorizer

    col = Colorizer(checkpoint=tiny_run["export"], device="cpu")
    assert not col.untrained and col.checkpoint.meta["step"] == 300
    r = synth.render(synth.random_character(123), synth.random_palette(123), 48)
    out = col.colorize(r.line, r.color, outputs=("color", "flattened"))
    assert out["color"].shape == (48, 48, 3) and out["color"].dtype == np.uint8
    assert out["color"].std() > 5  # not a flat fill
    # the export is the EMA generator of the last state
    ema = {k[4:]: v for k, v in gen_weights(Path(tiny_run["run_dir"])).items() if k.startswith("ema.")}
    for k, v in col.generator.state_dict().items():
        assert torch.equal(v, ema[k]), k


def test_export_flag_writes_a_checkpoint(tiny_run, tmp_path):
    from backend.model.checkpoint import load_checkpoint
    from backend.tools.cli import main

    cfg_path = Path(tiny_run["run_dir"])  # a run folder works as CONFIG
    assert main(["train", str(cfg_path), "--export", str(tmp_path / "exp")]) == 0
    assert load_checkpoint(tmp_path / "exp").meta["step"] == 300


def test_refuses_to_overwrite_a_run(tiny_run, art):
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_config(Path(tiny_run["run_dir"]), art, steps=301))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The reference run: 20 steps in one go (synth source, palette pairs, every GAN head)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    torch.set_num_threads(1)
    train(resume_config(run, 20))
    return run


def resume_config(run: Path, steps: int) -> TrainConfig:
    cfg = tiny_config(run, steps=steps, checkpoint_every=5, sample_every=10, keep_last=3, log_every=5)
    return replace(cfg, data=replace(cfg.data, reference="palette_pair", pair_ratio=0.5),
                   loss=replace(cfg.loss, gan_modes=("acgan", "lsgan"), acgan_target="target"),
                   optim=replace(cfg.optim, warmup_steps=4, schedule="cosine"))


def test_resume_gives_the_same_weights(straight, tmp_path):
    run = tmp_path / "run"
    train(resume_config(run, 20), stop_at=10)  # as if the job ended at step 10
    with pytest.raises(ValueError, match="seed"):  # a resume must not change what is computed
        train(replace(resume_config(run, 20), seed=1), resume=True)
    summary = train(resume_config(run, 20), resume=True)
    assert summary["step"] == 20
    assert max_diff(gen_weights(run), gen_weights(straight)) <= 1e-6
    d = lambda r: {k: v for k, v in load_file(str(list_states(r / "checkpoints")[-1] / "optim.safetensors")).items()}
    assert max_diff(d(run), d(straight)) <= 1e-6
    assert [p.name for p in list_states(run / "checkpoints")] == ["step_000000010", "step_000000015", "step_000000020"]


def _cli(run: Path, steps: int, *extra: str) -> list[str]:
    cfg = resume_config(run, steps)
    (run.parent / "cfg.json").write_text(json.dumps(to_dict(cfg)))
    return [sys.executable, "-m", "backend", "train", str(run.parent / "cfg.json"), *extra]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRODORI_TEST_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def test_sigkill_while_writing_a_checkpoint_resumes_from_the_last_good_one(straight, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(_cli(run, 20), cwd=ROOT, env=_env(IRODORI_TEST_SAVE_SLEEP="15:120"),
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 180
        while "sleeping inside the write of step 15" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()[-2000:]
        partial = list((run / "checkpoints").glob(".tmp-step_000000015-*"))
        assert partial and (partial[0] / "model.safetensors").is_file() and not (partial[0] / "state.json").exists()
        proc.send_signal(signal.SIGKILL)  # kill -9 in the middle of writing the state of step 15
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in list_states(run / "checkpoints")] == ["step_000000005", "step_000000010"]

    done = subprocess.run(_cli(run, 20, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stderr and "step_000000010" in done.stderr
    assert not list((run / "checkpoints").glob(".tmp-*"))  # the half-written state was cleaned up
    assert max_diff(gen_weights(run), gen_weights(straight)) <= 1e-6


def test_ddp_two_processes_gloo_hold_identical_weights(tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(run, steps=6, checkpoint_every=3, sample_every=6, log_every=3)
    (tmp_path / "cfg.json").write_text(json.dumps(to_dict(cfg)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "backend",
           "train", str(tmp_path / "cfg.json")]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(IRODORI_TEST_RANK_DUMP=str(tmp_path / "ranks")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0 = load_file(str(tmp_path / "ranks" / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "ranks" / "rank1.safetensors"))
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    state = json.loads((list_states(run / "checkpoints")[-1] / "state.json").read_text())
    assert state["step"] == 6 and state["world_size"] == 2 and state["counters"]["images"] == 6 * 4 * 2
    torch.manual_seed(cfg.seed)
    from backend.model.networks import Generator

    init = Generator(cfg.model, guides=True).state_dict()
    assert any(not torch.equal(init[k], r0[k]) for k in r0)  # it trained
    assert (run / "export" / "config.json").is_file()


def test_hints_are_sampled_from_the_truth_and_trained_on(tmp_path):
    """Zhang et al.'s hint sampling: none or some patches, each its true mean colour; G learns through them."""
    rng = np.random.default_rng(0)
    color = rng.random((64, 64, 3)).astype(np.float32)
    assert not sample_hints(color, rng, empty=1.0, p=0.5).any()
    counts = []
    for seed in range(20):
        hints = sample_hints(color, np.random.default_rng(seed), empty=0.0, p=0.5)
        mask = hints[3] > 0
        assert mask.any() and not hints[:3, ~mask].any()
        counts.append(int(mask.sum()))
        ys, xs = np.nonzero(mask)
        y, x = ys[0], xs[0]  # the first hinted pixel: top-left corner of some patch, its colour a mean of truth
        assert color.reshape(-1, 3).min(0).min() <= hints[:3, y, x].min() <= hints[:3, y, x].max() <= 1.0
    assert len(set(counts)) > 3  # varied counts and sizes
    cfg = tiny_config(tmp_path)
    cfg = replace(cfg, model=replace(cfg.model, hint_channels=4), data=replace(cfg.data, hint_empty=0.0))
    ds = TrainingData(cfg.data, cfg.model, 0)
    item = ds[(0, 0)]
    assert item["hints"].shape == (4, cfg.model.resolution, cfg.model.resolution) and item["hints"][3].any()
    trainer = Trainer(cfg, Dist(0, 1, 0, torch.device("cpu")))
    items = [ds[(i, 0)] for i in range(4)]
    batch = {k: torch.stack([it[k] for it in items]) for k in (*STEP_KEYS, "hints")}
    logs = trainer.step(batch, step=0)
    assert all(torch.isfinite(v) for v in logs.values())
    grad = trainer.G.stem.weight.grad
    assert grad.shape[1] == 5 and float(grad[:, 1:].abs().sum()) > 0  # the hint planes reach the stem
