"""The docker's settings, kept between sessions in kritarc through Krita.readSetting/writeSetting.

Pure: `load` and `save` take the two functions, so tests use a dict and Krita passes its own methods.
Anything unreadable in the file falls back to the default instead of breaking the docker.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

from .protocol import DEFAULT_ENDPOINT, OUTPUTS

GROUP = "irodori"
# Every output the backend makes except "shading": that layer only reads right with a "Grain merge" blend
# mode over the flats, which the plugin does not set up.
OUTPUT_CHOICES = tuple(name for name in OUTPUTS if name != "shading")
RESOLUTION_CHOICES = (0, 256, 512, 768, 1024)  # 0 = the model's own resolution
REFERENCE_KINDS = ("layer", "document", "file")
SCOPES = ("layer", "selected", "keyframes", "playhead")  # playhead: keyframe colouring from the coloured frame
DEFAULT_TIMEOUT = 120.0  # seconds to wait for one image, in the docker and the scripting API
MAX_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Settings:
    endpoint: str = DEFAULT_ENDPOINT
    timeout: float = DEFAULT_TIMEOUT
    output: str = "color"
    resolution: int = 0
    scope: str = "layer"
    reference_kind: str = "layer"
    reference_file: str = ""
    python: str = ""  # a Python executable or environment folder with Irodori installed, for "Start backend"
    checkpoint: str = ""  # optional model folder passed to `irodori serve --checkpoint`


def _valid(name: str, value) -> bool:
    if name == "endpoint":
        return value.startswith(("tcp://", "ipc://")) and len(value) <= 300
    if name == "timeout":
        return 1.0 <= value <= MAX_TIMEOUT
    if name == "output":
        return value in OUTPUT_CHOICES
    if name == "resolution":
        return value in RESOLUTION_CHOICES
    if name == "scope":
        return value in SCOPES
    if name == "reference_kind":
        return value in REFERENCE_KINDS
    return len(value) <= 4096


def validated(settings: Settings) -> Settings:
    """The same settings with every invalid field put back to its default."""
    default = Settings()
    changes = {f.name: getattr(default, f.name) for f in fields(Settings)
               if not _valid(f.name, getattr(settings, f.name))}
    return replace(settings, **changes)


def load(read: Callable[[str, str, str], str]) -> Settings:
    """Settings from read(group, name, default_text); bad or missing values become defaults."""
    default = Settings()
    values = {}
    for f in fields(Settings):
        fallback = getattr(default, f.name)
        text = read(GROUP, f.name, str(fallback))
        text = "" if text is None else str(text).strip()
        try:
            value = type(fallback)(float(text)) if isinstance(fallback, (int, float)) else text
        except ValueError:
            value = fallback
        values[f.name] = value if _valid(f.name, value) else fallback
    return Settings(**values)


def save(settings: Settings, write: Callable[[str, str, str], None]) -> None:
    for f in fields(Settings):
        write(GROUP, f.name, str(getattr(settings, f.name)))
