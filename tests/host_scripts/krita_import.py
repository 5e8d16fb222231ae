"""Runs inside Krita (kritarunner) for tests/test_krita_plugin.py: Krita's own "Import Python Plugin from
File..." code unpacks the built zip (IRODORI_ZIP) into a resources folder (IRODORI_RESOURCES).

Emits the names of the plugins it imported.
"""
import os

from plugin_importer.plugin_importer import PluginImporter

from irodori_emit import emit


def main(args=None):
    importer = PluginImporter(os.environ["IRODORI_ZIP"], os.environ["IRODORI_RESOURCES"], lambda plugin: True)
    emit([p["name"] for p in importer.import_all()])
