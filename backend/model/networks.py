"""The colorization model: a frozen VGG19 style encoder and a residual U-net generator.

Data flow (Style2paints V1, arXiv 1706.03319):

    reference RGB --VGG19 up to fc1 (no ReLU, frozen)--> 4096-d --normalise--> style
    sketch --encoder (residual blocks, 2x down per scale)--> mid features --(guide decoder 1: grey)
           + dense(style) broadcast over space --> mid residual blocks --(guide decoder 2: colour)
           --> decoder (2x up per scale, skip connections) --> RGB

The guide decoders fight vanishing gradients in the middle of the U-net and exist only in training.
"""
from __future__ import annotations

import copy
import functools
import hashlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.model.config import ModelConfig, parse_vgg_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FC1_DIM = 4096


# ----------------------------------------------------------------------------------------- style encoder
class StyleEncoder(nn.Module):
    """VGG19 up to fc1, WITHOUT its ReLU, frozen and always in eval mode.

    Frozen matters: in training the reference is the target itself, and a trainable encoder would learn
    to copy pixels through it. A fixed fc1 vector is only a global summary the net must learn to use.
    """

    def __init__(self, weights: str = "random:0") -> None:
        super().__init__()
        from torchvision.models import vgg19

        with torch.device("meta"):  # skip torchvision's own random init: every weight is set below
            vgg = vgg19(weights=None)
        self.features = vgg.features.to_empty(device="cpu")
        self.pool = vgg.avgpool
        self.fc1 = vgg.classifier[0].to_empty(device="cpu")
        self.weights = weights
        self._folded: dict[tuple[int, int, str], torch.Tensor] = {}  # fc1 folded over the pool, per map size
        self.load_weights(weights)
        self.requires_grad_(False)
        self.eval()
        self.to(memory_format=torch.channels_last)  # faster VGG convs on CPU; values equal up to rounding
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.sha256 = weights_sha256(self)

    def load_weights(self, weights: str) -> None:
        kind, seed = parse_vgg_weights(weights)  # a clear ValueError for anything else
        if kind == "random":
            _seeded_vgg_init(self, seed)
        elif kind == "looks-linear":
            _looks_linear_vgg_init(self, seed)
        elif kind != "imagenet":
            raise ValueError(f"vgg_weights {weights!r} is not a VGG19: build it with shared_style_encoder()")
        else:
            state = _imagenet_state_dict()
            self.features.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("features.")})
            self.fc1.load_state_dict({"weight": state["classifier.0.weight"], "bias": state["classifier.0.bias"]})

    def train(self, mode: bool = True) -> "StyleEncoder":
        return super().train(False)  # frozen: never leave eval mode

    def forward(self, reference: torch.Tensor, fold_pool: bool = False) -> torch.Tensor:
        """reference: (B,3,S,S) RGB in [0,1] -> raw fc1 activations (B,4096), before any ReLU.

        fold_pool: under 224 px the adaptive pool only repeats a feature map smaller than 7x7, so fc1 can be
        folded over that repeat once (`_folded_fc1`): the same result up to float rounding, with several times
        less memory traffic (fc1 is 400 MB and dominates small references on CPU). Training folds. Inference
        does not, so its pictures stay those the bundled demo model was checked with (folding moves one of
        its nine sample pictures by a rounding step).
        """
        x = self.features((reference - self.mean) / self.std)
        h, w = x.shape[-2:]
        if fold_pool and h * w < 49:
            folded = self._folded_fc1(h, w, x.device).to(x.dtype)
            return F.linear(torch.flatten(x, 1), folded, self.fc1.bias.to(x.dtype))
        return self.fc1(torch.flatten(self.pool(x), 1))

    def _folded_fc1(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """fc1 composed with the pool for an (h, w) feature map: (4096, channels * h * w), kept per size."""
        key = (h, w, str(device))
        if key not in self._folded:
            fc1 = self.fc1.weight.detach().double()
            cells = torch.eye(h * w, dtype=torch.float64, device=fc1.device).view(h * w, 1, h, w)
            pool = self.pool(cells).reshape(h * w, -1)  # (hw, 49): how much each input cell feeds each pooled cell
            folded = fc1.view(fc1.shape[0], -1, pool.shape[1]) @ pool.t()  # (4096, channels, hw)
            self._folded[key] = folded.reshape(fc1.shape[0], -1).float().to(device)
        return self._folded[key]


def normalize_style(fc1: torch.Tensor) -> torch.Tensor:
    """The paper's global normalisation: standardise each fc1 vector over its 4096 dimensions.

    Random and ImageNet VGG weights give fc1 values of very different scales; standardising makes the
    generator's input scale-free and is monotone per dimension.
    """
    mean = fc1.mean(dim=1, keepdim=True)
    std = fc1.std(dim=1, keepdim=True).clamp_min(1e-6)
    return (fc1 - mean) / std


def style_target(fc1: torch.Tensor) -> torch.Tensor:
    """norm(V(y)) in (0,1) for the discriminator: a sigmoid of the standardised fc1 vector (monotone)."""
    return torch.sigmoid(normalize_style(fc1))


def _seeded_vgg_init(encoder: StyleEncoder, seed: int) -> None:
    """torchvision's VGG init scheme (kaiming-normal convs, N(0, 0.01) linear), drawn from a seeded
    generator in a fixed order, so `random:SEED` gives the same weights on every machine."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in [*encoder.features, encoder.fc1]:
            if isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                module.bias.zero_()
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.01, generator=gen)
                module.bias.zero_()


def _looks_linear_vgg_init(encoder: StyleEncoder, seed: int) -> None:
    """Seeded "looks-linear" weights (Balduzzi et al. 2017): every layer holds mirrored pairs of filters,
    [A; -A] on its outputs and [B, -B] on its inputs, so relu(h) and relu(-h) travel side by side and the next
    layer recombines them into B.h. Up to max-pooling the encoder is a random LINEAR map of the picture.

    Why: with independent random weights (`random:SEED`) sixteen ReLU layers wash out the differences between
    pictures (a standardised fc1 vector is nearly the same for any input), and small parts' colours (eyes,
    collar, accessory) are lost before fc1. Mirrored pairs keep them: a ridge probe from fc1 to the synthetic
    characters' part colours errs less (the figures are in docs/performance.md).
    """
    gen = torch.Generator().manual_seed(seed)
    half_in = 0  # 0: the previous layer is the RGB input itself, not a mirrored pair
    with torch.no_grad():
        for module in [*encoder.features, encoder.fc1]:
            if isinstance(module, nn.Conv2d):
                c_out, c_in, kh, kw = module.weight.shape
                fan_in = (half_in or c_in) * kh * kw
                b = torch.randn(c_out // 2, half_in or c_in, kh, kw, generator=gen) / fan_in**0.5
                rows = torch.cat([b, -b], 1) if half_in else b
                module.weight.copy_(torch.cat([rows, -rows], 0))
                module.bias.zero_()
                half_in = c_out // 2
            elif isinstance(module, nn.Linear):  # fc1 reads (512 channels x 7 x 7) flattened channel-major
                cells = module.in_features // (2 * half_in)
                b = torch.randn(module.out_features, half_in, cells, generator=gen) / (half_in * cells) ** 0.5
                module.weight.copy_(torch.cat([b, -b], 1).reshape(module.out_features, -1))
                module.bias.zero_()


def _imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's VGG19 ImageNet weights, from the torch hub cache or downloaded there."""
    import os

    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.exists(path):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.hub.download_url_to_file(url, path, progress=True)
        except Exception as exc:  # no network, proxy, disk full...
            raise RuntimeError(
                f"VGG19 ImageNet weights could not be downloaded ({exc}).\n"
                f"Download {url} on a machine with internet access and put the file at\n  {path}\n"
                "(or set TORCH_HOME to a folder holding hub/checkpoints/), or use vgg_weights='random:SEED'."
            ) from exc
    return torch.load(path, map_location="cpu", weights_only=True)


def weights_sha256(encoder: nn.Module) -> str:
    """sha256 over the encoder's parameter names and fp32 bytes: identifies the style encoder exactly."""
    h = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def shared_style_encoder(weights: str, device: str | torch.device = "cpu") -> StyleEncoder:
    """One frozen encoder per process, weights spec and device (it is ~490 MB and never changes).

    Ask for the device you need rather than moving the one you get: Module.to() moves in place, so a
    Colorizer on the GPU would otherwise pull the encoder from under every CPU user in the process."""
    return _shared_style_encoder(weights, str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _shared_style_encoder(weights: str, device: str) -> StyleEncoder:
    if device == "cpu" and weights == "hed-vgg16":  # VGG16 with HED's weights: pooled conv statistics
        from backend.model.vgg16 import VGG16StyleEncoder

        return VGG16StyleEncoder()  # type: ignore[return-value]  (the same interface: forward, weights, sha256)
    if device == "cpu":
        return StyleEncoder(weights)
    return copy.deepcopy(_shared_style_encoder(weights, "cpu")).to(device)  # no second random init or download


# ----------------------------------------------------------------------------------------- generator
class ResBlock(nn.Module):
    """conv-act-conv with an identity skip; the last conv starts small so deep stacks begin near identity."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            self.conv2.weight.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


def _blocks(channels: int, count: int, scale: float) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(channels, scale) for _ in range(count)])


class GuideDecoder(nn.Module):
    """A light decoder from the mid level straight to full resolution (training only)."""

    def __init__(self, in_channels: int, out_channels: int, ups: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for i in range(ups):
            nxt = max(width, in_channels >> (i + 1))
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, nxt, 3, padding=1), nn.LeakyReLU(0.2)]
            ch = nxt
        layers.append(nn.Conv2d(ch, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Generator(nn.Module):
    """Residual U-net: sketch (B,1,H,W) in [0,1] + normalised style (B,4096) -> RGB (B,3,H,W), ~[0,1].

    H and W must be multiples of `config.multiple`; the pipeline pads to that.
    """

    def __init__(self, config: ModelConfig, guides: bool = False) -> None:
        super().__init__()
        self.config = config
        c = config
        widths = [c.base_channels * m for m in c.channel_mults]
        self.stem = nn.Conv2d(1 + c.hint_channels, widths[0], 3, padding=1)
        self.enc = nn.ModuleList(_blocks(w, c.blocks_per_level, c.residual_scale) for w in widths[:-1])
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.style = nn.Linear(FC1_DIM, widths[-1])  # the paper's "dense 2048 layer above the fc1"
        # Per-dimension statistics of normalised fc1 over the training references (set by training, stored in
        # the checkpoint). Most of a standardised fc1 vector is the same for every picture; removing the
        # shared part makes the differences between references, the only thing worth following, full-scale.
        self.register_buffer("style_mean", torch.zeros(FC1_DIM))
        self.register_buffer("style_std", torch.ones(FC1_DIM))
        self.mid = nn.ModuleList(ResBlock(widths[-1], c.residual_scale) for _ in range(c.mid_blocks))
        self.up = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.merge = nn.ModuleList(nn.Conv2d(2 * w, w, 1) for w in widths[:-1])
        self.dec = nn.ModuleList(_blocks(w, c.blocks_per_level, c.residual_scale) for w in widths[:-1])
        self.out = nn.Conv2d(widths[0], 3, 3, padding=1)
        self.guide1 = self.guide2 = None
        if guides:
            ups = len(widths) - 1
            self.guide1 = GuideDecoder(widths[-1], 1, ups, c.guide_channels)  # sketch only -> grey T(y)
            self.guide2 = GuideDecoder(widths[-1], 3, ups, c.guide_channels)  # after style -> colour y

    def forward(self, sketch: torch.Tensor, style: torch.Tensor, guides: bool = False,
                hints: torch.Tensor | None = None):
        """Returns the colour image, or (colour, guide1 grey, guide2 colour) when `guides` is set.

        `hints` (B,4,H,W): hint RGB in [0,1] (zero where there is none) and the hint mask; None = no hints."""
        if guides and (self.guide1 is None or self.guide2 is None):
            raise RuntimeError("this generator was built without guide decoders (Generator(config, guides=True))")
        x = sketch * 2.0 - 1.0
        if self.config.hint_channels:
            if hints is None:
                hints = sketch.new_zeros(sketch.shape[0], self.config.hint_channels, *sketch.shape[-2:])
            colour, mask = hints[:, :3], hints[:, 3:4]
            x = torch.cat([x, (colour * 2.0 - 1.0) * mask, mask], dim=1)  # hint colour in [-1,1], 0 where none
        elif hints is not None:
            raise ValueError("this model was trained without colour hints (hint_channels 0); "
                             "use a model trained with hint_channels 4, or send no hints")
        x = self.stem(x)
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(F.leaky_relu(x, 0.2))
        g1 = self.guide1(x) if guides else None  # mid-level ENTRY: sketch features only
        s = self.style((style - self.style_mean) / self.style_std)[:, :, None, None]
        for i, block in enumerate(self.mid):
            if i == 0 or self.config.style_every_block:
                x = x + s
            x = block(x)
        g2 = self.guide2(x) if guides else None  # mid-level EXIT: after the style
        for up, merge, dec, skip in zip(reversed(self.up), reversed(self.merge), reversed(self.dec), reversed(skips)):
            x = up(F.interpolate(F.leaky_relu(x, 0.2), scale_factor=2.0, mode="nearest"))
            x = dec(merge(torch.cat([x, skip], dim=1)))
        rgb = self.out(F.leaky_relu(x, 0.2)) * 0.5 + 0.5
        if guides:
            return rgb, g1 * 0.5 + 0.5, g2 * 0.5 + 0.5
        return rgb

    @torch.no_grad()
    def calibrate_style(self, styles: torch.Tensor) -> None:
        """Set the per-dimension style statistics from normalised fc1 vectors of many references (N, 4096)."""
        if styles.ndim != 2 or styles.shape[0] < 2 or styles.shape[1] != FC1_DIM:
            raise ValueError(f"calibrate_style needs (N>=2, {FC1_DIM}) style vectors, got {tuple(styles.shape)}")
        self.style_mean.copy_(styles.mean(0))
        self.style_std.copy_(styles.std(0).clamp_min(1e-3))

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights an inference checkpoint needs: everything but the training-only guide decoders."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("guide1.", "guide2."))}
