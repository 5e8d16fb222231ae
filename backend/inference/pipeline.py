"""The inference pipeline every front end uses (CLI, server; the plugins reach it through the server).

line art (L / RGB / RGBA on transparent, any size) --grey, composite on white--> resize to the model's
resolution (aspect kept) --pad to a multiple of 2^scales--> generator(sketch, VGG19(reference))
--crop, resize back to full size--> kept inside the line art's regions (flats.crisp; Colorizer(crisp=False):
the soft resized colour) --> colour layer (sits under the line art) / flattened (colour x line art) / flats and
shading (backend/inference/flats/).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import threading
import time
import warnings
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from backend import __version__
from backend.inference import flats as flats_mod
from backend.inference.hints import HintFill, check_hints, hint_fill, hint_pixels, model_hints
from backend.model.checkpoint import Checkpoint, load_checkpoint
from backend.model.config import ModelConfig, to_dict
from backend.inference.imageio import DEFAULT_LIMITS, Limits, check_size
from backend.model.networks import Generator, normalize_style, shared_style_encoder
from backend.model.preprocess import reference_input, resize
from backend.protocol import MAX_RESOLUTION, MIN_RESOLUTION, OUTPUTS

DEMO_CHECKPOINT = Path(__file__).resolve().parent.parent / "demo" / "model"  # synthetic characters, 64 px
ANIME_CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "anime-128"  # real anime faces + synthetic


def default_checkpoint() -> Path | None:
    """The bundled anime model; the synthetic demo model where the anime model's VGG16 weights are not set up
    (it says so once: `irodori weights` fixes it), or None when neither is bundled."""
    if (ANIME_CHECKPOINT / "config.json").is_file():
        from backend.model.vgg16 import weights_path

        if weights_path().is_file():
            return ANIME_CHECKPOINT
        if (DEMO_CHECKPOINT / "config.json").is_file():
            _warn_once(f"the default anime model needs the VGG16 (HED) weights, which are not set up "
                       f"({weights_path()} is missing): run `irodori weights` (or `make install`). "
                       f"Using the synthetic demo model instead.")
    return DEMO_CHECKPOINT if (DEMO_CHECKPOINT / "config.json").is_file() else None


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def untrained_checkpoint(config: ModelConfig = ModelConfig(), seed: int = 0) -> Checkpoint:
    """A seeded, untrained generator: runs end to end, colours nothing meaningfully."""
    torch.manual_seed(seed)
    gen = Generator(config).eval().requires_grad_(False)
    sha = shared_style_encoder(config.vgg_weights).sha256
    return Checkpoint(config=config, generator=gen, style_sha256=sha, meta={"untrained": True, "seed": seed})


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


# ----------------------------------------------------------------------------------------- pixel helpers
def check_lineart(lineart: np.ndarray) -> np.ndarray:
    """The line art as an array, if to_grey() can read it (uint8, L/LA/RGB/RGBA); else a ValueError."""
    a = np.asarray(lineart)
    if a.dtype != np.uint8:
        raise ValueError(f"line art must be 8-bit (uint8), got {a.dtype}")
    if a.ndim != 2 and (a.ndim != 3 or a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"line art must be (H,W) or (H,W,2|3|4), got shape {a.shape}")
    return a


def grey_u8(lineart: np.ndarray) -> np.ndarray:
    """uint8 L/LA/RGB/RGBA -> uint8 (H,W), 255 = paper. Transparent pixels count as white paper.

    flats.grey: OpenCV's fixed-point luma (0.299, 0.587, 0.114, exact for grey pixels) and an 8-bit
    composite on white, several times faster than the same arithmetic in float numpy. The model gets these
    8 bits as floats (to_grey)."""
    return flats_mod.grey(np.ascontiguousarray(check_lineart(lineart)))


def to_grey(lineart: np.ndarray) -> np.ndarray:
    """uint8 L/LA/RGB/RGBA -> float32 (H,W) in [0,1], 1 = paper: what the model sees."""
    return _unit(grey_u8(lineart))


def _unit(grey: np.ndarray) -> np.ndarray:
    out = grey.astype(np.float32)
    out /= 255.0
    return out


def to_rgb(image: np.ndarray, what: str = "reference") -> np.ndarray:
    """uint8 L/RGB/RGBA -> float32 (H,W,3) in [0,1], transparency composited on white."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"{what} must be 8-bit (uint8), got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{what} must be (H,W) or (H,W,1..4), got shape {a.shape}")
    f = a.astype(np.float32) / 255.0
    rgb = f[..., :3] if a.shape[2] >= 3 else np.repeat(f[..., :1], 3, axis=2)
    if a.shape[2] in (2, 4):
        alpha = f[..., -1:]
        rgb = rgb * alpha + (1.0 - alpha)
    return rgb


def model_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """The (h, w) the model sees: long side = resolution, aspect kept."""
    scale = resolution / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def colour_layer(colour: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The model's (1,3,h,w) float output -> the (H,W,3) uint8 colour layer at full size.

    The colour is clamped to [0, 1] at the model's size, before resizing. On the CPU it is then rounded to
    8 bits and resized in 8 bits (torch's uint8 bilinear kernel, channels_last): several times faster than
    resizing floats, and no 12-byte-per-pixel buffer at full size (200 MB at 4096^2); values differ from
    the float path by at most 1. A GPU resizes in float.
    """
    def to_u8(t: torch.Tensor) -> torch.Tensor:
        return t.clamp(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8)  # add 0.5 then truncate: round

    if colour.device.type == "cpu":
        full = resize(to_u8(colour).contiguous(memory_format=torch.channels_last), size)
    else:
        full = to_u8(resize(colour.clamp(0.0, 1.0), size))
    return full[0].permute(1, 2, 0).contiguous().cpu().numpy()


SEGMENTER_NICE = 10  # the flats worker thread's extra niceness (Linux): the model's threads go first


def _lower_priority() -> None:
    """Make the calling thread yield to the model's threads: it then mostly runs on whatever core they leave
    idle (their serial stretches, the line art's conversion) instead of preempting one of two OpenMP threads
    and leaving its partner waiting at the next barrier. Linux only: there a thread id is a process id for
    setpriority (elsewhere it would renice the whole process, so nothing is done)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + SEGMENTER_NICE))


@functools.lru_cache(maxsize=1)
def _segmenter() -> ThreadPoolExecutor:
    """One worker thread per process for flats' segmentation (see Colorizer.colorize_batch)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="irodori-flats", initializer=_lower_priority)


SEGMENT_CACHE_SIZE = 2  # line arts whose flats regions are kept (only ever touched by the segmenter thread)
_segment_cache: "OrderedDict[tuple, tuple]" = OrderedDict()


def _segment(line: np.ndarray) -> tuple[np.ndarray, "flats_mod.Votes", np.ndarray]:
    """The request's line art (as sent: grey, LA, RGB or RGBA, so that coloured ink and ink on
    transparent are seen as drawn) -> (flats region labels, fill's voters, the ink mask: crisp colour's
    walls).

    Both depend on the line art alone, so they are worked out while the model runs; fill() is left with
    the colour work. "The same sketch with another reference" is the usual loop in Krita and GIMP, so the
    last few results are kept with a copy of their line art, found by its CRC-32 (a fraction of the time of a
    cryptographic hash) and confirmed byte for byte, so a collision only costs a recomputation."""
    line = np.ascontiguousarray(line)
    key = (zlib.crc32(line), line.shape)
    cached = _segment_cache.get(key)
    if cached is None or not np.array_equal(cached[0], line):
        labels, votes, ink = flats_mod.regions_and_votes(line)
        kept = line.copy()  # the caller may reuse its array
        for shared in (kept, labels, ink, votes.index, votes.keys, votes.used, votes.mid):
            shared.setflags(write=False)  # shared by every request with this line art
        cached = kept, labels, votes, ink
        _segment_cache[key] = cached
        _segment_cache.move_to_end(key)  # a collision replaced an older entry in place
        while len(_segment_cache) > SEGMENT_CACHE_SIZE:
            _segment_cache.popitem(last=False)
    else:
        _segment_cache.move_to_end(key)
    return cached[1], cached[2], cached[3]


def _segment_and_hints(line: np.ndarray, hints: np.ndarray | None, where: np.ndarray | None
                       ) -> tuple[np.ndarray, "flats_mod.Votes", np.ndarray, HintFill | None]:
    """_segment() and the pixels the hints paint (hints.hint_fill), both on the segmenter thread while the
    model runs. The hints are not cached: they change with every stroke, the line art does not."""
    labels, votes, ink = _segment(line)
    return labels, votes, ink, hint_fill(hints, labels, ink, where)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    y = x * 255.0  # one float temporary, updated in place (the same arithmetic as clip(x * 255 + 0.5))
    y += 0.5
    np.clip(y, 0, 255, out=y)
    return y.astype(np.uint8)


def crisp_colour(color: np.ndarray, labels: np.ndarray, votes: "flats_mod.Votes", ink: np.ndarray | None,
                 model: tuple[int, int]) -> np.ndarray:
    """The soft full-size colour layer -> the colour kept inside each region of the line art (flats.crisp),
    for a model output of `model` (h, w). The same step for the pipeline and its tests."""
    flat = flats_mod.fill(labels, color, votes=votes)
    return flats_mod.crisp(color, labels, flat, flats_mod.crisp_margin(color.shape[:2], tuple(model)), ink)


# ----------------------------------------------------------------------------------------- the colorizer
class Colorizer:
    """Loads a checkpoint once and colours line art with references. Not thread-safe: one caller at a time."""

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto", bf16: bool = False,
                 limits: Limits = DEFAULT_LIMITS, crisp: bool = True) -> None:
        """crisp: keep the colour inside the line art's regions (flats.crisp); False gives the model's colour
        resized softly across the lines, as before."""
        self.device = pick_device(device)
        self.crisp = crisp
        self.limits = limits
        self.bf16 = bf16
        path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
        if path is None:
            warnings.warn("no demo model is bundled: using a seeded UNTRAINED generator (colours are meaningless)")
            self.checkpoint = untrained_checkpoint()
            self.name = "untrained:seed0"
        else:
            self.checkpoint = load_checkpoint(path, self.device)
            self.name = str(path)
        self.config = self.checkpoint.config
        # channels_last: oneDNN's convolutions run this U-net faster on CPU, more so under bf16 autocast
        self.generator = self.checkpoint.generator.to(self.device, memory_format=torch.channels_last)
        self.encoder = shared_style_encoder(self.config.vgg_weights, self.device)

    @property
    def untrained(self) -> bool:
        return bool(self.checkpoint.meta.get("untrained"))

    @property
    def info(self) -> dict:
        return {
            "irodori": __version__,
            "torch": torch.__version__,
            "model": self.name,
            "untrained": self.untrained,
            "config": to_dict(self.config),
            "style_encoder": {"weights": self.config.vgg_weights, "sha256": self.checkpoint.style_sha256},
            "device": str(self.device),
            "bf16": self.bf16,
            "crisp": self.crisp,
            "outputs": list(OUTPUTS),
            "hints": self.takes_hints,
            "limits": {k: getattr(self.limits, k) for k in self.limits.__dataclass_fields__},
        }

    @property
    def takes_hints(self) -> bool:
        """Whether the model was trained with colour hints (it reads them as extra input planes)."""
        return self.config.hint_channels > 0

    def _check_hints(self, hints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if not self.takes_hints:
            raise ValueError(f"the model {self.name} was trained without colour hints (hint_channels 0), so it "
                             "cannot follow them: send no hints, or load a model trained with hint_channels 4")
        return check_hints(hints, size)

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def style(self, references: Sequence[np.ndarray]) -> torch.Tensor:
        """Normalised VGG19 fc1 vectors (B,4096) for RGB(A) uint8 references."""
        batch = []
        for ref in references:
            rgb = to_rgb(ref)
            check_size(rgb.shape[1], rgb.shape[0], "reference", self.limits.max_reference_pixels, self.limits)
            t = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(self.device)
            batch.append(reference_input(t, self.config.reference_size))
        with torch.inference_mode(), self._autocast():
            return normalize_style(self.encoder(torch.cat(batch)).float())

    def colorize(self, lineart: np.ndarray, reference: np.ndarray, outputs: Sequence[str] = ("color",),
                 resolution: int | None = None, timings: dict | None = None,
                 hints: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Colour one line art; returns {output name: (H,W,3) uint8 RGB} at the line art's full size.

        hints: optional (H,W,4) uint8 RGBA at the line art's size, alpha > 0 = "this colour here" (hints.py);
        only for a model trained with hints (`takes_hints`)."""
        return self.colorize_batch([(lineart, reference, tuple(outputs), resolution, hints)], timings)[0]

    def colorize_batch(self, requests: Sequence[tuple], timings: dict | None = None) -> list[dict[str, np.ndarray]]:
        """Several requests, each (line art, reference, outputs, resolution[, hints]); those whose padded
        model-resolution shapes match share one generator call."""
        t0 = time.perf_counter()
        prepared, hint_images = [], []
        for request in requests:
            if len(request) not in (4, 5):
                raise ValueError("a request is (line art, reference, outputs, resolution[, hints])")
            lineart, reference, outputs, resolution = request[:4]
            hints = request[4] if len(request) == 5 else None
            bad = [o for o in outputs if o not in OUTPUTS]
            if bad or not outputs:
                raise ValueError(f"unknown output(s) {bad}; choose from {', '.join(OUTPUTS)}")
            a = check_lineart(lineart)
            check_size(a.shape[1], a.shape[0], "line art", self.limits.max_pixels, self.limits)
            res = resolution or self.config.resolution
            if res % self.config.multiple or not MIN_RESOLUTION <= res <= MAX_RESOLUTION:
                raise ValueError(f"resolution {res} must be a multiple of {self.config.multiple} between "
                                 f"{MIN_RESOLUTION} and {MAX_RESOLUTION}")
            prepared.append((a, reference, tuple(outputs), res))
            hint_images.append(None if hints is None else self._check_hints(hints, a.shape[:2]))
        # Flats' segmentation needs only the line art: it starts on a worker thread now, while this thread
        # runs the model (numpy and OpenCV release the GIL), so flats add little more than their fill step.
        # Crisp colour needs the regions for every output; it applies where the model's colour is resized up
        # (at the model's own size there is no resize to bleed, and small drawings segment less reliably).
        sharp = [self.crisp and max(a.shape[:2]) > res for a, _, _, res in prepared]
        # Hints paint the line art's regions, so they need them too.
        hint_at = [None if hints is None else hint_pixels(hints) for hints in hint_images]  # for planes and paint
        segments = [_segmenter().submit(_segment_and_hints, a, hints, where)
                    if crisp or hints is not None or {"flats", "shading"} & set(outputs) else None
                    for (a, _, outputs, _), crisp, hints, where in zip(prepared, sharp, hint_images, hint_at)]
        lines = [a for a, _, _, _ in prepared]
        greys = [grey_u8(a) for a in lines]
        prepared = [(_unit(grey), reference, outputs, res)
                    for grey, (_, reference, outputs, res) in zip(greys, prepared)]
        style = self.style([p[1] for p in prepared])
        t1 = time.perf_counter()

        # sketches at model resolution, padded with paper (white) to the U-net's multiple
        m = self.config.multiple
        sketches, planes, groups = [], [], {}
        for i, (grey, _, _, res) in enumerate(prepared):
            h, w = model_size(*grey.shape, res)
            full = torch.from_numpy(grey)[None, None].to(self.device)
            small = resize(full, (h, w))
            ph, pw = math.ceil(h / m) * m, math.ceil(w / m) * m
            sketches.append((F.pad(small, (0, pw - w, 0, ph - h), value=1.0), h, w))
            if self.takes_hints:  # no hint anywhere in the padding
                planes.append(F.pad(model_hints(hint_images[i], (h, w), self.device, hint_at[i]),
                                    (0, pw - w, 0, ph - h)))
            groups.setdefault((ph, pw), []).append(i)
        colours: list[torch.Tensor | None] = [None] * len(prepared)
        # On a CPU one image already fills every core and a batched call only spills the caches (measured:
        # docs/performance.md), so there the generator takes one image per call; a GPU gets the whole group.
        # The style encoder is batched either way (a little faster).
        step = 1 if self.device.type == "cpu" else len(prepared)
        with torch.inference_mode(), self._autocast():
            for group in groups.values():
                for start in range(0, len(group), step):
                    idx = group[start:start + step]
                    hints = torch.cat([planes[i] for i in idx]) if self.takes_hints else None
                    out = self.generator(torch.cat([sketches[i][0] for i in idx]), style[idx], hints=hints)
                    for j, i in enumerate(idx):
                        colours[i] = out[j:j + 1, :, : sketches[i][1], : sketches[i][2]].float()
        t2 = time.perf_counter()

        results = []
        for (grey, _, outputs, _), line, colour, segment, crisp in zip(prepared, lines, colours, segments, sharp):
            assert colour is not None
            with torch.inference_mode():
                color_u8 = colour_layer(colour, grey.shape)
            labels = votes = painted = None
            if segment is not None:
                labels, votes, ink, painted = segment.result()
                if crisp:
                    color_u8 = crisp_colour(color_u8, labels, votes, ink, colour.shape[2:])
                if painted is not None:  # the hinted areas take their hint colour exactly (hints.hint_areas)
                    color_u8 = painted.layer.paint(color_u8)
            result: dict[str, np.ndarray] = {}
            if "color" in outputs:
                result["color"] = color_u8
            if "flattened" in outputs:
                flat_grey = grey * np.float32(1 / 255)
                result["flattened"] = _to_uint8(color_u8 * flat_grey[..., None])
            if {"flats", "shading"} & set(outputs):
                flat = flats_mod.flats(line, color_u8, labels=labels, votes=votes)
                if painted is not None:  # exactly: fill()'s median goes through Lab and may round
                    flat = painted.flats.paint(flat)
                if "flats" in outputs:
                    result["flats"] = flat
                if "shading" in outputs:
                    result["shading"] = flats_mod.shading(color_u8, flat)
            results.append(result)
        t3 = time.perf_counter()
        if timings is not None:
            timings.update(prepare_ms=(t1 - t0) * 1e3, model_ms=(t2 - t1) * 1e3, finish_ms=(t3 - t2) * 1e3,
                           total_ms=(t3 - t0) * 1e3)
        return results
