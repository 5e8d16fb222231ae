"""The paper's losses (arXiv 1706.03319, eq. 2 and 3), written on logits for numerical safety.

L_l1  = l1 * |y - G_f(x, V(y))| + alpha * |T(y) - G_g1(x)| + beta * |y - G_g2(x, V(y))|   (means over pixels;
        optionally weighted towards rare colours, `loss.rare_colour`: ours, not the paper's)
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


RARE_COLOUR_LEVELS = 8  # colour bins per channel for rare_colour_weights (512 bins)
RARE_COLOUR_FLOOR = 1 / 256  # a bin's share is counted as at least this: a few stray pixels get no huge weight


def rare_colour_weights(color: torch.Tensor, power: float) -> torch.Tensor:
    """(B,3,H,W) target in [0,1] -> (B,1,H,W) pixel weights with mean 1 per image: share^-power, where share
    is the fraction of the image's pixels in the pixel's colour bin (8 levels per channel).

    Why: a plain L1 weighs each part of a picture by its area, so the eyes, a collar or a ribbon (1-2% of
    the pixels each) hardly matter to it and a model learns to paint them one average colour whatever the
    reference says. With power 0.5 a part of 1% of the picture weighs 7x more per pixel than one of half
    the picture. Colour bins stand in for parts, so it needs no masks and works on real illustrations."""
    b, _, h, w = color.shape
    q = (color.detach().float().clamp(0.0, 1.0) * (RARE_COLOUR_LEVELS - 1e-3)).long()
    bins = ((q[:, 0] * RARE_COLOUR_LEVELS + q[:, 1]) * RARE_COLOUR_LEVELS + q[:, 2]).view(b, -1)
    counts = torch.zeros(b, RARE_COLOUR_LEVELS ** 3, device=color.device).scatter_add_(
        1, bins, torch.ones(bins.shape, device=color.device))
    share = (counts.gather(1, bins) / bins.shape[1]).clamp_min(RARE_COLOUR_FLOOR)
    weights = share.pow(-power)
    return (weights / weights.mean(1, keepdim=True)).view(b, 1, h, w)


def l1_losses(out: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor, color: torch.Tensor, grey: torch.Tensor,
              cfg: LossConfig) -> dict[str, torch.Tensor]:
    """The three L1 terms, unweighted, and their weighted sum `l1_total`. With cfg.rare_colour > 0 the two
    colour terms weigh each pixel by rare_colour_weights (the greyscale guide stays plain)."""
    weights = rare_colour_weights(color, cfg.rare_colour) if cfg.rare_colour > 0 else None

    def colour_l1(x: torch.Tensor) -> torch.Tensor:
        err = (x.float() - color).abs()
        return (err * weights).mean() if weights is not None else err.mean()

    l1 = colour_l1(out)
    guide1 = (g1.float() - grey).abs().mean()
    guide2 = colour_l1(g2)
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
