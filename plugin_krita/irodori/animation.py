"""Writing the frames of an animated layer through Krita 5.1's Python API, which reads keyframes but cannot
create them (there is no setPixelDataAtTime).

A duplicate of the line-art layer has keyframes at exactly the line art's times, and setPixelData writes into
the keyframe at the document's current time: so a layer with the line art's keyframes is made by duplicating
the line art and overwriting each of its frames, and an existing animated layer is written keyframe by
keyframe the same way. Every frame is read back afterwards (a frame shared by two times, or a time switch that
did not happen, shows there). Document.importAnimation crashed Krita 5.1.5 in tests and the "add_blank_frame"
action needs a focused window; this needs neither, so it also works under kritarunner.
"""
from __future__ import annotations

import time

from krita import Document, Node

from .qt import QtGui, QtWidgets, image_bytes


def wait(document: Document, condition, seconds: float = 5.0) -> bool:
    """Let Krita's event loop run until condition() holds (time switches and actions apply asynchronously)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        QtWidgets.QApplication.processEvents()
        document.waitForDone()
        time.sleep(0.002)
    return True


def keyframe_copy(line: Node, name: str) -> Node:
    """A new plain layer (not yet in the stack) with the line art's keyframes, to be overwritten frame by frame:
    normal blending, opaque, visible, unlocked, without the line art's masks. The line art is only read."""
    node = line.duplicate()
    for child in node.childNodes():  # masks of the line art do not belong on the colour
        child.remove()
    node.setName(name)
    node.setOpacity(255)
    node.setBlendingMode("normal")
    node.setVisible(True)
    node.setLocked(False)
    node.setAlphaLocked(False)
    node.setInheritAlpha(False)
    return node


def frame_bytes(frame) -> bytes:
    """A frame given as canvas-sized BGRA bytes, a PNG file's path (answers wait on disk, not in memory) or a
    raw BGRA file's path (".bgra": exact, for pixels kept to be put back)."""
    if isinstance(frame, (bytes, bytearray)):
        return bytes(frame)
    if frame.endswith(".bgra"):
        with open(frame, "rb") as f:
            return f.read()
    return image_bytes(QtGui.QImage(frame).convertToFormat(QtGui.QImage.Format.Format_ARGB32))


def write_frames(document: Document, node: Node, frames: dict) -> str | None:
    """Overwrite node's keyframe at each time of frames {time: frame_bytes input}; None when every frame then
    reads back as written, else what went wrong. The document's current time is put back."""
    doc = document
    w, h = doc.width(), doc.height()
    old_time = doc.currentTime()
    problem = None
    try:
        for t in sorted(frames):
            if not node.hasKeyframeAtTime(t):
                problem = f"\"{node.name()}\" has no keyframe at frame {t}"
                break
            doc.setCurrentTime(t)
            if not wait(doc, lambda: doc.currentTime() == t):
                problem = f"Krita did not go to frame {t}"
                break
            node.setPixelData(frame_bytes(frames[t]), 0, 0, w, h)
        doc.waitForDone()
        for t in sorted(frames) if problem is None else []:
            if bytes(node.pixelDataAtTime(0, 0, w, h, t)) != frame_bytes(frames[t]):
                problem = f"frame {t} did not read back as written"
                break
    finally:
        doc.setCurrentTime(old_time)
        wait(doc, lambda: doc.currentTime() == old_time)
    return problem
