"""The training configuration: data, losses, discriminator, optimiser and loop, all in one JSON file.

`irodori train CONFIG.json --key=value ...` loads a JSON object into `TrainConfig` (unknown keys are refused,
missing keys take the defaults below) and writes the resolved config into the run folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from backend.model.config import ModelConfig, apply_overrides, from_dict, read_json, to_dict

EXTRACTORS = ("dilate", "xdog", "highpass")  # the default choice: classical, no weights needed
KNOWN_EXTRACTORS = (*EXTRACTORS, "hed")  # "hed": training.hed, needs `irodori weights`
GAN_MODES = ("acgan", "acgan_paper", "lsgan", "dcgan")
SOURCES = ("folder", "synth", "mixed")
REFERENCES = ("self", "palette_pair")
MAX_CONFIG_BYTES = 1024 * 1024


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"{name} must be [a, b] with {low} <= a <= b <= {high}, got {list(pair)}")


@dataclass(frozen=True)
class DataConfig:
    """Where training triples (line art, colour, grey) and references come from."""

    source: str = "synth"  # "folder" (colour illustrations), "synth" (training.synth) or "mixed"
    folder: str = ""  # colour illustrations, searched recursively (png, jpg, webp, bmp, tif, gif)
    lines_folder: str = ""  # optional real line art, paired with `folder` by file name
    real_lines_ratio: float = 1.0  # chance to use the paired real line art (when there is one) over an extractor
    max_pixels: int = 6000 * 6000  # bigger files are skipped like corrupt ones
    holdout: float = 0.0  # share of `folder` never trained on, picked by file name (training.data.held_out)
    synth_ratio: float = 0.5  # share of synthetic samples when source is "mixed"
    synth_seed_start: int = 0  # synthetic characters and palettes use seeds [start, start + count):
    synth_seed_count: int = 100_000  # keep them below training.eval's held-out range (10,000,000 and up)
    synth_size: int = 0  # render side of synthetic characters (references: at least model.reference_size); 0 = model.resolution
    synth_line_ratio: float = 0.5  # chance a synthetic sample uses its rendered line art (else an extractor)
    crop_size: int = 512  # random square crops of about this side, resized to model.resolution
    crop_scale: tuple[float, ...] = (0.7, 1.0)  # crop side = U(a, b) * crop_size (folder) or * synth_size (synth)
    flip: bool = True  # random horizontal flips of the training pair
    extractors: tuple[str, ...] = EXTRACTORS  # line extractors drawn at random, each with random parameters
    line_augment: bool = True  # random thickness, contrast and blur of the extracted lines
    reference: str = "self"  # "self": V(y), the paper; "palette_pair": another character in y's palette (synth)
    pair_ratio: float = 1.0  # with "palette_pair": share of synthetic samples that get a pair (the rest: self)
    ref_augment: bool = True  # augment the reference before VGG19, against the ignored-reference failure
    ref_crop: tuple[float, ...] = (0.6, 1.0)  # reference crop side as a fraction of the image
    ref_rotate: float = 15.0  # maximum rotation in degrees
    ref_warp: float = 0.03  # std of a smooth random displacement, as a fraction of the side
    ref_flip: bool = True
    hint_empty: float = 0.5  # with model.hint_channels: share of samples given no hints at all
    hint_p: float = 0.125  # otherwise the hint count is Geometric(hint_p) (Zhang et al. 2017: mean 8)
    workers: int = 0  # DataLoader worker processes per rank

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"data.source must be one of {', '.join(SOURCES)}, not {self.source!r}")
        if self.source in ("folder", "mixed") and not self.folder:
            raise ValueError(f"data.source {self.source!r} needs data.folder (a folder of colour illustrations); "
                             "set --data.folder=PATH or use --data.source=synth")
        if self.reference not in REFERENCES:
            raise ValueError(f"data.reference must be one of {', '.join(REFERENCES)}, not {self.reference!r}")
        if self.reference == "palette_pair" and self.source == "folder":
            raise ValueError("data.reference 'palette_pair' needs synthetic characters: use data.source synth or mixed")
        bad = [e for e in self.extractors if e not in KNOWN_EXTRACTORS]
        if bad or not self.extractors:
            raise ValueError(f"data.extractors must be a non-empty list from {', '.join(KNOWN_EXTRACTORS)}, got {list(self.extractors)}")
        if not 0.0 <= self.holdout <= 0.5:
            raise ValueError(f"data.holdout must be within [0, 0.5], got {self.holdout}")
        if not 0.0 < self.hint_p <= 1.0:
            raise ValueError(f"data.hint_p must be within (0, 1], got {self.hint_p}")
        for name in ("real_lines_ratio", "synth_ratio", "synth_line_ratio", "pair_ratio", "hint_empty"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"data.{name} must be within [0, 1], got {getattr(self, name)}")
        _check_range("data.crop_scale", self.crop_scale, 0.05, 1.0)
        _check_range("data.ref_crop", self.ref_crop, 0.05, 1.0)
        if self.crop_size < 16:
            raise ValueError("data.crop_size must be at least 16")
        if self.synth_seed_count < 1 or self.synth_seed_start < 0:
            raise ValueError("data.synth_seed_start must be >= 0 and data.synth_seed_count >= 1")
        if not 0.0 <= self.ref_rotate <= 180.0 or not 0.0 <= self.ref_warp <= 0.2:
            raise ValueError("data.ref_rotate must be within [0, 180] degrees and data.ref_warp within [0, 0.2]")
        if self.workers < 0 or self.max_pixels < 4:
            raise ValueError("data.workers must be >= 0 and data.max_pixels positive")


@dataclass(frozen=True)
class LossConfig:
    """L = l1 * |y - G_f| + alpha * |T(y) - G_g1| + beta * |y - G_g2| + gan * L_GAN (paper, eq. 2 and 3)."""

    l1: float = 1.0
    alpha: float = 0.3  # guide decoder 1 (sketch features only) against the greyscale target T(y)
    beta: float = 0.9  # guide decoder 2 (after the style) against the colour target y
    gan: float = 0.01  # lambda
    gan_modes: tuple[str, ...] = ("acgan",)  # any of acgan, acgan_paper, lsgan, dcgan (summed); [] = no GAN
    gan_start: int = 0  # the adversarial terms start at this step (the discriminator trains from step 0)
    acgan_target: str = "target"  # norm(V(.)) of the "target" y (paper) or of the "reference" (saves a VGG pass)
    rare_colour: float = 0.0  # weigh colour-L1 pixels by (share of their colour)^-this; 0 = the paper's plain L1

    def __post_init__(self) -> None:
        bad = [m for m in self.gan_modes if m not in GAN_MODES]
        if bad or len(set(self.gan_modes)) != len(self.gan_modes):
            raise ValueError(f"loss.gan_modes must be distinct entries of {', '.join(GAN_MODES)}, got {list(self.gan_modes)}")
        if self.acgan_target not in ("target", "reference"):
            raise ValueError(f"loss.acgan_target must be 'target' or 'reference', not {self.acgan_target!r}")
        if min(self.l1, self.alpha, self.beta, self.gan) < 0 or self.gan_start < 0:
            raise ValueError("loss weights and loss.gan_start must be >= 0")
        if not 0.0 <= self.rare_colour <= 1.0:
            raise ValueError(f"loss.rare_colour must be between 0 (plain L1) and 1 (every colour bin weighs the same), "
                             f"got {self.rare_colour}")


@dataclass(frozen=True)
class DiscConfig:
    """A plain strided conv net (no normalisation, so real and fake can share one batch under DDP)."""

    base_channels: int = 64
    max_channels: int = 512
    layers: int = 4  # stride-2 convolutions before the global pool

    def __post_init__(self) -> None:
        if self.base_channels < 1 or self.max_channels < self.base_channels or not 1 <= self.layers <= 8:
            raise ValueError("disc: base_channels >= 1, max_channels >= base_channels and 1 <= layers <= 8")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW for both nets; the paper gives no optimiser, these are common GAN settings."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, ...] = (0.5, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up of both rates
    schedule: str = "constant"  # "constant" or "cosine" (down to min_lr_ratio at the last step)
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # clip each net's gradient norm; 0 = off

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"optim.schedule must be 'constant' or 'cosine', not {self.schedule!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.lr_g <= 0 or self.lr_d <= 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise ValueError("optim: learning rates must be > 0, grad_clip and warmup_steps >= 0")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run_dir: str = "runs/irodori"  # logs, samples, checkpoints/ and export/ go here
    steps: int = 20_000  # optimiser steps in total (a resumed run continues up to this)
    batch_size: int = 4  # per process; the global batch is batch_size * world size
    seed: int = 0
    device: str = "auto"  # "auto", "cpu" or "cuda" (torchrun: cuda:LOCAL_RANK)
    amp: str = "auto"  # "auto" (bf16 on GPUs that have it, else fp16; off on CPU), "bf16", "fp16" or "off"
    compile: bool = False  # torch.compile the generator and the discriminator
    threads: int = 0  # torch CPU threads per process; 0 = torch's default. On a shared CPU, 1 is often fastest
    ema_decay: float = 0.999  # EMA of the generator's weights; the export uses the EMA weights
    log_every: int = 10  # scalars to TensorBoard and metrics.jsonl
    sample_every: int = 500  # a PNG grid sketch | reference | output | target
    samples: int = 4  # rows of that grid
    checkpoint_every: int = 1000
    keep_last: int = 3  # training states kept in run_dir/checkpoints
    export_every: int = 0  # also export the EMA generator to run_dir/export every N steps (0 = at the end only)
    progress: bool = True  # tqdm bar on rank 0
    style_calibration: int = 256  # references whose fc1 statistics standardise the style per dimension (0 = off)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off, not {self.amp!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be within [0, 1)")
        if min(self.log_every, self.sample_every, self.checkpoint_every) < 1 or self.export_every < 0:
            raise ValueError("log_every, sample_every and checkpoint_every must be >= 1, export_every >= 0")
        if self.threads < 0:
            raise ValueError("threads must be >= 0 (0 = torch's default)")
        if self.style_calibration < 0 or self.style_calibration == 1:
            raise ValueError("style_calibration must be 0 (off) or at least 2 references")
        if self.keep_last < 1 or self.samples < 1:
            raise ValueError("keep_last and samples must be >= 1")
        if not self.run_dir:
            raise ValueError("run_dir must name a folder")
        if self.data.crop_size < self.model.resolution and self.data.source != "synth":
            raise ValueError(f"data.crop_size {self.data.crop_size} is below model.resolution {self.model.resolution}: "
                             "crops would be upscaled; raise crop_size")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a config JSON file and apply `--key=value` overrides; errors name the bad key."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config {path} does not exist (see training/configs/ for examples)")
    data = read_json(path, "config", MAX_CONFIG_BYTES)
    try:
        cfg = from_dict(TrainConfig, data, str(path))
        return apply_overrides(TrainConfig, cfg, overrides or [])
    except TypeError as exc:  # e.g. a string where a number belongs
        raise ValueError(f"config {path}: {exc}") from exc


def config_json(cfg: TrainConfig) -> str:
    return json.dumps(to_dict(cfg), indent=2) + "\n"
