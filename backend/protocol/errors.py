"""Stable error codes and the exceptions that carry them (the codes are the contract; messages are for people)."""
from __future__ import annotations

# The first group comes from servers, the second from the client itself.
ERROR_CODES = {
    "bad_request": "the message, its header or an image is malformed",
    "too_large": "an image or the message is over the server's limits (see `info`)",
    "unsupported_version": "the protocol version is not spoken by this server",
    "unknown_op": "the operation is not known to this server",
    "busy": "the server's queue is full; try again later",
    "shutting_down": "the server is stopping and takes no new work",
    "worker_lost": "the model process running the request died, and so did its retry (`serve --ray`)",
    "internal": "the server failed unexpectedly (see its log)",
    "shared_memory": "the server cannot use the request's shared memory (not on this machine, or turned off)",
    "unavailable": "no backend answers at the endpoint",
    "timeout": "no reply within the client's timeout",
    "cancelled": "the call was cancelled by the caller",
    "auth": "the security handshake failed (CURVE keys)",
    "protocol": "the peer sent something that is not this protocol",
}
UNAVAILABLE_CODES = ("unavailable", "shutting_down")


class IrodoriError(Exception):
    """An error with a stable `code` (see ERROR_CODES) and a human `message`."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class BackendUnavailable(IrodoriError):
    """No server (absent, crashed or stopping)."""


def make_error(code: str, message: str, request_id: str | None = None) -> IrodoriError:
    cls = BackendUnavailable if code in UNAVAILABLE_CODES else IrodoriError
    return cls(code, message, request_id)


def unavailable(endpoint: str, why: str) -> BackendUnavailable:
    """Nothing answers at `endpoint`: the message says how to start a backend."""
    return BackendUnavailable("unavailable", f"no Irodori backend at {endpoint}: start it with `irodori serve` "
                                             f"({why})")
