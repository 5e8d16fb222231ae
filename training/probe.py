"""Ridge probe: how well does a style vector tell the reference's colours? It picks the encoder's layers.

`python -m training.probe --faces ../shared/data/anime-faces-256` fits a ridge regression from each
candidate style vector to colour targets on a training split and reports the held-out error (CIE76 in Lab,
lower is better). The generator only receives the style vector, so a vector from which a LINEAR probe cannot
read the colours will not let the generator follow the reference either.

Targets:
  synth  the base colours of the 9 parts (training.synth.PARTS) of the reference's palette, the reference being
         ANOTHER character drawn in that palette (as data.reference=palette_pair trains): colours by meaning.
  faces  mean Lab colour of a 4x4 grid over a real face, the reference being the face itself, un-augmented
         (as the same-reference evaluation uses it).
Candidates: pooled statistics of VGG16 (HED weights) conv layers (CANDIDATES: channel means, or means and
standard deviations, over the whole picture or a coarse grid), and the seeded looks-linear VGG19 fc1 the
offline models use. Those of 4096 numbers (shown in brackets) fit the generator as VGG19's fc1 does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from backend.model.networks import StyleEncoder
from backend.model.vgg16 import VGG16StyleEncoder, pool_features, spec_width
from backend.inference.colour import rgb_to_lab
from training.data import held_out, scan_images

TAPS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")  # HED's side-output layers, one per block
ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
HOLDOUT = 0.1  # the faces' evaluation split (training/configs/real.json data.holdout)
# Candidate pooling specs (backend.model.vgg16.STYLE_SPEC format); those of 4096 numbers can replace fc1 as is.
CANDIDATES: dict[str, tuple[tuple[str, int, str], ...]] = {
    "conv4_3+conv5_3 mean/std (global)": (("conv4_3", 1, "meanstd"), ("conv5_3", 1, "meanstd")),
    "conv3_3 mean/std (global)": (("conv3_3", 1, "meanstd"),),
    "conv1_2 mean/std (global)": (("conv1_2", 1, "meanstd"),),
    "every tap mean/std, 2x2 on conv1-2": (("conv1_2", 2, "meanstd"), ("conv2_2", 2, "meanstd"), ("conv3_3", 1, "meanstd"),
                                           ("conv4_3", 1, "meanstd"), ("conv5_3", 1, "meanstd")),
    "conv3_3 2x2 + conv4_3, conv5_3 mean/std": (("conv3_3", 2, "meanstd"), ("conv4_3", 1, "meanstd"), ("conv5_3", 1, "meanstd")),
    "conv2_2 2x2, conv3_3 2x2 + conv5_3 mean/std": (("conv2_2", 2, "meanstd"), ("conv3_3", 2, "meanstd"), ("conv5_3", 1, "meanstd")),
    "conv4_3 2x2 + conv5_3 2x2 means": (("conv4_3", 2, "mean"), ("conv5_3", 2, "mean")),
    "conv3_3 4x4 means": (("conv3_3", 4, "mean"),),
    "conv2_2 4x4 mean/std": (("conv2_2", 4, "meanstd"),),
    "conv2_2 4x4 means + conv4_3 2x2 means": (("conv2_2", 4, "mean"), ("conv4_3", 2, "mean")),
    "conv1_2 4x4 mean/std + conv4_3 2x2 means": (("conv1_2", 4, "meanstd"), ("conv4_3", 2, "mean")),
    "conv1_2 4x4 mean/std + conv3_3 2x2 mean/std": (("conv1_2", 4, "meanstd"), ("conv3_3", 2, "meanstd")),
    "conv3_3 2x2 means + conv4_3 2x2 means + conv5_3 mean/std": (("conv3_3", 2, "mean"), ("conv4_3", 2, "mean"),
                                                                 ("conv5_3", 1, "meanstd")),
    "conv1_2 8x8 means": (("conv1_2", 8, "mean"),),
    "conv1_2 4x4 mean/std + conv2_2 4x4 means": (("conv1_2", 4, "meanstd"), ("conv2_2", 4, "mean")),
    "conv1_2 4x4 mean/std + conv2_2 2x2, conv3_3 mean/std + conv4_3 means": (
        ("conv1_2", 4, "meanstd"), ("conv2_2", 2, "meanstd"), ("conv3_3", 1, "meanstd"), ("conv4_3", 1, "mean")),
}


def synth_set(count: int, size: int, seed0: int = 20_000_000) -> tuple[np.ndarray, np.ndarray]:
    """References (N,S,S,3) uint8 and targets (N, 9 parts x Lab) of palette-pair cases."""
    from training import synth

    refs, targets = [], []
    for i in range(count):
        palette = synth.random_palette(seed0 + i)
        refs.append(synth.render(synth.random_character(seed0 + count + i), palette, size).color)
        targets.append(rgb_to_lab(np.array(palette.colors, np.uint8)[None]).reshape(-1))
    return np.stack(refs), np.stack(targets).astype(np.float64)


def faces_set(folder: Path, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces (N,S,S,3) uint8 and targets (N, 16 cells x Lab)."""
    from PIL import Image

    files = [p for p in scan_images(folder) if not held_out(p, HOLDOUT)][:count]  # never the evaluation split
    refs, targets = [], []
    for p in files:
        img = np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
        refs.append(img)
        lab = rgb_to_lab(img).reshape(4, size // 4, 4, size // 4, 3).mean((1, 3))
        targets.append(lab.reshape(-1))
    return np.stack(refs), np.stack(targets).astype(np.float64)


@torch.no_grad()
def features(refs: np.ndarray, vgg16: VGG16StyleEncoder, vgg19: StyleEncoder | None, batch: int = 16,
             only: set[str] | None = None) -> dict[str, np.ndarray]:
    """Candidate name -> (N, dim) style vectors (one VGG16 pass per batch serves every candidate)."""
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(refs), batch):
        x = torch.from_numpy(refs[start:start + batch]).permute(0, 3, 1, 2).float() / 255.0
        feats = vgg16.trunk(x, TAPS)
        for name, spec in CANDIDATES.items():
            if only and name not in only:
                continue
            out.setdefault(f"{name} [{spec_width(spec)}]", []).append(pool_features(feats, spec).numpy())
        if vgg19 is not None:
            out.setdefault("vgg19 looks-linear:0 fc1 [4096]", []).append(vgg19(x, fold_pool=True).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def ridge_error(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[float, float]:
    """Held-out mean CIE76 per colour (3 numbers each) of a ridge fit, alpha chosen on the last fifth of the
    training split; the dual form, since features outnumber samples."""
    mu, sd = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    z = (x - mu) / sd
    ym = y[:n_train].mean(0)

    def fit_predict(tr: slice, te: slice, alpha: float) -> np.ndarray:
        k = z[tr] @ z[tr].T
        coef = np.linalg.solve(k + alpha * np.eye(len(k)), y[tr] - ym)
        return z[te] @ (z[tr].T @ coef) + ym

    def err(pred: np.ndarray, true: np.ndarray) -> float:
        return float(np.linalg.norm((pred - true).reshape(len(true), -1, 3), axis=2).mean())

    cut = n_train * 4 // 5
    best = min(ALPHAS, key=lambda a: err(fit_predict(slice(0, cut), slice(cut, n_train), a), y[cut:n_train]))
    return err(fit_predict(slice(0, n_train), slice(n_train, None), best), y[n_train:]), best


def probe(sets: dict[str, tuple[np.ndarray, np.ndarray]], n_train: int, only: set[str] | None = None,
          vgg19: bool = True) -> dict[str, dict[str, float]]:
    vgg16 = VGG16StyleEncoder()
    vgg19_encoder = StyleEncoder("looks-linear:0") if vgg19 else None
    table: dict[str, dict[str, float]] = {}
    for set_name, (refs, y) in sets.items():
        feats = features(refs, vgg16, vgg19_encoder, only=only)
        baseline = float(np.linalg.norm((y[n_train:] - y[:n_train].mean(0)).reshape(len(y) - n_train, -1, 3), axis=2).mean())
        table.setdefault("(mean colour, no features)", {})[set_name] = baseline
        for name, x in feats.items():
            table.setdefault(name, {})[set_name] = ridge_error(x.astype(np.float64), y, n_train)[0]
        print(f"probed {set_name}", file=sys.stderr)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.probe", description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=Path, help="a folder of real colour pictures (the faces target)")
    p.add_argument("--count", type=int, default=1000, help="pictures per set (4/5 train, 1/5 held out)")
    p.add_argument("--size", type=int, default=128, help="reference side in pixels")
    p.add_argument("--json", type=Path, help="also write the table here")
    p.add_argument("--only", action="append", help="probe only this candidate (repeatable; names as in CANDIDATES)")
    p.add_argument("--no-vgg19", action="store_true", help="leave out the VGG19 row (the slowest)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    n_train = args.count * 4 // 5
    sets = {"synth": synth_set(args.count, args.size)}
    if args.faces:
        sets["faces"] = faces_set(args.faces, args.count, args.size)
    table = probe(sets, n_train, set(args.only or []) or None, not args.no_vgg19)
    names = list(sets)
    print(f"{'style vector':40s} " + " ".join(f"{n:>8s}" for n in names) + "   (held-out CIE76, lower is better)")
    for name, row in sorted(table.items(), key=lambda kv: sum(kv[1].values())):
        print(f"{name:40s} " + " ".join(f"{row[n]:8.2f}" for n in names))
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
