#!/usr/bin/env python3
"""Irodori for GIMP 3: colour the selected line-art layer from a reference picture.

The model runs in a separate process (`irodori serve`); this plug-in only moves pixels to it and back
through the irodori_protocol package, the same protocol package the Krita plugin ships. Keeping torch out
of GIMP's own Python matters because GIMP on Windows and macOS bundles a Python with no numpy, no torch and
often no pyzmq: the client falls back to its built-in ZMTP implementation there.

GIMP runs this file; it registers the procedures. The work is in the modules next to it, importable as
top-level modules because GIMP runs this file from its folder: irodori_procedures (what each procedure
does), irodori_images (pixels in and out of GIMP), irodori_backend (the calls to the backend).

Procedures:
  python-fu-irodori-colorize        <Image>/Filters/Irodori/Colorize from Reference...
  python-fu-irodori-colorize-files  <Image>/Filters/Irodori/Colorize Files...  (batch, for gimp-console)
"""
from __future__ import annotations

import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, GObject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from irodori_backend import DEFAULT_ENDPOINT  # noqa: E402
from irodori_procedures import FILE_TYPES, MAX_BATCH_FILES, run_colorize, run_colorize_files  # noqa: E402

PROC_COLORIZE = "python-fu-irodori-colorize"
PROC_FILES = "python-fu-irodori-colorize-files"
MENU = "<Image>/Filters/Irodori"


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
                "flattened image. With a keyframe (its line-art and colouring layers), the flats come region by "
                "region in the keyframe's colours.",
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
            # hints and keyframe come last, so that scripts passing the earlier arguments by position keep working
            procedure.add_drawable_argument("hints-layer", "_Hint layer (optional)",
                                            "A layer with dots of colour over the line art: each area holding a dot "
                                            "takes exactly that colour", True, rw)
            procedure.add_file_argument("hints-file", "Hints file (o_ptional)",
                                        "A picture of the line art's size, transparent but for dots of colour",
                                        Gimp.FileChooserAction.OPEN, True, None, rw)
            procedure.add_drawable_argument("keyframe-lineart", "_Keyframe line art (optional)",
                                            "The line-art layer of a coloured frame of the same character: with its "
                                            "colouring, the flats come in the keyframe's colours", True, rw)
            procedure.add_drawable_argument("keyframe-colour", "Keyframe colou_ring (optional)",
                                            "The keyframe's flats or colour layer, the size of its line art (also "
                                            "the reference when none is chosen)", True, rw)
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
                "written to the output folder under the same name. Meant for gimp-console batch runs. With a "
                "keyframe (its line art and colouring files), each file gets flats in the keyframe's colours.",
                name)
            procedure.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode,
                                        Gimp.RunMode.NONINTERACTIVE, rw)
            procedure.add_string_array_argument("input-files", "Input files",
                                                "Paths of line-art files or folders", rw)
            procedure.add_file_argument("input-folder", "_Input folder", "A folder of line-art pictures",
                                        Gimp.FileChooserAction.SELECT_FOLDER, True, None, rw)
            procedure.add_file_argument("reference-file", "Re_ference file",
                                        "The picture to take colours from (with a keyframe: optional, its colouring)",
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
            procedure.add_file_argument("hints-folder", "_Hints folder (optional)",
                                        "Hint pictures named like the inputs (a.png for a.png or a.jpg): dots of "
                                        "colour on transparency", Gimp.FileChooserAction.SELECT_FOLDER, True, None,
                                        rw)
            # a keyframe colours each file region by region in its colours (docs/keyframes.md)
            procedure.add_file_argument("keyframe-lineart", "_Keyframe line art (optional)",
                                        "The line art of a coloured frame; with its colouring, every file gets flats "
                                        "in the keyframe's colours (this file is skipped in the input folder)",
                                        Gimp.FileChooserAction.OPEN, True, None, rw)
            procedure.add_file_argument("keyframe-colour", "Keyframe colou_ring (optional)",
                                        "The keyframe's flats or colour picture, the size of its line art",
                                        Gimp.FileChooserAction.OPEN, True, None, rw)
            procedure.add_int_return_value("written", "Written", "Number of files written", 0, MAX_BATCH_FILES, 0,
                                           rw)
        else:
            return None
        procedure.set_attribution("Irodori", "Irodori (MIT)", "2026")
        return procedure


if __name__ == "__main__":
    Gimp.main(IrodoriPlugIn.__gtype__, sys.argv)
