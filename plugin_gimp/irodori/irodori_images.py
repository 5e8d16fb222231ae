"""GIMP's side of the pixels: reading layers, references and hints as 8-bit RGBA, checking the line art, and
placing the backend's answer in an image.

The size limits come from the backend (irodori_backend.server_limits), so a huge layer is refused before it
is read into memory, and a big reference is scaled down instead of refused.
"""
from __future__ import annotations

from gi.repository import Gegl, Gimp, Gio, GLib  # irodori.py has pinned the GI versions before this import

from irodori_backend import PluginError, protocol

BABL_RGBA = "R'G'B'A u8"  # 8-bit sRGB with alpha: GEGL converts from and to any layer precision
LAYER_NAMES = {"color": "Irodori colour", "flats": "Irodori flats", "flattened": "Irodori flattened"}
UNSURE_LAYER = "Irodori unsure"  # with a keyframe: the regions that found no good match in it


def read_rgba(drawable) -> "protocol.Pixels":
    """The drawable's own pixels (not the composite) as 8-bit sRGB RGBA."""
    w, h = drawable.get_width(), drawable.get_height()
    data = drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, BABL_RGBA, Gegl.AbyssPolicy.CLAMP)
    return protocol.Pixels(width=w, height=h, layout="RGBA", data=bytes(data))


def read_over(drawable, target) -> "protocol.Pixels":
    """The drawable's pixels over the area the `target` layer covers in the image, as 8-bit sRGB RGBA of the
    target's size: transparent where the drawable does not reach (a hint layer of any size or offset)."""
    _, tx, ty = target.get_offsets()
    _, dx, dy = drawable.get_offsets()
    w, h = target.get_width(), target.get_height()
    data = drawable.get_buffer().get(Gegl.Rectangle.new(tx - dx, ty - dy, w, h), 1.0, BABL_RGBA,
                                     Gegl.AbyssPolicy.NONE)
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


def is_transparent(pixels) -> bool:
    return not bytes(pixels.data)[3::4].strip(b"\x00")


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
    return layer


def check_lineart_size(layer, limits: "protocol.Limits", what: str = "the line-art layer") -> None:
    """Before the layer is read: the backend would refuse it, after a long transfer."""
    check_size(layer.get_width(), layer.get_height(), limits, what)


def check_size(w: int, h: int, limits: "protocol.Limits", what: str,
               fix: str = "scale it down (Layer > Scale Layer) or crop it") -> None:
    if w * h > limits.max_pixels or max(w, h) > limits.max_side:
        raise PluginError(f"{what} is {w}x{h}; the backend accepts at most {limits.max_pixels} pixels "
                          f"and {limits.max_side} pixels a side: {fix}")


def reference_from_drawable(drawable, max_pixels: int) -> "protocol.Pixels":
    """A layer of any open image; scaled down on a scratch copy when it is over the reference limit."""
    w, h = drawable.get_width(), drawable.get_height()
    if w * h <= max_pixels:
        return read_rgba(drawable)
    scratch = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    try:
        layer = Gimp.Layer.new_from_drawable(drawable, scratch)
        scratch.insert_layer(layer, None, 0)
        return reference_from_image(scratch, max_pixels, layer)
    finally:
        scratch.delete()


def reference_from_image(image, max_pixels: int, layer=None) -> "protocol.Pixels":
    """Composite of a (scratch) image, converted to RGB and scaled under the reference limit."""
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        image.convert_rgb()
    if layer is None:
        layer = image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    w, h = layer.get_width(), layer.get_height()
    if w * h > max_pixels:
        s = (max_pixels / (w * h)) ** 0.5
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


def reference_from_file(path: str, max_pixels: int) -> "protocol.Pixels":
    image = load_image(path)
    try:
        return reference_from_image(image, max_pixels)
    finally:
        image.delete()


def reference_source(config, lineart, default=None):
    """The reference the user chose: a file path or a layer, checked before anything is read or sent.

    The chosen source wins; if only the other one is set, that one is used (handy for scripts); if neither,
    `default` (a keyframe's colouring layer), when given.
    """
    source = config.get_property("reference-source")
    layer = config.get_property("reference-layer")
    gfile = config.get_property("reference-file")
    path = gfile.get_path() if gfile is not None else None
    if layer is None and path is None and default is not None:
        return default
    if source == "file" and path is None and layer is not None:
        source = "layer"
    if source == "layer" and layer is None and path is not None:
        source = "file"
    if source == "file":
        if path is None:
            raise PluginError("no reference picture: choose a reference file (or a reference layer) and run again")
        return path
    if layer is None:
        raise PluginError("no reference: choose a layer of an open image or a picture file as the reference")
    if layer.get_id() == lineart.get_id():
        raise PluginError("the reference is the line-art layer itself: choose a coloured picture as the reference")
    return layer


def hints_source(config, lineart):
    """The hints the user chose: a layer, a file path, or None (no hints). A layer wins over a file."""
    layer = config.get_property("hints-layer")
    gfile = config.get_property("hints-file")
    if layer is not None:
        if layer.get_id() == lineart.get_id():
            raise PluginError("the hint layer is the line-art layer itself: paint the hints on their own layer "
                              "(Layer > New Layer, transparent) and choose that one")
        return layer
    return gfile.get_path() if gfile is not None else None


def picture_pixels(path: str) -> "protocol.Pixels":
    """A picture file's composite (its visible layers over the whole canvas) as 8-bit sRGB RGBA."""
    image = load_image(path)
    try:
        if image.get_base_type() != Gimp.ImageBaseType.RGB:
            image.convert_rgb()
        return read_rgba(image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE))
    finally:
        image.delete()


def keyframe_source(config):
    """The keyframe layers the user chose (its line art, its flats or colour layer), checked, or None."""
    line, colour = config.get_property("keyframe-lineart"), config.get_property("keyframe-colour")
    if line is None and colour is None:
        return None
    if line is None or colour is None:
        raise PluginError("a keyframe is two layers: choose both its line-art layer and its colouring layer (flats "
                          "or colour), or neither")
    w, h = line.get_width(), line.get_height()
    if (colour.get_width(), colour.get_height()) != (w, h):
        raise PluginError(f"the keyframe line-art layer is {w}x{h} but its colouring layer is "
                          f"{colour.get_width()}x{colour.get_height()}: they must be the same size (the colouring "
                          "painted over that line art)")
    return line, colour


def hints_from_file(path: str, width: int, height: int):
    """A hint picture file of exactly the line art's size, as RGBA Pixels; None when it is fully transparent."""
    pixels = picture_pixels(path)
    if (pixels.width, pixels.height) != (width, height):
        raise PluginError(f"the hints file {path} is {pixels.width}x{pixels.height} but the line art "
                          f"is {width}x{height}: hints must be the line art's size (dots of colour on a "
                          "transparent picture)")
    return None if is_transparent(pixels) else pixels


def keyframe_from_files(line_path: str, colour_path: str, limits: "protocol.Limits") -> tuple:
    """The keyframe's line art and colouring (flats or a colour picture) as RGBA Pixels of one size. Checked
    here, before any frame is sent: the backend would refuse every frame for them."""
    line = picture_pixels(line_path)
    check_size(line.width, line.height, limits, f"the keyframe line art {line_path}",
               "scale it down (Image > Scale Image) with its colouring, or crop both alike")
    colour = picture_pixels(colour_path)
    if (colour.width, colour.height) != (line.width, line.height):
        raise PluginError(f"the keyframe line art {line_path} is {line.width}x{line.height} but its colouring "
                          f"{colour_path} is {colour.width}x{colour.height}: they must be the same size (the "
                          "colouring painted over that line art)")
    return line, colour


def read_hints(source, lineart):
    """RGBA Pixels of the line-art layer's size from a hints_source (a layer is read where it overlaps the
    line art in the image), or None when there are no hints: an empty hint layer asks for nothing. Hint
    layers and files are only read."""
    if source is None:
        return None
    if isinstance(source, str):
        return hints_from_file(source, lineart.get_width(), lineart.get_height())
    pixels = read_over(source, lineart)
    return None if is_transparent(pixels) else pixels


def read_reference(source, max_pixels: int) -> "protocol.Pixels":
    """The pixels of a reference_source, scaled to at most max_pixels (the backend's max_reference_pixels)."""
    if isinstance(source, str):
        return reference_from_file(source, max_pixels)
    return reference_from_drawable(source, max_pixels)


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


def add_keyframe_layers(image, lineart, flats, unsure, lineart_pixels, flatten: bool, keep_unsure: bool):
    """A frame coloured from a keyframe: its flats (in the keyframe's colours) under the line art. keep_unsure
    adds the unsure mask as a hidden layer above them (white on the regions to check by eye, transparent
    elsewhere); flatten merges the image into one layer instead. Returns the flats layer."""
    layer = add_layer_under(image, lineart, flats, LAYER_NAMES["flats"], lineart_pixels)
    if flatten:
        image.flatten().set_name(LAYER_NAMES["flattened"])
    elif keep_unsure:
        data = bytearray(unsure.data)  # the mask is white (unsure) or black: its red is the new alpha
        data[3::4] = data[0::4]
        mask = protocol.Pixels(width=unsure.width, height=unsure.height, layout="RGBA", data=bytes(data))
        add_layer_under(image, lineart, mask, UNSURE_LAYER, lineart_pixels).set_visible(False)
    return layer


def new_image_from(pixels, name: str):
    image = Gimp.Image.new(pixels.width, pixels.height, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, name, pixels.width, pixels.height, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    write_rgba(layer, pixels)
    return image, layer
