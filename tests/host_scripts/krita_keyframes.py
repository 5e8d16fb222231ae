"""Runs inside Krita (kritarunner) for tests/test_krita_keyframes.py: keyframe colouring from the coloured frame
at the playhead, and pages of several documents coloured from one page.

kritarunner -s krita_keyframes -f main, with the built plugin's folder in IRODORI_PLUGIN_DIR and, in
IRODORI_DATA: anim.kra (animated "lines" with keyframes at IRODORI_TIMES and an animated "flats" whose first
keyframe is the first frame's flats), lines_T.bgra per time T and key_flats.bgra. One dict of findings is
emitted; the test asserts on it.
"""
import base64
import hashlib
import os
import sys
import time

from krita import Krita

from irodori_emit import emit

sys.path.insert(0, os.environ["IRODORI_PLUGIN_DIR"])
import irodori  # noqa: E402  (the BUILT plugin, from the folder above)

W, H = int(os.environ["IRODORI_W"]), int(os.environ["IRODORI_H"])
TIMES = [int(t) for t in os.environ["IRODORI_TIMES"].split(",")]
DATA, EP = os.environ["IRODORI_DATA"], os.environ["IRODORI_ENDPOINT"]
SPAN = range(0, max(TIMES) + 3)  # every time a keyframe could be at, and past the last


def raw(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def b64(data):
    return base64.b64encode(bytes(data)).decode()


def names(parent):
    return [n.name() for n in parent.childNodes()]


def keys(node):
    return [t for t in SPAN if node.hasKeyframeAtTime(t)]


def line_state(node):
    """The line art's keyframes and a digest of its pixels at every time (held frames included)."""
    return keys(node), [hashlib.sha256(bytes(node.pixelDataAtTime(0, 0, W, H, t))).hexdigest() for t in SPAN]


def frames(node):
    return {str(t): b64(node.pixelDataAtTime(0, 0, W, H, t)) for t in TIMES}


def open_anim(name):
    doc = Krita.instance().openDocument(os.path.join(DATA, name))
    doc.waitForDone()
    return doc, doc.rootNode(), doc.nodeByName("lines")


def still_layer(doc, name, data, above=None):
    node = doc.createNode(name, "paintlayer")
    doc.rootNode().addChildNode(node, above)
    node.setPixelData(data, 0, 0, W, H)
    return node


def attempt(doc, fn):
    before = names(doc.rootNode())
    try:
        fn()
        return {"error": None}
    except Exception as exc:
        return {"error": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc),
                "stack_same": names(doc.rootNode()) == before}


def coloured(res):
    return {"colour": res.colour.name(), "colour_uid": res.colour.uniqueId().toString(),
            "unsure": None if res.unsure is None else res.unsure.name(),
            "unsure_keys": [] if res.unsure is None else keys(res.unsure),
            "unsure_frames": {} if res.unsure is None else frames(res.unsure),
            "unsure_pixels": {str(t): n for t, n in res.unsure_pixels.items()}}


def wait_for_backend(seconds=120):
    """The test starts the server and Krita together: wait here until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return irodori.backend_info(EP, timeout=2)
        except irodori.IrodoriError as exc:  # nothing listens yet, or it is still loading its model
            if exc.code not in ("unavailable", "timeout") or time.monotonic() > deadline:
                raise


def main(args=None):
    wait_for_backend()
    t0 = time.monotonic()
    out = {}
    # 1. an animated colour layer: the answers go into its keyframes; its frame at the playhead stays
    doc, root, line = open_anim("anim.kra")
    flats = doc.nodeByName("flats")
    doc.setCurrentTime(TIMES[0] + 1)  # between the first two keyframes: the first one is shown
    doc.waitForDone()
    before, key_before = line_state(line), bytes(flats.pixelDataAtTime(0, 0, W, H, TIMES[0]))
    res = irodori.colorize_from_keyframe(doc, line, flats, endpoint=EP, timeout=60)
    out["in_place"] = {**coloured(res), "stack": names(root), "flats_uid": flats.uniqueId().toString(),
                       "flats_keys": keys(flats), "frames": frames(flats), "line_same": line_state(line) == before,
                       "key_same": bytes(flats.pixelDataAtTime(0, 0, W, H, TIMES[0])) == key_before,
                       "time": doc.currentTime()}

    # 2. a still colour layer, the keyframe's time given: a new animated layer under the line art
    doc, root, line = open_anim("anim_still.kra")
    still = still_layer(doc, "still flats", raw("key_flats.bgra"))
    doc.setCurrentTime(TIMES[-1] + 1)
    doc.waitForDone()
    before, stack = line_state(line), names(root)
    res = irodori.colorize_from_keyframe(doc, line, still, time=TIMES[0], endpoint=EP, timeout=60)
    out["still"] = {**coloured(res), "stack_before": stack, "stack": names(root), "animated": res.colour.animated(),
                    "keys": keys(res.colour), "frames": frames(res.colour), "line_same": line_state(line) == before,
                    "still_same": bytes(still.pixelData(0, 0, W, H)) == raw("key_flats.bgra"),
                    "time": doc.currentTime()}

    # 3. bad input: nothing is added, the message says what to do
    wide = Krita.instance().createDocument(2 * W, H, "wide", "RGBA", "U8", "", 72.0)
    wide_flats = wide.createNode("flats", "paintlayer")
    wide.rootNode().addChildNode(wide_flats, None)
    wide_flats.setPixelData(b"\x40\x80\xc0\xff" * (2 * W * H), 0, 0, 2 * W, H)
    out["other_size"] = attempt(doc, lambda: irodori.colorize_from_keyframe(doc, line, wide_flats, endpoint=EP))
    flat_doc = Krita.instance().createDocument(W, H, "still", "RGBA", "U8", "", 72.0)
    still_line = still_layer(flat_doc, "lines", raw(f"lines_{TIMES[0]}.bgra"))
    still_flats = still_layer(flat_doc, "flats", raw("key_flats.bgra"), still_line)
    out["no_keyframes"] = attempt(flat_doc, lambda: irodori.colorize_from_keyframe(flat_doc, still_line, still_flats,
                                                                                    endpoint=EP))
    out["bad_seconds"] = time.monotonic() - t0

    # 4. pages: the same-named line-art layer of the other open documents, each a new flats layer under it
    pages = []
    for i, t in enumerate(TIMES):
        page = Krita.instance().createDocument(W, H, f"page {i + 1}", "RGBA", "U8", "", 72.0)
        lines = still_layer(page, "page lines", raw(f"lines_{t}.bgra"))
        pages.append((page, lines, still_layer(page, "page flats", raw("key_flats.bgra")) if i == 0 else None))
    first, first_line, first_flats = pages[0]
    page_before = [hashlib.sha256(bytes(n.pixelData(0, 0, W, H))).hexdigest() for _, n, _ in pages]
    done = irodori.colorize_pages_from_keyframe(first, first_line, first_flats, endpoint=EP, timeout=60)
    out["pages"] = {"coloured": [{**coloured(r), "pixels": b64(r.colour.pixelData(0, 0, W, H)),
                                  "unsure_mark": None if r.unsure is None else b64(r.unsure.pixelData(0, 0, W, H))}
                                 for r in done],
                    "stacks": [names(p.rootNode()) for p, _, _ in pages],
                    "lines_same": page_before == [hashlib.sha256(bytes(n.pixelData(0, 0, W, H))).hexdigest()
                                                  for _, n, _ in pages],
                    "anim_stack": names(root)}
    out["seconds"] = time.monotonic() - t0
    emit(out)
