"""8-bit pixel buffers in the layouts the protocol names (LAYOUT_CHANNELS), with numpy optional."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import LAYOUT_CHANNELS


@dataclass
class Pixels:
    """8-bit pixels, rows top to bottom, channels interleaved in `layout` order ("L", "RGB", "RGBA", "BGRA").

    `data` is any bytes-like object (bytes, bytearray, memoryview); replies use zero-copy views, so call
    bytes(p.data) where an API insists on bytes.
    """

    width: int
    height: int
    layout: str
    data: Any

    def __post_init__(self) -> None:
        if self.layout not in LAYOUT_CHANNELS:
            raise ValueError(f"layout {self.layout!r} must be one of {', '.join(LAYOUT_CHANNELS)}")
        n = memoryview(self.data).nbytes
        if n != self.width * self.height * self.channels:
            raise ValueError(f"{self.width}x{self.height} {self.layout} needs "
                             f"{self.width * self.height * self.channels} bytes, got {n}")

    @property
    def channels(self) -> int:
        return LAYOUT_CHANNELS[self.layout]

    @classmethod
    def from_array(cls, array: Any, layout: str | None = None) -> "Pixels":
        """From a uint8 numpy array (H,W), (H,W,3) or (H,W,4); numpy itself is not imported here."""
        if str(getattr(array, "dtype", "")) != "uint8":
            raise ValueError(f"pixels must be uint8, got {getattr(array, 'dtype', type(array).__name__)}")
        shape = tuple(array.shape)
        channels = 1 if len(shape) == 2 else shape[2] if len(shape) == 3 else 0
        default = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
        if default is None:
            raise ValueError(f"pixels must be (H,W), (H,W,3) or (H,W,4), got shape {shape}")
        layout = layout or default
        if LAYOUT_CHANNELS.get(layout) != channels:
            raise ValueError(f"layout {layout} does not fit shape {shape}")
        if not array.flags["C_CONTIGUOUS"]:
            array = array.copy()
        return cls(shape[1], shape[0], layout, memoryview(array).cast("B"))

    def to_array(self) -> Any:
        """A read-only numpy view (H,W) or (H,W,C); needs numpy."""
        import numpy as np

        a = np.frombuffer(self.data, np.uint8)
        return a.reshape(self.height, self.width) if self.channels == 1 else a.reshape(
            self.height, self.width, self.channels)
