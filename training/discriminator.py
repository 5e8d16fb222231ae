"""The discriminator: one conv trunk with a head per adversarial loss in use.

- "ac" head, 4096 outputs (the paper's modified AC-GAN): for a real image it should approach norm(V(y)),
  the normalised VGG19 fc1 of that image; for a generated one, all zeros. It has no real/fake output.
- "adv" head, 1 output: the least-squares (LSGAN) and plain DCGAN critics the paper also mentions.
The paper recommends combining them, so several heads can share the trunk (config loss.gan_modes).
No normalisation layers: real and fake go through in ONE batch (DDP allows one forward per backward), and
batch statistics would mix them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.model.networks import FC1_DIM
from training.config import DiscConfig

HEAD_OF_MODE = {"acgan": "ac", "acgan_paper": "ac", "lsgan": "ls", "dcgan": "dc"}


class Discriminator(nn.Module):
    def __init__(self, cfg: DiscConfig, modes: tuple[str, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch = 3, cfg.base_channels
        for _ in range(cfg.layers):
            layers += [nn.Conv2d(ch_in, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch_in, ch = ch, min(ch * 2, cfg.max_channels)
        layers += [nn.Conv2d(ch_in, ch_in, 3, padding=1), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        heads = sorted({HEAD_OF_MODE[m] for m in modes})
        self.heads = nn.ModuleDict({h: nn.Linear(ch_in, FC1_DIM if h == "ac" else 1) for h in heads})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B,3,H,W) in [0,1] -> {head: logits}, "ac" (B,4096), "ls"/"dc" (B,1)."""
        x = self.trunk(image * 2.0 - 1.0)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return {name: head(x) for name, head in self.heads.items()}
