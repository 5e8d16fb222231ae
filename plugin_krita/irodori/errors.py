"""Errors in plain words, each saying what to do. Pure (tested outside Krita)."""
from __future__ import annotations


class InputError(Exception):
    """Something about the document or the chosen layers stops the job before any network work."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_rgba8(what: str, model: str, depth: str) -> InputError:
    return InputError("not_rgba8", f"{what} is {model}/{depth}, but Irodori needs an 8-bit RGBA document. "
                                   "Convert it with Image > Convert Image Color Space... (RGB/Alpha, "
                                   "8-bit integer/channel), or work on an 8-bit RGBA copy.")


def empty_layer(name: str, frame: int | None = None) -> InputError:
    where = "" if frame is None else f" at frame {frame}"
    return InputError("empty_layer", f"The layer \"{name}\" is empty{where} (fully transparent). Pick the "
                                     "layer that holds the line art, or draw on this one first.")


# What to tell the user for each protocol error code (protocol.ERROR_CODES).
_ADVICE = {
    "unavailable": "No Irodori backend answers at {endpoint}. Start it with `irodori serve` "
                   "(or press \"Start backend\" after setting the Python environment), then try again.",
    "timeout": "The backend at {endpoint} did not answer within {timeout:.0f} s. It may be busy with a big "
               "image or on a slow CPU: raise the timeout, pick a lower quality, or check its log.",
    "busy": "The backend is busy with other requests. Try again in a moment.",
    "too_large": "The image is too large for the backend: {message}",
    "shutting_down": "The backend is shutting down. Start it again with `irodori serve`.",
    "unsupported_version": "The backend speaks another protocol version; update the plugin and the backend "
                           "to the same Irodori release. ({message})",
    "cancelled": "Cancelled.",
    "auth": "The backend refused the connection (CURVE keys): {message}",
}


def friendly(exc: BaseException, endpoint: str = "", timeout: float = 0.0) -> str:
    """One or two sentences for the docker; unknown errors keep their own message."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, InputError):
        return message
    template = _ADVICE.get(code or "")
    if template is None:
        return f"The backend reported an error ({code or type(exc).__name__}): {message}"
    return template.format(endpoint=endpoint or "the endpoint", timeout=timeout, message=message)


def describe_backend(info: dict) -> str:
    """One line about a backend from its `info` reply, e.g. "connected: model demo on cuda"."""
    model = info.get("model") if isinstance(info, dict) else None
    if not isinstance(model, dict):
        return "connected"
    name = str(model.get("model") or "model").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    text = f"connected: model {name} on {model.get('device', '?')}"
    return text + " (untrained: colours are not meaningful)" if model.get("untrained") else text
