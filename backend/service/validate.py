"""Strict checks of a request before any work is queued: only servers need them.

Everything is checked from the header and the frame sizes alone (version, schema, types, ranges, frame
count, raw sizes, declared pixel counts), so a bad request costs nothing and gets a stable error code.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from backend.protocol import (HINT_LAYOUTS, HINTS_ROLE, ID_PATTERN, INPUT_FORMATS, KEYFRAME_ROLES, LAYOUT_CHANNELS,
                              MAX_HEADER_BYTES, MAX_RESOLUTION, MIN_RESOLUTION, OPS, OUTPUT_FORMATS, OUTPUT_LAYOUTS,
                              OUTPUTS, REQUIRED_ROLES, ROLES, UNSURE_OUTPUT, VERSION_FRAME, VERSION_PREFIX,
                              SHM_NAME_FORM, IrodoriError, Limits, valid_shm_name)

_ID_RE = re.compile(ID_PATTERN + r"\Z")


def peek_id(header: bytes) -> str | None:
    """The request id of a header that may be invalid, so that even an error reply can carry it."""
    if len(header) > MAX_HEADER_BYTES:
        return None
    try:
        rid = json.loads(bytes(header).decode("utf-8")).get("id")
    except (ValueError, AttributeError):
        return None
    return rid if isinstance(rid, str) and _ID_RE.match(rid) else None


@dataclass(frozen=True)
class ImageSpec:
    """One input image as the header describes it; width/height/layout for formats "raw" and "shm"."""

    role: str
    format: str
    width: int = 0
    height: int = 0
    layout: str = ""
    name: str = ""  # format "shm": the shared memory segment that holds the pixels

    @property
    def nbytes(self) -> int:
        return self.width * self.height * self.channels

    @property
    def channels(self) -> int:
        return LAYOUT_CHANNELS[self.layout]


@dataclass(frozen=True)
class Request:
    """A request header that passed `parse_request`: every field has the right type and range."""

    op: str
    id: str
    options: dict
    inputs: tuple[ImageSpec, ...] = ()

    @property
    def keyframe(self) -> bool:
        """Whether the request sends a keyframe (parse_request has checked: both of its images, or neither)."""
        return any(s.role in KEYFRAME_ROLES for s in self.inputs)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _keys(obj: dict, allowed: Iterable[str], where: str, rid: str | None) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise IrodoriError("bad_request", f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                          f"known: {', '.join(allowed)}", rid)


def parse_request(version: bytes, header: bytes, payload_sizes: Sequence[int], limits: Limits) -> Request:
    """Check a request strictly (version, header schema, frame count and sizes) before any work is queued.

    Raises IrodoriError with the stable code and the request id when it could be read.
    """
    version = bytes(version)
    if version != VERSION_FRAME:
        rid = peek_id(header)
        if version.startswith(VERSION_PREFIX):
            raise IrodoriError("unsupported_version", f"protocol version {version[len(VERSION_PREFIX):]!r} is "
                               f"not supported; this server speaks {VERSION_FRAME.decode()}", rid)
        raise IrodoriError("bad_request", f"not an Irodori request: the first frame after the empty delimiter "
                           f"must be {VERSION_FRAME!r}", rid)
    if len(header) > MAX_HEADER_BYTES:
        raise IrodoriError("too_large", f"header is {len(header)} bytes; at most {MAX_HEADER_BYTES}")
    try:
        doc = json.loads(bytes(header).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IrodoriError("bad_request", f"header is not UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise IrodoriError("bad_request", "header must be a JSON object")
    rid = doc.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise IrodoriError("bad_request", "header 'id' must be a string of 1-64 characters from A-Z a-z 0-9 . _ : -")
    _keys(doc, ("op", "id", "options", "inputs"), "header", rid)
    op = doc.get("op")
    if not isinstance(op, str):
        raise IrodoriError("bad_request", "header 'op' must be a string", rid)
    if op not in OPS:
        raise IrodoriError("unknown_op", f"unknown operation {op[:40]!r}; known: {', '.join(OPS)}", rid)
    if op != "colorize":
        if "options" in doc or "inputs" in doc or payload_sizes:
            raise IrodoriError("bad_request", f"'{op}' takes no options, inputs or payload frames", rid)
        return Request(op=op, id=rid, options={})
    req = Request(op=op, id=rid, options=_parse_options(doc.get("options", {}), rid),
                  inputs=_parse_inputs(doc.get("inputs"), payload_sizes, limits, rid))
    _check_keyframe_outputs(req)
    return req


def _parse_options(opts: Any, rid: str) -> dict:
    if not isinstance(opts, dict):
        raise IrodoriError("bad_request", "'options' must be a JSON object", rid)
    _keys(opts, ("outputs", "resolution", "output_layout", "output_format", "output_shm"), "options", rid)
    outputs = opts.get("outputs", ["color"])
    known = (*OUTPUTS, UNSURE_OUTPUT)
    if (not isinstance(outputs, list) or not outputs or len(outputs) > len(known)
            or not all(isinstance(o, str) and o in known for o in outputs) or len(set(outputs)) != len(outputs)):
        raise IrodoriError("bad_request", f"options.outputs must be a non-empty list of distinct names from "
                                          f"{', '.join(OUTPUTS)} (and {UNSURE_OUTPUT} with a keyframe)", rid)
    resolution = opts.get("resolution")
    if resolution is not None and (not _is_int(resolution) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION):
        raise IrodoriError("bad_request", f"options.resolution must be null or an integer from {MIN_RESOLUTION} "
                                          f"to {MAX_RESOLUTION}", rid)
    layout = opts.get("output_layout", "RGBA")
    if layout not in OUTPUT_LAYOUTS:
        raise IrodoriError("bad_request", f"options.output_layout must be one of {', '.join(OUTPUT_LAYOUTS)}", rid)
    fmt = opts.get("output_format", "raw")
    if fmt not in OUTPUT_FORMATS:
        raise IrodoriError("bad_request", f"options.output_format must be one of {', '.join(OUTPUT_FORMATS)}", rid)
    if fmt == "png" and layout == "BGRA":
        raise IrodoriError("bad_request", "output_layout BGRA needs output_format raw (PNG is RGB or RGBA)", rid)
    shm = opts.get("output_shm")
    if fmt == "shm" and shm is None:
        raise IrodoriError("bad_request", "options.output_format \"shm\" needs options.output_shm: the name of "
                                          f"the client's shared memory segment ({SHM_NAME_FORM})", rid)
    if shm is not None and fmt != "shm":
        raise IrodoriError("bad_request", "options.output_shm is used only with options.output_format \"shm\"; "
                                          "set that too, or leave output_shm out", rid)
    if shm is not None and not valid_shm_name(shm):
        raise IrodoriError("bad_request", f"options.output_shm must be a shared memory name: {SHM_NAME_FORM}", rid)
    return {"outputs": list(outputs), "resolution": resolution, "output_layout": layout, "output_format": fmt,
            "output_shm": shm}


def max_input_pixels(role: str, limits: Limits) -> int:
    """The pixel limit of an input: the hints and both keyframe images are checked like the line art."""
    return limits.max_reference_pixels if role == "reference" else limits.max_pixels


def _parse_inputs(inputs: Any, sizes: Sequence[int], limits: Limits, rid: str) -> tuple[ImageSpec, ...]:
    if not isinstance(inputs, list) or not len(REQUIRED_ROLES) <= len(inputs) <= len(ROLES):
        raise IrodoriError("bad_request", "'inputs' must list a lineart and a reference image, and optionally "
                                          f"hints and a keyframe ({' and '.join(KEYFRAME_ROLES)})", rid)
    if len(sizes) != len(inputs):
        raise IrodoriError("bad_request", f"header lists {len(inputs)} inputs but {len(sizes)} payload frames "
                                          "follow it", rid)
    specs = []
    for i, (d, size) in enumerate(zip(inputs, sizes)):
        where = f"inputs[{i}]"
        if not isinstance(d, dict):
            raise IrodoriError("bad_request", f"{where} must be a JSON object", rid)
        _keys(d, ("role", "format", "width", "height", "layout", "name"), where, rid)
        role, fmt = d.get("role"), d.get("format")
        if role not in ROLES:
            raise IrodoriError("bad_request", f"{where}.role must be one of {', '.join(ROLES)}", rid)
        if fmt not in INPUT_FORMATS:
            raise IrodoriError("bad_request", f"{where}.format must be one of {', '.join(INPUT_FORMATS)}", rid)
        max_pixels = max_input_pixels(role, limits)
        if fmt == "encoded":
            if set(d) - {"role", "format"}:
                raise IrodoriError("bad_request", f"{where}: an encoded image takes only role and format", rid)
            if size == 0:
                raise IrodoriError("bad_request", f"{where} ({role}) is an empty frame", rid)
            if size > limits.max_encoded_bytes:
                raise IrodoriError("too_large", f"{role} file is {size} bytes; at most {limits.max_encoded_bytes}",
                                   rid)
            specs.append(ImageSpec(role, fmt))
            continue
        if "name" in d and fmt != "shm":
            raise IrodoriError("bad_request", f"{where}: name is for format shm only", rid)
        w, h, layout = d.get("width"), d.get("height"), d.get("layout")
        if not (_is_int(w) and _is_int(h)) or w < 1 or h < 1:
            raise IrodoriError("bad_request", f"{where}: width and height must be positive integers", rid)
        if layout not in LAYOUT_CHANNELS:
            raise IrodoriError("bad_request", f"{where}.layout must be one of {', '.join(LAYOUT_CHANNELS)}", rid)
        if role == HINTS_ROLE and layout not in HINT_LAYOUTS:
            raise IrodoriError("bad_request", f"hints must be {' or '.join(HINT_LAYOUTS)} (4 channels: the alpha "
                                              f"marks where a hint is), got {layout}", rid)
        if max(w, h) > limits.max_side:
            raise IrodoriError("too_large", f"{role} is {w}x{h}; the longest side may be at most "
                                            f"{limits.max_side}", rid)
        if w * h > max_pixels:
            raise IrodoriError("too_large", f"{role} is {w}x{h} = {w * h} pixels; at most {max_pixels}", rid)
        expected = w * h * LAYOUT_CHANNELS[layout]
        if fmt == "shm":
            if not valid_shm_name(d.get("name")):
                raise IrodoriError("bad_request", f"{where}.name must be a shared memory name: {SHM_NAME_FORM}", rid)
            if size:
                raise IrodoriError("bad_request", f"{where}: a shm image's payload frame must be empty", rid)
            specs.append(ImageSpec(role, fmt, w, h, layout, d["name"]))
            continue
        if size != expected:
            raise IrodoriError("bad_request", f"{role} frame has {size} bytes; {w}x{h} {layout} needs {expected}",
                               rid)
        specs.append(ImageSpec(role, fmt, w, h, layout))
    roles = [s.role for s in specs]
    if len(set(roles)) != len(roles) or not set(REQUIRED_ROLES) <= set(roles):
        raise IrodoriError("bad_request", "'inputs' must hold one lineart, one reference and at most one hints "
                                          "image and one keyframe", rid)
    line, hints, key_line, key_colour = (next((s for s in specs if s.role == r), None)
                                         for r in ("lineart", HINTS_ROLE, *KEYFRAME_ROLES))
    if hints is not None and line is not None and hints.width and line.width and (
            (hints.width, hints.height) != (line.width, line.height)):
        raise IrodoriError("bad_request", _hint_size_message(hints.width, hints.height, line.width, line.height), rid)
    if (key_line is None) != (key_colour is None):
        missing, given = KEYFRAME_ROLES if key_line is None else KEYFRAME_ROLES[::-1]
        raise IrodoriError("bad_request", f"a keyframe is two images, {' and '.join(KEYFRAME_ROLES)}; {given} came "
                                          f"without {missing}: send both (or neither)", rid)
    if key_line is not None and key_colour is not None and key_line.width and key_colour.width:
        check_keyframe_size((key_line.width, key_line.height), (key_colour.width, key_colour.height), rid)
    return tuple(specs)


def _check_keyframe_outputs(req: Request) -> None:
    """The keyframe colours the flats and says where it is unsure: without one there is no unsure mask, and a
    keyframe sent for neither output would be work thrown away."""
    outputs = req.options["outputs"]
    if UNSURE_OUTPUT in outputs and not req.keyframe:
        raise IrodoriError("bad_request", f"the {UNSURE_OUTPUT} output marks regions a keyframe could not match: "
                                          f"send a keyframe ({' and '.join(KEYFRAME_ROLES)}) or leave it out", req.id)
    if req.keyframe and not {"flats", UNSURE_OUTPUT} & set(outputs):
        raise IrodoriError("bad_request", f"a keyframe colours the flats: ask for the outputs flats and/or "
                                          f"{UNSURE_OUTPUT}, or send no keyframe", req.id)


def check_keyframe_size(line: tuple[int, int], colour: tuple[int, int], rid: str) -> None:
    """The keyframe's line art and colouring (width, height) must be one canvas; an encoded image's size is
    known once sniffed."""
    if line != colour:
        raise IrodoriError("bad_request", f"the keyframe's line art is {line[0]}x{line[1]} but its colouring is "
                                          f"{colour[0]}x{colour[1]}: they must be the same size (export both from "
                                          "the same canvas)", rid)


def _hint_size_message(width: int, height: int, line_width: int, line_height: int) -> str:
    return (f"hints are {width}x{height} but the line art is {line_width}x{line_height}: draw the hints on a "
            "layer the size of the line art")


def check_hint_size(size: tuple[int, int], line: tuple[int, int], rid: str) -> None:
    """Hints (width, height) must match the line art's; an encoded image's size is known once sniffed."""
    if size != line:
        raise IrodoriError("bad_request", _hint_size_message(*size, *line), rid)


def max_message_bytes(limits: Limits) -> int:
    """The biggest valid request under `limits`: servers set ZMQ MAXMSGSIZE to this."""
    line = max(limits.max_pixels * 4, limits.max_encoded_bytes)
    ref = max(limits.max_reference_pixels * 4, limits.max_encoded_bytes)
    return 4 * line + ref + MAX_HEADER_BYTES + 1024  # line art, hints, the keyframe's two (all as large), reference
