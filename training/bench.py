"""`irodori bench` section (f): optimiser steps/s of the trainer at the tiny and paper configurations.

A plug-in section (entry point `training` in group `irodori.bench`, pyproject.toml): backend's bench finds it
without importing training, so the layers keep pointing one way. The interface is `run(device, quick)` and
`table_rows(results)` (backend/tools/bench/command.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.tools.bench.measure import median, time_ms
from backend.tools.bench.report import fmt

CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class TrainingPlan:
    steps: int  # timed optimiser steps per configuration (after one untimed)
    paper_overrides: tuple[str, ...]  # extra overrides for the paper config (quick: smaller)


FULL = TrainingPlan(steps=2, paper_overrides=())
QUICK = TrainingPlan(steps=1, paper_overrides=("--model.resolution=32", "--model.reference_size=32"))


def run(device, quick: bool) -> list[dict]:
    """Trainer.step on ready-made batches (data loading excluded): the tiny and paper configurations.

    The paper config's ImageNet VGG19 is swapped for random weights (same compute, no download)."""
    import torch

    from training.config import load_config
    from training.distributed import Dist
    from training.trainer import Trainer

    plan = QUICK if quick else FULL
    rows = []
    for name, extra in (("tiny", ()), ("paper", plan.paper_overrides)):
        overrides = [f"--device={device.type}", "--progress=false", "--model.vgg_weights=random:0", *extra]
        if device.type == "cpu" and name == "paper":
            overrides.append("--batch_size=1")  # a batch of 4 at 256 px takes minutes per step on a small CPU
        cfg = load_config(CONFIGS / f"{name}.json", overrides)
        trainer = Trainer(cfg, Dist(rank=0, world=1, local_rank=0, device=device))
        b, r, s = cfg.batch_size, cfg.model.resolution, cfg.model.reference_size
        gen = torch.Generator().manual_seed(0)
        batch = {"line": torch.rand(b, 1, r, r, generator=gen), "color": torch.rand(b, 3, r, r, generator=gen),
                 "grey": torch.rand(b, 1, r, r, generator=gen), "reference": torch.rand(b, 3, s, s, generator=gen)}
        steps = iter(range(10**9))
        ms = median(time_ms(lambda: trainer.step(batch, next(steps)), plan.steps, device))
        rows.append({"config": name, "resolution": r, "reference_size": s, "batch_size": b,
                     "amp": str(trainer.amp).replace("torch.", "") if trainer.amp else "off",
                     "step_ms": ms, "images_per_s": b * 1e3 / ms})
        trainer = None  # free one configuration before building the next
    return rows


def table_rows(results: list[dict]) -> list[tuple[str, ...]]:
    return [("(f) training", f"{t['config']}: {t['resolution']} px, batch {t['batch_size']}, amp {t['amp']}",
             fmt(t["step_ms"]), f"{t['images_per_s']:.2f} images/s", "data loading excluded") for t in results]
