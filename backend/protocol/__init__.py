"""Irodori's wire protocol (docs/protocol.md): its constants, errors, pixel layouts, shared memory and client.

The server, the CLI and both plugins import this package; the plugins link to this folder and
their builds copy it. So every module here imports only the standard library at top level (Krita's and
GIMP's own Pythons on Windows and macOS cannot load compiled packages) and its siblings by relative
imports. pyzmq is used when it imports; otherwise the client speaks ZMTP 3.0 itself (zmtp.py).
Request validation, which only servers need, lives in backend/service/validate.py.

Messages (after the ROUTER's identity frame): b"" delimiter, b"irodori/1", a JSON header, binary frames.
"""
from __future__ import annotations

from .client import Client, colorize_many, wait_until_serving
from .constants import (DEFAULT_ENDPOINT, DEFAULT_LIMITS, ENCODED_FORMATS, HINT_LAYOUTS, HINTS_ROLE, ID_PATTERN,
                        INPUT_FORMATS, KEYFRAME_ROLES, LAYOUT_CHANNELS, MAX_HEADER_BYTES, MAX_RESOLUTION,
                        MIN_RESOLUTION, OPS, OUTPUT_FORMATS, OUTPUT_LAYOUTS, OUTPUTS, PROTOCOL_VERSION, REQUIRED_ROLES,
                        ROLES, STOP_CODES, SUPPORTED_VERSIONS, UNSURE_OUTPUT, VERSION_FRAME, VERSION_PREFIX, Limits)
from .curve import CurveKeys
from .endpoints import is_local_endpoint
from .errors import ERROR_CODES, BackendUnavailable, IrodoriError, make_error
from .frames import error_frames, json_bytes, reply_frames
from .pixels import Pixels
from .pyzmq_transport import pyzmq_available
from .shm import (SHM_DIR, SHM_NAME_FORM, SHM_NAME_PATTERN, SharedBuffer, remove_stale_segments, shm_available,
                  valid_shm_name)

__all__ = [
    "Client", "colorize_many", "wait_until_serving",
    "DEFAULT_ENDPOINT", "DEFAULT_LIMITS", "ENCODED_FORMATS", "HINT_LAYOUTS", "HINTS_ROLE", "ID_PATTERN",
    "INPUT_FORMATS", "KEYFRAME_ROLES", "LAYOUT_CHANNELS", "MAX_HEADER_BYTES", "MAX_RESOLUTION", "MIN_RESOLUTION",
    "OPS",
    "OUTPUT_FORMATS", "OUTPUT_LAYOUTS", "OUTPUTS", "PROTOCOL_VERSION", "REQUIRED_ROLES", "ROLES",
    "STOP_CODES", "SUPPORTED_VERSIONS", "UNSURE_OUTPUT", "VERSION_FRAME", "VERSION_PREFIX", "Limits",
    "CurveKeys", "is_local_endpoint", "ERROR_CODES", "BackendUnavailable", "IrodoriError", "make_error",
    "error_frames", "json_bytes", "reply_frames", "Pixels", "pyzmq_available",
    "SHM_DIR", "SHM_NAME_FORM", "SHM_NAME_PATTERN", "SharedBuffer", "remove_stale_segments", "shm_available",
    "valid_shm_name",
]
