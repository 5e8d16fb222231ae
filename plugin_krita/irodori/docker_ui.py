"""The "Irodori" docker's panel: its widgets, the lists it offers, the settings it shows and saves.

Only what the user sees and picks lives here; docker.IrodoriDocker adds what runs the backend and the
colouring (the buttons' actions). Everything here runs on Krita's UI thread. Settings are saved in kritarc
as soon as they change.
"""
from __future__ import annotations

import os

from krita import DockWidget, Krita

from .errors import InputError
from .inputs import PIXEL_LAYERS
from .layers import same_node
from .protocol import DEFAULT_ENDPOINT
from .qt import QtGui, QtWidgets, Qt, Signal
from .settings import MAX_TIMEOUT, RESOLUTION_CHOICES, Settings, load, save, validated

THUMB = 64
OUTPUT_TEXT = {"color": "Colour layer under the line art", "flattened": "Flattened copy (layer above)",
               "flats": "Flats layer under the line art"}
SCOPE_TEXT = {"layer": "This layer", "selected": "All selected layers", "keyframes": "Every keyframe (animated)",
              "playhead": "Every keyframe, from the coloured frame at the playhead"}
KIND_TEXT = {"layer": "Layer of this document", "document": "Another open document", "file": "Image file"}
RESOLUTION_TEXT = {0: "Model default", 256: "Fast (256 px)", 512: "Standard (512 px)", 768: "Fine (768 px)",
                   1024: "High (1024 px)"}


def walk_layers(node, depth: int = 0):
    """(depth, node) for every layer with pixels, top of the stack first (as Krita's Layers docker lists)."""
    for child in reversed(node.childNodes()):
        if child.type() in PIXEL_LAYERS:
            yield depth, child
        if child.type() == "grouplayer":
            yield from walk_layers(child, depth + 1)


def find_node(document, uid: str):
    for _, node in walk_layers(document.rootNode()):
        if node.uniqueId().toString() == uid:
            return node
    return None


class RefreshingCombo(QtWidgets.QComboBox):
    """A combo box that refills itself just before it opens (layers change while the docker sits there)."""
    aboutToShow = Signal()

    def showPopup(self) -> None:
        self.aboutToShow.emit()
        super().showPopup()


class DockerPanel(DockWidget):
    """The docker's widgets and what they show; the Colorize, Cancel, Check and Start buttons are wired up by
    the subclass that runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Irodori")
        self.settings = load(Krita.instance().readSetting)
        self._loading = True
        self._build()
        self._load_into_widgets()
        self._loading = False

    # ------------------------------------------------------------------------------------- widgets
    def _build(self) -> None:
        root = QtWidgets.QWidget(self)
        form = QtWidgets.QFormLayout()
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.line_combo = RefreshingCombo()
        self.line_combo.setToolTip("The line-art layer to colour (it is never changed).")
        self.line_combo.aboutToShow.connect(self.refresh_layers)
        form.addRow("Line art:", self.line_combo)
        self.scope_combo = self._combo(SCOPE_TEXT, "Colour one layer, every selected layer with the same "
                                                   "reference, or every keyframe of an animated layer. \"From the "
                                                   "coloured frame at the playhead\": the reference layer is that "
                                                   "frame's colour layer (flats); every other keyframe takes "
                                                   "exactly its colours, region by region.")
        form.addRow("Colour:", self.scope_combo)

        self.kind_combo = self._combo(KIND_TEXT, "Where the colours come from.")
        self.ref_layer_combo = RefreshingCombo()
        self.ref_layer_combo.aboutToShow.connect(self.refresh_layers)
        self.ref_doc_combo = RefreshingCombo()
        self.ref_doc_combo.aboutToShow.connect(self.refresh_documents)
        self.ref_file_edit = QtWidgets.QLineEdit()
        self.ref_file_edit.setPlaceholderText("picture (PNG, JPEG, WebP)")
        browse = QtWidgets.QToolButton()
        browse.setText("...")
        browse.clicked.connect(self.browse_reference)
        self.ref_stack = QtWidgets.QStackedWidget()
        for w in (self.ref_layer_combo, self.ref_doc_combo, self._row(self.ref_file_edit, browse)):
            self.ref_stack.addWidget(w)
        self.ref_stack.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.thumb = QtWidgets.QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        reference = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(reference)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.kind_combo, 0, 0)
        grid.addWidget(self.ref_stack, 1, 0)
        grid.addWidget(self.thumb, 0, 1, 3, 1)
        grid.setRowStretch(2, 1)
        grid.setColumnStretch(0, 1)
        form.addRow("Reference:", reference)

        self.hints_combo = RefreshingCombo()
        self.hints_combo.setToolTip("A layer with dots of colour: each line-art area holding a dot takes exactly "
                                    "that colour. The layer is only read.")
        self.hints_combo.aboutToShow.connect(self.refresh_layers)
        self.new_hints_button = QtWidgets.QPushButton("New hint layer")
        self.new_hints_button.setToolTip("Add an empty layer above the line art and select it: paint dots of "
                                         "colour on it, then press Colorize.")
        form.addRow("Hints:", self._row(self.hints_combo, self.new_hints_button))
        self.hints_note = QtWidgets.QLabel("")
        self.hints_note.setWordWrap(True)
        self.hints_note.setStyleSheet("color: #b9770e;")
        self.hints_note.setVisible(False)
        form.addRow(self.hints_note)

        self.output_combo = self._combo(OUTPUT_TEXT, "What to add to the document.")
        form.addRow("Output:", self.output_combo)
        self.quality_combo = self._combo({r: RESOLUTION_TEXT[r] for r in RESOLUTION_CHOICES},
                                         "The size the model works at: higher is finer and slower.")
        form.addRow("Quality:", self.quality_combo)

        self.colorize_button = QtWidgets.QPushButton("Colorize")
        self.colorize_button.setDefault(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setValue(0)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # the backend: where it is, whether it answers, and how to start one from here
        backend = QtWidgets.QGroupBox("Backend")
        backend_form = QtWidgets.QFormLayout(backend)
        backend_form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.endpoint_edit = QtWidgets.QLineEdit()
        self.endpoint_edit.setToolTip(f"Where `irodori serve` listens, e.g. {DEFAULT_ENDPOINT}")
        self.check_button = QtWidgets.QPushButton("Check")
        backend_form.addRow("Endpoint:", self._row(self.endpoint_edit, self.check_button))
        self.status_label = QtWidgets.QLabel("not checked yet")
        self.status_label.setWordWrap(True)
        backend_form.addRow(self.status_label)
        self.timeout_spin = QtWidgets.QSpinBox()
        self.timeout_spin.setRange(1, int(MAX_TIMEOUT))
        self.timeout_spin.setSuffix(" s")
        self.timeout_spin.setToolTip("How long to wait for the backend's answer to one image.")
        self.timeout_spin.valueChanged.connect(self._settings_changed)
        backend_form.addRow("Timeout:", self.timeout_spin)
        self.python_edit = QtWidgets.QLineEdit()
        self.python_edit.setPlaceholderText("venv with Irodori (optional)")
        self.python_edit.setToolTip("A venv folder (or its python) where Irodori is installed: lets the docker "
                                    "start `irodori serve` for you and stop it when Krita quits.")
        py_browse = QtWidgets.QToolButton()
        py_browse.setText("...")
        py_browse.clicked.connect(self.browse_python)
        backend_form.addRow("Python:", self._row(self.python_edit, py_browse))
        self.start_button = QtWidgets.QPushButton("Start backend")
        self.start_button.setVisible(False)
        backend_form.addRow(self.start_button)

        layout = QtWidgets.QVBoxLayout(root)
        layout.addLayout(form)
        layout.addWidget(self._row(self.colorize_button, self.cancel_button))
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(backend)
        layout.addStretch(1)
        self.setWidget(root)

        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        self.ref_layer_combo.currentIndexChanged.connect(self.update_thumbnail)
        self.ref_doc_combo.currentIndexChanged.connect(self.update_thumbnail)
        self.ref_file_edit.editingFinished.connect(self._settings_changed)
        for combo in (self.scope_combo, self.output_combo, self.quality_combo):
            combo.currentIndexChanged.connect(self._settings_changed)
        self.endpoint_edit.editingFinished.connect(self._settings_changed)
        self.python_edit.editingFinished.connect(self._settings_changed)

    @staticmethod
    def _combo(choices: dict, tip: str) -> QtWidgets.QComboBox:
        combo = QtWidgets.QComboBox()
        for key, text in choices.items():
            combo.addItem(text, key)
        combo.setToolTip(tip)
        return combo

    @staticmethod
    def _row(*widgets) -> QtWidgets.QWidget:
        row = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in widgets:
            layout.addWidget(w)
        return row

    @staticmethod
    def _select(combo: QtWidgets.QComboBox, value) -> None:
        i = combo.findData(value)
        if i >= 0:
            combo.setCurrentIndex(i)

    # ------------------------------------------------------------------------------------- settings
    def _load_into_widgets(self) -> None:
        s = self.settings
        self._select(self.scope_combo, s.scope)
        self._select(self.kind_combo, s.reference_kind)
        self._select(self.output_combo, s.output)
        self._select(self.quality_combo, s.resolution)
        self.ref_file_edit.setText(s.reference_file)
        self.endpoint_edit.setText(s.endpoint)
        self.timeout_spin.setValue(int(s.timeout))
        self.python_edit.setText(s.python)
        self._kind_changed()

    def _settings_changed(self, *_args) -> None:
        if self._loading:
            return
        s = Settings(endpoint=self.endpoint_edit.text().strip(), timeout=float(self.timeout_spin.value()),
                     output=self.output_combo.currentData(), resolution=self.quality_combo.currentData(),
                     scope=self.scope_combo.currentData(), reference_kind=self.kind_combo.currentData(),
                     reference_file=self.ref_file_edit.text().strip(), python=self.python_edit.text().strip(),
                     checkpoint=self.settings.checkpoint)
        self.settings = validated(s)
        save(self.settings, Krita.instance().writeSetting)
        if self.sender() is self.ref_file_edit:
            self.update_thumbnail()

    def _kind_changed(self, *_args) -> None:
        self.ref_stack.setCurrentIndex(max(0, self.kind_combo.currentIndex()))
        self.refresh_layers()
        self.refresh_documents()
        self._settings_changed()
        self.update_thumbnail()

    # ------------------------------------------------------------------------------------- lists
    def canvasChanged(self, canvas) -> None:
        self.refresh_layers()
        self.update_thumbnail()

    def refresh_layers(self) -> None:
        doc = Krita.instance().activeDocument()
        active = doc.activeNode() if doc is not None else None
        for combo in (self.line_combo, self.ref_layer_combo, self.hints_combo):
            keep = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            if combo is self.line_combo:
                combo.addItem(f"Active layer ({active.name()})" if active is not None else "Active layer", "")
            if combo is self.hints_combo:
                combo.addItem("None", "")
            if doc is not None:
                for depth, node in walk_layers(doc.rootNode()):
                    combo.addItem("    " * depth + node.name(), node.uniqueId().toString())
            i = combo.findData(keep) if keep else -1
            if i < 0 and combo is self.ref_layer_combo:
                i = self._guess_reference_row(combo, active)
            combo.setCurrentIndex(max(0, i))
            combo.blockSignals(False)

    @staticmethod
    def _guess_reference_row(combo, active) -> int:
        """A layer whose name says it is the reference, else the first one that is not the line art."""
        for i in range(combo.count()):
            if "ref" in combo.itemText(i).lower():
                return i
        active_uid = active.uniqueId().toString() if active is not None else None
        for i in range(combo.count()):
            if combo.itemData(i) != active_uid:
                return i
        return 0

    def refresh_documents(self) -> None:
        app = Krita.instance()
        active = app.activeDocument()
        keep = self.ref_doc_combo.currentText()
        self.ref_doc_combo.blockSignals(True)
        self.ref_doc_combo.clear()
        self._documents = [d for d in app.documents()
                           if active is None or not same_node(d.rootNode(), active.rootNode())]
        for i, d in enumerate(self._documents):
            self.ref_doc_combo.addItem(os.path.basename(d.fileName()) or d.name() or f"untitled {i + 1}", i)
        self.ref_doc_combo.setCurrentIndex(max(0, self.ref_doc_combo.findText(keep)))
        self.ref_doc_combo.blockSignals(False)

    def browse_reference(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Reference picture", self.ref_file_edit.text(),
                                                        "Images (*.png *.jpg *.jpeg *.webp);;All files (*)")
        if path:
            self.ref_file_edit.setText(path)
            self._settings_changed()
            self.update_thumbnail()

    def browse_python(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Python environment with Irodori installed",
                                                          self.python_edit.text())
        if path:
            self.python_edit.setText(path)
            self._settings_changed()

    # ------------------------------------------------------------------------------------- picks
    def line_node(self, doc):
        uid = self.line_combo.currentData()
        node = find_node(doc, uid) if uid else doc.activeNode()
        if node is None:
            raise InputError("no_layer", "Pick the line-art layer (or make it the active layer).")
        return node

    def hints_node(self, doc):
        """The hint layer picked, or None for "None" (or when the picked layer was deleted)."""
        uid = self.hints_combo.currentData()
        return find_node(doc, uid) if doc is not None and uid else None

    def show_hints_support(self, takes_hints: bool | None) -> None:
        """Say so when the backend's model takes no hints (its `info`); nothing while that is not known."""
        self.hints_note.setText("The backend's model takes no hints: colouring with a hint layer will be refused. "
                                "Serve a model trained with hints, or pick Hints: None.")
        self.hints_note.setVisible(takes_hints is False)

    def current_reference_source(self):
        """The Node, Document or file path the user picked (None when there is nothing to pick)."""
        kind = self.kind_combo.currentData()
        if kind == "layer":
            doc = Krita.instance().activeDocument()
            uid = self.ref_layer_combo.currentData()
            return find_node(doc, uid) if doc is not None and uid else None
        if kind == "document":
            i = self.ref_doc_combo.currentData()
            docs = getattr(self, "_documents", [])
            return docs[i] if i is not None and 0 <= i < len(docs) else None
        return self.ref_file_edit.text().strip() or None

    def update_thumbnail(self, *_args) -> None:
        source = self.current_reference_source()
        image = None
        try:
            if isinstance(source, str):
                image = QtGui.QImage(source) if os.path.isfile(source) else None
            elif source is not None:
                image = source.thumbnail(THUMB, THUMB)
        except Exception:  # a thumbnail is a nicety: never let it break the docker
            image = None
        if image is None or image.isNull():
            self.thumb.setPixmap(QtGui.QPixmap())
            self.thumb.setText("no\nreference")
            return
        pixmap = QtGui.QPixmap.fromImage(image).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                       Qt.TransformationMode.SmoothTransformation)
        self.thumb.setPixmap(pixmap)

    # ------------------------------------------------------------------------------------- messages
    def show_message(self, text: str) -> None:
        self.message.setStyleSheet("")
        self.message.setText(text)

    def show_error(self, text: str) -> None:
        self.message.setStyleSheet("color: #c0392b;")
        self.message.setText(text)
