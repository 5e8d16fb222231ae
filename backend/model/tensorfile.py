"""Reading a safetensors file with one clear error for a missing or unreadable file (no pickle anywhere)."""
from __future__ import annotations

from pathlib import Path

import torch


def read_tensors(path: Path, error: type[Exception], missing: str, unreadable: str) -> dict[str, torch.Tensor]:
    """The file's tensors; `error(missing)` when it is absent, `error(unreadable)` (plus the cause) when it
    cannot be read, so every caller says what to do in its own words."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise error(missing)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{path} cannot be read ({exc}); {unreadable}") from exc
