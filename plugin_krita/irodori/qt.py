"""One import point for Qt: PyQt6 inside Krita 6, PyQt5 inside Krita 5.

Why not simply "try PyQt6 first": a Linux system Python may have both installed, and loading the other
Qt major version into Krita's process crashes it. Krita imports its own binding before any plugin, so the
one already in sys.modules is the right one. Code elsewhere uses fully scoped enum names
(Qt.AlignmentFlag.AlignLeft), which both bindings accept.
"""
import sys

if "PyQt6.QtCore" in sys.modules or ("PyQt5.QtCore" not in sys.modules and "PyQt6" in sys.modules):
    from PyQt6 import QtCore, QtGui, QtWidgets  # noqa: F401
    QT_MAJOR = 6
elif "PyQt5.QtCore" in sys.modules:
    from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: F401
    QT_MAJOR = 5
else:  # outside Krita (tests, tools): whichever is installed
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: F401
        QT_MAJOR = 5
    except ImportError:
        from PyQt6 import QtCore, QtGui, QtWidgets  # noqa: F401
        QT_MAJOR = 6

Signal = QtCore.pyqtSignal
Qt = QtCore.Qt


def image_bytes(image: "QtGui.QImage") -> bytes:
    """The pixels of a Format_ARGB32 QImage as bytes (B, G, R, A per pixel on little-endian machines)."""
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    return bytes(ptr)


def image_from_bgra(data: bytes, width: int, height: int) -> "QtGui.QImage":
    """A deep-copied QImage from BGRA bytes (so it does not point into `data` after it is freed)."""
    img = QtGui.QImage(data, width, height, width * 4, QtGui.QImage.Format.Format_ARGB32)
    return img.copy()
