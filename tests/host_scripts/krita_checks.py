"""Runs inside Krita (kritarunner) for tests/test_krita_plugin.py: every scripted scenario of the plugin's API.

kritarunner -s krita_checks -f main, with the built plugin's folder in IRODORI_PLUGIN_DIR and the inputs
(lines.bgra, reference.bgra, reference.png, anim.kra, hint_dot.bgra) in IRODORI_DATA. One dict of findings
is emitted; the test asserts on it.
"""
import base64
import hashlib
import os
import sys
import time

from krita import Krita
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication, QDialog, QLabel

from irodori_emit import emit

sys.path.insert(0, os.environ["IRODORI_PLUGIN_DIR"])
import irodori  # noqa: E402  (the BUILT plugin, from the folder above)

DIALOGS = []


def close_dialogs():  # a modal dialog would hang kritarunner: record its text (the test fails on it) and close it
    for w in QApplication.topLevelWidgets():
        if w.isVisible() and isinstance(w, QDialog):
            DIALOGS.append([label.text() for label in w.findChildren(QLabel)])
            w.reject()


dialog_timer = QTimer()
dialog_timer.timeout.connect(close_dialogs)
dialog_timer.start(500)

W, H = int(os.environ["IRODORI_W"]), int(os.environ["IRODORI_H"])
DATA = os.environ["IRODORI_DATA"]
EP, DEAD = os.environ["IRODORI_ENDPOINT"], os.environ["IRODORI_DEAD_ENDPOINT"]
HINT_EP = os.environ["IRODORI_HINT_ENDPOINT"]  # a backend whose model takes hints (EP's does not)
DOT = [int(v) for v in os.environ["IRODORI_HINT_DOT"].split(",")]  # x, y, w, h of hint_dot.bgra


def raw(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def names(parent):
    return [n.name() for n in parent.childNodes()]


def digest(node):
    return hashlib.sha256(bytes(node.pixelData(0, 0, W, H))).hexdigest()


def new_doc(depth="U8"):
    doc = Krita.instance().createDocument(W, H, "t", "RGBA", depth, "", 72.0)
    root = doc.rootNode()
    ref = doc.createNode("reference", "paintlayer")
    root.addChildNode(ref, None)
    line = doc.createNode("lines", "paintlayer")
    root.addChildNode(line, None)
    if depth == "U8":
        ref.setPixelData(raw("reference.bgra"), 0, 0, W, H)
        line.setPixelData(raw("lines.bgra"), 0, 0, W, H)
    doc.setActiveNode(line)
    return doc, root, ref, line


def attempt(fn):
    t = time.monotonic()
    try:
        fn()
        return {"error": None, "seconds": time.monotonic() - t}
    except Exception as exc:
        return {"error": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc),
                "seconds": time.monotonic() - t}


def main(args=None):
    plugin = os.path.dirname(irodori.__file__)
    out = {"plugin_file": irodori.__file__, "protocol_file": irodori.protocol.__file__,
           "has_protocol": os.path.isfile(os.path.join(plugin, "protocol", "__init__.py"))
           and not os.path.islink(os.path.join(plugin, "protocol"))}

    # 1. one layer: the colour goes directly under the line art; the line art stays byte-identical
    doc, root, ref, line = new_doc()
    before, uid = digest(line), line.uniqueId().toString()
    node = irodori.colorize_layer(doc, line, ref, endpoint=EP, timeout=60)
    b = node.bounds()
    out["basic"] = {"stack": names(root), "name": node.name(), "bounds": [b.x(), b.y(), b.width(), b.height()],
                    "pixels": base64.b64encode(bytes(node.pixelData(0, 0, W, H))).decode(),
                    "line_same": digest(line) == before,
                    "line_uid_same": root.childNodes()[-1].uniqueId().toString() == uid,
                    "transport": irodori.protocol.Client(EP).transport}

    # 2. the built-in ZMTP client (Krita builds without pyzmq) gives the same layer
    os.environ["IRODORI_TRANSPORT"] = "zmtp"
    node2 = irodori.colorize_layer(doc, line, ref, endpoint=EP, timeout=60)
    out["zmtp"] = {"same": bytes(node2.pixelData(0, 0, W, H)) == bytes(node.pixelData(0, 0, W, H)),
                   "transport": irodori.protocol.Client(EP).transport, "stack": names(root)}
    del os.environ["IRODORI_TRANSPORT"]

    # 3. line art at the BOTTOM of a group: the colour still ends up directly under it
    doc, root, ref, line = new_doc()
    group = doc.createGroupLayer("inks")
    root.addChildNode(group, None)
    inner = line.duplicate()
    inner.setName("group lines")
    group.addChildNode(inner, None)
    notes = doc.createNode("notes", "paintlayer")
    group.addChildNode(notes, None)
    before, uid = digest(inner), inner.uniqueId().toString()
    irodori.colorize_layer(doc, inner, ref, endpoint=EP, timeout=60)
    moved = [n for n in group.childNodes() if n.uniqueId().toString() == uid]
    out["bottom"] = {"stack": names(group), "line_same": digest(moved[0]) == before if moved else False}

    # 4. other outputs and references: flattened goes ABOVE, flats under; file, bytes, another document
    other = Krita.instance().createDocument(W, H, "refdoc", "RGBA", "U8", "", 72.0)
    other.rootNode().childNodes()[0].setPixelData(raw("reference.bgra"), 0, 0, W, H)
    doc, root, ref, line = new_doc()
    irodori.colorize_layer(doc, line, ref, endpoint=EP, output="flattened", timeout=60)
    irodori.colorize_layer(doc, line, os.path.join(DATA, "reference.png"), endpoint=EP, output="flats", timeout=60)
    irodori.colorize_layer(doc, line, raw("reference.png"), endpoint=EP, timeout=60, resolution=64)
    irodori.colorize_layer(doc, line, other, endpoint=EP, timeout=60)
    out["variants"] = {"stack": names(root)}

    # 5. batch: every selected layer with one reference, each colour under its own line art
    doc, root, ref, line = new_doc()
    line2 = line.duplicate()
    line2.setName("lines 2")
    root.addChildNode(line2, line)
    made = irodori.colorize_selected(ref, document=doc, nodes=[line, line2, ref], endpoint=EP, timeout=60)
    out["batch"] = {"stack": names(root), "made": [n.name() for n in made]}

    # 6. errors: no layer is added, and the message says what to do
    doc, root, ref, line = new_doc()
    n0 = names(root)
    out["dead"] = attempt(lambda: irodori.colorize_layer(doc, line, ref, endpoint=DEAD, timeout=8))
    out["dead"]["stack_same"] = names(root) == n0
    empty = doc.createNode("empty", "paintlayer")
    root.addChildNode(empty, None)
    n1 = names(root)
    out["empty"] = attempt(lambda: irodori.colorize_layer(doc, empty, ref, endpoint=EP, timeout=60))
    out["empty"]["stack_same"] = names(root) == n1
    doc16, root16, ref16, line16 = new_doc("U16")
    n2 = names(root16)
    out["u16"] = attempt(lambda: irodori.colorize_layer(doc16, line16, ref, endpoint=EP, timeout=60))
    out["u16"]["stack_same"] = names(root16) == n2
    out["not_animated"] = attempt(lambda: irodori.colorize_keyframes(doc, line, ref, endpoint=EP))

    # 7. an animated line-art layer (a .kra, keyframes at 0, 2 and 5): ONE animated colour layer under it,
    #    or, when asked, one layer per keyframe
    anim = Krita.instance().openDocument(os.path.join(DATA, "anim.kra"))
    root = anim.rootNode()
    line = root.childNodes()[0]
    ref = anim.createNode("reference", "paintlayer")
    root.addChildNode(ref, None)
    ref.setPixelData(raw("reference.bgra"), 0, 0, W, H)
    anim.setCurrentTime(3)
    anim.waitForDone()
    before = [hashlib.sha256(bytes(line.pixelDataAtTime(0, 0, W, H, t))).hexdigest() for t in (0, 2, 5)]
    node = irodori.colorize_keyframes(anim, line, ref, endpoint=EP, timeout=60)
    group = irodori.colorize_keyframes(anim, line, ref, endpoint=EP, timeout=60, as_animation=False)
    frames = [bytes(node.pixelDataAtTime(0, 0, W, H, t)) for t in (0, 2, 5)]
    out["anim"] = {
        "line_keys": [t for t in range(12) if line.hasKeyframeAtTime(t)],
        "stack": names(root), "animated": node.animated(),
        "keys": [t for t in range(12) if node.hasKeyframeAtTime(t)],
        "frames": [base64.b64encode(f).decode() for f in frames],
        "group": [(c.name(), c.visible()) for c in group.childNodes()],
        "group_same": [bytes(c.pixelData(0, 0, W, H)) for c in group.childNodes()] == frames,
        "time": anim.currentTime(),
        "line_same": before == [hashlib.sha256(bytes(line.pixelDataAtTime(0, 0, W, H, t))).hexdigest()
                                for t in (0, 2, 5)],
    }
    out["hints"] = hint_checks()
    out["dialogs"] = DIALOGS
    emit(out)


def hint_checks():
    """8. hints: "New hint layer" goes directly above the line art (it becomes the active layer where there is
    a view: krita_docker.py checks that); a dot on it colours its closed area; the line-art and hint layers
    stay byte-identical; a model without hints refuses."""
    t0 = time.monotonic()
    doc, root, ref, line = new_doc()
    notes = doc.createNode("notes", "paintlayer")
    root.addChildNode(notes, None)
    hints = irodori.new_hint_layer(doc, line)
    out = {"new_stack": names(root)}
    x, y, w, h = DOT
    hints.setPixelData(raw("hint_dot.bgra"), x, y, w, h)
    doc.waitForDone()
    before = {"line": digest(line), "hints": digest(hints)}
    plain = irodori.colorize_layer(doc, line, ref, endpoint=HINT_EP, timeout=60)
    hinted = irodori.colorize_layer(doc, line, ref, endpoint=HINT_EP, timeout=60, hints=hints)
    out.update(stack=names(root),
               plain=base64.b64encode(bytes(plain.pixelData(0, 0, W, H))).decode(),
               hinted=base64.b64encode(bytes(hinted.pixelData(0, 0, W, H))).decode(),
               hints_pixels=base64.b64encode(bytes(hints.pixelData(0, 0, W, H))).decode(),
               line_same=digest(line) == before["line"], hints_same=digest(hints) == before["hints"])
    n0 = names(root)
    out["refused"] = attempt(lambda: irodori.colorize_layer(doc, line, ref, endpoint=EP, timeout=60, hints=hints))
    out["refused"]["stack_same"] = names(root) == n0
    empty = doc.createNode("no hints yet", "paintlayer")
    root.addChildNode(empty, None)
    node = irodori.colorize_layer(doc, line, ref, endpoint=EP, timeout=60, hints=empty)  # empty = no hints
    out["empty_hints"] = base64.b64encode(bytes(node.pixelData(0, 0, W, H))).decode()
    out["same_layer"] = attempt(lambda: irodori.colorize_layer(doc, line, ref, endpoint=HINT_EP, hints=line))
    out["seconds"] = time.monotonic() - t0
    return out
