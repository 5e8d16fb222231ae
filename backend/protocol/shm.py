"""Pixels through shared memory (/dev/shm) between a client and a server on the same machine."""
from __future__ import annotations

import mmap
import os
import re
import stat
import sys
import weakref
from typing import Any

SHM_DIR = "/dev/shm"
# A bare name (a file in SHM_DIR, never a path): "irodori-" + creating PID + "-" + 32 random hex digits.
SHM_NAME_PATTERN = r"irodori-([0-9]{1,10})-[0-9a-f]{32}"
SHM_NAME_FORM = "irodori-PID-32 lowercase hex digits, a bare name (not a /dev/shm path)"  # for error messages
_SHM_NAME_RE = re.compile(SHM_NAME_PATTERN + r"\Z")


def valid_shm_name(name: Any) -> bool:
    """Only names this module makes (irodori-PID-random): a request cannot point the server at other files."""
    return isinstance(name, str) and _SHM_NAME_RE.match(name) is not None


def shm_available() -> bool:
    """Shared memory is a Linux tmpfs here (/dev/shm); elsewhere requests carry their pixels in frames."""
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR)


class SharedBuffer:
    """Pixels in a file under /dev/shm, mapped into memory by the client and the server.

    A local client writes its line art there once and the server reads it in place, and the server writes
    the outputs straight into the client's segment: no trip through the kernel's socket buffers (two copies
    of every byte each way; docs/performance.md has the cost). The client owns its segments (create(),
    reused from request to request, unlinked on close); the server only opens names that match
    valid_shm_name(), owned by its own user, regular files at least as large as the request says, and
    never follows links. Segments left by a killed client are removed by the next one (their PID is gone).
    """

    def __init__(self, name: str, size: int, writable: bool) -> None:
        if not valid_shm_name(name):
            raise ValueError(f"{name!r} is not an Irodori shared memory name")
        if size < 1:
            raise ValueError("a shared buffer holds at least one byte")
        self.name, self.size, self.path = name, size, os.path.join(SHM_DIR, name)
        fd = os.open(self.path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise ValueError(f"{self.path} is not a file of this user")
            if st.st_size < size:
                raise ValueError(f"{self.path} holds {st.st_size} bytes; {size} are needed")
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))
        finally:
            os.close(fd)
        self.view = memoryview(self._map)

    @classmethod
    def create(cls, size: int) -> "SharedBuffer":
        """A new segment of `size` bytes owned by this process (mode 0600)."""
        remove_stale_segments()
        name = f"irodori-{os.getpid()}-{os.urandom(16).hex()}"
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        buf = cls(name, size, writable=True)
        buf._finalizer = weakref.finalize(buf, _unlink_quietly, buf.path)  # also at interpreter exit
        return buf

    def unlink(self) -> None:
        """Remove the segment (the memory goes once every mapping is gone)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        else:
            _unlink_quietly(self.path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_stale_checked = False


def remove_stale_segments() -> None:
    """Once per process: unlink this user's Irodori segments whose creating process no longer runs."""
    global _stale_checked
    if _stale_checked:
        return
    _stale_checked = True
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return
    for name in names:
        m = _SHM_NAME_RE.match(name)
        if not m:
            continue
        try:
            if os.stat(os.path.join(SHM_DIR, name)).st_uid != os.geteuid():
                continue
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            _unlink_quietly(os.path.join(SHM_DIR, name))
        except OSError:  # alive but not ours to signal, or gone already
            pass

