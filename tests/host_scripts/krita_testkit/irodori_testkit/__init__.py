"""A pykrita plugin that tests/hostlib.py installs in every full-app Krita profile it makes.

Once Krita's main window exists it sizes the window to the whole screen (there is no window manager under
Xvfb), runs the startup file named by IRODORI_KRITA_STARTUP, writes READY to IRODORI_RESULT_FILE and, when
IRODORI_KRITA_QUIT=1, quits without any "save changes?" dialog. Startup code gets `Krita`, `emit(obj)` and
`quit_krita()` in its globals, or imports them from this module.
"""
import json
import os
import traceback

from krita import Extension, Krita
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

from host_markers import MARKER, READY

RESULT_FILE = os.environ.get("IRODORI_RESULT_FILE")


def emit(obj):
    """One result line in the result file (a screenshot run's stdout goes to a log that is not parsed)."""
    with open(RESULT_FILE, "a") as f:
        f.write(MARKER + json.dumps(obj) + "\n")


def quit_krita():
    for doc in Krita.instance().documents():
        doc.setModified(False)
    QTimer.singleShot(15000, lambda: os._exit(3))  # a dialog blocked the quit: give up hard
    Krita.instance().action("file_quit").trigger()


class IrodoriTestKit(Extension):
    def setup(self):
        emit({"testkit": "loaded"})
        Krita.instance().notifier().windowCreated.connect(self.on_window)

    def createActions(self, window):
        pass

    def on_window(self):
        window = Krita.instance().activeWindow()
        if window is not None:
            window.qwindow().setGeometry(QApplication.primaryScreen().geometry())
        QTimer.singleShot(int(float(os.environ.get("IRODORI_KRITA_DELAY", "1")) * 1000), self.run_startup)

    def run_startup(self):
        path = os.environ.get("IRODORI_KRITA_STARTUP")
        if path:
            try:
                with open(path) as f:
                    code = f.read()
                exec(compile(code, path, "exec"), {"Krita": Krita, "emit": emit, "quit_krita": quit_krita,
                                                   "__name__": "__startup__"})
            except Exception:
                emit({"testkit_error": traceback.format_exc()})
        with open(RESULT_FILE, "a") as f:
            f.write(READY + "\n")
        if os.environ.get("IRODORI_KRITA_QUIT") == "1":
            quit_krita()


Krita.instance().addExtension(IrodoriTestKit(Krita.instance()))
