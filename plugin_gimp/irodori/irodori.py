#!/usr/bin/env python3
"""Irodori for GIMP 3: colour the selected line-art layer from a reference picture.

The model runs in a separate process (`irodori serve`); this plug-in only moves pixels to it and back
through `irodori_protocol.py`, the same client module the Krita plugin ships. Keeping torch out of
GIMP's own Python matters because GIMP on Windows and macOS bundles a Python with no numpy, no torch and
often no pyzmq: the client falls back to its built-in ZMTP implementation there.

Procedures:
  python-fu-irodori-colorize        <Image>/Filters/Irodori/Colorize from Reference...
  python-fu-irodori-colorize-files  <Image>/Filters/Irodori/Colorize Files...  (batch, for gimp-console)
"""
from __future__ import annotations

import os
import sys
import threading
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GimpUi, Gio, GLib, GObject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:  # copied next to this file when the plug-in is built (`irodori plugin gimp --install` / `--zip`)
    import irodori_protocol as protocol
    PROTOCOL_IMPORT_ERROR = ""
except ImportError as e:  # register anyway, so the user gets a message instead of a missing menu entry
    protocol = None
    PROTOCOL_IMPORT_ERROR = str(e)

PROC_COLORIZE = "python-fu-irodori-colorize"
PROC_FILES = "python-fu-irodori-colorize-files"
MENU = "<Image>/Filters/Irodori"
DEFAULT_ENDPOINT = protocol.DEFAULT_ENDPOINT if protocol else "tcp://127.0.0.1:5717"
BABL_RGBA = "R'G'B'A u8"  # 8-bit sRGB with alpha: GEGL converts from and to any layer precision

# The backend refuses bigger inputs (backend.inference.pipeline.Limits); checking here first avoids reading a huge
# layer into memory only to be told no.
MAX_LINEART_PIXELS = 8192 * 8192
MAX_SIDE = 16384
MAX_REFERENCE_PIXELS = 4096 * 4096  # bigger references are scaled down: only their colours matter
MAX_BATCH_FILES = 10000
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".xcf", ".psd", ".ora")

# output choice -> (backend output name, layer name)
OUTPUTS = {
    "color": ("color", "Irodori colour"),
    "flats": ("flats", "Irodori flats"),
    "flattened": ("flattened", "Irodori flattened"),
}
FILE_TYPES = ("png", "jpg", "xcf")


class PluginError(Exception):
    """A failure the user can act on; its message is shown by GIMP as the procedure's error."""


class BackendDown(PluginError):
    """No backend at the endpoint: a batch stops here instead of failing every file the same way."""


# ---------------------------------------------------------------------------------------------------
# pixels


def read_rgba(drawable) -> "protocol.Pixels":
    """The drawable's own pixels (not the composite) as 8-bit sRGB RGBA."""
    w, h = drawable.get_width(), drawable.get_height()
    data = drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, BABL_RGBA, Gegl.AbyssPolicy.CLAMP)
    return protocol.Pixels(width=w, height=h, layout="RGBA", data=bytes(data))


def write_rgba(layer, pixels) -> None:
    if pixels.layout != "RGBA" or (pixels.width, pixels.height) != (layer.get_width(), layer.get_height()):
        raise PluginError(f"the backend answered with {pixels.layout} {pixels.width}x{pixels.height} pixels for "
                          f"a {layer.get_width()}x{layer.get_height()} layer: update the backend and the plug-in "
                          "to the same Irodori version")
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, pixels.width, pixels.height), BABL_RGBA, bytes(pixels.data))
    buf.flush()


def is_opaque(pixels) -> bool:
    alpha = bytes(pixels.data)[3::4]
    return alpha.count(255) == len(alpha)


def check_lineart(image, drawables) -> "Gimp.Layer":
    if len(drawables) != 1:
        raise PluginError(f"{len(drawables)} layers are selected: select exactly one line-art layer and run "
                          "Irodori again")
    layer = drawables[0]
    if not layer.is_layer():
        raise PluginError("the selected drawable is a channel or mask: select the line-art layer itself")
    if layer.is_group():
        raise PluginError("the selected layer is a layer group: select the line-art paint layer inside it, or "
                          "merge the group (Layer > Merge Layer Group) first")
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        mode = "grayscale" if image.get_base_type() == Gimp.ImageBaseType.GRAY else "indexed"
        raise PluginError(f"this image is {mode}; Irodori adds colour layers, which need an RGB image: "
                          "use Image > Mode > RGB, then run Irodori again")
    w, h = layer.get_width(), layer.get_height()
    if w * h > MAX_LINEART_PIXELS or max(w, h) > MAX_SIDE:
        raise PluginError(f"the line-art layer is {w}x{h}; Irodori accepts at most {MAX_LINEART_PIXELS} pixels "
                          f"and {MAX_SIDE} pixels a side: scale it down (Layer > Scale Layer) or crop it")
    return layer


def reference_from_drawable(drawable) -> "protocol.Pixels":
    """A layer of any open image; scaled down on a scratch copy when it is over the reference limit."""
    w, h = drawable.get_width(), drawable.get_height()
    if w * h <= MAX_REFERENCE_PIXELS:
        return read_rgba(drawable)
    scratch = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    try:
        layer = Gimp.Layer.new_from_drawable(drawable, scratch)
        scratch.insert_layer(layer, None, 0)
        return reference_from_image(scratch, layer)
    finally:
        scratch.delete()


def reference_from_image(image, layer=None) -> "protocol.Pixels":
    """Composite of a (scratch) image, converted to RGB and scaled under the reference limit."""
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        image.convert_rgb()
    if layer is None:
        layer = image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    w, h = layer.get_width(), layer.get_height()
    if w * h > MAX_REFERENCE_PIXELS:
        s = (MAX_REFERENCE_PIXELS / (w * h)) ** 0.5
        layer.scale(max(1, int(w * s)), max(1, int(h * s)), False)
    return read_rgba(layer)


def load_image(path: str):
    try:
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    except GLib.Error as e:
        raise PluginError(f"could not open {path}: {e.message}") from None
    if image is None:
        raise PluginError(f"could not open {path}: GIMP has no loader for it or the file is damaged")
    return image


def reference_from_file(path: str) -> "protocol.Pixels":
    image = load_image(path)
    try:
        return reference_from_image(image)
    finally:
        image.delete()


def reference_from_config(config, lineart) -> "protocol.Pixels":
    """The chosen source wins; if only the other one is set, that one is used (handy for scripts)."""
    source = config.get_property("reference-source")
    layer = config.get_property("reference-layer")
    gfile = config.get_property("reference-file")
    path = gfile.get_path() if gfile is not None else None
    if source == "file" and path is None and layer is not None:
        source = "layer"
    if source == "layer" and layer is None and path is not None:
        source = "file"
    if source == "file":
        if path is None:
            raise PluginError("no reference picture: choose a reference file (or a reference layer) and run again")
        return reference_from_file(path)
    if layer is None:
        raise PluginError("no reference: choose a layer of an open image or a picture file as the reference")
    if layer.get_id() == lineart.get_id():
        raise PluginError("the reference is the line-art layer itself: choose a coloured picture as the reference")
    return reference_from_drawable(layer)


# ---------------------------------------------------------------------------------------------------
# backend calls


def require_protocol() -> None:
    if protocol is None:
        raise PluginError("this copy of the plug-in is incomplete (irodori_protocol.py is missing next to "
                          f"irodori.py: {PROTOCOL_IMPORT_ERROR}); reinstall it with `irodori plugin gimp --install` "
                          "or from the release zip")


def call_backend(endpoint: str, transport: str, timeout: float, lineart, reference, output: str, message: str):
    """Runs the request on a worker thread while the main thread pulses GIMP's progress bar."""
    require_protocol()
    outcome: dict = {}

    def work() -> None:
        try:
            with protocol.Client(endpoint, timeout=timeout, transport=transport) as client:
                outcome["result"] = client.colorize(lineart, reference, outputs=(output,), output_layout="RGBA")
        except Exception as e:  # re-raised on the main thread below
            outcome["error"] = e

    worker = threading.Thread(target=work, name="irodori-request", daemon=True)
    worker.start()
    Gimp.progress_set_text(message)
    while worker.is_alive():
        Gimp.progress_pulse()
        worker.join(0.1)
    error = outcome.get("error")
    if isinstance(error, protocol.BackendUnavailable):
        raise BackendDown(f"{error.message}. If the backend runs elsewhere, set the plug-in's endpoint to "
                          "its address") from None
    if isinstance(error, protocol.IrodoriError) and error.code == "timeout":
        raise PluginError(f"the Irodori backend at {endpoint} did not answer within {timeout:g} s: raise the "
                          "timeout argument, or use a smaller image or a GPU backend") from None
    if isinstance(error, protocol.IrodoriError):
        raise PluginError(f"the Irodori backend refused the request ({error.code}): {error.message}") from None
    if isinstance(error, ValueError):  # the Client's own checks: endpoint or transport settings
        raise PluginError(f"bad backend settings: {error}") from None
    if error is not None:
        raise PluginError(f"talking to the Irodori backend at {endpoint} failed: {error!r}") from None
    pixels = outcome["result"].get(output)
    if pixels is None:
        raise PluginError(f"the backend returned no '{output}' output: update the backend and the plug-in to "
                          "the same Irodori version")
    return pixels


# ---------------------------------------------------------------------------------------------------
# the two ways a result lands in an image


def add_layer_under(image, lineart, pixels, name: str, lineart_pixels):
    """A new layer directly below the line art, same size and offsets; the line art's pixels stay as they are.

    An opaque line-art layer (black on white paper) would hide the colour under it, so its layer mode is
    set to Multiply in that case: the same look as the backend's "flattened" output, still editable.
    """
    layer = Gimp.Layer.new(image, name, pixels.width, pixels.height, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, lineart.get_parent(), image.get_item_position(lineart) + 1)
    _, x, y = lineart.get_offsets()
    layer.set_offsets(x, y)
    write_rgba(layer, pixels)
    if is_opaque(lineart_pixels):
        lineart.set_mode(Gimp.LayerMode.MULTIPLY)
    return layer


def new_image_from(pixels, name: str):
    image = Gimp.Image.new(pixels.width, pixels.height, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, name, pixels.width, pixels.height, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    write_rgba(layer, pixels)
    return image, layer


def backend_args(config) -> tuple[str, str, float]:
    endpoint = (config.get_property("endpoint") or "").strip() or DEFAULT_ENDPOINT
    return endpoint, config.get_property("transport"), float(config.get_property("timeout"))


# ---------------------------------------------------------------------------------------------------
# python-fu-irodori-colorize


def run_colorize(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(PROC_COLORIZE)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Irodori: Colorize from Reference")
        dialog.fill(["reference-source", "reference-layer", "reference-file", "output", "endpoint", "timeout"])
        for prop, source in (("reference-layer", "layer"), ("reference-file", "file")):
            values = Gimp.ValueArray.new_from_values([GObject.Value(GObject.TYPE_STRING, source)])
            dialog.set_sensitive_if_in(prop, None, "reference-source", values, True)
        ok = dialog.run()
        dialog.destroy()
        if not ok:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    new_layer = new_image = None
    Gimp.progress_init("Irodori: colouring")
    image.undo_group_start()
    try:
        require_protocol()
        lineart = check_lineart(image, drawables)
        output = config.get_property("output")
        backend_output, name = OUTPUTS[output]
        reference = reference_from_config(config, lineart)
        Gimp.progress_update(0.1)
        lineart_pixels = read_rgba(lineart)
        endpoint, transport, timeout = backend_args(config)
        pixels = call_backend(endpoint, transport, timeout, lineart_pixels, reference, backend_output,
                              f"Irodori: colouring {lineart.get_name()}")
        if output == "flattened":
            new_image, new_layer = new_image_from(pixels, name)
            if run_mode == Gimp.RunMode.INTERACTIVE:
                Gimp.Display.new(new_image)
        else:
            new_layer = add_layer_under(image, lineart, pixels, name, lineart_pixels)
        Gimp.progress_update(1.0)
    except Exception as e:
        return error_values(procedure, e)
    finally:
        image.undo_group_end()
        Gimp.progress_end()
        Gimp.displays_flush()

    result = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    set_return(result, 1, Gimp.Layer, new_layer)
    set_return(result, 2, Gimp.Image, new_image)
    return result


def error_values(procedure, error: Exception):
    """EXECUTION_ERROR with a message GIMP shows to the user (or returns to the calling script)."""
    if isinstance(error, PluginError):
        message = str(error)
    elif isinstance(error, OSError):
        message = f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
    else:  # a bug: keep the traceback for the report, show the gist
        traceback.print_exc()
        message = f"unexpected error {error!r}; please report it with the text GIMP printed on its console"
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(f"Irodori: {message}"))


def set_return(values, index: int, gtype, value) -> None:
    values.remove(index)
    values.insert(index, GObject.Value(gtype, value))


# ---------------------------------------------------------------------------------------------------
# python-fu-irodori-colorize-files


def collect_inputs(paths: list[str]) -> list[str]:
    """Files as given, folders expanded to their image files (sorted, not recursive)."""
    files: list[str] = []
    for path in paths:
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
            files.extend(os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n)))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise PluginError(f"input {path} does not exist: give existing files or folders")
        if len(files) > MAX_BATCH_FILES:
            raise PluginError(f"more than {MAX_BATCH_FILES} input files: split the batch")
    return files


def output_path(src: str, out_dir: str, ext: str, used: set[str]) -> str:
    """out_dir/<name>.<ext>, never the input itself nor a file written earlier in this batch."""
    stem = os.path.splitext(os.path.basename(src))[0]
    candidate = os.path.join(out_dir, f"{stem}.{ext}")
    n = 1
    while candidate in used or os.path.abspath(candidate) == os.path.abspath(src):
        n += 1
        candidate = os.path.join(out_dir, f"{stem}-irodori{'' if n == 2 else n - 1}.{ext}")
    used.add(candidate)
    return candidate


def colorize_file(src: str, dst: str, reference, output: str, endpoint: str, transport: str, timeout: float):
    image = load_image(src)
    try:
        if image.get_base_type() != Gimp.ImageBaseType.RGB:
            image.convert_rgb()  # a scratch copy: grey or indexed scans are the usual line art
        layers = image.get_layers()
        lineart = layers[0] if len(layers) == 1 else image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        if lineart.is_group():
            lineart = image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        check_lineart(image, [lineart])
        backend_output, name = OUTPUTS[output]
        lineart_pixels = read_rgba(lineart)
        pixels = call_backend(endpoint, transport, timeout, lineart_pixels, reference, backend_output,
                              f"Irodori: colouring {os.path.basename(src)}")
        if output == "flattened":
            result, _ = new_image_from(pixels, name)
            image.delete()
            image = result
        else:
            add_layer_under(image, lineart, pixels, name, lineart_pixels)
        try:
            ok = Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(dst), None)
        except GLib.Error as e:
            raise PluginError(f"could not write {dst}: {e.message}") from None
        if not ok:
            raise PluginError(f"could not write {dst}: check that the output folder is writable")
    finally:
        image.delete()


def run_colorize_files(procedure, config, data):
    run_mode = config.get_property("run-mode")
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(PROC_FILES)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Irodori: Colorize Files")
        dialog.fill(["input-folder", "reference-file", "output-folder", "output", "file-type", "endpoint",
                     "timeout"])
        ok = dialog.run()
        dialog.destroy()
        if not ok:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    written = 0
    failures: list[str] = []
    Gimp.progress_init("Irodori: colouring files")
    try:
        require_protocol()
        paths = list(config.get_property("input-files") or [])
        folder = config.get_property("input-folder")
        if folder is not None:
            paths.append(folder.get_path())
        if not paths:
            raise PluginError("no input: give input files or an input folder")
        files = collect_inputs(paths)
        if not files:
            raise PluginError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(paths)}")
        ref_file = config.get_property("reference-file")
        if ref_file is None:
            raise PluginError("no reference: choose a reference picture file")
        out_folder = config.get_property("output-folder")
        if out_folder is None:
            raise PluginError("no output folder: choose where the coloured files go")
        out_dir = out_folder.get_path()
        os.makedirs(out_dir, exist_ok=True)
        reference = reference_from_file(ref_file.get_path())
        output = config.get_property("output")
        ext = config.get_property("file-type")
        endpoint, transport, timeout = backend_args(config)
        used: set[str] = set()
        for i, src in enumerate(files):
            Gimp.progress_update(i / len(files))
            dst = output_path(src, out_dir, ext, used)
            try:
                colorize_file(src, dst, reference, output, endpoint, transport, timeout)
                written += 1
            except BackendDown:
                raise
            except (PluginError, OSError, GLib.Error) as e:  # this file is bad; the next may be fine
                failures.append(f"{os.path.basename(src)}: {e}")
        Gimp.progress_update(1.0)
        if failures:
            shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
            raise PluginError(f"{len(failures)} of {len(files)} files failed ({written} written): {shown}")
    except Exception as e:
        return error_values(procedure, e)
    finally:
        Gimp.progress_end()

    result = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    set_return(result, 1, GObject.TYPE_INT, written)
    return result


# ---------------------------------------------------------------------------------------------------
# registration


def output_choice(default_help: str) -> "Gimp.Choice":
    choice = Gimp.Choice.new()
    choice.add("color", 0, "Colour layer under the line art", default_help)
    choice.add("flats", 1, "Flat colours layer under the line art", "flat regions, easy to select and repaint")
    choice.add("flattened", 2, "Flattened copy", "colour multiplied by the line art, as a new image")
    return choice


def add_backend_arguments(procedure) -> None:
    rw = GObject.ParamFlags.READWRITE
    procedure.add_string_argument("endpoint", "Backend _endpoint",
                                  "ZeroMQ endpoint of `irodori serve`", DEFAULT_ENDPOINT, rw)
    transport = Gimp.Choice.new()
    transport.add("auto", 0, "Automatic", "pyzmq when GIMP's Python has it, else the built-in client")
    transport.add("pyzmq", 1, "pyzmq", "the pyzmq library")
    transport.add("zmtp", 2, "Built-in", "the plug-in's own ZMTP client (no dependencies)")
    procedure.add_choice_argument("transport", "Tr_ansport", "How to talk to the backend", transport, "auto", rw)
    procedure.add_double_argument("timeout", "_Timeout (seconds)", "Seconds to wait for the backend",
                                  1.0, 3600.0, 120.0, rw)


class IrodoriPlugIn(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False  # English only; without this GIMP logs a missing-catalog warning on every run

    def do_query_procedures(self):
        return [PROC_COLORIZE, PROC_FILES]

    def do_create_procedure(self, name):
        rw = GObject.ParamFlags.READWRITE
        if name == PROC_COLORIZE:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_colorize, None)
            procedure.set_image_types("*")  # checked in run_colorize, to say what to do instead of greying out
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
            procedure.set_menu_label("_Colorize from Reference...")
            procedure.add_menu_path(MENU)
            procedure.set_documentation(
                "Colour the selected line-art layer from a reference picture",
                "Sends the selected layer (the line art) and a reference picture to the Irodori backend "
                "(`irodori serve`) and adds the result as a layer directly under the line art, or as a new "
                "flattened image.",
                name)
            source = Gimp.Choice.new()
            source.add("layer", 0, "A layer of an open image", "")
            source.add("file", 1, "A picture file", "")
            procedure.add_choice_argument("reference-source", "Re_ference from", "Where the reference comes from",
                                          source, "layer", rw)
            procedure.add_drawable_argument("reference-layer", "Reference la_yer",
                                            "A layer of any open image to take colours from", True, rw)
            procedure.add_file_argument("reference-file", "Reference f_ile", "A picture file to take colours from",
                                        Gimp.FileChooserAction.OPEN, True, None, rw)
            procedure.add_choice_argument("output", "O_utput", "What to add",
                                          output_choice("the default: paint under it freely"), "color", rw)
            add_backend_arguments(procedure)
            procedure.add_layer_return_value("layer", "Layer", "The new layer (in the new image for 'flattened')",
                                             True, rw)
            procedure.add_image_return_value("new-image", "New image", "The new image for 'flattened', else none",
                                             True, rw)
        elif name == PROC_FILES:
            procedure = Gimp.Procedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_colorize_files, None)
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
            procedure.set_menu_label("Colorize _Files...")
            procedure.add_menu_path(MENU)
            procedure.set_documentation(
                "Colour many line-art files from one reference picture",
                "Each input file (or each picture in an input folder) is coloured by the Irodori backend and "
                "written to the output folder under the same name. Meant for gimp-console batch runs.",
                name)
            procedure.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode,
                                        Gimp.RunMode.NONINTERACTIVE, rw)
            procedure.add_string_array_argument("input-files", "Input files",
                                                "Paths of line-art files or folders", rw)
            procedure.add_file_argument("input-folder", "_Input folder", "A folder of line-art pictures",
                                        Gimp.FileChooserAction.SELECT_FOLDER, True, None, rw)
            procedure.add_file_argument("reference-file", "Re_ference file", "The picture to take colours from",
                                        Gimp.FileChooserAction.OPEN, True, None, rw)
            procedure.add_file_argument("output-folder", "Output fol_der", "Where coloured files are written",
                                        Gimp.FileChooserAction.CREATE_FOLDER, True, None, rw)
            procedure.add_choice_argument("output", "O_utput", "What each output file holds",
                                          output_choice("line art over its colour layer (layers kept in xcf)"),
                                          "color", rw)
            file_type = Gimp.Choice.new()
            for i, ext in enumerate(FILE_TYPES):
                file_type.add(ext, i, ext.upper(), "")
            procedure.add_choice_argument("file-type", "File t_ype", "Format of the written files", file_type,
                                          "png", rw)
            add_backend_arguments(procedure)
            procedure.add_int_return_value("written", "Written", "Number of files written", 0, MAX_BATCH_FILES, 0,
                                           rw)
        else:
            return None
        procedure.set_attribution("Irodori", "Irodori (MIT)", "2026")
        return procedure


if __name__ == "__main__":
    Gimp.main(IrodoriPlugIn.__gtype__, sys.argv)
