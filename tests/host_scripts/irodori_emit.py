"""Imported by code that runs inside Krita or GIMP: emit(obj) prints one result line.

tests/hostlib.py puts this folder on Krita's PYTHONPATH and copies this file and host_markers.py into each
GIMP run folder; hostlib.parse_results reads the lines back.
"""
import json
import sys

from host_markers import MARKER


def emit(obj):
    sys.stdout.write(MARKER + json.dumps(obj) + "\n")
    sys.stdout.flush()
