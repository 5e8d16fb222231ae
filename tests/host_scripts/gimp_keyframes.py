"""Runs inside GIMP 3 (gimp-console, one session) for tests/test_gimp_keyframes.py: the batch procedure and
the one-layer procedure with a keyframe.

hostlib.run_gimp runs it in its run folder, which holds params.json (the endpoint), the frames frame_*.png
(moved to frames/: three frames, the keyframe's line art key.png and its flats key_flats.png) and
small_flats.png (a colouring of another size). Each step reports into R, emitted once at the end.
"""
import base64
import json
import os

from gi.repository import Gegl, Gimp, Gio

from irodori_emit import emit, run_step

RUN_DIR = os.getcwd()
FRAMES = RUN_DIR + "/frames"
with open("params.json") as f:
    ENDPOINT = json.load(f)["endpoint"]
pdb = Gimp.get_pdb()
R = {}


def layer_report(layer):
    w, h = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)
    return {"name": layer.get_name(), "size": [w, h], "visible": layer.get_visible(),
            "mode": layer.get_mode().value_nick, "pixels": base64.b64encode(bytes(data)).decode()}


def batch(out_dir, **props):
    """python-fu-irodori-colorize-files over frames/ into out_dir; the written files come back (xcf: layers)."""
    proc = pdb.lookup_procedure("python-fu-irodori-colorize-files")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("input-folder", Gio.File.new_for_path(FRAMES))
    config.set_property("output-folder", Gio.File.new_for_path(RUN_DIR + "/" + out_dir))
    config.set_property("endpoint", ENDPOINT)
    for name, value in props.items():
        value = Gio.File.new_for_path(value) if name.startswith("keyframe") else value
        config.set_property(name.replace("_", "-"), value)
    result = proc.run(config)
    status = result.index(0)
    out = {"status": status.value_nick, "outputs": {}, "folder_exists": os.path.isdir(RUN_DIR + "/" + out_dir)}
    if status == Gimp.PDBStatusType.SUCCESS:
        out["written"] = result.index(1)
    else:  # GIMP's own refusal of an argument (calling-error) comes back as the second value
        out["message"] = result.index(1) if status == Gimp.PDBStatusType.CALLING_ERROR else pdb.get_last_error()
    for name in sorted(os.listdir(RUN_DIR + "/" + out_dir)) if out["folder_exists"] else []:
        path = RUN_DIR + "/" + out_dir + "/" + name
        if name.endswith(".xcf"):
            image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
            out["outputs"][name] = [layer_report(layer) for layer in image.get_layers()]
        else:
            out["outputs"][name] = base64.b64encode(open(path, "rb").read()).decode()
    return out


def load(path):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        image.convert_rgb()
    return image


def one_layer(colouring):
    """python-fu-irodori-colorize on frame f1 opened as an image, the keyframe's line art and `colouring` as
    layers of two other open images, no reference; the image's layers come back."""
    image = load(FRAMES + "/f1.png")
    proc = pdb.lookup_procedure("python-fu-irodori-colorize")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_layers())
    config.set_property("endpoint", ENDPOINT)
    config.set_property("keyframe-lineart", load(FRAMES + "/key.png").get_layers()[0])
    config.set_property("keyframe-colour", load(colouring).get_layers()[0])
    result = proc.run(config)
    status = result.index(0)
    out = {"status": status.value_nick}
    if status != Gimp.PDBStatusType.SUCCESS:
        out["message"] = pdb.get_last_error()  # before any other PDB call replaces it
    out["layers"] = [layer_report(layer) for layer in image.get_layers()]
    return out


def step(name, fn):
    run_step(R, name, fn)


os.makedirs(FRAMES)
for name in os.listdir(RUN_DIR):
    if name.startswith("frame_"):
        os.rename(RUN_DIR + "/" + name, FRAMES + "/" + name[6:])
KEY = {"keyframe_lineart": FRAMES + "/key.png", "keyframe_colour": FRAMES + "/key_flats.png"}
step("xcf", lambda: batch("out_xcf", output="flats", file_type="xcf", **KEY))
step("png", lambda: batch("out_png", **KEY))  # the defaults: output color, png; no reference file
step("flattened", lambda: batch("out_flat", input_folder=None, input_files=[FRAMES + "/f1.png"], output="flattened",
                                file_type="xcf", **KEY))
step("sizes_differ", lambda: batch("out_sizes", keyframe_lineart=KEY["keyframe_lineart"],
                                   keyframe_colour=RUN_DIR + "/small_flats.png"))
step("missing", lambda: batch("out_missing", keyframe_lineart=FRAMES + "/nothing.png",
                              keyframe_colour=KEY["keyframe_colour"]))
step("half", lambda: batch("out_half", keyframe_lineart=KEY["keyframe_lineart"]))
step("one_layer", lambda: one_layer(KEY["keyframe_colour"]))
step("one_layer_sizes_differ", lambda: one_layer(RUN_DIR + "/small_flats.png"))
emit(R)
