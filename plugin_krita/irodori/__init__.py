"""Irodori for Krita: colour line art from a reference picture through an Irodori backend.

Installed as a Krita Python plugin (irodori.desktop + this package), it adds the "Irodori" docker. In
Scripter or kritarunner, `import irodori` gives the scripting API:

    irodori.colorize_layer(document, line_node, reference, endpoint=..., output="color", timeout=...,
                           hints=None) -> Node
    irodori.colorize_selected(reference, document=None, nodes=None, ..., hints=None) -> [Node]
    irodori.colorize_keyframes(document, line_node, reference, ..., hints=None) -> Node (animated, or a group)
    irodori.new_hint_layer(document, line_node) -> Node (an empty "Irodori hints" layer above the line art)
    irodori.colorize_from_keyframe(document, line_node, colour_node, time=None, ...) -> Coloured (every other
        keyframe coloured from the coloured frame at the playhead, into the colour layer's keyframes)
    irodori.colorize_pages_from_keyframe(document, line_node, colour_node, documents=None, ...) -> [Coloured]

The protocol package (irodori/protocol/) is a symbolic link to backend/protocol/ in the source tree; the
build (`irodori plugin krita --zip DIR` or `--install`) copies its files in. Outside Krita (unit tests) only
the pure modules (pixels, layers, settings, server_facts, errors, timeline, backend_process) are usable.
"""
try:
    import krita as _krita
except ImportError:  # not inside Krita
    _krita = None

__version__ = "0.1.0"

if _krita is not None:
    from .api import (BatchError, backend_info, colorize_keyframes, colorize_layer, colorize_selected,  # noqa: F401
                      new_hint_layer)
    from .inputs import Reference, resolve_reference  # noqa: F401
    from .keyframe_colouring import Coloured, colorize_from_keyframe, colorize_pages_from_keyframe  # noqa: F401
    from .errors import InputError  # noqa: F401
    from .protocol import BackendUnavailable, IrodoriError  # noqa: F401
    from . import docker as _docker

    _docker.register()
