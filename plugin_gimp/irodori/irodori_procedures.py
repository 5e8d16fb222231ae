"""What the two procedures do when GIMP runs them: colour the selected layer, or colour files in a batch.

irodori.py registers the procedures and hands GIMP these functions. Every failure ends as an
EXECUTION_ERROR whose message says what to do (error_values).
"""
from __future__ import annotations

import os
import traceback

from gi.repository import Gimp, GimpUi, Gio, GLib, GObject  # irodori.py has pinned the GI versions

from irodori_backend import (BackendDown, PluginError, backend_args, call_backend, call_outputs, protocol,
                             require_protocol, server_limits)
from irodori_images import (LAYER_NAMES, add_keyframe_layers, add_layer_under, check_lineart, check_lineart_size,
                            hints_from_file, hints_source, keyframe_from_files, keyframe_source, load_image,
                            new_image_from, read_hints, read_reference, read_rgba, reference_from_file,
                            reference_source)

MAX_BATCH_FILES = 10000
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".xcf", ".psd", ".ora")
FILE_TYPES = ("png", "jpg", "xcf")


# ---------------------------------------------------------------------------------------------------
# python-fu-irodori-colorize


def run_colorize(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(procedure.get_name())
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Irodori: Colorize from Reference")
        dialog.fill(["reference-source", "reference-layer", "reference-file", "output", "hints-layer", "hints-file",
                     "keyframe-lineart", "keyframe-colour", "endpoint", "timeout"])
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
        name = LAYER_NAMES[output]
        keyframe = keyframe_source(config)
        if keyframe and output == "flattened":
            raise PluginError("with a keyframe, choose the output 'Flat colours layer' (or 'Colour layer'): both "
                              "add the flats in the keyframe's colours under the line art")
        source = reference_source(config, lineart, keyframe[1] if keyframe else None)
        hints = hints_source(config, lineart)
        endpoint, transport, timeout = backend_args(config)
        limits = server_limits(endpoint, transport, timeout)
        check_lineart_size(lineart, limits)
        if keyframe:
            check_lineart_size(keyframe[0], limits, "the keyframe line-art layer")
        reference = read_reference(source, limits.max_reference_pixels)
        Gimp.progress_update(0.1)
        lineart_pixels = read_rgba(lineart)
        hint_pixels = read_hints(hints, lineart)
        message = f"Irodori: colouring {lineart.get_name()}"
        if keyframe:
            got = call_outputs(endpoint, transport, timeout, lineart_pixels, reference,
                               ("flats", protocol.UNSURE_OUTPUT), message, hints=hint_pixels,
                               keyframe=tuple(read_rgba(layer) for layer in keyframe))
            new_layer = add_keyframe_layers(image, lineart, got["flats"], got[protocol.UNSURE_OUTPUT],
                                            lineart_pixels, flatten=False, keep_unsure=True)
        else:
            pixels = call_backend(endpoint, transport, timeout, lineart_pixels, reference, output, message,
                                  hints=hint_pixels)
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


def hint_pictures(hints_dir: str | None) -> dict[str, list[str]]:
    """The picture files of the hints folder by name before the extension (listed once per batch)."""
    found: dict[str, list[str]] = {}
    for name in sorted(os.listdir(hints_dir)) if hints_dir else []:
        if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(hints_dir, name)):
            found.setdefault(os.path.splitext(name)[0], []).append(os.path.join(hints_dir, name))
    return found


def hints_file_for(src: str, pictures: dict[str, list[str]]) -> str | None:
    """The hint picture for input `src`: the one named like it before the extension (a.png for a.jpg), or
    None (that input is coloured without hints)."""
    found = pictures.get(os.path.splitext(os.path.basename(src))[0], [])
    if len(found) > 1:
        raise PluginError(f"{len(found)} hint pictures for {os.path.basename(src)} "
                          f"({', '.join(map(os.path.basename, found))}): keep one")
    if not found:
        return None
    path = found[0]
    if os.path.samefile(path, src):
        raise PluginError(f"{src} is in the hints folder: keep the hint pictures in a folder of their own")
    return path


def colorize_file(src: str, dst: str, reference, output: str, backend: tuple[str, str, float],
                  limits: "protocol.Limits", hints_path: str | None = None, keyframe: tuple | None = None):
    """One input file coloured and written to dst; `backend` is (endpoint, transport, timeout). With a
    `keyframe` (its line art and colouring, as Pixels) the file gets the keyframe-coloured flats whatever
    `output` says, flattened for "flattened", with the unsure mask as a hidden layer in an xcf."""
    image = load_image(src)
    try:
        if image.get_base_type() != Gimp.ImageBaseType.RGB:
            image.convert_rgb()  # a scratch copy: grey or indexed scans are the usual line art
        layers = image.get_layers()
        lineart = layers[0] if len(layers) == 1 else image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        if lineart.is_group():
            lineart = image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        check_lineart(image, [lineart])
        check_lineart_size(lineart, limits)
        name = LAYER_NAMES[output]
        lineart_pixels = read_rgba(lineart)
        hints = hints_from_file(hints_path, lineart.get_width(), lineart.get_height()) if hints_path else None
        message = f"Irodori: colouring {os.path.basename(src)}"
        if keyframe is not None:
            got = call_outputs(*backend, lineart_pixels, reference, ("flats", protocol.UNSURE_OUTPUT), message,
                               patient=True, hints=hints, keyframe=keyframe)
            add_keyframe_layers(image, lineart, got["flats"], got[protocol.UNSURE_OUTPUT], lineart_pixels,
                                flatten=output == "flattened", keep_unsure=dst.lower().endswith(".xcf"))
        else:
            pixels = call_backend(*backend, lineart_pixels, reference, output, message, patient=True, hints=hints)
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


def _hints_folder(config, inputs: list[str]) -> str | None:
    """The hints folder argument, checked: an existing folder that is not an input folder (there every line
    art would be its own hint picture)."""
    gfile = config.get_property("hints-folder")
    if gfile is None:
        return None
    path = os.path.abspath(gfile.get_path())
    if not os.path.isdir(path):
        raise PluginError(f"the hints folder {path} does not exist: choose the folder of hint pictures")
    if any(os.path.isdir(p) and os.path.samefile(p, path) for p in inputs):
        raise PluginError(f"the hints folder {path} is also an input folder: keep the hint pictures in a folder of "
                          "their own, named like the line-art files")
    return path


def _keyframe_paths(config) -> list[str] | None:
    """The keyframe arguments, checked: both files or neither, each an existing file."""
    files = [config.get_property(name) for name in ("keyframe-lineart", "keyframe-colour")]
    if files == [None, None]:
        return None
    if None in files:
        raise PluginError("a keyframe is two files: choose both its line art and its colouring (its flats or a "
                          "colour picture), or neither")
    paths = [os.path.abspath(f.get_path() or f.get_uri()) for f in files]
    for what, path in zip(("line art", "colouring"), paths):  # GIMP 3.0.4 refuses a missing file itself; not all do
        if not os.path.isfile(path):
            raise PluginError(f"the keyframe {what} {path} does not exist: choose an existing picture file")
    return paths


def run_colorize_files(procedure, config, data):
    run_mode = config.get_property("run-mode")
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(procedure.get_name())
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Irodori: Colorize Files")
        dialog.fill(["input-folder", "reference-file", "output-folder", "hints-folder", "keyframe-lineart",
                     "keyframe-colour", "output", "file-type", "endpoint", "timeout"])
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
        key_paths = _keyframe_paths(config)
        if key_paths:  # the keyframe's own files are not frames to colour
            files = [f for f in files if not any(os.path.samefile(f, k) for k in key_paths)]
        if not files:
            raise PluginError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(paths)}"
                              + (" besides the keyframe's" if key_paths else ""))
        ref_file = config.get_property("reference-file")
        if ref_file is None and not key_paths:
            raise PluginError("no reference: choose a reference picture file (or a keyframe)")
        out_folder = config.get_property("output-folder")
        if out_folder is None:
            raise PluginError("no output folder: choose where the coloured files go")
        out_dir = out_folder.get_path()
        hints = hint_pictures(_hints_folder(config, paths))
        backend = backend_args(config)
        limits = server_limits(*backend)
        # with a keyframe, the reference (the model's colours for the regions it cannot match) defaults to it
        ref_path = ref_file.get_path() if ref_file is not None else key_paths[1]
        reference = reference_from_file(ref_path, limits.max_reference_pixels)
        keyframe = keyframe_from_files(*key_paths, limits) if key_paths else None
        output = config.get_property("output")
        ext = config.get_property("file-type")
        os.makedirs(out_dir, exist_ok=True)  # only now: a batch refused above leaves nothing behind
        used: set[str] = set()
        for i, src in enumerate(files):
            Gimp.progress_update(i / len(files))
            dst = output_path(src, out_dir, ext, used)
            try:
                colorize_file(src, dst, reference, output, backend, limits, hints_file_for(src, hints), keyframe)
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
