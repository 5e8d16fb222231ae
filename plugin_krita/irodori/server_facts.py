"""What the plugin adapts to on the backend it talks to, read from the backend's `info` reply. Pure.

The size limits, the model's reference size and whether it takes hints belong to the backend (they change with its settings and
its model), so the plugin reads them instead of keeping copies that could disagree. Until an `info` reply
has been read, it assumes the protocol's default limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import protocol

# The plugin's own transfer policy: a reference is sent at most this long a side, or at the model's reference
# size where that is larger. The model shrinks every reference to its reference size anyway, so more pixels
# would only cost transfer time.
REFERENCE_SEND_SIDE = 1024
# A reference file is read whole on Krita's UI thread: a bigger one is refused before it is read (the
# backend's own max_encoded_bytes applies too, where it is lower).
MAX_REFERENCE_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ServerFacts:
    limits: protocol.Limits = protocol.DEFAULT_LIMITS
    reference_size: int | None = None  # the square side the model resizes every reference to
    hints: bool | None = None  # whether the model takes colour hints; None = not known (no `info` read yet)

    @classmethod
    def from_info(cls, info: dict) -> "ServerFacts":
        """The facts in an `info` reply; a part that is missing or malformed keeps its default."""
        info = info if isinstance(info, dict) else {}
        limits = protocol.Limits.from_info(info.get("limits")) or protocol.DEFAULT_LIMITS
        model = info.get("model") if isinstance(info.get("model"), dict) else {}
        config = model.get("config") if isinstance(model.get("config"), dict) else {}
        size = config.get("reference_size")
        valid = isinstance(size, int) and not isinstance(size, bool) and size > 0
        hints = model.get("hints")
        return cls(limits, size if valid else None, hints if isinstance(hints, bool) else None)

    def reference_side(self) -> int:
        """The longest side a reference is sent at: the transfer policy, within what the backend accepts."""
        side = max(REFERENCE_SEND_SIDE, self.reference_size or 0)
        return min(side, self.limits.max_side, math.isqrt(self.limits.max_reference_pixels))

    def max_reference_file_bytes(self) -> int:
        return min(MAX_REFERENCE_FILE_BYTES, self.limits.max_encoded_bytes)
