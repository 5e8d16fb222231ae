"""Runs inside the full GIMP 3 app for tests/test_gimp_plugin.py: opens the plug-in's dialog.

The run blocks in the dialog until the test, having seen the dialog's window, kills GIMP.
"""
from gi.repository import Gimp

img = Gimp.Image.new(64, 48, Gimp.ImageBaseType.RGB)
lines = Gimp.Layer.new(img, "lines", 64, 48, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(lines, None, 0)
Gimp.Display.new(img)
proc = Gimp.get_pdb().lookup_procedure("python-fu-irodori-colorize")
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
config.set_property("image", img)
config.set_core_object_array("drawables", [lines])
proc.run(config)  # blocks in the dialog until the test kills GIMP
