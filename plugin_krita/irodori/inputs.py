"""What goes to the backend: the line art's pixels, the hints and the reference, read from Krita on its main
thread.

Line art and hints are sent as the document-sized BGRA pixels of their layers (Krita's own byte order, so
nothing is converted in Python). A reference is scaled down first, to what the backend's model uses
(server_facts, from the backend's `info`); a reference file is sent as its encoded bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from krita import Document, Node

from . import protocol
from .errors import InputError, empty_layer, not_rgba8
from .layers import same_node
from .pixels import fit_within, is_transparent
from .qt import QtCore, QtGui, image_bytes, image_from_bgra
from .server_facts import ServerFacts

PIXEL_LAYERS = ("paintlayer", "grouplayer", "vectorlayer", "filelayer", "clonelayer", "filllayer")


def check_rgba8(document: Document, node: Node | None = None) -> None:
    """Line art must come from an 8-bit RGBA document and layer (what the BGRA fast path assumes)."""
    if (document.colorModel(), document.colorDepth()) != ("RGBA", "U8"):
        raise not_rgba8(f"The document \"{document.name() or 'untitled'}\"", document.colorModel(),
                        document.colorDepth())
    if node is not None and (node.colorModel(), node.colorDepth()) != ("RGBA", "U8"):
        raise not_rgba8(f"The layer \"{node.name()}\"", node.colorModel(), node.colorDepth())


def _canvas_bgra(document: Document, node: Node, frame: int | None, what: str) -> bytes:
    """A layer's BGRA bytes over the whole canvas (so everything sent has the document's size), at `frame`."""
    check_rgba8(document, node)
    if node.type() not in PIXEL_LAYERS:
        raise InputError("bad_layer", f"\"{node.name()}\" is a {node.type()}, not a layer with pixels. "
                                      f"Pick the {what} layer.")
    w, h = document.width(), document.height()
    if frame is not None:
        data = bytes(node.pixelDataAtTime(0, 0, w, h, frame))
    elif node.type() == "paintlayer":
        data = bytes(node.pixelData(0, 0, w, h))
    else:
        data = bytes(node.projectionPixelData(0, 0, w, h))
    if len(data) != w * h * 4:
        raise InputError("bad_layer", f"Krita gave {len(data)} bytes for the {w}x{h} layer \"{node.name()}\"; "
                                      "expected 8-bit RGBA.")
    return data


def read_lineart(document: Document, node: Node, frame: int | None = None) -> protocol.Pixels:
    """The line-art layer's pixels as BGRA Pixels of the document's size."""
    data = _canvas_bgra(document, node, frame, "line-art")
    if is_transparent(data):
        raise empty_layer(node.name(), frame)
    return protocol.Pixels(document.width(), document.height(), "BGRA", data)


def read_hints(document: Document, node: Node, line: Node, frame: int | None = None) -> protocol.Pixels | None:
    """The hint layer's pixels as BGRA Pixels of the document's (= the line art's) size, or None when it
    holds no hint: an empty hint layer asks for nothing, so it also works with a model that takes no hints.

    An animated hint layer is read at the frame being coloured; a still one gives every keyframe the same
    hints. It is only read, never changed.
    """
    if same_node(node, line):
        raise InputError("same_layer", "The line art and the hints are the same layer. Paint the hints on their "
                                       "own layer (\"New hint layer\").")
    data = _canvas_bgra(document, node, frame if node.animated() else None, "hint")
    return None if is_transparent(data) else protocol.Pixels(document.width(), document.height(), "BGRA", data)


def read_colouring(document: Document, node: Node, line: Node, frame: int | None) -> protocol.Pixels:
    """A keyframe's colouring (a flats or colour layer) as BGRA Pixels of the document's size: an animated
    layer at its keyframe `frame`, a still one (frame None) as it is. Only read."""
    if same_node(node, line):
        raise InputError("same_layer", "The line art and the colour layer are the same layer. Pick the layer that "
                                       "holds the frame's colours (its flats, or the finished colouring).")
    data = _canvas_bgra(document, node, frame, "colour")
    if is_transparent(data):
        where = "" if frame is None else f" at frame {frame}"
        raise InputError("empty_colour", f"The colour layer \"{node.name()}\" is empty{where}. Colour the frame at "
                                         "the playhead first (flats, or the finished colouring).")
    return protocol.Pixels(document.width(), document.height(), "BGRA", data)


@dataclass
class Reference:
    """What is sent as the reference: BGRA Pixels or encoded file bytes, and a name for the new layer."""
    payload: object
    name: str
    thumbnail: object = None  # a QImage for the docker


def _scaled_bgra(image: "QtGui.QImage", name: str, facts: ServerFacts) -> Reference:
    image = image.convertToFormat(QtGui.QImage.Format.Format_ARGB32)
    w, h = fit_within(image.width(), image.height(), facts.reference_side())
    if (w, h) != (image.width(), image.height()):
        image = image.scaled(w, h, QtCore.Qt.AspectRatioMode.IgnoreAspectRatio,
                             QtCore.Qt.TransformationMode.SmoothTransformation)
    data = image_bytes(image)
    if is_transparent(data):
        raise InputError("empty_reference", f"The reference \"{name}\" is empty (fully transparent). "
                                            "Pick a layer, document or file with the colours to follow.")
    return Reference(protocol.Pixels(w, h, "BGRA", data), name, image)


def reference_from_node(node: Node, facts: ServerFacts) -> Reference:
    rect = node.bounds()
    if rect.isEmpty():
        raise InputError("empty_reference", f"The reference layer \"{node.name()}\" is empty. Paint or paste "
                                            "the reference picture into it, or pick another reference.")
    if (node.colorModel(), node.colorDepth()) != ("RGBA", "U8"):
        raise not_rgba8(f"The reference layer \"{node.name()}\"", node.colorModel(), node.colorDepth())
    data = bytes(node.projectionPixelData(rect.x(), rect.y(), rect.width(), rect.height()))
    return _scaled_bgra(image_from_bgra(data, rect.width(), rect.height()), node.name(), facts)


def reference_from_document(document: Document, facts: ServerFacts) -> Reference:
    document.waitForDone()
    image = document.projection(0, 0, document.width(), document.height())
    name = os.path.basename(document.fileName() or "") or document.name() or "document"
    return _scaled_bgra(image, name, facts)


def _too_large(what: str, size: int, limit: int) -> InputError:
    return InputError("too_large", f"{what} is {size // 2**20} MiB; at most {limit // 2**20} MiB. Use a smaller "
                                   "picture.")


def reference_from_file(path: str | os.PathLike, facts: ServerFacts) -> Reference:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError("no_reference_file", f"The reference file {path} does not exist. Pick an image file.")
    size = os.path.getsize(path)
    if size > facts.max_reference_file_bytes():
        raise _too_large("The reference file", size, facts.max_reference_file_bytes())
    with open(path, "rb") as f:
        data = f.read()
    thumb = QtGui.QImage()
    thumb.loadFromData(data)
    return Reference(data, os.path.basename(path), None if thumb.isNull() else thumb)


def resolve_reference(reference, facts: ServerFacts = ServerFacts()) -> Reference:
    """A Node, a Document, a file path, raw encoded bytes (PNG/JPEG/WebP), a QImage or a Reference.

    `facts`: the backend's, so that the reference is scaled to what its model uses (server_facts).
    """
    if isinstance(reference, Reference):
        return reference
    if isinstance(reference, Node):
        return reference_from_node(reference, facts)
    if isinstance(reference, Document):
        return reference_from_document(reference, facts)
    if isinstance(reference, QtGui.QImage):
        return _scaled_bgra(reference, "image", facts)
    if isinstance(reference, (bytes, bytearray, memoryview)):
        if not len(reference):
            raise InputError("empty_reference", "The reference bytes are empty.")
        if len(reference) > facts.max_reference_file_bytes():
            raise _too_large("The reference image", len(reference), facts.max_reference_file_bytes())
        return Reference(bytes(reference), "image")
    if isinstance(reference, (str, os.PathLike)):
        return reference_from_file(reference, facts)
    raise TypeError(f"reference must be a Node, a Document, a file path or image bytes, not "
                    f"{type(reference).__name__}")
