"""The one rule for "is this endpoint on this machine?".

It decides whether a client may use shared memory, whether a server may bind without CURVE keys and
whether the Krita plugin may start a backend itself, so every one of those asks this function.
"""
from __future__ import annotations

import ipaddress
import re

_TCP = re.compile(r"tcp://(\[[^\]]+\]|[^:\[\]]+):(\d{1,5}|\*)\Z")


def is_local_endpoint(endpoint: str) -> bool:
    """True for endpoints only this machine can reach: ipc:// and inproc://, and tcp:// on a loopback address
    (127.0.0.0/8, [::1]) or `localhost`, with a port 1-65535 (or `*` for a bind). A wildcard (0.0.0.0, *),
    a LAN address or any other host name may be reachable from elsewhere: False."""
    if not isinstance(endpoint, str):
        return False
    if endpoint.startswith(("ipc://", "inproc://")):
        return bool(endpoint.partition("://")[2])
    m = _TCP.match(endpoint)
    if not m:
        return False
    host, port = m.group(1), m.group(2)
    if port != "*" and not 0 < int(port) < 65536:
        return False
    if host == "localhost":
        return True
    if host.startswith("["):
        host = host[1:-1]
    elif ":" in host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
