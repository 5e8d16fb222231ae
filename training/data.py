"""Training samples: (line art, colour y, grey T(y), reference) made on the fly.

Sources: a folder of colour illustrations (line art extracted by training.extract, or real line art paired by
file name), synthetic characters from training.synth, or a mix. Every random choice of a sample comes from
`np.random.default_rng([seed, epoch, index])`, never from a global generator, so a sample is the same in any
worker, on any rank, before and after `--resume`.

The reference path is where public reimplementations failed (the net ignored the reference), so it gets
its own augmentation: crop, flip, rotation and a smooth warp of y before VGG19 keep the colours but break
the pixel layout, and with `palette_pair` the reference is a different character in the target's palette.
"""
from __future__ import annotations

import math
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from backend.model.config import ModelConfig
from backend.model.preprocess import reference_input
from backend.inference.imageio import IMAGE_SUFFIXES
from training.config import DataConfig
from training.extract import luminance, random_lines
from training.hints import sample_hints

SAMPLE_EPOCH = 2**31 - 1  # the epoch number of the fixed sample-grid items (never a training epoch)
CALIBRATION_EPOCH = 2**31 - 2  # the items whose references calibrate the style statistics
MAX_RETRIES = 20  # corrupt files tried in a row before giving up


def scan_images(folder: str | Path) -> list[Path]:
    """Every image file under `folder` (recursive, common formats), sorted so all ranks agree on indices."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return files


def held_out(path: Path, share: float) -> bool:
    """The fixed evaluation split of a folder: a picture is held out when the crc32 of its file NAME falls in
    the first `share` of the range. By name, so copies of the pictures in other folders split the same way and
    adding pictures never moves old ones between the splits (`irodori eval --images --holdout` uses it too)."""
    return share > 0 and zlib.crc32(path.name.encode()) < share * 2**32


def index_lines(folder: str | Path) -> dict[str, Path]:
    """Line art files keyed by relative path without suffix AND by bare file stem (the first wins)."""
    out: dict[str, Path] = {}
    root = Path(folder)
    for p in scan_images(root):
        out.setdefault(p.relative_to(root).with_suffix("").as_posix(), p)
        out.setdefault(p.stem, p)
    return out


def open_image(path: Path, mode: str, max_pixels: int) -> Image.Image:
    """Open and decode an image as RGB or L; the header's size is checked before the pixels are decoded.
    Transparency is composited on white, like the pipeline does (line art often comes as ink on transparent)."""
    with Image.open(path) as img:
        if img.width < 2 or img.height < 2 or img.width * img.height > max_pixels:
            raise ValueError(f"{img.width}x{img.height} is outside the accepted size (2x2 .. {max_pixels} pixels)")
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert(mode)
        return img.convert(mode)


def crop_box(width: int, height: int, side: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random square (left, top, right, bottom) of about `side` pixels inside the image."""
    s = max(2, min(int(round(side)), width, height))
    left = int(rng.integers(0, width - s + 1))
    top = int(rng.integers(0, height - s + 1))
    return left, top, left + s, top + s


def to_float(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32) / 255.0


def reference_tensor(rgb: np.ndarray, size: int, cfg: DataConfig, rng: np.random.Generator | None) -> torch.Tensor:
    """(H,W,3) float in [0,1] -> (3,size,size) reference for VGG19: the pipeline's resize (reference_input),
    then with `rng` a random crop, flip, rotation and smooth warp in one resampling.
    Reflection padding fills the corners a rotation uncovers with the picture's own colours."""
    t = reference_input(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float(), size)
    if rng is None or not cfg.ref_augment:
        return t[0].clamp(0.0, 1.0)
    scale = rng.uniform(*cfg.ref_crop)
    angle = math.radians(rng.uniform(-cfg.ref_rotate, cfg.ref_rotate))
    flip = -1.0 if (cfg.ref_flip and rng.random() < 0.5) else 1.0
    tx, ty = rng.uniform(-(1 - scale), 1 - scale, size=2)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    theta = torch.tensor([[[cos * flip, -sin, tx], [sin * flip, cos, ty]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 3, size, size], align_corners=False)
    if cfg.ref_warp > 0:  # a 4x4 field of random offsets, upsampled smoothly: a gentle rubber-sheet warp
        coarse = torch.from_numpy(rng.normal(0.0, 2 * cfg.ref_warp, size=(1, 2, 4, 4)).astype(np.float32))
        field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    out = F.grid_sample(t, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out[0].clamp(0.0, 1.0)


class TrainingData(Dataset):
    """Indexable by (index, epoch): see `EpochSampler`. Each item is a dict of float tensors in [0,1]:
    line (1,R,R) with 1 = paper, color (3,R,R) = y, grey (1,R,R) = T(y), reference (3,S,S); and
    `skipped`, the number of unreadable files passed over to make it (summed into the run's counters)."""

    def __init__(self, cfg: DataConfig, model: ModelConfig, seed: int) -> None:
        self.cfg = cfg
        self.resolution = model.resolution
        self.reference_size = model.reference_size
        self.hint_channels = model.hint_channels
        self.seed = seed
        self.files: list[Path] = []
        self.lines: dict[str, Path] = {}
        self.root = Path(cfg.folder) if cfg.folder else None
        if cfg.source in ("folder", "mixed"):
            self.files = [p for p in scan_images(cfg.folder) if not held_out(p, cfg.holdout)]
            if not self.files:
                raise ValueError(f"data.holdout {cfg.holdout} leaves no training pictures under {cfg.folder}")
            if cfg.lines_folder:
                self.lines = index_lines(cfg.lines_folder)
        self.synth_size = cfg.synth_size or model.resolution
        self.warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files) if self.files else self.cfg.synth_seed_count

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        rng = np.random.default_rng([self.seed, epoch, index])
        synthetic = self.cfg.source == "synth" or (self.cfg.source == "mixed" and rng.random() < self.cfg.synth_ratio)
        reference_rng = None if epoch == SAMPLE_EPOCH else rng  # the sample grid shows un-augmented references
        if synthetic:
            offset = index if self.cfg.source == "synth" else int(rng.integers(self.cfg.synth_seed_count))
            seed = self.cfg.synth_seed_start + offset
            color, line, ref_source = self._synthetic(seed, rng)
            skipped = 0
        else:
            color, line, ref_source, skipped = self._from_folder(index, rng)
        if line is None:
            line = random_lines(color, rng, self.cfg.extractors, self.cfg.line_augment)
        item = {
            "line": torch.from_numpy(np.ascontiguousarray(line))[None],
            "color": torch.from_numpy(np.ascontiguousarray(color)).permute(2, 0, 1),
            "grey": torch.from_numpy(np.ascontiguousarray(luminance(color)))[None],
            "reference": reference_tensor(ref_source if ref_source is not None else color, self.reference_size,
                                          self.cfg, reference_rng),
            "skipped": torch.tensor(skipped),
        }
        if self.hint_channels:
            item["hints"] = torch.from_numpy(sample_hints(color, rng, self.cfg.hint_empty, self.cfg.hint_p))
        return item

    # ------------------------------------------------------------------------------------------- sources
    def _synthetic(self, seed: int, rng: np.random.Generator):
        """A character in a palette drawn from the seed range; with palette_pair the reference is another
        character in the SAME palette, so the net must read colours per part from the reference."""
        from training import synth

        cfg = self.cfg
        start, count = cfg.synth_seed_start, cfg.synth_seed_count
        palette = synth.random_palette(start + int(rng.integers(count)))
        out = synth.render(synth.random_character(seed), palette, self.synth_size)
        ref = None
        if cfg.reference == "palette_pair" and rng.random() < cfg.pair_ratio:
            other = start + (seed - start + 1 + int(rng.integers(max(count - 1, 1)))) % count
            # rendered at least as large as VGG19 sees it: a real reference is a full-size picture
            ref_side = max(self.synth_size, self.reference_size)
            ref = synth.render(synth.random_character(other), palette, ref_side).color
        color = Image.fromarray(out.color)
        line = Image.fromarray(out.line) if rng.random() < cfg.synth_line_ratio else None
        color, line = self._crop_pair(color, line, self.synth_size, rng)
        return color, line, (to_float(Image.fromarray(ref)) if ref is not None else None)

    def _from_folder(self, index: int, rng: np.random.Generator):
        skipped = 0
        for attempt in range(MAX_RETRIES):
            path = self.files[index]
            try:
                color = open_image(path, "RGB", self.cfg.max_pixels)
                line = None
                paired = self._paired_line(path)
                if paired is not None and rng.random() < self.cfg.real_lines_ratio:
                    line = open_image(paired, "L", self.cfg.max_pixels)
                    if line.size != color.size:
                        line = line.resize(color.size, Image.BILINEAR)
                c, l = self._crop_pair(color, line, self.cfg.crop_size, rng)
                return c, l, None, skipped
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                skipped += 1
                if path not in self.warned:
                    self.warned.add(path)
                    warnings.warn(f"skipping unreadable training image {path}: {exc}")
                index = int(rng.integers(len(self.files)))
        raise RuntimeError(f"{MAX_RETRIES} unreadable images in a row under {self.cfg.folder}: check the data folder")

    def _paired_line(self, path: Path) -> Path | None:
        if not self.lines or self.root is None:
            return None
        rel = path.relative_to(self.root).with_suffix("").as_posix()
        return self.lines.get(rel) or self.lines.get(path.stem)

    def _crop_pair(self, color: Image.Image, line: Image.Image | None, base: int, rng: np.random.Generator):
        """The same random square crop and flip of colour and line art, resized to the training resolution
        (PIL's resize with a box crops and filters in one pass, antialiased)."""
        r = self.resolution
        box = crop_box(color.width, color.height, base * rng.uniform(*self.cfg.crop_scale), rng)
        flip = self.cfg.flip and rng.random() < 0.5
        c = to_float(color.resize((r, r), Image.BILINEAR, box=box))
        l = to_float(line.resize((r, r), Image.BILINEAR, box=box)) if line is not None else None
        if flip:
            c = c[:, ::-1]
            l = l[:, ::-1] if l is not None else None
        return c, l

    def sample_batch(self, count: int) -> dict[str, torch.Tensor]:
        """The fixed items of the sample grid (same on every run with this seed)."""
        items = [self[(i * max(1, len(self) // count) % len(self), SAMPLE_EPOCH)] for i in range(count)]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class EpochSampler(Sampler):
    """An endless stream of (index, epoch) keys for one rank, starting at any step.

    Each epoch is torch's DistributedSampler order (shuffled with seed + epoch, split over ranks,
    drop_last) cut to whole batches; resuming at step s skips straight to its epoch and offset.
    """

    def __init__(self, dataset: Dataset, batch_size: int, world: int, rank: int, seed: int, start_step: int = 0) -> None:
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.steps_per_epoch = len(self.sampler) // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"the data set has {len(dataset)} items: fewer than one batch of {batch_size} per process "
                             f"on {world} process(es); add data or lower batch_size")
        self.start_step = start_step

    def __len__(self) -> int:  # endless; DataLoader only needs this for its own bookkeeping
        return 2**62

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        offset *= self.batch_size
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(self.sampler)[: self.steps_per_epoch * self.batch_size]
            for index in indices[offset:]:
                yield index, epoch
            epoch, offset = epoch + 1, 0
