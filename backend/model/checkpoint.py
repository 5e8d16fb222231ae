"""The inference checkpoint: a folder with `config.json` and `generator.safetensors` (no pickle).

config.json carries everything needed to rebuild the generator and to check that it is paired with
the same frozen style encoder it was trained with (the encoder's weights are not stored: they are either
torchvision's ImageNet file or regenerated from a seed, and identified by sha256).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from backend.model.config import ModelConfig, from_dict, to_dict
from backend.model.networks import Generator, shared_style_encoder
from backend.model.tensorfile import read_tensors

FORMAT = "irodori-generator"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "generator.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says what is wrong and what to do."""


@dataclass
class Checkpoint:
    config: ModelConfig
    generator: Generator
    style_sha256: str
    meta: dict[str, Any] = field(default_factory=dict)  # training metadata (steps, data, figures)


def save_checkpoint(directory: str | Path, generator: Generator, style_sha256: str,
                    meta: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write the folder atomically enough for readers: weights first, config.json (the marker) last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in generator.inference_state_dict().items()}
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    os.replace(tmp, directory / WEIGHTS_FILE)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": to_dict(generator.config),
        "style_encoder": {"weights": generator.config.vgg_weights, "sha256": style_sha256},
        "dtype": str(dtype).replace("torch.", ""),
        "meta": meta or {},
    }
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, directory / CONFIG_FILE)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {directory} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the checkpoint is corrupted") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an Irodori generator checkpoint (format should be {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {doc.get('format_version')!r}; this Irodori reads version {FORMAT_VERSION}. "
            "Re-export it with a matching `irodori train --export` or upgrade Irodori."
        )
    return doc


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu", check_style: bool = True) -> Checkpoint:
    """Load and validate a checkpoint; the generator comes back in eval mode, without guide decoders."""
    directory = Path(directory)
    doc = read_config(directory)
    try:
        config = from_dict(ModelConfig, doc["model"], "config.json model")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: bad model config: {exc}") from exc
    style = doc.get("style_encoder") or {}
    if style.get("weights") != config.vgg_weights or not isinstance(style.get("sha256"), str):
        raise CheckpointError(f"{directory / CONFIG_FILE}: style_encoder must name weights {config.vgg_weights!r} and a sha256")
    weights_path = directory / WEIGHTS_FILE
    tensors = read_tensors(weights_path, CheckpointError, f"{weights_path} is missing",
                           "the file is corrupted or truncated")
    generator = Generator(config)
    expected = generator.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{weights_path} does not match its config.json: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{weights_path}: tensor {name} has shape {tuple(tensor.shape)}, the config needs "
                f"{tuple(expected[name].shape)}; the weights and config.json come from different models"
            )
    generator.load_state_dict({k: v.float() for k, v in tensors.items()})
    if check_style:
        encoder = shared_style_encoder(config.vgg_weights)
        if encoder.sha256 != style["sha256"]:
            raise CheckpointError(
                f"{directory}: trained with style encoder {config.vgg_weights} sha256 {style['sha256'][:12]}..., "
                f"but this machine's {config.vgg_weights} weights hash to {encoder.sha256[:12]}...: the outputs would "
                "be meaningless. Use the same VGG19 weights file the model was trained with."
            )
    generator.to(device).eval().requires_grad_(False)
    return Checkpoint(config=config, generator=generator, style_sha256=style["sha256"], meta=doc.get("meta") or {})
