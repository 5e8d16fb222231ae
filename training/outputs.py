"""What a run writes for people and for the backend: metrics.jsonl and TensorBoard scalars, sample grids, and
the EMA generator exported in the backend's checkpoint format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.model.checkpoint import save_checkpoint
from backend.model.config import from_dict, to_dict
from backend.model.networks import Generator, shared_style_encoder
from training.config import TrainConfig
from training.state import latest_state
from training.trainer import Trainer


class RunLog:
    """Rank 0's outputs: metrics.jsonl, TensorBoard scalars, sample grids."""

    def __init__(self, run_dir: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.metrics = run_dir / "metrics.jsonl"
        if self.metrics.exists():  # a resumed run: drop lines past the state it continues from
            lines = [ln for ln in self.metrics.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= start_step]
            self.metrics.write_text("".join(ln + "\n" for ln in kept))
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step if start_step else None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.tb.add_scalar(k, v, step)
        with self.metrics.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def close(self) -> None:
        self.tb.close()


@torch.no_grad()
def sample_grid(trainer: Trainer, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, float]:
    """Rows of sketch | reference | output | target | output with the next row's reference (EMA generator),
    and the mean absolute change the swapped reference causes (0 = the reference is ignored)."""
    batch = {k: v.to(trainer.device) for k, v in batch.items()}
    style, _ = trainer.style_inputs(batch)
    with trainer.autocast():
        out = trainer.ema(batch["line"], style).float().clamp(0, 1)
        swapped = trainer.ema(batch["line"], style.roll(1, 0)).float().clamp(0, 1)
    r = batch["color"].shape[-1]
    ref = F.interpolate(batch["reference"], size=(r, r), mode="bilinear", align_corners=False)
    tiles = [batch["line"].expand(-1, 3, -1, -1), ref, out, batch["color"], swapped]
    grid = torch.cat([torch.cat(list(t), dim=1) for t in tiles], dim=2)  # rows: samples, columns: tiles
    image = (grid.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return image, float((out - swapped).abs().mean())


def export(cfg: TrainConfig, ema: Generator, style_sha256: str, out_dir: Path, step: int,
           counters: dict[str, int]) -> Path:
    """The EMA generator in the backend's checkpoint format (guide decoders dropped)."""
    meta = {"trained_by": "irodori train", "step": step, "images_seen": counters.get("images", 0),
            "data": {"source": cfg.data.source, "reference": cfg.data.reference,
                     "synth_seeds": [cfg.data.synth_seed_start, cfg.data.synth_seed_start + cfg.data.synth_seed_count]},
            "loss": to_dict(cfg.loss)}
    return save_checkpoint(out_dir, ema, style_sha256, meta=meta)


def export_latest(cfg: TrainConfig, out_dir: Path) -> Path:
    """`--export DIR`: the EMA generator of the run's newest readable state, in the backend's format."""
    found = latest_state(Path(cfg.run_dir) / "checkpoints")
    if found is None:
        raise ValueError(f"no training state under {Path(cfg.run_dir) / 'checkpoints'} to export")
    path, (doc, model, _, _) = found
    stored = from_dict(TrainConfig, doc["config"], f"{path}/state.json config")
    ema = Generator(stored.model, guides=True)
    ema.load_state_dict({k[4:]: v for k, v in model.items() if k.startswith("ema.")})
    sha = shared_style_encoder(stored.model.vgg_weights).sha256
    if sha != doc.get("style_sha256"):
        raise ValueError(f"{path} was trained with a style encoder that hashes to {str(doc.get('style_sha256'))[:12]}..., "
                         f"this machine's {stored.model.vgg_weights} weights hash to {sha[:12]}...: use the same VGG19 file")
    return export(stored, ema, sha, out_dir, int(doc["step"]), doc.get("counters", {}))
