"""Irodori's scripting API inside Krita (Scripter, kritarunner, other plugins) and the work the docker shares.

    import irodori
    doc = Krita.instance().activeDocument()
    layer = irodori.colorize_layer(doc, doc.activeNode(), doc.nodeByName("ref"))
    hints = irodori.new_hint_layer(doc, doc.nodeByName("lines"))   # paint dots of colour on it, then
    layer = irodori.colorize_layer(doc, doc.nodeByName("lines"), doc.nodeByName("ref"), hints=hints)

Everything here runs on the calling thread and must be called from Krita's main thread (Krita's own API
is not thread-safe). Only the network requests go to helper threads (protocol.colorize_many, one Client
per thread). A call blocks until the backend answers or `timeout` passes; the docker runs the same work
from a worker thread instead, so Krita's window stays responsive.

Pixels: an 8-bit RGBA document's layers (line art and hints) come as B, G, R, A bytes; they are sent as
Pixels(layout="BGRA") (inputs.py) and the backend is asked to answer in BGRA, so nothing is converted in Python.

References are scaled down before they are sent, to what the backend's model uses (server_facts, from the
backend's `info`): each call below asks the backend for its `info` first.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from krita import Document, Krita, Node

from . import protocol
from .animation import keyframe_copy, wait as _wait, write_frames
from .errors import InputError
from .inputs import PIXEL_LAYERS, Reference, check_rgba8, read_hints, read_lineart, resolve_reference
from .layers import insert_above, insert_below, same_node
from .pixels import HINT_LAYER_NAME, layer_name, to_bgra
from .protocol import DEFAULT_ENDPOINT
from .qt import QtGui, image_bytes, image_from_bgra
from .server_facts import ServerFacts
from .settings import DEFAULT_TIMEOUT, OUTPUT_CHOICES
from .timeline import shown_keyframe

MAX_KEYFRAMES = 5000


# ------------------------------------------------------------------------------------------- batches
@dataclass
class Target:
    """One line-art picture to colour: a layer as it is now (time None) or one keyframe of it."""
    node: Node
    time: int | None = None

    def label(self) -> str:
        return self.node.name() if self.time is None else f"{self.node.name()} frame {self.time}"


@dataclass
class Batch:
    """Targets of one document coloured from one reference. `job`, `place` and `finish` touch Krita: call them
    on the main thread. Single layers are placed as their answers arrive; keyframes are kept as PNG files
    until `finish` builds the animated layer (or the per-frame layers) from all of them.
    """
    document: Document
    targets: list
    reference: Reference
    output: str = "color"
    resolution: int | None = None
    as_animation: bool | None = None  # keyframes: None = one animated layer where Krita can make it
    hints: Node | None = None  # a layer of colour hints, the same for every target (only read)
    created: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (label, exception)
    notes: list = field(default_factory=list)  # why the result differs from what was asked, for the user
    frames: dict = field(default_factory=dict)  # line-art uid -> (line node, {time: PNG path})
    _tmp: object = None

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_CHOICES:
            raise ValueError(f"output must be one of {', '.join(OUTPUT_CHOICES)}, not {self.output!r}")
        low, high = protocol.MIN_RESOLUTION, protocol.MAX_RESOLUTION
        if self.resolution is not None and not (low <= int(self.resolution) <= high):
            raise ValueError(f"resolution must be None (the model's own) or {low}..{high}")

    def job(self, i: int) -> dict:
        """The keyword arguments of Client.colorize for target i (reads its pixels; may raise InputError)."""
        t = self.targets[i]
        options = {"resolution": int(self.resolution)} if self.resolution else None
        job = {"lineart": read_lineart(self.document, t.node, t.time), "reference": self.reference.payload,
               "outputs": (self.output,), "options": options, "output_layout": "BGRA"}
        hints = read_hints(self.document, self.hints, t.node, t.time) if self.hints is not None else None
        if hints is not None:  # an empty hint layer sends nothing: the request is as without hints
            job["hints"] = hints
        return job

    def place(self, i: int, outputs: dict):
        """Add the backend's answer for target i: a new layer (returned), or a kept keyframe (None)."""
        t = self.targets[i]
        px = outputs[self.output]
        w, h = self.document.width(), self.document.height()
        if (px.width, px.height) != (w, h):
            raise protocol.IrodoriError("protocol", f"the backend answered {px.width}x{px.height} for a {w}x{h} "
                                                    "document")
        bgra = to_bgra(px.width, px.height, px.layout, px.data)
        if t.time is not None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="irodori-frames-")
            uid = t.node.uniqueId().toString().strip("{}")
            path = os.path.join(self._tmp.name, f"{uid}-{t.time:06d}.png")
            if not image_from_bgra(bgra, w, h).save(path, "PNG"):
                raise RuntimeError(f"could not write the colour frame to {path}")
            self.frames.setdefault(uid, (t.node, {}))[1][t.time] = path
            return None
        active = self.document.activeNode()
        node = self.document.createNode(layer_name(self.output, self.reference.name), "paintlayer")
        self._insert(t.node, node)
        node.setPixelData(bgra, 0, 0, w, h)
        self.created.append(node)
        if active is not None and not same_node(self.document.activeNode(), active):
            self.document.setActiveNode(active)  # Krita activates a new layer: keep the user's (the line art)
        return node

    def _insert(self, line: Node, node: Node) -> None:
        (insert_above if self.output == "flattened" else insert_below)(line.parentNode(), node, line)

    def finish(self) -> None:
        """Turn the kept keyframes into layers, then refresh the canvas. Call once, after the last answer."""
        try:
            for _uid, (line, files) in self.frames.items():
                node = self._animated_layer(line, files) if self.as_animation is not False else None
                if node is None:
                    if self.as_animation:
                        raise RuntimeError("Krita could not make an animated colour layer: "
                                           + "; ".join(self.notes))
                    node = self._frame_layers(line, files)
                self.created.append(node)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
            self.document.refreshProjection()

    def _animated_layer(self, line: Node, files: dict):
        """ONE animated colour layer with the line art's keyframes, or None (with a note) where that fails:
        a copy of the line art with each keyframe overwritten (animation.py says why, given Krita 5.1's
        Python API). On any mismatch the copy is removed and the caller falls back to one layer per keyframe.
        """
        wanted = sorted(t.time for t in self.targets if t.time is not None and same_node(t.node, line))
        if sorted(files) != wanted:
            self.notes.append(f"one layer per keyframe: {len(wanted) - len(files)} keyframe(s) failed")
            return None
        node = keyframe_copy(line, layer_name(self.output, self.reference.name))
        self._insert(line, node)
        problem = write_frames(self.document, node, files)
        if problem:
            self.notes.append(f"one layer per keyframe: {problem}")
            node.remove()
            return None
        return node

    def _frame_layers(self, line: Node, files: dict) -> Node:
        """Fallback: a group with one layer "frame N" per keyframe N; only the frame under the timeline's
        cursor is shown (the frames are opaque and would hide each other)."""
        doc = self.document
        group = doc.createGroupLayer(layer_name(self.output, self.reference.name) + " frames")
        self._insert(line, group)
        now = shown_keyframe(list(files), doc.currentTime())
        for t in sorted(files):  # each new child goes on top: time order, bottom to top
            image = QtGui.QImage(files[t]).convertToFormat(QtGui.QImage.Format.Format_ARGB32)
            node = doc.createNode(f"frame {t}", "paintlayer")
            group.addChildNode(node, None)
            node.setPixelData(image_bytes(image), 0, 0, image.width(), image.height())
            node.setVisible(t == now)
        return group


def keyframe_targets(document: Document, node: Node) -> list:
    """One Target per keyframe of an animated layer, in time order (Krita 5.1 can read them, not write)."""
    if not node.animated():
        raise InputError("not_animated", f"The layer \"{node.name()}\" is not animated: it has no keyframes. "
                                         "Colour it as a single layer instead.")
    start, end = document.fullClipRangeStartTime(), document.fullClipRangeEndTime()
    times = [t for t in range(min(start, 0), max(end, start) + 1) if node.hasKeyframeAtTime(t)]
    if not times:
        raise InputError("not_animated", f"The layer \"{node.name()}\" has no keyframe inside the animation's "
                                         f"range ({start}-{end}).")
    if len(times) > MAX_KEYFRAMES:
        raise InputError("too_many_frames", f"{len(times)} keyframes; at most {MAX_KEYFRAMES} per run.")
    return [Target(node, t) for t in times]


def selected_layers(document: Document) -> list:
    """The layers selected in the active view, or the active layer when there is no view (kritarunner)."""
    window = Krita.instance().activeWindow()
    view = window.activeView() if window is not None else None
    shown = view.document() if view is not None else None
    if shown is not None and same_node(shown.rootNode(), document.rootNode()):
        nodes = [n for n in view.selectedNodes() if n.type() in PIXEL_LAYERS]
        if nodes:
            return nodes
    active = document.activeNode()
    return [active] if active is not None else []


def client_factory(endpoint: str, timeout: float, registry: list | None = None):
    """A factory for protocol.colorize_many; every Client made is also put in `registry` (to cancel it)."""
    def make() -> protocol.Client:
        client = protocol.Client(endpoint, timeout=timeout)
        if registry is not None:
            registry.append(client)
        return client
    return make


def run_batch(batch: Batch, endpoint: str = DEFAULT_ENDPOINT, timeout: float = DEFAULT_TIMEOUT,
              max_in_flight: int = 2, on_progress=None, retry_busy: bool = True) -> Batch:
    """Colour every target of the batch on this (Krita's main) thread; requests overlap up to max_in_flight.

    A server whose queue is full is waited for within `timeout` (protocol.colorize_many); retry_busy=False
    reports `busy` at once instead, for a single interactive request.

    A target that fails is recorded in batch.failures and the rest go on, except when the backend is gone or
    the call was cancelled: then nothing more is sent.
    """
    clients: list = []
    index_of: list = []  # job number (as colorize_many counts) -> target index

    def jobs():
        for i in range(len(batch.targets)):
            if stop:
                return
            try:
                job = batch.job(i)
            except InputError as exc:
                batch.failures.append((batch.targets[i].label(), exc))
                continue
            index_of.append(i)
            yield job

    stop = False
    done = 0
    results = protocol.colorize_many(client_factory(endpoint, timeout, clients), jobs(), max_in_flight,
                                     retry_busy)
    try:
        for n, outcome in results:
            i = index_of[n]
            done += 1
            if isinstance(outcome, Exception):
                batch.failures.append((batch.targets[i].label(), outcome))
                if getattr(outcome, "code", "") in protocol.STOP_CODES:
                    stop = True
                    for c in clients:
                        c.cancel()
                    break
            else:
                try:
                    batch.place(i, outcome)
                except (protocol.IrodoriError, ValueError, RuntimeError) as exc:
                    batch.failures.append((batch.targets[i].label(), exc))
            if on_progress is not None:
                on_progress(done, len(batch.targets))
    finally:
        results.close()
    batch.finish()
    return batch


class BatchError(Exception):
    """Some targets failed. `.nodes`: the layers that were made; `.failures`: (layer, exception) pairs."""

    def __init__(self, nodes: list, failures: list) -> None:
        lines = [f"{label}: {getattr(exc, 'message', None) or exc}" for label, exc in failures]
        super().__init__(f"{len(failures)} of {len(nodes) + len(failures)} failed:\n" + "\n".join(lines))
        self.nodes, self.failures = nodes, failures


# ------------------------------------------------------------------------------------------- public API
def colorize_layer(document: Document, line_node: Node, reference, endpoint: str = DEFAULT_ENDPOINT,
                   output: str = "color", timeout: float = DEFAULT_TIMEOUT, resolution: int | None = None,
                   hints: Node | None = None) -> Node:
    """Colour one line-art layer; returns the new layer (the line-art and hint layers are never changed).

    reference: a Node, a Document, an image file path, or encoded image bytes (PNG/JPEG/WebP).
    hints: a layer of this document with dots or strokes of colour (new_hint_layer makes one): each line-art
    region holding hint pixels takes the hint's colour. The backend's model must take hints (an error says
    so otherwise); an empty hint layer is the same as none.
    output: "color" (a layer directly under the line art), "flattened" (colour x line art, a layer directly
    above it) or "flats" (flat colour regions, under it). Raises InputError for a bad document or layer,
    protocol.BackendUnavailable when no backend answers within `timeout`, protocol.IrodoriError otherwise;
    no layer is added when it raises.
    """
    batch = Batch(document, [Target(line_node)], resolve_reference(reference, server_facts(endpoint, timeout)),
                  output, resolution, hints=hints)
    run_batch(batch, endpoint, timeout, max_in_flight=1, retry_busy=False)
    if batch.failures:
        raise batch.failures[0][1]
    return batch.created[0]


def colorize_selected(reference, document: Document | None = None, nodes: list | None = None,
                      endpoint: str = DEFAULT_ENDPOINT, output: str = "color", timeout: float = DEFAULT_TIMEOUT,
                      resolution: int | None = None, max_in_flight: int = 2, hints: Node | None = None) -> list:
    """Colour every selected layer (or `nodes`) of the document from one reference; returns the new layers.

    The reference and hint layers themselves are skipped when they are selected; `hints` (as in
    colorize_layer) go with every layer. Raises BatchError (with .nodes made so far) when some layers failed.
    """
    document = document or Krita.instance().activeDocument()
    if document is None:
        raise InputError("no_document", "No document is open. Open the line art first.")
    ref = resolve_reference(reference, server_facts(endpoint, timeout))
    nodes = list(nodes) if nodes is not None else selected_layers(document)
    for skip in (reference, hints):
        if isinstance(skip, Node):
            nodes = [n for n in nodes if not same_node(n, skip)]
    if not nodes:
        raise InputError("no_layers", "No line-art layer is selected. Select the layers to colour.")
    batch = Batch(document, [Target(n) for n in nodes], ref, output, resolution, hints=hints)
    run_batch(batch, endpoint, timeout, max_in_flight)
    if batch.failures:
        raise BatchError(batch.created, batch.failures)
    return batch.created


def colorize_keyframes(document: Document, line_node: Node, reference, endpoint: str = DEFAULT_ENDPOINT,
                       output: str = "color", timeout: float = DEFAULT_TIMEOUT, resolution: int | None = None,
                       max_in_flight: int = 2, as_animation: bool | None = None, hints: Node | None = None) -> Node:
    """Colour every keyframe of an animated line-art layer; returns the new animated layer (or group).

    The result is ONE animated colour layer directly under the line art, with a keyframe at each of the
    line art's keyframe times (see Batch._animated_layer for how, given Krita 5.1's Python API). When that
    cannot be done (some keyframes failed, or Krita misbehaves; or as_animation=False) it is a group
    "Irodori colour (ref) frames" holding a layer "frame N" per keyframe N, bottom to top in time order, of
    which only the frame under the timeline's cursor is visible. as_animation=True raises instead of falling
    back. Nothing is added until every frame is answered. Raises BatchError when some frames failed.
    `hints` as in colorize_layer; an animated hint layer gives each keyframe the hints at its time.
    """
    ref = resolve_reference(reference, server_facts(endpoint, timeout))
    batch = Batch(document, keyframe_targets(document, line_node), ref, output, resolution, as_animation, hints)
    run_batch(batch, endpoint, timeout, max_in_flight)
    if batch.failures:
        raise BatchError(batch.created, batch.failures)
    return batch.created[0]


def new_hint_layer(document: Document, line_node: Node) -> Node:
    """An empty paint layer "Irodori hints" directly above the line art, made the active layer so that the
    user can paint dots of colour on it at once. Nothing else changes."""
    check_rgba8(document)
    shown = document.activeNode() is not None  # None: no view shows the document (kritarunner), none to set
    node = document.createNode(HINT_LAYER_NAME, "paintlayer")
    insert_above(line_node.parentNode(), node, line_node)

    def activate() -> bool:  # Krita knows a new layer only after its events ran: until then this does nothing
        document.setActiveNode(node)
        return same_node(document.activeNode(), node)

    if shown:
        _wait(document, activate, 1.0)
    return node


def backend_info(endpoint: str = DEFAULT_ENDPOINT, timeout: float = 5.0) -> dict:
    """The backend's `info` (model, device, limits); raises BackendUnavailable when nothing answers."""
    with protocol.Client(endpoint, timeout=timeout) as client:
        return client.info()


def server_facts(endpoint: str = DEFAULT_ENDPOINT, timeout: float = 5.0) -> ServerFacts:
    """The limits and reference size of the backend at `endpoint` (raises BackendUnavailable like a colorize)."""
    return ServerFacts.from_info(backend_info(endpoint, timeout))
