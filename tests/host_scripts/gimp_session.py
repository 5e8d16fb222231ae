"""Runs inside GIMP 3 (gimp-console, one session) for tests/test_gimp_plugin.py: every GIMP-side step.

hostlib.run_gimp runs it in its run folder, which holds the test's files: params.json (the endpoints and
sizes), lineart.rgba, box.rgba (line art with a closed box), hints.png (a dot in the box, the line art's
size), box.png (the same box as a batch input), reference.png, broken.png, the batch inputs in_*.png and
hint pictures hint_*.png (moved to hints/). Each step reports into R; R is emitted once at the end and
the test asserts on its parts.
"""
import base64
import json
import os

from gi.repository import Gegl, Gimp, Gio

from irodori_emit import emit, run_step

RUN_DIR = os.getcwd()  # hostlib runs every GIMP script in its run folder
with open("params.json") as f:
    PARAMS = json.load(f)
ENDPOINT, DEAD = PARAMS["endpoint"], PARAMS["dead"]  # a live backend, and a port where nothing listens
HINT_ENDPOINT = PARAMS["hint_endpoint"]  # a backend whose model takes hints (ENDPOINT's does not)
W, H, OX, OY = PARAMS["w"], PARAMS["h"], PARAMS["ox"], PARAMS["oy"]  # the line-art layer and its offset
FMT = "R'G'B'A u8"
pdb = Gimp.get_pdb()
R = {}


def pixels(drawable):
    w, h = drawable.get_width(), drawable.get_height()
    data = drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, FMT, Gegl.AbyssPolicy.CLAMP)
    return base64.b64encode(bytes(data)).decode()


def layer_info(image):
    out = []
    for layer in image.get_layers():
        _, x, y = layer.get_offsets()
        out.append({"name": layer.get_name(), "size": [layer.get_width(), layer.get_height()], "offset": [x, y],
                    "mode": layer.get_mode().value_nick})
    return out


def scene(lineart="lineart.rgba"):
    """Line art (RGBA, transparent) at OFFSET in an 80x60 image, a note layer above it, a base below it;
    the reference is a layer of ANOTHER open image."""
    img = Gimp.Image.new(80, 60, Gimp.ImageBaseType.RGB)
    base = Gimp.Layer.new(img, "paper", 80, 60, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(base, None, 0)
    lines = Gimp.Layer.new(img, "lines", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(lines, None, 0)
    lines.set_offsets(OX, OY)
    buf = lines.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, W, H), FMT, open(lineart, "rb").read())
    buf.flush()
    note = Gimp.Layer.new(img, "notes", 10, 10, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(note, None, 0)
    ref_img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(RUN_DIR + "/reference.png"))
    return img, lines, ref_img.get_layers()[0]


def colorize(img, lines, **props):
    proc = pdb.lookup_procedure("python-fu-irodori-colorize")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", img)
    config.set_core_object_array("drawables", [lines])
    for name, value in props.items():
        config.set_property(name.replace("_", "-"), value)
    result = proc.run(config)
    status = result.index(0)
    out = {"status": status.value_nick}
    if status != Gimp.PDBStatusType.SUCCESS:
        out["message"] = pdb.get_last_error()
    return out, result


def step(name, fn):
    run_step(R, name, fn)


def registered():
    found = {}
    for name in ("python-fu-irodori-colorize", "python-fu-irodori-colorize-files"):
        proc = pdb.lookup_procedure(name)
        found[name] = None if proc is None else {"args": [a.name for a in proc.get_arguments()],
                                                 "menu": list(proc.get_menu_paths())}
    return found


def colour_layer(transport, source):
    img, lines, ref = scene()
    before = pixels(lines)
    props = {"endpoint": ENDPOINT, "transport": transport, "reference_source": source}
    if source == "layer":
        props["reference_layer"] = ref
    else:
        props["reference_file"] = Gio.File.new_for_path(RUN_DIR + "/reference.png")
    out, result = colorize(img, lines, **props)
    out["layers"] = layer_info(img)
    out["lineart_unchanged"] = pixels(lines) == before
    new = [layer for layer in img.get_layers() if layer.get_name() == "Irodori colour"]
    if new:
        out["colour"] = pixels(new[0])
        out["returned_layer_is_new"] = result.index(1) is not None and result.index(1).get_id() == new[0].get_id()
    return out


def flattened():
    img, lines, ref = scene()
    out, result = colorize(img, lines, endpoint=ENDPOINT, reference_layer=ref, output="flattened")
    out["layers"] = layer_info(img)
    new_image = result.index(2)
    if new_image is not None:
        out["new_image"] = {"size": [new_image.get_width(), new_image.get_height()],
                            "pixels": pixels(new_image.get_layers()[0])}
    return out


def no_backend(transport):
    img, lines, ref = scene()
    out, _ = colorize(img, lines, endpoint=DEAD, transport=transport, reference_layer=ref, timeout=5.0)
    out["layers"] = layer_info(img)
    return out


def big_reference():
    """Over the 4096*4096 reference limit: the plug-in scales a copy down instead of failing."""
    img, lines, _ = scene()
    big = Gimp.Image.new(4200, 4000, Gimp.ImageBaseType.RGB)
    ref = Gimp.Layer.new(big, "big", 4200, 4000, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    big.insert_layer(ref, None, 0)
    ref.fill(Gimp.FillType.WHITE)
    out, _ = colorize(img, lines, endpoint=ENDPOINT, reference_layer=ref)
    out["layers"] = layer_info(img)
    out["reference_size"] = [ref.get_width(), ref.get_height()]
    return out


def no_reference():
    img, lines, _ = scene()
    out, _ = colorize(img, lines, endpoint=ENDPOINT)
    out["layers"] = layer_info(img)
    return out


def grey_image():
    img, lines, ref = scene()
    img.convert_grayscale()
    out, _ = colorize(img, lines, endpoint=ENDPOINT, reference_layer=ref)
    out["layers"] = layer_info(img)
    return out


def batch(out_dir, **props):
    proc = pdb.lookup_procedure("python-fu-irodori-colorize-files")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("reference-file", Gio.File.new_for_path(RUN_DIR + "/reference.png"))
    config.set_property("output-folder", Gio.File.new_for_path(RUN_DIR + "/" + out_dir))
    config.set_property("endpoint", ENDPOINT)
    for name, value in props.items():
        config.set_property(name.replace("_", "-"), value)
    result = proc.run(config)
    status = result.index(0)
    out = {"status": status.value_nick, "outputs": {}}
    if status == Gimp.PDBStatusType.SUCCESS:
        out["written"] = result.index(1)
    else:
        out["message"] = pdb.get_last_error()
    names = os.listdir(RUN_DIR + "/" + out_dir) if os.path.isdir(RUN_DIR + "/" + out_dir) else []
    for name in sorted(names):
        path = RUN_DIR + "/" + out_dir + "/" + name
        if name.endswith(".xcf"):
            image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
            out["outputs"][name] = layer_info(image)
        else:
            out["outputs"][name] = base64.b64encode(open(path, "rb").read()).decode()
    return out


def hinted(source, endpoint=HINT_ENDPOINT, hints_png="hints.png"):
    """The box line art coloured with hints from a layer (the image's size, at offset 0: the plug-in reads
    it where it lies over the line art) or from hints.png; the line-art and hint layers must not change."""
    img, lines, ref = scene("box.rgba")
    props = {"endpoint": endpoint, "reference_layer": ref}
    hint_layer = None
    if source == "layer":
        hint_layer = Gimp.Layer.new(img, "hints", 80, 60, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        img.insert_layer(hint_layer, None, 0)
        x, y, w, h, *rgb = PARAMS["dot"]
        buf = hint_layer.get_buffer()
        buf.set(Gegl.Rectangle.new(OX + x, OY + y, w, h), FMT, bytes([*rgb, 255]) * (w * h))
        buf.flush()
        props["hints_layer"] = hint_layer
    else:
        props["hints_file"] = Gio.File.new_for_path(RUN_DIR + "/" + hints_png)
    before = [pixels(lines), pixels(hint_layer) if hint_layer else None]
    out, _ = colorize(img, lines, **props)
    out["layers"] = layer_info(img)
    out["unchanged"] = [pixels(lines), pixels(hint_layer) if hint_layer else None] == before
    new = [layer for layer in img.get_layers() if layer.get_name() == "Irodori colour"]
    if new:
        out["colour"] = pixels(new[0])
    return out


os.makedirs(RUN_DIR + "/in", exist_ok=True)
os.makedirs(RUN_DIR + "/hints", exist_ok=True)
for name in os.listdir(RUN_DIR):
    if name.startswith("in_"):
        os.rename(RUN_DIR + "/" + name, RUN_DIR + "/in/" + name[3:])
    if name.startswith("hint_"):
        os.rename(RUN_DIR + "/" + name, RUN_DIR + "/hints/" + name[5:])
step("registered", registered)
step("pyzmq", lambda: colour_layer("pyzmq", "layer"))
step("zmtp", lambda: colour_layer("zmtp", "file"))
step("flattened", flattened)
step("dead_pyzmq", lambda: no_backend("pyzmq"))
step("dead_zmtp", lambda: no_backend("zmtp"))
step("grey", grey_image)
step("big_reference", big_reference)
step("no_reference", no_reference)
step("batch", lambda: batch("out", input_folder=Gio.File.new_for_path(RUN_DIR + "/in")))
step("batch_xcf", lambda: batch("out_xcf", input_files=[RUN_DIR + "/in/a.png", RUN_DIR + "/broken.png"],
                                output="flats", file_type="xcf"))
step("hints_layer", lambda: hinted("layer"))
step("hints_file", lambda: hinted("file"))
step("hints_refused", lambda: hinted("layer", ENDPOINT))
step("hints_wrong_size", lambda: hinted("file", hints_png="reference.png"))
step("batch_hints", lambda: batch("out_hints", input_files=[RUN_DIR + "/box.png", RUN_DIR + "/in/b.png"],
                                  hints_folder=Gio.File.new_for_path(RUN_DIR + "/hints"), endpoint=HINT_ENDPOINT))
emit(R)
