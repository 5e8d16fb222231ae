"""Talking to the Irodori backend: the protocol package, the plug-in's errors, and the calls it makes.

A call runs on a worker thread while GIMP's main thread pulses the progress bar, and every failure comes
back as a PluginError whose message says what to do. The backend's size limits are read from its `info`
reply (server_limits), never restated here.
"""
from __future__ import annotations

import threading

from gi.repository import Gimp  # irodori.py has pinned the GI versions before importing this module

try:  # the folder irodori_protocol/ next to this file: the build copies backend/protocol/ there
    import irodori_protocol as protocol
    PROTOCOL_IMPORT_ERROR = ""
except ImportError as e:  # register anyway, so the user gets a message instead of a missing menu entry
    protocol = None
    PROTOCOL_IMPORT_ERROR = str(e)

DEFAULT_ENDPOINT = protocol.DEFAULT_ENDPOINT if protocol else ""  # without the protocol every run fails anyway


class PluginError(Exception):
    """A failure the user can act on; its message is shown by GIMP as the procedure's error."""


class BackendDown(PluginError):
    """No backend at the endpoint: a batch stops here instead of failing every file the same way."""


def require_protocol() -> None:
    if protocol is None:
        raise PluginError("this copy of the plug-in is incomplete (the irodori_protocol package is missing next "
                          f"to irodori.py: {PROTOCOL_IMPORT_ERROR}); reinstall it with `irodori plugin gimp "
                          "--install` or from the release zip")


def backend_args(config) -> tuple[str, str, float]:
    endpoint = (config.get_property("endpoint") or "").strip() or DEFAULT_ENDPOINT
    return endpoint, config.get_property("transport"), float(config.get_property("timeout"))


def _request(endpoint: str, transport: str, timeout: float, message: str, work):
    """work(client) on a worker thread while the main thread pulses GIMP's progress bar; its result."""
    require_protocol()
    outcome: dict = {}

    def run() -> None:
        try:
            with protocol.Client(endpoint, timeout=timeout, transport=transport) as client:
                outcome["result"] = work(client)
        except Exception as e:  # re-raised on the main thread below
            outcome["error"] = e

    worker = threading.Thread(target=run, name="irodori-request", daemon=True)
    worker.start()
    Gimp.progress_set_text(message)
    while worker.is_alive():
        Gimp.progress_pulse()
        worker.join(0.1)
    error = outcome.get("error")
    if isinstance(error, protocol.BackendUnavailable):
        raise BackendDown(f"{error.message}. If the backend runs elsewhere, set the plug-in's endpoint to "
                          "its address") from None
    if isinstance(error, protocol.IrodoriError) and error.code == "timeout":
        raise PluginError(f"the Irodori backend at {endpoint} did not answer within {timeout:g} s: raise the "
                          "timeout argument, or use a smaller image or a GPU backend") from None
    if isinstance(error, protocol.IrodoriError):
        raise PluginError(f"the Irodori backend refused the request ({error.code}): {error.message}") from None
    if isinstance(error, ValueError):  # the Client's own checks: endpoint or transport settings
        raise PluginError(f"bad backend settings: {error}") from None
    if error is not None:
        raise PluginError(f"talking to the Irodori backend at {endpoint} failed: {error!r}") from None
    return outcome["result"]


def server_limits(endpoint: str, transport: str, timeout: float) -> "protocol.Limits":
    """The backend's size limits from its `info` (the protocol's defaults if it does not report them)."""
    info = _request(endpoint, transport, timeout, "Irodori: asking the backend for its limits",
                    lambda client: client.info())
    limits = info.get("limits") if isinstance(info, dict) else None
    return protocol.Limits.from_info(limits) or protocol.DEFAULT_LIMITS


def call_backend(endpoint: str, transport: str, timeout: float, lineart, reference, output: str, message: str,
                 patient: bool = False, hints=None):
    """The backend's `output` for the line art and reference (and hints, RGBA of the line art's size, or
    None), as RGBA Pixels.

    patient=True (batches) waits for a busy server within `timeout`; otherwise `busy` is reported at once.
    """
    return call_outputs(endpoint, transport, timeout, lineart, reference, (output,), message, patient,
                        hints)[output]


def call_outputs(endpoint: str, transport: str, timeout: float, lineart, reference, outputs: tuple[str, ...],
                 message: str, patient: bool = False, hints=None, keyframe=None) -> dict:
    """call_backend for several outputs at once: {name: RGBA Pixels}. `keyframe` (optional): (its line art,
    its colouring) as Pixels of one size; the flats then come in the keyframe's colours (docs/keyframes.md)."""
    extra = {} if hints is None else {"hints": hints}
    if keyframe is not None:
        extra["keyframe"] = keyframe

    def work(client):
        colorize = client.colorize_patiently if patient else client.colorize
        return colorize(lineart, reference, outputs=outputs, output_layout="RGBA", **extra)

    result = _request(endpoint, transport, timeout, message, work)
    missing = [name for name in outputs if result.get(name) is None]
    if missing:
        raise PluginError(f"the backend returned no '{missing[0]}' output: update the backend and the plug-in to "
                          "the same Irodori version")
    return result
