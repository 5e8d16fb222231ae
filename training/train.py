"""`irodori train CONFIG.json [--key=value ...]`: the GAN training loop (paper losses), one GPU, many GPUs or CPU.

This file is the loop, read top to bottom; the pieces it calls live beside it:
  trainer.py      the networks, optimisers and one training step (what a step computes)
  state.py        training states on disk: atomic save, resume, pruning
  outputs.py      metrics, TensorBoard, sample grids, the exported generator
  distributed.py  one process or DDP ranks, their RNG streams

Run folder (rank 0 writes, other ranks only read):
  config.json        the resolved config          metrics.jsonl   scalars, one JSON object per line
  tb/                TensorBoard scalars          samples/        step_N.png: sketch | reference | output | target | swap
  checkpoints/       step_N/ training states (the last keep_last; see state.py)
  export/            the EMA generator in the backend's checkpoint format (irodori colorize / serve --checkpoint)

Several GPUs or nodes: `torchrun --nproc_per_node=N -m backend train CONFIG.json` (DDP; each process takes
batch_size samples; the checkpoints folder must be shared between nodes). On CPU DDP uses the gloo backend.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from training.config import TrainConfig, config_json, load_config
from training.data import EpochSampler, TrainingData
from training.distributed import setup_distributed
from training.outputs import RunLog, export, export_latest, sample_grid
from training.state import cpu_copy, load_into, prune_states, resume_point, save_state_all_ranks
from training.trainer import Trainer

RANK_DUMP_ENV = "IRODORI_TEST_RANK_DUMP"  # test-only: a folder to dump every rank's final generator weights into


def train(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
    """Train up to cfg.steps, or stop early at `stop_at` (with a state saved there, as a time-sliced job would);
    returns a summary (step, last scalars, run_dir, export path). In-process use works."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = setup_distributed(cfg)
    run_dir = Path(cfg.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    found = resume_point(cfg, ckpt_dir, resume)
    loaded = found[1] if found is not None else None

    # the networks and optimisers, fresh or from the state the run continues
    trainer = Trainer(cfg, env)
    step = load_into(trainer, loaded, env) if loaded is not None else 0
    counters = dict(loaded[0].get("counters", {})) if loaded is not None else {}
    counters.setdefault("images", 0)
    counters.setdefault("skipped", 0)
    if found is not None and env.main:
        print(f"resumed from {found[0]} at step {step}", file=sys.stderr)

    # the data: a deterministic stream of (index, epoch) keys that picks up at `step`
    dataset = TrainingData(cfg.data, cfg.model, cfg.seed)
    if loaded is None and cfg.style_calibration:
        trainer.calibrate_style(dataset, cfg.style_calibration)
    sampler = EpochSampler(dataset, cfg.batch_size, env.world, env.rank, cfg.seed, start_step=step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.data.workers, drop_last=True,
        pin_memory=env.device.type == "cuda", persistent_workers=cfg.data.workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed + env.rank))  # never touches the global RNG

    # rank 0's outputs
    log = None
    samples = None
    if env.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config_json(cfg))
        prune_states(ckpt_dir, cfg.keep_last) if ckpt_dir.is_dir() else None
        log = RunLog(run_dir, step)
        samples = dataset.sample_batch(cfg.samples)
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not (env.main and cfg.progress), dynamic_ncols=True,
               unit="step")

    # the loop
    sums: dict[str, torch.Tensor] = {}
    last: dict[str, float] = {}
    count, t0 = 0, time.perf_counter()
    it = iter(loader)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    while step < end:
        batch = next(it)
        counters["skipped"] += int(batch.pop("skipped").sum())
        logs = trainer.step(batch, step)
        step += 1
        counters["images"] += cfg.batch_size * env.world
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == end:
            elapsed = time.perf_counter() - t0
            last = {f"train/{k}": float(v) / count for k, v in sums.items()}
            last["train/images_per_s"] = count * cfg.batch_size * env.world / max(elapsed, 1e-9)
            last["data/skipped_files"] = float(counters["skipped"])
            if log is not None:
                log.scalars(step, last)
                bar.set_postfix(l1=f"{last['train/l1']:.3f}", g=f"{last['train/loss_g']:.3f}",
                                d=f"{last.get('train/loss_d', 0.0):.3f}", refresh=False)
            sums, count, t0 = {}, 0, time.perf_counter()
        if log is not None and (step % cfg.sample_every == 0 or step == end):
            image, sensitivity = sample_grid(trainer, samples)
            from backend.inference.imageio import save_image

            save_image(run_dir / "samples" / f"step_{step:09d}.png", image)
            log.scalars(step, {"eval/ref_sensitivity": sensitivity})
        if step % cfg.checkpoint_every == 0 or step == end:
            save_state_all_ranks(ckpt_dir, trainer, step, counters, cfg.keep_last)
        if env.main and cfg.export_every and step % cfg.export_every == 0 and step < cfg.steps:
            export(cfg, trainer.ema, trainer.encoder.sha256, run_dir / "export", step, counters)
    bar.close()

    # the end: the exported generator (rank 0), then every rank leaves together
    exported = None
    if env.main:
        exported = export(cfg, trainer.ema, trainer.encoder.sha256, run_dir / "export", step, counters)
        log.close() if log is not None else None
    dump = os.environ.get(RANK_DUMP_ENV)
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        save_file({k: cpu_copy(v) for k, v in trainer.G.state_dict().items()},
                  str(Path(dump) / f"rank{env.rank}.safetensors"))
    if env.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "scalars": last, "run_dir": str(run_dir), "export": str(exported) if exported else None,
            "counters": counters, "rank": env.rank, "world": env.world}


# ----------------------------------------------------------------------------------------- CLI
def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete state in RUN_DIR/checkpoints (or start if none)")
    parser.add_argument("--export", metavar="DIR", default=None,
                        help="only export the EMA generator of the run's newest state to DIR, then exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="stop at this step with a state saved (continue later with --resume)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a training config JSON (see training/configs/), or a run folder "
                                       "(its config.json is used)")
    _flags(parser)
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="--key=value overrides with dotted keys, e.g. --steps=500 --model.base_channels=16 "
                             "--data.folder=/data/illustrations")


def parse_command(args: argparse.Namespace) -> tuple[TrainConfig, argparse.Namespace]:
    """Resolve the config and split the flags that argparse left among the overrides."""
    late = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _flags(late)
    flags, rest = late.parse_known_args(args.overrides or [])
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        raise ValueError(f"unexpected argument(s) {' '.join(bad)}: overrides look like --key=value")
    flags.resume = flags.resume or args.resume
    flags.export = flags.export or args.export
    flags.print_config = flags.print_config or args.print_config
    flags.stop_at = flags.stop_at if flags.stop_at is not None else args.stop_at
    path = Path(args.config)
    if path.is_dir():
        path = path / "config.json"
    return load_config(path, rest), flags


def main(args: argparse.Namespace) -> int:
    try:
        cfg, flags = parse_command(args)
        if flags.print_config:
            print(config_json(cfg), end="")
            return 0
        if flags.export:
            out = export_latest(cfg, Path(flags.export))
            print(f"exported the EMA generator to {out} (use: irodori colorize --checkpoint {out} ...)")
            return 0
        summary = train(cfg, resume=flags.resume, stop_at=flags.stop_at)
    except ValueError as exc:
        print(f"irodori train: {exc}", file=sys.stderr)
        return 2
    if summary["rank"] == 0:
        print(f"trained to step {summary['step']}; generator exported to {summary['export']}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="irodori train")
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
