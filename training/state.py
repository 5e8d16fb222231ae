"""Training states on disk: written atomically, listed, pruned, read back and loaded into a Trainer, plus the
rule for which config fields a --resume may change.

A state is the folder checkpoints/step_N/ holding model.safetensors (G, D, EMA), optim.safetensors,
rng.safetensors and state.json; no pickle anywhere. It is written into a hidden temporary folder and renamed
into place, so a crash never leaves half a state.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from backend.model.config import from_dict, to_dict
from training.config import TrainConfig
from training.distributed import Dist, gather_rng, ranks_agree, set_rng

if TYPE_CHECKING:
    from training.trainer import Trainer

STATE_FORMAT = "irodori-train-state"
STATE_VERSION = 1
STATE_PREFIX = "step_"
# Fields that may differ between a run and its --resume: they do not change what is computed, except `steps`,
# which lengthens (or ends early) a run, a cosine schedule then stretching to the new last step.
RESUME_SAFE = {"steps", "log_every", "sample_every", "samples", "checkpoint_every", "keep_last", "export_every",
               "progress", "compile", "threads", "data.workers"}
# Test-only hook (environment): sleep inside the write of one state, to kill a run mid-write.
SAVE_SLEEP_ENV = "IRODORI_TEST_SAVE_SLEEP"  # "STEP:SECONDS"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cpu_copy(t: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU copy that owns its memory (safetensors writes it as it is)."""
    return t.detach().to("cpu").contiguous().clone()


def save_state(ckpt_dir: Path, trainer: Trainer, step: int, counters: dict[str, int], rng: list[torch.Tensor]) -> Path:
    """Write one training state atomically: a hidden temp folder, fsynced, then renamed to step_N."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"{STATE_PREFIX}{step:09d}"
    tmp = ckpt_dir / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model = {f"{name}.{k}": cpu_copy(v) for name, m in trainer.modules().items() for k, v in m.state_dict().items()}
    save_file(model, str(tmp / "model.safetensors"))
    hook = os.environ.get(SAVE_SLEEP_ENV, "")
    if hook and int(hook.split(":")[0]) == step:  # test-only: be killable in the middle of a write
        print(f"[test hook] sleeping inside the write of step {step}", file=sys.stderr, flush=True)
        time.sleep(float(hook.split(":")[1]))
    tensors: dict[str, torch.Tensor] = {}
    optim_doc: dict[str, Any] = {}
    for name, (opt, scaler) in trainer.optimizers().items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, pstate in sd["state"].items():
            for key, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"{name}.{idx}.{key}"] = cpu_copy(value)
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        optim_doc[name] = {"param_groups": sd["param_groups"], "scalars": scalars, "scaler": scaler.state_dict()}
    save_file(tensors, str(tmp / "optim.safetensors"))
    save_file({f"rank{r}": t.contiguous() for r, t in enumerate(rng)}, str(tmp / "rng.safetensors"))
    doc = {"format": STATE_FORMAT, "format_version": STATE_VERSION, "step": step, "world_size": len(rng),
           "counters": counters, "config": to_dict(trainer.cfg), "optimizers": optim_doc,
           "style_sha256": trainer.encoder.sha256, "time": time.time()}
    (tmp / "state.json").write_text(json.dumps(doc, indent=1) + "\n")
    for f in tmp.iterdir():
        _fsync(f)
    if final.exists():  # the same step saved again (after a resume): swap the old one out first
        old = ckpt_dir / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync(ckpt_dir)
    return final


def save_state_all_ranks(ckpt_dir: Path, trainer: Trainer, step: int, counters: dict[str, int], keep_last: int) -> None:
    """Every rank's part of a checkpoint: the RNG streams gathered and the weights checked equal on all ranks,
    then rank 0 writes the state and prunes old ones while the others wait."""
    env = trainer.env
    rng = gather_rng(env)
    if not all(ranks_agree(m, env) for m in trainer.modules().values()):
        raise RuntimeError(f"step {step}: the weights differ between ranks; DDP is broken")
    if env.main:
        save_state(ckpt_dir, trainer, step, counters, rng)
        prune_states(ckpt_dir, keep_last)
    if env.world > 1:
        dist.barrier()


def list_states(ckpt_dir: Path) -> list[Path]:
    """Complete states, oldest first (temporary folders of interrupted writes are never listed)."""
    if not ckpt_dir.is_dir():
        return []
    states = [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(STATE_PREFIX)
              and p.name[len(STATE_PREFIX):].isdigit() and (p / "state.json").is_file()]
    return sorted(states, key=lambda p: int(p.name[len(STATE_PREFIX):]))


def prune_states(ckpt_dir: Path, keep: int) -> None:
    for p in list_states(ckpt_dir)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    for p in ckpt_dir.glob(".tmp-*"):  # leftovers of killed writes (ours are renamed away already)
        shutil.rmtree(p, ignore_errors=True)


def read_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """state.json and the three tensor files of one state; raises ValueError when anything is unreadable."""
    try:
        doc = json.loads((path / "state.json").read_text())
        if doc.get("format") != STATE_FORMAT or doc.get("format_version") != STATE_VERSION:
            raise ValueError(f"not an {STATE_FORMAT} v{STATE_VERSION} state")
        return (doc, load_file(str(path / "model.safetensors")), load_file(str(path / "optim.safetensors")),
                load_file(str(path / "rng.safetensors")))
    except Exception as exc:  # truncated files, bad JSON, missing files: all mean "not usable"
        raise ValueError(f"training state {path} is unreadable ({exc})") from exc


def latest_state(ckpt_dir: Path) -> tuple[Path, tuple] | None:
    """The newest readable state; unreadable ones are reported and skipped."""
    for path in reversed(list_states(ckpt_dir)):
        try:
            return path, read_state(path)
        except ValueError as exc:
            print(f"warning: {exc}; trying an older one", file=sys.stderr)
    return None


def resume_point(cfg: TrainConfig, ckpt_dir: Path, resume: bool) -> tuple[Path, tuple] | None:
    """The state a run continues from: with `resume` the newest readable one (its config checked against
    `cfg`), else None; a fresh start refuses a run_dir that already holds states."""
    if not resume:
        if list_states(ckpt_dir):
            raise ValueError(f"{Path(cfg.run_dir)} already holds training states: continue it with --resume, or "
                             "pick another run_dir (--run_dir=PATH)")
        return None
    found = latest_state(ckpt_dir)
    if found is None:
        print(f"note: nothing to resume in {ckpt_dir}; starting from step 0", file=sys.stderr)
        return None
    path, loaded = found
    check_resume_config(from_dict(TrainConfig, loaded[0]["config"], f"{path}/state.json config"), cfg)
    return found


def load_into(trainer: Trainer, loaded: tuple, env: Dist) -> int:
    doc, model, optim, rng = loaded
    for name, module in trainer.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)})
    for name, (opt, scaler) in trainer.optimizers().items():
        saved = doc["optimizers"][name]
        state: dict[int, dict[str, Any]] = {}
        for key, value in optim.items():
            owner, idx, field = key.split(".", 2)
            if owner == name:
                state.setdefault(int(idx), {})[field] = value
        for idx, scalars in saved["scalars"].items():
            state.setdefault(int(idx), {}).update(scalars)
        groups = [dict(g, betas=tuple(g["betas"])) for g in saved["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
    if doc["world_size"] == env.world:
        set_rng(rng[f"rank{env.rank}"], env)
    else:
        print(f"note: the state was written by {doc['world_size']} process(es), this run has {env.world}: "
              "RNG streams start afresh (the data order is rebuilt for the new world size)", file=sys.stderr)
    return int(doc["step"])


def check_resume_config(stored: TrainConfig, asked: TrainConfig) -> None:
    a, b = _flat(to_dict(stored)), _flat(to_dict(asked))
    changed = sorted(k for k in a if a[k] != b.get(k) and k not in RESUME_SAFE)
    if changed:
        raise ValueError("--resume with a config that differs from the run's in: " + ", ".join(
            f"{k} ({a[k]!r} -> {b.get(k)!r})" for k in changed) + ". Only " + ", ".join(sorted(RESUME_SAFE)) +
            " may change; start a new run_dir for anything else.")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
