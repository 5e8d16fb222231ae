"""Imported by code that runs inside Krita or GIMP: emit(obj) prints one result line.

tests/hostlib.py puts this folder on Krita's PYTHONPATH and copies this file and host_markers.py into each
GIMP run folder; hostlib.parse_results reads the lines back.
"""
import json
import sys
import time
import traceback

from host_markers import MARKER


def emit(obj):
    sys.stdout.write(MARKER + json.dumps(obj) + "\n")
    sys.stdout.flush()


def run_step(results, name, fn):
    """results[name] = fn(), or {"crash": its traceback}: one failing step must not hide the others' results.
    Its seconds go to results["seconds"][name], for the tests' time budgets."""
    t0 = time.monotonic()
    try:
        results[name] = fn()
    except Exception:
        results[name] = {"crash": traceback.format_exc()}
    results.setdefault("seconds", {})[name] = round(time.monotonic() - t0, 2)
