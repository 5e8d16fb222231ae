"""Runs inside the full Krita app (the test kit's startup code) for tests/test_krita_plugin.py: the docker.

With the plugin installed from its zip in a fresh profile, it colours a character through the docker's
button (the network on the worker thread): first against a dead endpoint, then a slow backend it cancels,
then the real backend; then "New hint layer", a dot of colour on it, and a colouring with that hint layer
on a backend whose model takes hints; then an animation (anim.kra) from its coloured frame at the playhead.
The test kit then photographs the screen; the test asserts on what is emitted. Inputs: IRODORI_DATA
(character_lines.bgra, character_ref.bgra, anim.kra), IRODORI_SIZE, IRODORI_HINT_DOT (x, y, w, h and the
B, G, R of a dot on paper) and the endpoints.
"""
import os
import sys
import time

from krita import Krita
from PyQt5.QtWidgets import QApplication

from irodori_testkit import emit


k = Krita.instance()
win = k.activeWindow()
data = os.environ["IRODORI_DATA"]
EP = os.environ["IRODORI_ENDPOINT"]


def step(name):  # the last step reached, for the test's message if Krita crashes
    with open(os.path.join(data, "steps.txt"), "a") as f:
        f.write(name + "\n")


slot_errors = []


def log_exception(*exc_info):  # instead of Krita's modal error dialog, which would hang this test
    import traceback
    slot_errors.append("".join(traceback.format_exception(*exc_info)))
    step("EXCEPTION " + slot_errors[-1])


sys.excepthook = log_exception
out = {"loaded": "irodori" in sys.modules, "slot_errors": slot_errors}
import irodori  # noqa: E402  (after the check above: the plugin must already be loaded by Krita)
out["plugin_file"] = irodori.__file__
dockers = [d for d in k.dockers() if d.objectName() == "irodori_docker"]
out["docker_found"] = len(dockers)


def raw(name):
    with open(os.path.join(data, name), "rb") as f:
        return f.read()


# --- the docker: colour a character through the button; the network runs on the worker thread
step("docker")
S = int(os.environ["IRODORI_SIZE"])
doc = k.createDocument(S, S, "character", "RGBA", "U8", "", 72.0)
root = doc.rootNode()
ref = doc.createNode("reference", "paintlayer")
root.addChildNode(ref, None)
ref.setPixelData(raw("character_ref.bgra"), 0, 0, S, S)
ref.setVisible(False)
lines = doc.createNode("line art", "paintlayer")
root.addChildNode(lines, None)
lines.setPixelData(raw("character_lines.bgra"), 0, 0, S, S)
win.addView(doc)
doc.setActiveNode(lines)
doc.refreshProjection()
QApplication.processEvents()
for other in k.dockers():  # room for the docker in the screenshot: keep only the Layers docker beside it
    if other.objectName() not in ("KisLayerBox", "irodori_docker", "ToolBox"):
        other.hide()
docker = dockers[0]
docker.show()
docker.raise_()
docker.refresh_layers()
docker.kind_combo.setCurrentIndex(docker.kind_combo.findData("layer"))
docker.ref_layer_combo.setCurrentIndex(docker.ref_layer_combo.findData(ref.uniqueId().toString()))
docker.update_thumbnail()
# first with nothing listening: a plain-words error in the docker, the offer to start a backend, no layer
docker.endpoint_edit.setText(os.environ["IRODORI_DEAD_ENDPOINT"])
docker._settings_changed()
docker.colorize_button.click()
deadline = time.monotonic() + 30
while docker.worker is not None and time.monotonic() < deadline:
    QApplication.processEvents()
    time.sleep(0.01)
out["dead"] = {"message": docker.message.text(), "start_offered": docker.start_button.isVisibleTo(docker),
               "stack": [n.name() for n in root.childNodes()]}
# a slow backend (5 s): Cancel stops waiting at once, and its late answer adds nothing
docker.endpoint_edit.setText(os.environ["IRODORI_SLOW_ENDPOINT"])
docker._settings_changed()
docker.colorize_button.click()
t0 = time.monotonic()
while time.monotonic() - t0 < 0.5:
    QApplication.processEvents()
    time.sleep(0.01)
docker.cancel_button.click()
while docker.worker is not None and time.monotonic() - t0 < 30:
    QApplication.processEvents()
    time.sleep(0.01)
cancelled_after = time.monotonic() - t0
while time.monotonic() - t0 < 6:  # past the backend's answer
    QApplication.processEvents()
    time.sleep(0.01)
out["cancel"] = {"message": docker.message.text(), "seconds": cancelled_after,
                 "stack": [n.name() for n in root.childNodes()]}
docker.endpoint_edit.setText(EP)
docker._settings_changed()
step("click")
docker.colorize_button.click()
out["worker_started"] = docker.worker is not None and docker.worker.isRunning()
ticks, deadline = 0, time.monotonic() + 90
while docker.worker is not None and time.monotonic() < deadline:
    QApplication.processEvents()   # Krita's UI thread keeps running while the backend works
    ticks += 1
    time.sleep(0.01)
step("check")
docker.check_backend()
deadline = time.monotonic() + 10
while docker.checker.isRunning() and time.monotonic() < deadline:
    QApplication.processEvents()
    time.sleep(0.01)
QApplication.processEvents()
canvas = win.activeView().canvas()  # fit the picture into the canvas, which shrank when dockers changed
canvas.setZoomLevel(canvas.zoomLevel() * 0.62)
deadline = time.monotonic() + 1
while time.monotonic() < deadline:
    QApplication.processEvents()
    time.sleep(0.01)
g = docker.geometry()
top_left = docker.mapToGlobal(docker.rect().topLeft())
out["docker"] = {"message": docker.message.text(), "status": docker.status_label.text(), "ui_ticks": ticks,
                 "stack": [n.name() for n in root.childNodes()], "visible": docker.isVisible(),
                 "rect": [top_left.x(), top_left.y(), g.width(), g.height()],
                 "saved_endpoint": k.readSetting("irodori", "endpoint", "")}


def wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)


# --- hints: "New hint layer" with the line art picked as "Active layer", a dot on it, colour on a hint model
step("hints")
t_hints = time.monotonic()
docker.line_combo.setCurrentIndex(0)  # "Active layer": the new layer becomes active, the line art must stay
doc.setActiveNode(lines)
wait_for(lambda: doc.activeNode() is not None and doc.activeNode().name() == "line art", 5)
docker.new_hints_button.click()
QApplication.processEvents()
hint_layer = [n for n in root.childNodes() if n.name() == "Irodori hints"][0]
hints = {"stack": [n.name() for n in root.childNodes()], "active": doc.activeNode().name(),
         "picked": docker.hints_combo.currentText(), "message": docker.message.text(),
         "line_pinned": docker.line_combo.currentData() == lines.uniqueId().toString(),
         "note_on_plain_model": docker.hints_note.isVisibleTo(docker)}
x, y, w, h, *bgr = [int(v) for v in os.environ["IRODORI_HINT_DOT"].split(",")]
hint_layer.setPixelData(bytes([*bgr, 255]) * (w * h), x, y, w, h)
before = [bytes(n.pixelData(0, 0, S, S)) for n in (lines, hint_layer)]
docker.endpoint_edit.setText(os.environ["IRODORI_HINT_ENDPOINT"])
docker._settings_changed()
docker.check_backend()
wait_for(lambda: not docker.checker.isRunning(), 10)
QApplication.processEvents()
hints["note_on_hint_model"] = docker.hints_note.isVisibleTo(docker)
docker.colorize_button.click()
wait_for(lambda: docker.worker is None, 90)
made = [n for n in root.childNodes() if n.name() == "Irodori colour (reference)"]
hints.update(after=[n.name() for n in root.childNodes()], done=docker.message.text(),
             unchanged=[bytes(n.pixelData(0, 0, S, S)) for n in (lines, hint_layer)] == before,
             dot=list(bytes(made[-1].pixelData(x + w // 2, y + h // 2, 1, 1))) if made else None,
             seconds=time.monotonic() - t_hints)
out["hints"] = hints

# --- "Every keyframe, from the coloured frame at the playhead": anim.kra's "flats" coloured at frame 0 only
step("keyframes")
anim = k.openDocument(os.path.join(data, "anim.kra"))
win.addView(anim)
wait_for(lambda: k.activeDocument() is not None and k.activeDocument().name() == anim.name(), 5)
anim.setCurrentTime(1)
anim_lines, anim_flats = anim.nodeByName("lines"), anim.nodeByName("flats")
AW, AH = anim.width(), anim.height()


def anim_state():
    return ([bytes(anim_lines.pixelDataAtTime(0, 0, AW, AH, t)) for t in (0, 2, 5)],
            [bytes(anim_flats.pixelDataAtTime(0, 0, AW, AH, t)) for t in (0, 2, 5)])


lines_before, flats_before = anim_state()
kept = (docker.endpoint_edit.text(), docker.line_combo.currentData(), docker.hints_combo.currentData())
docker.endpoint_edit.setText(EP)
docker._settings_changed()
docker.refresh_layers()
docker._select(docker.line_combo, anim_lines.uniqueId().toString())
docker._select(docker.scope_combo, "playhead")
docker._select(docker.kind_combo, "layer")
docker._select(docker.ref_layer_combo, anim_flats.uniqueId().toString())
docker._select(docker.hints_combo, "")
docker.colorize_button.click()
wait_for(lambda: docker.worker is None, 90)
lines_after, flats_after = anim_state()
out["keyframes"] = {"active": k.activeDocument().name() == anim.name(), "message": docker.message.text(),
                    "stack": [n.name() for n in anim.rootNode().childNodes()],
                    "lines_same": lines_after == lines_before, "key_same": flats_after[0] == flats_before[0],
                    "changed": [a != b for a, b in zip(flats_after[1:], flats_before[1:])],
                    "time": anim.currentTime()}
anim.setModified(False)  # the screenshot shows the character and the docker as the steps above left them
anim.close()
wait_for(lambda: k.activeDocument() is not None and k.activeDocument().name() == doc.name(), 5)
docker.refresh_layers()
docker.endpoint_edit.setText(kept[0])
for combo, value in ((docker.line_combo, kept[1]), (docker.hints_combo, kept[2]), (docker.scope_combo, "layer"),
                     (docker.ref_layer_combo, ref.uniqueId().toString())):
    docker._select(combo, value)
docker._settings_changed()

# --- the scene the screenshot shows: the character coloured by the main backend, as after one click
step("screenshot scene")
for node in root.childNodes():
    if node.name() in ("Irodori hints", "Irodori colour (reference)"):
        node.remove()
docker.refresh_layers()
docker.endpoint_edit.setText(EP)
docker._settings_changed()
docker._select(docker.line_combo, lines.uniqueId().toString())
docker._select(docker.hints_combo, "")
docker.check_backend()
wait_for(lambda: not docker.checker.isRunning(), 10)
docker.colorize_button.click()
wait_for(lambda: docker.worker is None, 90)
wait_for(lambda: docker.message.text().startswith("Done"), 30)
doc.refreshProjection()
wait_for(lambda: False, 1)  # let the canvas and the Layers docker repaint before the screenshot
out["scene"] = [n.name() for n in root.childNodes()] + [docker.message.text()]
emit(out)
