"""Every fact the client, the server and both plugins share, defined here once (docs/protocol.md)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PROTOCOL_VERSION = 1
VERSION_PREFIX = b"irodori/"
VERSION_FRAME = VERSION_PREFIX + str(PROTOCOL_VERSION).encode()
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5717"

OPS = ("ping", "info", "colorize")
OUTPUTS = ("color", "flattened", "flats", "shading")  # what the pipeline can produce, in this order
HINTS_ROLE = "hints"  # the optional colour hints: transparent, a dot of colour = "this colour here"
REQUIRED_ROLES = ("lineart", "reference")  # every colorize request sends these two images
# The optional keyframe, both or neither: a coloured frame (its line art, then its flats or colour picture)
# whose colours the line art's regions take, region by region (docs/protocol.md, "Keyframe").
KEYFRAME_ROLES = ("keyframe_lineart", "keyframe_colour")
ROLES = (*REQUIRED_ROLES, HINTS_ROLE, *KEYFRAME_ROLES)  # every input role, in the order a client sends them
UNSURE_OUTPUT = "unsure"  # with a keyframe only: white where a region found no good match in the keyframe
INPUT_FORMATS = ("raw", "encoded", "shm")  # encoded = a file in ENCODED_FORMATS; shm = see shm.SharedBuffer
ENCODED_FORMATS = ("PNG", "JPEG", "WEBP")  # the only file formats a server decodes (PIL names)
LAYOUT_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4, "BGRA": 4}
HINT_LAYOUTS = ("RGBA", "BGRA")  # the hints need their alpha: it says where a hint is
OUTPUT_LAYOUTS = ("RGB", "RGBA", "BGRA")
OUTPUT_FORMATS = ("raw", "png", "shm")
MAX_HEADER_BYTES = 64 * 1024
ID_PATTERN = r"[A-Za-z0-9._:-]{1,64}"  # a request id: a client picks it, every reply echoes it
# options.resolution: the model's working long side. The server also demands a multiple of the model's
# U-net step, which it reports in info["resolution"]["multiple"] (it depends on the model).
MIN_RESOLUTION, MAX_RESOLUTION = 32, 4096

# Errors after which a client should stop sending (the backend is gone, stopping, or will never accept it),
# as opposed to errors that concern one request only.
STOP_CODES = ("unavailable", "shutting_down", "cancelled", "auth", "unsupported_version")


@dataclass(frozen=True)
class Limits:
    """Size limits every front end enforces; a server reports its own in info["limits"]."""

    max_side: int = 16384  # longest side of any image
    max_pixels: int = 8192 * 8192  # line art pixels (width * height)
    max_reference_pixels: int = 4096 * 4096
    max_encoded_bytes: int = 256 * 1024 * 1024  # one encoded (PNG/JPEG/WebP) image

    @classmethod
    def from_info(cls, d: Any) -> "Limits | None":
        """The limits in a server's info["limits"] (other keys there are ignored); None when any is missing or bad."""
        try:
            return cls(**{f.name: int(d[f.name]) for f in fields(cls)})
        except (KeyError, TypeError, ValueError):
            return None


DEFAULT_LIMITS = Limits()
