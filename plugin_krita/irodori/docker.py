"""The "Irodori" docker: pick line art, reference, output and quality, press Colorize.

The panel (docker_ui.DockerPanel) holds the widgets; this module runs what they ask for: checking and
starting the backend, and colouring. Network work runs in worker.ColorizeWorker; everything that touches
Krita's documents runs here, on the UI thread.
"""
from __future__ import annotations

import atexit
import time

from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita

from . import protocol
from .api import Batch, Target, backend_info, keyframe_targets, new_hint_layer, selected_layers
from .backend_process import BackendProcess
from .docker_ui import DockerPanel
from .errors import InputError, describe_backend, friendly
from .inputs import resolve_reference
from .keyframe_colouring import keyframe_batch
from .layers import same_node
from .qt import QtCore
from .server_facts import ServerFacts
from .settings import DEFAULT_TIMEOUT
from .worker import CallWorker, ColorizeWorker

DOCKER_ID = "irodori_docker"
BACKEND = BackendProcess()  # one per Krita process, shared by the dockers of every window


def stop_backend() -> None:
    BACKEND.stop()


atexit.register(stop_backend)


class IrodoriDocker(DockerPanel):
    def __init__(self) -> None:
        super().__init__()
        self.worker: ColorizeWorker | None = None
        self.checker: CallWorker | None = None
        self.checking = ""  # the endpoint the checker asks
        self.facts: dict = {}  # endpoint -> ServerFacts from its last `info` (how references are scaled)
        self.batch: Batch | None = None
        self.fed: list = []  # job number -> target index
        self.next_target = 0
        self.answered = 0
        self.succeeded = 0
        self.handling = 0
        self.worker_done = False
        self.started_at = 0.0
        self.start_polls = 0
        self.colorize_button.clicked.connect(self.colorize)
        self.cancel_button.clicked.connect(self.cancel)
        self.check_button.clicked.connect(self.check_backend)
        self.start_button.clicked.connect(self.start_backend)
        self.new_hints_button.clicked.connect(self.add_hint_layer)
        self.tick = QtCore.QTimer(self)
        self.tick.setInterval(500)
        self.tick.timeout.connect(self._show_elapsed)
        QtCore.QTimer.singleShot(0, self.check_backend)

    # ------------------------------------------------------------------------------------- backend
    def check_backend(self) -> None:
        if self.checker is not None and self.checker.isRunning():
            return
        endpoint = self.settings.endpoint
        self.status_label.setText(f"checking {endpoint}...")
        self.checking = endpoint
        self.checker = CallWorker(lambda: backend_info(endpoint, 3.0), self)
        self.checker.done.connect(self._checked)
        self.checker.start()

    def _checked(self, info, error) -> None:
        if error is None:
            self.facts[self.checking] = ServerFacts.from_info(info)
            self.show_hints_support(self.facts[self.checking].hints)
            self.status_label.setText("\u25cf " + describe_backend(info))
            self.status_label.setStyleSheet("color: #3a9a3a;")
            self.start_button.setVisible(False)
            if self.start_polls:
                self.start_polls = 0
                self.show_message("The backend is running.")
            return
        self.status_label.setStyleSheet("color: #c0392b;")
        self.show_hints_support(None)
        if self.start_polls:  # waiting for a backend we started
            if not BACKEND.running():
                self.start_polls = 0
                self.status_label.setText("the backend stopped")
                self.show_error(f"The backend stopped (exit code {BACKEND.exit_code()}). Its log "
                                f"({BACKEND.log_path}) ends with:\n{BACKEND.log_tail()}")
            elif self.start_polls > 90:
                self.start_polls = 0
                self.show_error(f"The backend did not answer within 90 s. See its log: {BACKEND.log_path}")
            else:
                self.start_polls += 1
                self.status_label.setText(f"starting the backend... ({self.start_polls} s)")
                QtCore.QTimer.singleShot(1000, self.check_backend)
            return
        self.status_label.setText("\u25cf " + friendly(error, self.settings.endpoint, 3.0))
        local = protocol.is_local_endpoint(self.settings.endpoint)
        self.start_button.setVisible(local and getattr(error, "code", "") == "unavailable")
        self.start_button.setEnabled(bool(self.settings.python))
        self.start_button.setToolTip("" if self.settings.python else "Set the Python environment first.")

    def start_backend(self) -> None:
        try:
            BACKEND.start(self.settings.python, self.settings.endpoint, self.settings.checkpoint)
        except (ValueError, OSError) as exc:
            self.show_error(str(exc))
            return
        self.start_button.setVisible(False)
        self.show_message(f"Starting `{' '.join(BACKEND.command)}` (log: {BACKEND.log_path}). Loading the model "
                          "takes a few seconds; the backend stops when Krita quits.")
        self.start_polls = 1
        QtCore.QTimer.singleShot(1000, self.check_backend)

    # ------------------------------------------------------------------------------------- hints
    def add_hint_layer(self) -> None:
        """"New hint layer": an empty layer above the line art, picked as the hints and made active."""
        doc = Krita.instance().activeDocument()
        try:
            if doc is None:
                raise InputError("no_document", "No document is open. Open the line art first.")
            line = self.line_node(doc)
            node = new_hint_layer(doc, line)
        except (InputError, RuntimeError) as exc:
            self.show_error(friendly(exc))
            return
        self.refresh_layers()
        # the new layer is now the active one: pin the line art, or "Active layer" would mean the hints
        self._select(self.line_combo, line.uniqueId().toString())
        self._select(self.hints_combo, node.uniqueId().toString())
        self.show_message(f"Added \"{node.name()}\" above \"{line.name()}\": paint dots of colour on it where you "
                          "want exactly that colour, then press Colorize.")

    # ------------------------------------------------------------------------------------- colorize
    def make_batch(self) -> Batch:
        doc = Krita.instance().activeDocument()
        if doc is None:
            raise InputError("no_document", "No document is open. Open the line art first.")
        source = self.current_reference_source()
        if source is None:
            raise InputError("no_reference", "Pick a reference: a layer of this document, another open "
                                             "document or an image file.")
        facts = self.facts.get(self.settings.endpoint, ServerFacts())
        scope = self.scope_combo.currentData()
        if scope == "playhead":  # the reference layer is the coloured frame's colour layer
            if self.kind_combo.currentData() != "layer":
                raise InputError("no_colour_layer", "To colour from the frame at the playhead, pick its colour "
                                                    "layer (flats) as the reference: Reference > Layer of this "
                                                    "document.")
            return keyframe_batch(doc, self.line_node(doc), source, facts,
                                  resolution=self.quality_combo.currentData() or None)
        reference = resolve_reference(source, facts)
        hints = self.hints_node(doc)
        if scope == "selected":
            nodes = [n for n in selected_layers(doc)
                     if not (self.kind_combo.currentData() == "layer" and same_node(n, source))
                     and not same_node(n, hints)]
            if not nodes:
                raise InputError("no_layers", "No line-art layer is selected besides the reference.")
            targets = [Target(n) for n in nodes]
        elif scope == "keyframes":
            targets = keyframe_targets(doc, self.line_node(doc))
        else:
            line = self.line_node(doc)
            if self.kind_combo.currentData() == "layer" and same_node(line, source):
                raise InputError("same_layer", "The line art and the reference are the same layer. Pick another "
                                               "reference.")
            targets = [Target(line)]
        resolution = self.quality_combo.currentData() or None
        return Batch(doc, targets, reference, self.output_combo.currentData(), resolution, hints=hints)

    def colorize(self) -> None:
        if self.worker is not None:
            return
        self._settings_changed()
        try:
            self.batch = self.make_batch()
        except (InputError, ValueError) as exc:
            self.show_error(friendly(exc))
            return
        self.fed, self.next_target, self.answered, self.succeeded = [], 0, 0, 0
        self.handling, self.worker_done = 0, False
        self.worker = ColorizeWorker(self.settings.endpoint, self.settings.timeout or DEFAULT_TIMEOUT, 2, self,
                                     retry_busy=len(self.batch.targets) > 1)
        self.worker.answered.connect(self._answered)
        self.worker.crashed.connect(lambda text: self.batch.failures.append(("plugin", RuntimeError(text))))
        self.worker.all_done.connect(self._worker_done)
        self.worker.finished.connect(self.worker.deleteLater)
        self.colorize_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        n = len(self.batch.targets)
        self.progress.setRange(0, 0 if n == 1 else n)  # one image: a busy bar; a batch: count
        self.progress.setValue(0)
        self.started_at = time.monotonic()
        self.show_message(f"Colouring {self.batch.targets[0].label()}..." if n == 1 else f"Colouring {n} images...")
        self.tick.start()
        self.worker.start()
        for _ in range(2):
            self._feed_next()

    def _feed_next(self) -> None:
        """Read the next target's pixels and hand it to the worker; skip targets that cannot be read."""
        batch, worker = self.batch, self.worker
        if worker is None:
            return
        while self.next_target < len(batch.targets) and not worker.cancelled:
            i = self.next_target
            self.next_target += 1
            try:
                job = batch.job(i)
            except InputError as exc:
                batch.failures.append((batch.targets[i].label(), exc))
                self.answered += 1
                continue
            self.fed.append(i)
            worker.feed(job)
            return
        worker.end()

    def _answered(self, n: int, outcome) -> None:
        batch, worker = self.batch, self.worker
        if worker is None or worker.cancelled:
            return
        self.handling += 1  # Krita's API may run the event loop inside place(): the end must wait for us
        try:
            i = self.fed[n]
            self.answered += 1
            if isinstance(outcome, Exception):
                batch.failures.append((batch.targets[i].label(), outcome))
                if getattr(outcome, "code", "") in protocol.STOP_CODES:
                    worker.cancel()
                    return
            else:
                try:
                    batch.place(i, outcome)
                    self.succeeded += 1
                except (protocol.IrodoriError, ValueError, RuntimeError) as exc:
                    batch.failures.append((batch.targets[i].label(), exc))
            if self.progress.maximum():
                self.progress.setValue(self.answered)
            self._feed_next()
        finally:
            self.handling -= 1
            self._maybe_finish()

    def _worker_done(self) -> None:
        self.worker_done = True
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.worker is not None and self.worker_done and self.handling == 0:
            self._finished()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.show_message("Cancelling...")

    def _show_elapsed(self) -> None:
        if self.batch is not None and self.worker is not None and not self.worker.cancelled:
            n = len(self.batch.targets)
            done = f"{self.answered} of {n} done, " if n > 1 else ""
            self.progress.setFormat(f"{done}{time.monotonic() - self.started_at:.0f} s")

    def _finished(self) -> None:
        batch, worker = self.batch, self.worker
        self.worker = None
        self.tick.stop()
        self.cancel_button.setEnabled(False)
        if worker.cancelled:
            batch.frames.clear()  # a half-coloured animation is not kept
        try:
            batch.finish()
        except RuntimeError as exc:
            batch.failures.append(("animation", exc))
        self.colorize_button.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if batch.created or getattr(batch, "results", None) else 0)  # results: keyframes
        self.progress.setFormat("%p%")
        seconds = time.monotonic() - self.started_at
        made = batch.created
        if worker.cancelled and not batch.failures:
            batch.failures.append(("", protocol.IrodoriError("cancelled", "cancelled")))
        if not batch.failures:
            text = (f"Done in {seconds:.1f} s: added \"{made[0].name()}\"." if len(made) == 1
                    else f"Done in {seconds:.1f} s: added {len(made)} layers." if made
                    else f"Done in {seconds:.1f} s.")  # keyframe colouring may only write existing keyframes
            self.show_message(" ".join([text, *(note[0].upper() + note[1:] + "." for note in batch.notes)]))
            return
        label, first = batch.failures[0]
        text = friendly(first, self.settings.endpoint, self.settings.timeout)
        if len(batch.targets) > 1:
            text = (f"{self.succeeded} of {len(batch.targets)} done. " + (f"{label}: " if label else "") + text
                    + (f" (and {len(batch.failures) - 1} more)" if len(batch.failures) > 1 else ""))
        self.show_error(text)
        if getattr(first, "code", "") == "unavailable":
            self._checked(None, first)


def register() -> None:
    """Add the docker (Settings > Dockers > Irodori) and stop a backend we started when Krita quits."""
    app = Krita.instance()
    position = getattr(DockWidgetFactoryBase, "DockRight", None)
    if position is None:  # PyQt6-style scoped enum
        position = DockWidgetFactoryBase.DockPosition.DockRight
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, position, IrodoriDocker))
    try:
        app.notifier().applicationClosing.connect(stop_backend)
    except AttributeError:
        pass
