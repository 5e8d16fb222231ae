"""CURVE key pairs (`irodori keys DIR`, backend/tools/keys.py), and the rule that a bind other machines can
reach needs them.

The protocol carries unencrypted pictures and has no passwords, so a server bound to anything but loopback
would let anyone on the network use (and watch) it. CURVE (ZeroMQ's elliptic-curve encryption with client
keys checked against a folder) closes that; `--insecure` is the explicit way to accept the risk.

Layout made here (never overwritten without --force):
    DIR/server.key, DIR/server.key_secret        the server's pair (server.key is public: give it to clients)
    DIR/NAME.key, DIR/NAME.key_secret            one pair per client (default NAME: client)
    DIR/authorized_clients/NAME.key              the public keys the server accepts
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from backend.protocol import is_local_endpoint

AUTHORIZED = "authorized_clients"


def check_bind(endpoint: str, curve_dir: Path | None, insecure: bool, what: str = "irodori serve") -> None:
    """Refuse a non-loopback bind without CURVE keys or an explicit --insecure (ValueError says what to do)."""
    if is_local_endpoint(endpoint) or curve_dir is not None or insecure:
        return
    raise ValueError(
        f"{what}: refusing to bind {endpoint}: other machines could reach it, and without keys the traffic is "
        "unencrypted and anyone may use it. Make keys with `irodori keys DIR` and pass --curve-dir DIR, or pass "
        "--insecure if the network is trusted.")


def _create_pair(directory: Path, name: str, force: bool) -> tuple[Path, Path]:
    import zmq.auth

    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if (public.exists() or secret.exists()) and not force:
        return public, secret
    zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)
    return public, secret


def make_keys(directory: str | Path, clients: list[str] | None = None, force: bool = False) -> Path:
    """Create the server pair and client pairs (kept if present unless force), authorizing each client."""
    directory = Path(directory)
    (directory / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    _create_pair(directory, "server", force)
    for name in clients or ["client"]:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name) or name == "server":
            raise ValueError(f"client name {name!r}: use letters, digits, . _ - (and not 'server')")
        public, _ = _create_pair(directory, name, force)
        shutil.copyfile(public, directory / AUTHORIZED / public.name)
    return directory


def _load(path: Path) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise ValueError(f"missing CURVE key file {path}: make keys with `irodori keys {path.parent}`")
    return zmq.auth.load_certificate(str(path))


def start_authenticator(context, curve_dir: Path):
    """The ZAP handler that admits the client keys in curve_dir/authorized_clients (one per context).

    The caller stops it (`.stop()`) before closing the context.
    """
    from zmq.auth.thread import ThreadAuthenticator

    allowed = Path(curve_dir) / AUTHORIZED
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise ValueError(f"{allowed} holds no client keys: add some with `irodori keys {curve_dir} --client NAME`")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed))
    return auth


def secure_server_socket(socket, curve_dir: Path) -> None:
    """Make `socket` (before bind) a CURVE server with the key pair curve_dir/server.key_secret."""
    public, secret = _load(Path(curve_dir) / "server.key_secret")
    if secret is None:
        raise ValueError(f"{curve_dir}/server.key_secret holds no secret key")
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def secure_client_socket(socket, curve_dir: Path, name: str = "client") -> None:
    """Make `socket` a CURVE client of the server whose public key is curve_dir/server.key."""
    server_public, _ = _load(Path(curve_dir) / "server.key")
    public, secret = _load(Path(curve_dir) / f"{name}.key_secret")
    if secret is None:
        raise ValueError(f"{curve_dir}/{name}.key_secret holds no secret key")
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret
