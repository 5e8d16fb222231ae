"""Building the frames of a message: the version frame, a compact JSON header, then the payload frames."""
from __future__ import annotations

import json
from typing import Any, Sequence

from .constants import SUPPORTED_VERSIONS, VERSION_FRAME


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def reply_frames(header: dict, payloads: Sequence[Any] = ()) -> list:
    """A reply without its envelope: version, header, payload frames."""
    return [VERSION_FRAME, json_bytes(header), *payloads]


def error_frames(request_id: str | None, code: str, message: str) -> list:
    """An error reply; `unsupported_version` also names, at the top level of the header, the versions spoken."""
    header: dict[str, Any] = {"id": request_id, "ok": False, "error": {"code": code, "message": message}}
    if code == "unsupported_version":
        header["supported_versions"] = list(SUPPORTED_VERSIONS)
    return reply_frames(header)
