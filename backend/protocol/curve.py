"""A client's CURVE keys, read from the certificate files `irodori keys` writes (no pyzmq needed to read them)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CurveKeys:
    """A client's CURVE keys (Z85 text, 40 characters each). Only the pyzmq transport can use them."""

    server_public: str
    public: str
    secret: str

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, client: str = "client") -> "CurveKeys":
        """Reads DIR/server.key and DIR/CLIENT.key_secret as written by `irodori keys DIR`."""
        server = _read_cert(os.path.join(os.fspath(directory), "server.key"))
        mine = _read_cert(os.path.join(os.fspath(directory), f"{client}.key_secret"))
        if "secret-key" not in mine:
            raise ValueError(f"{client}.key_secret in {directory} holds no secret-key")
        return cls(server["public-key"], mine["public-key"], mine["secret-key"])


def _read_cert(path: str) -> dict[str, str]:
    """The key lines of a ZeroMQ certificate file (ZPL text: `public-key = "..."`)."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ValueError(f"cannot read CURVE key file {path} ({exc.strerror}); make keys with `irodori keys DIR`")
    found = dict(re.findall(r'^\s*(public-key|secret-key)\s*=\s*"([^"]{40})"', text, re.M))
    if "public-key" not in found:
        raise ValueError(f"{path} is not a ZeroMQ CURVE certificate (no public-key)")
    return found
