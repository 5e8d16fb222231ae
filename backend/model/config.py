"""The generator's configuration: every width, depth and resolution lives here, nowhere else."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


SEEDED_VGG_KINDS = ("random", "looks-linear")  # offline VGG19 weights drawn from a seed (backend.model.networks)
HINT_CHANNEL_CHOICES = (0, 4)  # none, or RGB + mask
FILE_VGG_KINDS = ("imagenet", "hed-vgg16")  # torchvision's VGG19; VGG16 with HED's weights (backend.model.vgg16)


def parse_vgg_weights(spec: str) -> tuple[str, int | None]:
    """'imagenet' or 'hed-vgg16' -> (spec, None); 'random:SEED' or 'looks-linear:SEED' -> (kind, SEED).

    The one check of a weights spec, for ModelConfig and for StyleEncoder built directly."""
    if spec in FILE_VGG_KINDS:
        return spec, None
    kind, _, seed = spec.partition(":")
    if kind not in SEEDED_VGG_KINDS:
        raise ValueError(f"vgg_weights must be 'imagenet', 'hed-vgg16', 'random:SEED' or 'looks-linear:SEED', "
                         f"not {spec!r}")
    if not seed.isdigit():
        raise ValueError(f"vgg_weights {spec!r}: SEED must be a non-negative integer")
    return kind, int(seed)


@dataclass(frozen=True)
class ModelConfig:
    """Residual U-net + frozen VGG19 style encoder (Style2paints V1, arXiv 1706.03319).

    The paper gives scales 512/256/128/64/32 but no widths; widths are ours and live here.
    """

    resolution: int = 256  # long side the model runs at; inputs are resized to it, outputs back
    base_channels: int = 32  # width of the full-resolution level
    channel_mults: tuple[int, ...] = (1, 2, 4, 8, 8)  # one entry per scale; the last is the mid level
    blocks_per_level: int = 1  # residual blocks per encoder/decoder level
    mid_blocks: int = 4  # residual blocks at the mid level, where the style vector is added
    style_every_block: bool = True  # add the style vector before every mid block, not only the first
    vgg_weights: str = "random:0"  # "imagenet" (torchvision VGG19), "hed-vgg16" (`irodori weights`), or seeded VGG19: "random:SEED", "looks-linear:SEED"
    reference_size: int = 224  # the reference is resized to this square before VGG19
    guide_channels: int = 32  # width of the guide decoders' last layer (training only)
    residual_scale: float = 0.1  # init scale of each block's last conv: keeps an unnormalised deep net stable
    hint_channels: int = 0  # 0: no colour hints; 4: hint RGB + hint mask planes beside the sketch (Zhang et al. 2017)

    def __post_init__(self) -> None:
        if len(self.channel_mults) < 2:
            raise ValueError("channel_mults needs at least two scales (a full-resolution one and a mid level)")
        if self.resolution % self.multiple or self.resolution < self.multiple:
            raise ValueError(f"resolution {self.resolution} must be a positive multiple of {self.multiple}")
        parse_vgg_weights(self.vgg_weights)
        if self.hint_channels not in HINT_CHANNEL_CHOICES:
            raise ValueError(f"hint_channels must be 0 (no hints) or 4 (hint RGB + mask), not {self.hint_channels}")
        if self.reference_size < 32:
            raise ValueError("reference_size must be at least 32 (VGG19 downsamples 32x)")

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this (one halving per scale below the first)."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def mid_channels(self) -> int:
        return self.base_channels * self.channel_mults[-1]


def read_json(path: str | Path, what: str, max_bytes: int = 64 * 1024 * 1024) -> Any:
    """A JSON file of bounded size, with errors that name the file and say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{what} {path} is larger than {max_bytes} bytes")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from exc


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a frozen dataclass from JSON data, refusing unknown keys (a typo must not pass silently)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        default = _default(known[name])
        if dataclasses.is_dataclass(default):
            value = from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{where}.{name} must be a list")
            value = tuple(value)
        values[name] = value
    return cls(**values)


def apply_overrides(cls: type[T], cfg: T, overrides: list[str]) -> T:
    """Apply `--key=value` overrides (dotted keys reach nested configs; values parsed as JSON)."""
    data = to_dict(cfg)
    for text in overrides:
        if "=" not in text:
            raise ValueError(f"override {text!r} must look like --key=value")
        key, raw = text.lstrip("-").split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.replace("-", "_").split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown key {key!r}")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"unknown key {key!r}; known here: {', '.join(node)}")
        node[parts[-1]] = value
    return from_dict(cls, data)
