"""The trainer: generator (with guide decoders), discriminator, EMA, optimisers and scalers, and one step.

One step, in plain order:
  V(reference) with the frozen VGG19 -> G forward (output, guide 1, guide 2) -> D step on real y and the
  DETACHED output -> G step on L1 terms + lambda * adversarial terms with D frozen -> EMA of G.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn

from backend.model.networks import Generator, normalize_style, shared_style_encoder, style_target
from backend.model.preprocess import reference_input
from training.config import TrainConfig
from training.data import CALIBRATION_EPOCH, TrainingData
from training.discriminator import Discriminator
from training.distributed import Dist
from training.losses import d_loss, g_loss, l1_losses


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for cfg.amp, or None for full fp32 ("auto": bf16 where the GPU has it, else fp16)."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning-rate multiplier at `step`: linear warm-up, then constant or cosine down to min_lr_ratio."""
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

    @torch.no_grad()
    def style(self, reference: torch.Tensor) -> torch.Tensor:
        """V(reference): raw fc1 of the frozen encoder, with fc1 folded over the pool for small references."""
        return self.encoder(reference, fold_pool=True)

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
                    fc1_y = self.style(reference_input(batch["color"], ref.shape[-1])).float()
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
            out, g1, g2 = self.g_run(batch["line"], style, guides=True, hints=batch.get("hints"))
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
