"""The lines by which code inside Krita or GIMP reports back to tests/hostlib.py (hostlib imports them too).

Not named irodori_*: the test kit imports this module inside Krita, where tests count the irodori modules.
"""
MARKER = "IRODORI-RESULT "  # starts each result line: {json} follows
READY = "IRODORI-READY"  # the Krita test kit's line once its startup code has run
