"""`irodori train CONFIG.json [--key=value ...]`: the GAN training loop (paper losses), one GPU, many GPUs or CPU.

One step, in plain order:
  V(reference) with the frozen VGG19 -> G forward (output, guide 1, guide 2) -> D step on real y and the
  DETACHED output -> G step on L1 terms + lambda * adversarial terms with D frozen -> EMA of G.

Run folder (rank 0 writes, other ranks only read):
  config.json        the resolved config          metrics.jsonl   scalars, one JSON object per line
  tb/                TensorBoard scalars          samples/        step_N.png: sketch | reference | output | target | swap
  checkpoints/       step_N/ training states (last keep_last); each holds model.safetensors (G, D, EMA),
                     optim.safetensors, rng.safetensors and state.json. No pickle anywhere. A state is written
                     into a hidden temporary folder and renamed into place, so a crash never leaves half a state.
  export/            the EMA generator in the backend's checkpoint format (irodori colorize / serve --checkpoint)

Several GPUs or nodes: `torchrun --nproc_per_node=N -m backend train CONFIG.json` (DDP; each process takes
batch_size samples; the checkpoints folder must be shared between nodes). On CPU DDP uses the gloo backend.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from backend.model.checkpoint import save_checkpoint
from backend.model.config import from_dict, to_dict
from backend.model.networks import Generator, StyleEncoder, normalize_style, shared_style_encoder, style_target
from training.config import TrainConfig, config_json, load_config
from training.data import CALIBRATION_EPOCH, EpochSampler, TrainingData
from training.discriminator import Discriminator
from training.losses import d_loss, g_loss, l1_losses

STATE_FORMAT = "irodori-train-state"
STATE_VERSION = 1
STATE_PREFIX = "step_"
# Fields that may differ between a run and its --resume (they do not change what is computed).
RESUME_SAFE = {"steps", "log_every", "sample_every", "samples", "checkpoint_every", "keep_last", "export_every",
               "progress", "compile", "threads", "data.workers"}
# Test-only hooks (environment): sleep inside the write of one state, to kill a run mid-write; dump every
# rank's final generator weights, to compare ranks.
SAVE_SLEEP_ENV = "IRODORI_TEST_SAVE_SLEEP"  # "STEP:SECONDS"
RANK_DUMP_ENV = "IRODORI_TEST_RANK_DUMP"  # a folder


# ----------------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(cfg: TrainConfig) -> Dist:
    """Single process, or DDP when started by torchrun (WORLD_SIZE > 1): nccl on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device=cpu")
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, device=device)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ----------------------------------------------------------------------------------------- style features
class StyleFeatures:
    """V(.) through the backend's frozen StyleEncoder. For references under 224 px, VGG19's adaptive pool
    only repeats a small feature map up to 7x7, so fc1 is folded over that repeat once (same result up to
    float rounding, several times less memory traffic: fc1 is 400 MB and dominates small references on CPU)."""

    def __init__(self, encoder: StyleEncoder) -> None:
        self.encoder = encoder
        self._folded: dict[tuple, torch.Tensor] = {}

    def _fold(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._folded:
            fc1 = self.encoder.fc1.weight.detach().double()
            pool = self.encoder.pool(torch.eye(h * w, dtype=torch.float64, device=fc1.device).view(h * w, 1, h, w))
            pool = pool.reshape(h * w, -1)  # (hw, 49): how much each input cell feeds each pooled cell
            folded = fc1.view(fc1.shape[0], -1, pool.shape[1]) @ pool.t()  # (4096, 512, hw)
            self._folded[key] = folded.reshape(fc1.shape[0], -1).float().to(device)
        return self._folded[key]

    @torch.no_grad()
    def __call__(self, reference: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) in [0,1] -> raw fc1 (B,4096), as backend.model.networks.StyleEncoder.forward."""
        enc = self.encoder
        x = enc.features((reference - enc.mean) / enc.std)
        h, w = x.shape[-2:]
        if h * w >= 49:
            return enc.fc1(torch.flatten(enc.pool(x), 1))
        return F.linear(torch.flatten(x, 1), self._fold(h, w, x.device).to(x.dtype), enc.fc1.bias.to(x.dtype))


# ----------------------------------------------------------------------------------------- the trainer
def lr_factor(cfg: TrainConfig, step: int) -> float:
    o = cfg.optim
    f = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
    if o.schedule == "cosine":
        progress = min(1.0, step / max(1, cfg.steps - 1))
        f *= o.min_lr_ratio + (1.0 - o.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


class Trainer:
    """Generator (with guide decoders), discriminator, EMA, optimisers and scalers, and one training step."""

    def __init__(self, cfg: TrainConfig, env: Dist) -> None:
        self.cfg, self.env, self.device = cfg, env, env.device
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.G = Generator(cfg.model, guides=True).to(self.device)
        self.D = Discriminator(cfg.disc, cfg.loss.gan_modes).to(self.device) if cfg.loss.gan_modes else None
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        torch.manual_seed(cfg.seed + 1_000_003 * env.rank)  # then a different stream per rank
        self.encoder = shared_style_encoder(cfg.model.vgg_weights, self.device)
        self.style = StyleFeatures(self.encoder)
        o = cfg.optim
        self.opt_g = torch.optim.AdamW(self.G.parameters(), lr=o.lr_g, betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.opt_d = (torch.optim.AdamW(self.D.parameters(), lr=o.lr_d, betas=tuple(o.betas), weight_decay=o.weight_decay)
                      if self.D is not None else None)
        self.amp = amp_dtype(cfg, self.device)
        fp16 = self.amp == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        # What runs forward: DDP wrappers when distributed, compiled when asked. The raw modules own the weights.
        self.g_run: nn.Module = self.G
        self.d_run: nn.Module | None = self.D
        self.d_frozen: nn.Module | None = self.D  # D inside the G step: no DDP (it is not updated there)
        if env.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_run = DDP(self.G, device_ids=ids)
            self.d_run = DDP(self.D, device_ids=ids) if self.D is not None else None
        if cfg.compile:
            self.g_run = torch.compile(self.g_run)
            self.d_run = torch.compile(self.d_run) if self.d_run is not None else None
            self.d_frozen = torch.compile(self.D) if self.D is not None else None

    @torch.no_grad()
    def calibrate_style(self, dataset: TrainingData, count: int, batch: int = 32) -> None:
        """Per-dimension statistics of the normalised style over `count` training references, into G and EMA.

        Done once before step 0 (a resumed run restores them with the weights); deterministic, so every
        rank computes the same numbers.
        """
        styles = []
        for start in range(0, count, batch):
            refs = [dataset[(i % len(dataset), CALIBRATION_EPOCH)]["reference"] for i in range(start, min(count, start + batch))]
            with self.autocast():
                styles.append(normalize_style(self.style(torch.stack(refs).to(self.device)).float()))
        styles_all = torch.cat(styles)
        self.G.calibrate_style(styles_all)
        self.ema.calibrate_style(styles_all)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def style_inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised style of the reference for G, and t = norm(V(y)) for the AC-GAN heads (or None)."""
        ref = batch["reference"]
        with torch.no_grad(), self.autocast():
            fc1 = self.style(ref).float()
            target = None
            if any(m.startswith("acgan") for m in self.cfg.loss.gan_modes):
                same = self.cfg.data.reference == "self" and not self.cfg.data.ref_augment  # then reference = y
                if self.cfg.loss.acgan_target == "reference" or same:
                    fc1_y = fc1
                else:  # V(y): the target resized like any reference, un-augmented
                    y = F.interpolate(batch["color"], size=ref.shape[-2:], mode="bilinear", align_corners=False,
                                      antialias=batch["color"].shape[-1] > ref.shape[-1])
                    fc1_y = self.style(y).float()
                target = style_target(fc1_y)
        return normalize_style(fc1), target

    def _update(self, loss: torch.Tensor, opt: torch.optim.Optimizer, scaler, params) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        params = [p for p in params if p.grad is not None]
        clip = self.cfg.optim.grad_clip
        norm = nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        scaler.step(opt)
        scaler.update()
        return norm

    def step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One optimiser step of D and G at (0-based) `step`; returns detached scalars."""
        cfg = self.cfg
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        for opt, base in ((self.opt_g, cfg.optim.lr_g), (self.opt_d, cfg.optim.lr_d)):
            for group in (opt.param_groups if opt is not None else []):
                group["lr"] = base * lr_factor(cfg, step)
        style, target = self.style_inputs(batch)
        color, b = batch["color"], batch["color"].shape[0]

        # 1. G forward
        with self.autocast():
            out, g1, g2 = self.g_run(batch["line"], style, guides=True)
        logs = l1_losses(out, g1, g2, color, batch["grey"], cfg.loss)

        # 2. D step on real y and the detached output (one batch: DDP allows one forward per backward)
        if self.D is not None:
            with self.autocast():
                logits = self.d_run(torch.cat([color, out.detach().to(color.dtype)]))
            real = {k: v[:b] for k, v in logits.items()}
            fake = {k: v[b:] for k, v in logits.items()}
            loss_d = sum(d_loss(m, real, fake, target) for m in cfg.loss.gan_modes)
            logs["loss_d"] = loss_d
            logs["grad_norm_d"] = self._update(loss_d, self.opt_d, self.scaler_d, self.D.parameters())

        # 3. G step with D frozen
        loss_g = logs["l1_total"]
        if self.D is not None and step >= cfg.loss.gan_start and cfg.loss.gan > 0:
            self.D.requires_grad_(False)
            with self.autocast():
                fake = self.d_frozen(out)
            adv = sum(g_loss(m, fake, target) for m in cfg.loss.gan_modes)
            logs["gan_g"] = adv
            loss_g = loss_g + cfg.loss.gan * adv
        logs["loss_g"] = loss_g
        logs["grad_norm_g"] = self._update(loss_g, self.opt_g, self.scaler_g, self.G.parameters())
        if self.D is not None:
            self.D.requires_grad_(True)

        # 4. EMA (a short warm-up so the average does not stay stuck near the random init)
        decay = min(cfg.ema_decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.G.parameters()):
                e.lerp_(p, 1.0 - decay)
        logs["lr_g"] = torch.tensor(self.opt_g.param_groups[0]["lr"])
        return {k: v.detach().float() for k, v in logs.items()}

    # ------------------------------------------------------------------------------------------- state
    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"G": self.G, "ema": self.ema}
        if self.D is not None:
            mods["D"] = self.D
        return mods

    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, Any]]:
        opts = {"G": (self.opt_g, self.scaler_g)}
        if self.opt_d is not None:
            opts["D"] = (self.opt_d, self.scaler_d)
        return opts


# ----------------------------------------------------------------------------------------- training state I/O
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def gather_rng(env: Dist) -> list[torch.Tensor]:
    """Every rank's torch RNG state (CPU, then this rank's GPU), gathered on all ranks as uint8 tensors."""
    state = torch.get_rng_state()
    if env.device.type == "cuda":
        state = torch.cat([state, torch.cuda.get_rng_state(env.device)])
    if env.world == 1:
        return [state]
    local = state.to(env.device)
    out = [torch.empty_like(local) for _ in range(env.world)]
    dist.all_gather(out, local)
    return [t.cpu() for t in out]


def set_rng(state: torch.Tensor, env: Dist) -> None:
    cpu_len = torch.get_rng_state().numel()
    torch.set_rng_state(state[:cpu_len].clone())
    if env.device.type == "cuda" and state.numel() > cpu_len:
        torch.cuda.set_rng_state(state[cpu_len:].clone(), env.device)


def save_state(ckpt_dir: Path, trainer: Trainer, step: int, counters: dict[str, int], rng: list[torch.Tensor]) -> Path:
    """Write one training state atomically: a hidden temp folder, fsynced, then renamed to step_N."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"{STATE_PREFIX}{step:09d}"
    tmp = ckpt_dir / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model = {f"{name}.{k}": _cpu(v) for name, m in trainer.modules().items() for k, v in m.state_dict().items()}
    save_file(model, str(tmp / "model.safetensors"))
    hook = os.environ.get(SAVE_SLEEP_ENV, "")
    if hook and int(hook.split(":")[0]) == step:  # test-only: be killable in the middle of a write
        print(f"[test hook] sleeping inside the write of step {step}", file=sys.stderr, flush=True)
        time.sleep(float(hook.split(":")[1]))
    tensors: dict[str, torch.Tensor] = {}
    optim_doc: dict[str, Any] = {}
    for name, (opt, scaler) in trainer.optimizers().items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, pstate in sd["state"].items():
            for key, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"{name}.{idx}.{key}"] = _cpu(value)
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        optim_doc[name] = {"param_groups": sd["param_groups"], "scalars": scalars, "scaler": scaler.state_dict()}
    save_file(tensors, str(tmp / "optim.safetensors"))
    save_file({f"rank{r}": t.contiguous() for r, t in enumerate(rng)}, str(tmp / "rng.safetensors"))
    doc = {"format": STATE_FORMAT, "format_version": STATE_VERSION, "step": step, "world_size": len(rng),
           "counters": counters, "config": to_dict(trainer.cfg), "optimizers": optim_doc,
           "style_sha256": trainer.encoder.sha256, "time": time.time()}
    (tmp / "state.json").write_text(json.dumps(doc, indent=1) + "\n")
    for f in tmp.iterdir():
        _fsync(f)
    if final.exists():  # the same step saved again (after a resume): swap the old one out first
        old = ckpt_dir / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync(ckpt_dir)
    return final


def list_states(ckpt_dir: Path) -> list[Path]:
    """Complete states, oldest first (temporary folders of interrupted writes are never listed)."""
    if not ckpt_dir.is_dir():
        return []
    states = [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(STATE_PREFIX)
              and p.name[len(STATE_PREFIX):].isdigit() and (p / "state.json").is_file()]
    return sorted(states, key=lambda p: int(p.name[len(STATE_PREFIX):]))


def prune_states(ckpt_dir: Path, keep: int) -> None:
    for p in list_states(ckpt_dir)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    for p in ckpt_dir.glob(".tmp-*"):  # leftovers of killed writes (ours are renamed away already)
        shutil.rmtree(p, ignore_errors=True)


def read_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """state.json and the three tensor files of one state; raises ValueError when anything is unreadable."""
    try:
        doc = json.loads((path / "state.json").read_text())
        if doc.get("format") != STATE_FORMAT or doc.get("format_version") != STATE_VERSION:
            raise ValueError(f"not an {STATE_FORMAT} v{STATE_VERSION} state")
        return (doc, load_file(str(path / "model.safetensors")), load_file(str(path / "optim.safetensors")),
                load_file(str(path / "rng.safetensors")))
    except Exception as exc:  # truncated files, bad JSON, missing files: all mean "not usable"
        raise ValueError(f"training state {path} is unreadable ({exc})") from exc


def latest_state(ckpt_dir: Path) -> tuple[Path, tuple] | None:
    """The newest readable state; unreadable ones are reported and skipped."""
    for path in reversed(list_states(ckpt_dir)):
        try:
            return path, read_state(path)
        except ValueError as exc:
            print(f"warning: {exc}; trying an older one", file=sys.stderr)
    return None


def load_into(trainer: Trainer, loaded: tuple, env: Dist) -> int:
    doc, model, optim, rng = loaded
    for name, module in trainer.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)})
    for name, (opt, scaler) in trainer.optimizers().items():
        saved = doc["optimizers"][name]
        state: dict[int, dict[str, Any]] = {}
        for key, value in optim.items():
            owner, idx, field = key.split(".", 2)
            if owner == name:
                state.setdefault(int(idx), {})[field] = value
        for idx, scalars in saved["scalars"].items():
            state.setdefault(int(idx), {}).update(scalars)
        groups = [dict(g, betas=tuple(g["betas"])) for g in saved["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
    if doc["world_size"] == env.world:
        set_rng(rng[f"rank{env.rank}"], env)
    else:
        print(f"note: the state was written by {doc['world_size']} process(es), this run has {env.world}: "
              "RNG streams start afresh (the data order is rebuilt for the new world size)", file=sys.stderr)
    return int(doc["step"])


# ----------------------------------------------------------------------------------------- logging and samples
class RunLog:
    """Rank 0's outputs: metrics.jsonl, TensorBoard scalars, sample grids."""

    def __init__(self, run_dir: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.metrics = run_dir / "metrics.jsonl"
        if self.metrics.exists():  # a resumed run: drop lines past the state it continues from
            lines = [ln for ln in self.metrics.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= start_step]
            self.metrics.write_text("".join(ln + "\n" for ln in kept))
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step if start_step else None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.tb.add_scalar(k, v, step)
        with self.metrics.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def close(self) -> None:
        self.tb.close()


@torch.no_grad()
def sample_grid(trainer: Trainer, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, float]:
    """Rows of sketch | reference | output | target | output with the next row's reference (EMA generator),
    and the mean absolute change the swapped reference causes (0 = the reference is ignored)."""
    batch = {k: v.to(trainer.device) for k, v in batch.items()}
    style, _ = trainer.style_inputs(batch)
    with trainer.autocast():
        out = trainer.ema(batch["line"], style).float().clamp(0, 1)
        swapped = trainer.ema(batch["line"], style.roll(1, 0)).float().clamp(0, 1)
    r = batch["color"].shape[-1]
    ref = F.interpolate(batch["reference"], size=(r, r), mode="bilinear", align_corners=False)
    tiles = [batch["line"].expand(-1, 3, -1, -1), ref, out, batch["color"], swapped]
    grid = torch.cat([torch.cat(list(t), dim=1) for t in tiles], dim=2)  # rows: samples, columns: tiles
    image = (grid.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return image, float((out - swapped).abs().mean())


def export(cfg: TrainConfig, ema: Generator, style_sha256: str, out_dir: Path, step: int,
           counters: dict[str, int]) -> Path:
    """The EMA generator in the backend's checkpoint format (guide decoders dropped)."""
    meta = {"trained_by": "irodori train", "step": step, "images_seen": counters.get("images", 0),
            "data": {"source": cfg.data.source, "reference": cfg.data.reference,
                     "synth_seeds": [cfg.data.synth_seed_start, cfg.data.synth_seed_start + cfg.data.synth_seed_count]},
            "loss": to_dict(cfg.loss)}
    return save_checkpoint(out_dir, ema, style_sha256, meta=meta)


def ranks_agree(module: nn.Module, env: Dist) -> bool:
    """Checksums of the weights compared over ranks (DDP must keep them identical)."""
    if env.world == 1:
        return True
    flat = torch.cat([p.detach().double().flatten() for p in module.parameters()])
    sums = torch.stack([flat.sum(), (flat ** 2).sum(), (flat * (torch.arange(flat.numel(), device=flat.device) % 1009)).sum()])
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


# ----------------------------------------------------------------------------------------- the loop
def check_resume_config(stored: TrainConfig, asked: TrainConfig) -> None:
    a, b = _flat(to_dict(stored)), _flat(to_dict(asked))
    changed = sorted(k for k in a if a[k] != b.get(k) and k not in RESUME_SAFE)
    if changed:
        raise ValueError("--resume with a config that differs from the run's in: " + ", ".join(
            f"{k} ({a[k]!r} -> {b.get(k)!r})" for k in changed) + ". Only " + ", ".join(sorted(RESUME_SAFE)) +
            " may change; start a new run_dir for anything else.")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def train(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
    """Train up to cfg.steps, or stop early at `stop_at` (with a state saved there, as a time-sliced job would);
    returns a summary (step, last scalars, run_dir, export path). In-process use works."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = setup_distributed(cfg)
    run_dir = Path(cfg.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    loaded = None
    if resume:
        found = latest_state(ckpt_dir)
        if found is None:
            print(f"note: nothing to resume in {ckpt_dir}; starting from step 0", file=sys.stderr)
        else:
            path, loaded = found
            stored = from_dict(TrainConfig, loaded[0]["config"], f"{path}/state.json config")
            check_resume_config(stored, cfg)
    elif list_states(ckpt_dir):
        raise ValueError(f"{run_dir} already holds training states: continue it with --resume, or pick another "
                         "run_dir (--run_dir=PATH)")

    trainer = Trainer(cfg, env)
    step = load_into(trainer, loaded, env) if loaded is not None else 0
    counters = dict(loaded[0].get("counters", {})) if loaded is not None else {}
    counters.setdefault("images", 0)
    counters.setdefault("skipped", 0)
    if loaded is not None and env.main:
        print(f"resumed from {path} at step {step}", file=sys.stderr)

    dataset = TrainingData(cfg.data, cfg.model, cfg.seed)
    if loaded is None and cfg.style_calibration:
        trainer.calibrate_style(dataset, cfg.style_calibration)
    sampler = EpochSampler(dataset, cfg.batch_size, env.world, env.rank, cfg.seed, start_step=step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.data.workers, drop_last=True,
        pin_memory=env.device.type == "cuda", persistent_workers=cfg.data.workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed + env.rank))  # never touches the global RNG

    log = None
    samples = None
    if env.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config_json(cfg))
        prune_states(ckpt_dir, cfg.keep_last) if ckpt_dir.is_dir() else None
        log = RunLog(run_dir, step)
        samples = dataset.sample_batch(cfg.samples)
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not (env.main and cfg.progress), dynamic_ncols=True,
               unit="step")
    sums: dict[str, torch.Tensor] = {}
    last: dict[str, float] = {}
    count, t0 = 0, time.perf_counter()
    it = iter(loader)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    while step < end:
        batch = next(it)
        counters["skipped"] += int(batch.pop("skipped").sum())
        logs = trainer.step(batch, step)
        step += 1
        counters["images"] += cfg.batch_size * env.world
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == end:
            elapsed = time.perf_counter() - t0
            last = {f"train/{k}": float(v) / count for k, v in sums.items()}
            last["train/images_per_s"] = count * cfg.batch_size * env.world / max(elapsed, 1e-9)
            last["data/skipped_files"] = float(counters["skipped"])
            if log is not None:
                log.scalars(step, last)
                bar.set_postfix(l1=f"{last['train/l1']:.3f}", g=f"{last['train/loss_g']:.3f}",
                                d=f"{last.get('train/loss_d', 0.0):.3f}", refresh=False)
            sums, count, t0 = {}, 0, time.perf_counter()
        if log is not None and (step % cfg.sample_every == 0 or step == end):
            image, sensitivity = sample_grid(trainer, samples)
            from backend.inference.imageio import save_image

            save_image(run_dir / "samples" / f"step_{step:09d}.png", image)
            log.scalars(step, {"eval/ref_sensitivity": sensitivity})
        if step % cfg.checkpoint_every == 0 or step == end:
            rng = gather_rng(env)
            if not all(ranks_agree(m, env) for m in trainer.modules().values()):
                raise RuntimeError(f"step {step}: the weights differ between ranks; DDP is broken")
            if env.main:
                save_state(ckpt_dir, trainer, step, counters, rng)
                prune_states(ckpt_dir, cfg.keep_last)
            if env.world > 1:
                dist.barrier()
        if env.main and cfg.export_every and step % cfg.export_every == 0 and step < cfg.steps:
            export(cfg, trainer.ema, trainer.encoder.sha256, run_dir / "export", step, counters)
    bar.close()

    exported = None
    if env.main:
        exported = export(cfg, trainer.ema, trainer.encoder.sha256, run_dir / "export", step, counters)
        log.close() if log is not None else None
    dump = os.environ.get(RANK_DUMP_ENV)
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        save_file({k: _cpu(v) for k, v in trainer.G.state_dict().items()}, str(Path(dump) / f"rank{env.rank}.safetensors"))
    if env.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "scalars": last, "run_dir": str(run_dir), "export": str(exported) if exported else None,
            "counters": counters, "rank": env.rank, "world": env.world}


def export_latest(cfg: TrainConfig, out_dir: Path) -> Path:
    """`--export DIR`: the EMA generator of the run's newest readable state, in the backend's format."""
    found = latest_state(Path(cfg.run_dir) / "checkpoints")
    if found is None:
        raise ValueError(f"no training state under {Path(cfg.run_dir) / 'checkpoints'} to export")
    path, (doc, model, _, _) = found
    stored = from_dict(TrainConfig, doc["config"], f"{path}/state.json config")
    ema = Generator(stored.model, guides=True)
    ema.load_state_dict({k[4:]: v for k, v in model.items() if k.startswith("ema.")})
    sha = shared_style_encoder(stored.model.vgg_weights).sha256
    if sha != doc.get("style_sha256"):
        raise ValueError(f"{path} was trained with a style encoder that hashes to {str(doc.get('style_sha256'))[:12]}..., "
                         f"this machine's {stored.model.vgg_weights} weights hash to {sha[:12]}...: use the same VGG19 file")
    return export(stored, ema, sha, out_dir, int(doc["step"]), doc.get("counters", {}))


# ----------------------------------------------------------------------------------------- CLI
def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete state in RUN_DIR/checkpoints (or start if none)")
    parser.add_argument("--export", metavar="DIR", default=None,
                        help="only export the EMA generator of the run's newest state to DIR, then exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="stop at this step with a state saved (continue later with --resume)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a training config JSON (see training/configs/), or a run folder "
                                       "(its config.json is used)")
    _flags(parser)
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="--key=value overrides with dotted keys, e.g. --steps=500 --model.base_channels=16 "
                             "--data.folder=/data/illustrations")


def parse_command(args: argparse.Namespace) -> tuple[TrainConfig, argparse.Namespace]:
    """Resolve the config and split the flags that argparse left among the overrides."""
    late = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _flags(late)
    flags, rest = late.parse_known_args(args.overrides or [])
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        raise ValueError(f"unexpected argument(s) {' '.join(bad)}: overrides look like --key=value")
    flags.resume = flags.resume or args.resume
    flags.export = flags.export or args.export
    flags.print_config = flags.print_config or args.print_config
    flags.stop_at = flags.stop_at if flags.stop_at is not None else args.stop_at
    path = Path(args.config)
    if path.is_dir():
        path = path / "config.json"
    return load_config(path, rest), flags


def main(args: argparse.Namespace) -> int:
    try:
        cfg, flags = parse_command(args)
        if flags.print_config:
            print(config_json(cfg), end="")
            return 0
        if flags.export:
            out = export_latest(cfg, Path(flags.export))
            print(f"exported the EMA generator to {out} (use: irodori colorize --checkpoint {out} ...)")
            return 0
        summary = train(cfg, resume=flags.resume, stop_at=flags.stop_at)
    except ValueError as exc:
        print(f"irodori train: {exc}", file=sys.stderr)
        return 2
    if summary["rank"] == 0:
        print(f"trained to step {summary['step']}; generator exported to {summary['export']}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="irodori train")
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
