"""The paper's losses (arXiv 1706.03319, eq. 2 and 3), written on logits for numerical safety.

L_l1  = l1 * |y - G_f(x, V(y))| + alpha * |T(y) - G_g1(x)| + beta * |y - G_g2(x, V(y))|   (means over pixels)
L_GAN (AC-GAN variant): D outputs 4096 numbers; for a real y they should approach t = norm(V(y)) in (0,1),
      for a generated image 0.
L     = L_l1 + lambda * L_GAN

AC-GAN modes:
- "acgan": D minimises BCE(D(y), t) + BCE(D(G), 0), whose optimum is exactly D(y) = t and D(G) = 0 (the
  behaviour the paper describes); G minimises BCE(D(G), t): a generated picture should be read as real AND as
  having y's style.
- "acgan_paper": the printed formula, D maximises log(D(y) + 1 - t) + log(1 - D(G)) (per dimension, averaged);
  G uses the non-saturating form, maximising log(D(G) + 1 - t). Kept for comparison: the printed real term
  pushes D(y) towards 1 on every dimension, weighted by t, rather than towards t.
Plain modes: "lsgan" (least squares, targets 1 / 0) and "dcgan" (binary cross-entropy on one logit).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.config import LossConfig
from training.discriminator import HEAD_OF_MODE


def l1_losses(out: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor, color: torch.Tensor, grey: torch.Tensor,
              cfg: LossConfig) -> dict[str, torch.Tensor]:
    """The three L1 terms, unweighted, and their weighted sum `l1_total`."""
    l1 = (out.float() - color).abs().mean()
    guide1 = (g1.float() - grey).abs().mean()
    guide2 = (g2.float() - color).abs().mean()
    return {"l1": l1, "guide1": guide1, "guide2": guide2,
            "l1_total": cfg.l1 * l1 + cfg.alpha * guide1 + cfg.beta * guide2}


def _log_sigmoid_plus(logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(logits) + shift) for shift in [0, 1), computed stably."""
    return torch.log(torch.sigmoid(logits) + shift).clamp_min(-100.0)


def d_loss(mode: str, real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """What the discriminator minimises for one mode; `target` is t = norm(V(y)) (B,4096)."""
    head = HEAD_OF_MODE[mode]
    r, f = real[head].float(), fake[head].float()
    if mode == "acgan":
        return F.binary_cross_entropy_with_logits(r, target) + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))
    if mode == "acgan_paper":  # -(log(D(y) + 1 - t) + log(1 - D(G))); log(1 - sigmoid(f)) = -softplus(f)
        return -_log_sigmoid_plus(r, 1.0 - target).mean() + F.softplus(f).mean()
    if mode == "lsgan":
        return 0.5 * ((r - 1.0) ** 2).mean() + 0.5 * (f ** 2).mean()
    if mode == "dcgan":
        return F.softplus(-r).mean() + F.softplus(f).mean()
    raise ValueError(f"unknown GAN mode {mode!r}")


def g_loss(mode: str, fake: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """What the generator minimises for one mode (the discriminator frozen)."""
    f = fake[HEAD_OF_MODE[mode]].float()
    if mode == "acgan":
        return F.binary_cross_entropy_with_logits(f, target)
    if mode == "acgan_paper":
        return -_log_sigmoid_plus(f, 1.0 - target).mean()
    if mode == "lsgan":
        return 0.5 * ((f - 1.0) ** 2).mean()
    if mode == "dcgan":
        return F.softplus(-f).mean()
    raise ValueError(f"unknown GAN mode {mode!r}")
