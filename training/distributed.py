"""The processes of a run: one, or DDP under torchrun (WORLD_SIZE > 1). Rank 0 writes; every rank keeps its
own torch RNG stream, gathered into each saved state so a resumed run continues every stream exactly."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from training.config import TrainConfig


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: its rank, the number of processes and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(cfg: TrainConfig) -> Dist:
    """Single process, or DDP when started by torchrun (WORLD_SIZE > 1): nccl on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device=cpu")
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, device=device)


def gather_rng(env: Dist) -> list[torch.Tensor]:
    """Every rank's torch RNG state (CPU, then this rank's GPU), gathered on all ranks as uint8 tensors."""
    state = torch.get_rng_state()
    if env.device.type == "cuda":
        state = torch.cat([state, torch.cuda.get_rng_state(env.device)])
    if env.world == 1:
        return [state]
    local = state.to(env.device)
    out = [torch.empty_like(local) for _ in range(env.world)]
    dist.all_gather(out, local)
    return [t.cpu() for t in out]


def set_rng(state: torch.Tensor, env: Dist) -> None:
    cpu_len = torch.get_rng_state().numel()
    torch.set_rng_state(state[:cpu_len].clone())
    if env.device.type == "cuda" and state.numel() > cpu_len:
        torch.cuda.set_rng_state(state[cpu_len:].clone(), env.device)


def ranks_agree(module: nn.Module, env: Dist) -> bool:
    """Checksums of the weights compared over ranks (DDP must keep them identical)."""
    if env.world == 1:
        return True
    flat = torch.cat([p.detach().double().flatten() for p in module.parameters()])
    sums = torch.stack([flat.sum(), (flat ** 2).sum(), (flat * (torch.arange(flat.numel(), device=flat.device) % 1009)).sum()])
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))
