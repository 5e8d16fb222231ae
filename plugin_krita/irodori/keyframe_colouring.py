"""Keyframe colouring in Krita (docs/keyframes.md): ONE coloured frame colours the others region by region, in
exactly its colours, where a reference picture would only suggest them.

    import irodori
    doc = Krita.instance().activeDocument()
    done = irodori.colorize_from_keyframe(doc, doc.nodeByName("lines"), doc.nodeByName("flats"))
    pages = irodori.colorize_pages_from_keyframe(doc, doc.nodeByName("lines"), doc.nodeByName("flats"))

The keyframe is the line art and its colour layer (flats or a finished colouring) at the playhead. Every
other keyframe of the line art (or the same-named line-art layer of other open documents: pages) goes to the
backend as a keyframe request (protocol: the keyframe pair, outputs flats + unsure); the backend keeps the
keyframe's segmentation, so only the first request segments it. The requests are Batch targets, so the
scripting API (run_batch) and the docker (its worker) send them as they send any batch.

Regions the backend could not match ("unsure": they take the model's colour, snapped to the nearest keyframe
colour) are shown, not hidden: an "Irodori unsure" layer above the colours, magenta at half opacity over
those regions, made only when some region is unsure.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from krita import Document, Krita, Node

from . import protocol
from .animation import keyframe_copy, write_frames
from .api import Batch, BatchError, Target, keyframe_targets, run_batch, server_facts
from .errors import InputError
from .inputs import Reference, read_colouring, read_lineart, resolve_reference
from .layers import insert_above, insert_below, same_node
from .pixels import layer_name, unsure_marks
from .protocol import DEFAULT_ENDPOINT, UNSURE_OUTPUT
from .qt import image_from_bgra
from .server_facts import ServerFacts
from .settings import DEFAULT_TIMEOUT
from .timeline import shown_keyframe

UNSURE_OPACITY = 128  # of 255: the flats under the marks stay visible


@dataclass(frozen=True)
class Coloured:
    """What keyframe colouring wrote for one line-art layer."""
    colour: Node  # the colour layer written: the one given (animated), a new animated one, or a page's new flats
    unsure: Node | None  # the "Irodori unsure" layer above it, or None when every region found a good match
    unsure_pixels: dict  # frame time (None for a page) -> pixels marked unsure, for every frame coloured


@dataclass
class KeyframeBatch(Batch):
    """A Batch whose every target is coloured from one keyframe (key: its line art and colouring, BGRA Pixels).

    colour: the colour layer of an animation (its keyframes get the answers; see finish), or None for pages,
    whose answers become new layers as they arrive. Answers of an animation wait on disk until all are in:
    nothing is written unless every frame was answered.
    """
    key: tuple = ()
    key_time: int | None = None
    colour: Node | None = None
    unsure: dict = field(default_factory=dict)  # frame time -> (marked pixels, PNG path of the marks or None)
    results: list = field(default_factory=list)  # Coloured, once written

    def job(self, i: int) -> dict:
        return {**super().job(i), "outputs": ("flats", UNSURE_OUTPUT), "keyframe": self.key}

    def place(self, i: int, outputs: dict):
        t = self.targets[i]
        mask = outputs[UNSURE_OUTPUT]
        marks, count = unsure_marks(mask.width, mask.height, mask.layout, mask.data)
        node = super().place(i, outputs)  # also checks the answer's size
        if t.time is None:  # a page: its flats layer is in; the marks go directly above it
            unsure = self._unsure_layer(node, t.node) if count else None
            if unsure is not None:
                unsure.setPixelData(marks, 0, 0, self.document.width(), self.document.height())
            self.results.append(Coloured(node, unsure, {None: count}))
            return node
        path = None
        if count:
            path = os.path.join(self._tmp.name, f"unsure-{t.time:06d}.png")
            if not image_from_bgra(marks, mask.width, mask.height).save(path, "PNG"):
                raise RuntimeError(f"could not write the unsure marks to {path}")
        self.unsure[t.time] = (count, path)
        return None

    def _unsure_layer(self, above: Node, line: Node, animated: bool = False) -> Node:
        name = layer_name(UNSURE_OUTPUT, self.reference.name)
        node = keyframe_copy(line, name) if animated else self.document.createNode(name, "paintlayer")
        node.setOpacity(UNSURE_OPACITY)
        insert_above(above.parentNode(), node, above)
        self.created.append(node)
        return node

    def finish(self) -> None:
        try:
            if self.colour is not None:
                files = next(iter(self.frames.values()), (None, {}))[1]
                if not self.failures and len(files) == len(self.targets):
                    self._into_animation(files)
        finally:
            self.frames.clear()  # what remains for Batch.finish: removing the files, refreshing the canvas
            super().finish()

    def _into_animation(self, files: dict) -> None:
        """The answers into the colour layer's keyframes at the same times, where it has them all; else into a
        new animated layer under the line art, which also gets the keyframe's own colouring at its time."""
        doc, line, colour = self.document, self.targets[0].node, self.colour
        if colour.animated() and all(colour.hasKeyframeAtTime(t) for t in files):
            kept = {}
            for t in files:  # exact copies, to put back if Krita does not take the new frames
                kept[t] = os.path.join(self._tmp.name, f"kept-{t:06d}.bgra")
                with open(kept[t], "wb") as f:
                    f.write(bytes(colour.pixelDataAtTime(0, 0, doc.width(), doc.height(), t)))
            problem = write_frames(doc, colour, files)
            if problem:
                write_frames(doc, colour, kept)
                raise RuntimeError(f"Krita did not take the colour frames ({problem}); \"{colour.name()}\" is as "
                                   "it was")
            node = colour
        else:
            if colour.animated():
                missing = ", ".join(str(t) for t in sorted(files) if not colour.hasKeyframeAtTime(t))
                self.notes.append(f"\"{colour.name()}\" has no keyframe at frame(s) {missing} and Krita's Python "
                                  "API cannot add one, so the colours went to a new animated layer")
            node = keyframe_copy(line, layer_name(self.output, self.reference.name))
            insert_below(line.parentNode(), node, line)
            problem = write_frames(doc, node, {**files, self.key_time: self.key[1].data})
            if problem:
                node.remove()
                raise RuntimeError(f"Krita could not make the animated colour layer: {problem}")
            self.created.append(node)
        self.notes.append(f"coloured {len(files)} frame(s) of \"{node.name()}\" from frame {self.key_time}")
        counts = {t: count for t, (count, _) in self.unsure.items()}
        unsure = None
        if any(counts.values()):
            unsure = self._unsure_layer(node, line, animated=True)
            blank = bytes(doc.width() * doc.height() * 4)
            frames = {t.time: self.unsure.get(t.time, (0, None))[1] or blank
                      for t in keyframe_targets(doc, line)}
            problem = write_frames(doc, unsure, frames)
            if problem:
                unsure.remove()
                self.created.remove(unsure)
                raise RuntimeError(f"Krita could not make the unsure layer: {problem}")
            self.notes.append(f"{sum(1 for c in counts.values() if c)} frame(s) have regions marked unsure "
                              f"(magenta, in \"{unsure.name()}\"): check their colours")
        self.results.append(Coloured(node, unsure, counts))


def _holds(document: Document, node: Node) -> bool:
    todo = [document.rootNode()]
    while todo:
        n = todo.pop()
        if same_node(n, node):
            return True
        todo.extend(n.childNodes())
    return False


def _check_in_document(document: Document, node: Node, what: str) -> None:
    """A layer of another document would be read over this canvas: refuse it, saying whose it is."""
    if _holds(document, node):
        return
    owner = next((d for d in Krita.instance().documents() if _holds(d, node)), None)
    here = f"\"{document.name() or 'untitled'}\" ({document.width()}x{document.height()})"
    if owner is not None and (owner.width(), owner.height()) != (document.width(), document.height()):
        raise InputError("size_mismatch", f"The {what} \"{node.name()}\" is in a {owner.width()}x{owner.height()} "
                                          f"document, not in {here}: its colours would not line up with the "
                                          "line art. Pick the colour layer of the same document.")
    raise InputError("other_document", f"The {what} \"{node.name()}\" is not a layer of {here}. Pick the colour "
                                       "layer of the same document.")


def _shown(document: Document, node: Node, time: int) -> int | None:
    """The time of the keyframe an animated layer shows at `time` (Krita reads pixels only at a keyframe's
    own time), or None for a still layer."""
    return shown_keyframe([t.time for t in keyframe_targets(document, node)], time) if node.animated() else None


def _key(document: Document, line: Node, colour: Node, line_time: int | None, colour_time: int | None,
         facts: ServerFacts, name: str) -> tuple:
    """(keyframe pair, reference): the reference is the colouring, scaled as references are (the model still
    colours the regions the keyframe cannot match)."""
    _check_in_document(document, colour, "colour layer")
    pair = (read_lineart(document, line, line_time), read_colouring(document, colour, line, colour_time))
    scaled = resolve_reference(image_from_bgra(pair[1].data, pair[1].width, pair[1].height), facts)
    return pair, Reference(scaled.payload, name, scaled.thumbnail)


def keyframe_batch(document: Document, line_node: Node, colour_node: Node, facts: ServerFacts = ServerFacts(),
                   time: int | None = None, resolution: int | None = None) -> KeyframeBatch:
    """Every other keyframe of the line art, to colour from the keyframe shown at `time` (default: the
    playhead). Everything is checked and read here: InputError before any request, with nothing changed."""
    time = document.currentTime() if time is None else int(time)
    targets = keyframe_targets(document, line_node)
    key_time = shown_keyframe([t.time for t in targets], time)
    others = [t for t in targets if t.time != key_time]
    if not others:
        raise InputError("no_other_frames", f"The layer \"{line_node.name()}\" has only one keyframe (frame "
                                            f"{key_time}): there is no other frame to colour from it.")
    pair, ref = _key(document, line_node, colour_node, key_time, _shown(document, colour_node, time), facts,
                     f"frame {key_time}")
    return KeyframeBatch(document, others, ref, "flats", resolution, key=pair, key_time=key_time,
                         colour=colour_node)


def colorize_from_keyframe(document: Document, line_node: Node, colour_node: Node, time: int | None = None,
                           endpoint: str = DEFAULT_ENDPOINT, timeout: float = DEFAULT_TIMEOUT,
                           resolution: int | None = None, max_in_flight: int = 2) -> Coloured:
    """Colour every keyframe of an animated line-art layer from the coloured frame at `time` (default: the
    playhead): the line art's keyframe shown there and colour_node (a flats or colour layer, animated or
    still) at that time. Returns the Coloured layers.

    The answers (flats in the keyframe's colours) go into colour_node's keyframes at the line art's keyframe
    times when it has a keyframe at each of them; its frame at `time` and its other keyframes stay as they
    were. Otherwise (a still colour layer, or keyframes missing: Krita 5.1's Python API cannot add one) a new
    animated layer "Irodori flats (frame N)" goes directly under the line art, holding the keyframe's own
    colouring at its time and the answers at the others. Regions with no good match in the keyframe are
    marked on an "Irodori unsure (frame N)" layer (module docstring). The line art is only read.
    Raises InputError for bad input (nothing changed), BatchError when some frames failed (nothing written).
    """
    batch = keyframe_batch(document, line_node, colour_node, server_facts(endpoint, timeout), time, resolution)
    run_batch(batch, endpoint, timeout, max_in_flight)
    if batch.failures:
        raise BatchError(batch.created, batch.failures)
    return batch.results[0]


def colorize_pages_from_keyframe(document: Document, line_node: Node, colour_node: Node,
                                 documents: list | None = None, endpoint: str = DEFAULT_ENDPOINT,
                                 timeout: float = DEFAULT_TIMEOUT, resolution: int | None = None) -> list:
    """Colour the pages of other documents from this coloured page: line_node and colour_node as they are now.

    Each of `documents` (default: every other open document) that has a layer named like line_node gets a
    new flats layer "Irodori flats (NAME)" under that layer (and an unsure layer above it where needed); the
    others are left alone. Returns the Coloured pages in order. Raises InputError when no document has such
    a layer, BatchError (with .nodes made so far) when some pages failed.
    """
    facts = server_facts(endpoint, timeout)
    name = os.path.basename(document.fileName() or "") or document.name() or "page"
    now = document.currentTime()
    pair, ref = _key(document, line_node, colour_node, _shown(document, line_node, now),
                     _shown(document, colour_node, now), facts, name)
    if documents is None:
        documents = [d for d in Krita.instance().documents() if not same_node(d.rootNode(), document.rootNode())]
    pages = [(d, d.nodeByName(line_node.name())) for d in documents]
    pages = [(d, n) for d, n in pages if n is not None]
    if not pages:
        raise InputError("no_pages", f"No other open document has a layer named \"{line_node.name()}\". Open "
                                     "the pages to colour, with their line art in a layer of that name.")
    results, created, failures = [], [], []
    for page, node in pages:
        batch = KeyframeBatch(page, [Target(node)], ref, "flats", resolution, key=pair)
        run_batch(batch, endpoint, timeout, max_in_flight=1)
        results += batch.results
        created += batch.created
        failures += [(f"{page.name() or 'untitled'}: {label}", exc) for label, exc in batch.failures]
        if any(getattr(exc, "code", "") in protocol.STOP_CODES for _, exc in batch.failures):
            break
    if failures:
        raise BatchError(created, failures)
    return results
