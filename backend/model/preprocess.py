"""How pictures are resized on their way into the model: one rule shared by inference and training.

The style encoder must see a reference the same way when the generator learns to read it (training) and when
it colours (inference); a different filter in one of them would be a quiet shift in the style vectors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,C,H,W) -> (B,C,*size), bilinear, antialiased when either side shrinks (no aliasing in thin lines
    or fine patterns); returned as it is when it already has that size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def reference_input(reference: torch.Tensor, size: int) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> the (B,3,size,size) square the style encoder reads. The aspect is not kept:
    the whole picture counts as the reference, with nothing cropped away and no padding colour added."""
    return resize(reference, (size, size))


def hint_planes(colour: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Hints at the model's size: (B,3,H,W) RGB in [0,1] + (B,1,H,W) mask in [0,1] -> (B,4,*size).

    A shrunk hint keeps its mean colour and stays set wherever any of it falls (a dot far smaller than one
    model pixel must not vanish); growing is nearest, so no hint colour is blended with "no hint"."""
    if tuple(colour.shape[-2:]) == tuple(size):
        return torch.cat([colour * (mask > 0), (mask > 0).to(colour.dtype)], 1)
    if size[0] < colour.shape[-2] or size[1] < colour.shape[-1]:
        weight = F.adaptive_avg_pool2d(mask, size)
        mean = F.adaptive_avg_pool2d(colour * mask, size) / weight.clamp_min(1e-6)
        hit = (weight > 0).to(colour.dtype)
        return torch.cat([mean.clamp(0.0, 1.0) * hit, hit], 1)
    return hint_planes(F.interpolate(colour, size=size, mode="nearest"), F.interpolate(mask, size=size, mode="nearest"), size)
