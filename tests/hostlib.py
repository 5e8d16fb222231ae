"""Run code inside the REAL host programs (Krita 5.1.5, GIMP 3.0.4) from tests.

Why: the plugins only matter inside the real hosts, so their tests drive the real programs headless.
Installation is done by tests/hosts/krita.sh and tests/hosts/gimp.sh; facts in tests/hosts/README.md.

Results come back as marker lines: code inside a host prints `IRODORI-RESULT {json}` (use `emit(obj)`
from host_scripts/irodori_emit.py), and the helpers here parse them. Every run has a timeout that kills the
whole process group, so a hung host fails the test instead of hanging it. The code that runs inside the
hosts lives as real files in tests/host_scripts/ (HOST_SCRIPTS), where linters and duplicate finders see it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from host_scripts.host_markers import MARKER, READY

HOST_SCRIPTS = Path(__file__).resolve().parent / "host_scripts"
EMIT_MODULES = (HOST_SCRIPTS / "irodori_emit.py", HOST_SCRIPTS / "host_markers.py")  # copied into GIMP runs
KRITA_TESTKIT = HOST_SCRIPTS / "krita_testkit"  # a pykrita folder: irodori_testkit.desktop + irodori_testkit/
GIMP_CHROOT_DEFAULT = Path("/var/cache/irodori/gimp-chroot")
GIMP_MARKER = ".irodori-gimp-ready"  # written by tests/hosts/gimp.sh after a complete build
HOSTS_DIR = Path(__file__).resolve().parent / "hosts"
MAX_OUTPUT_CHARS = 4000  # how much of a host's log goes into an error message
MAX_FILE_BYTES = 512 * 1024 * 1024  # refuse to copy absurd test inputs into the chroot


class HostError(RuntimeError):
    """A host program failed, timed out, or produced no result; the message carries its log."""


@dataclass
class HostRun:
    """What one host run did: exit status, its (filtered) output, and the parsed marker results."""
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    results: list[dict] = field(default_factory=list)

    @property
    def result(self) -> dict:
        """The last marker result; raises HostError with the log when the host emitted none."""
        if not self.results:
            raise HostError(f"host produced no {MARKER.strip()} line (exit {self.returncode})\n{self.log_tail()}")
        return self.results[-1]

    def log_tail(self) -> str:
        text = f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        return text if len(text) <= MAX_OUTPUT_CHARS else "...\n" + text[-MAX_OUTPUT_CHARS:]

    def check(self) -> "HostRun":
        """Raise HostError unless the host exited 0."""
        if self.returncode != 0:
            raise HostError(f"host exited {self.returncode}: {' '.join(self.args)}\n{self.log_tail()}")
        return self


# ----------------------------------------------------------------------------------------------------------
# shared plumbing

def require_host(name: str, available: bool, install_hint: str) -> None:
    """Skip the calling test when a host is missing, or FAIL when IRODORI_REQUIRE_HOSTS=1 (CI sets it)."""
    if available:
        return
    message = f"{name} is not installed; install it with `{install_hint}` (as root)"
    if os.environ.get("IRODORI_REQUIRE_HOSTS") == "1":
        pytest.fail(f"IRODORI_REQUIRE_HOSTS=1 but {message}", pytrace=False)
    pytest.skip(message)


def parse_results(text: str) -> list[dict]:
    """All `IRODORI-RESULT {json}` lines in a host's output, in order."""
    results = []
    for line in text.splitlines():
        at = line.find(MARKER)
        if at >= 0:
            results.append(json.loads(line[at + len(MARKER):]))
    return results


def _filter_noise(text: str) -> str:
    # Krita logs one `krita.lib.resources` line per resource on a fresh profile (thousands).
    return "\n".join(line for line in text.splitlines() if "krita.lib.resources" not in line)


def _run(args: list[str], env: dict[str, str], timeout: float, cwd: str | None = None) -> HostRun:
    """Run a command in its own process group; on timeout kill the whole group and raise HostError."""
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        run = HostRun(args, -9, _filter_noise(out), _filter_noise(err))
        raise HostError(f"host timed out after {timeout:.0f} s and was killed: {' '.join(args)}\n{run.log_tail()}")
    finally:
        _kill_group(proc)  # stray children (GIMP plug-ins, Krita helpers) must not outlive the run
    run = HostRun(args, proc.returncode, _filter_noise(out), _filter_noise(err))
    run.results = parse_results(run.stdout)
    return run


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _base_env(home: Path, extra: dict[str, str] | None) -> dict[str, str]:
    """A small, explicit environment: a private HOME/XDG tree so runs never touch the user's profile, and a
    private TMPDIR, so the swap files and frame caches Krita leaves behind go with the run's folder."""
    runtime = home / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    (home / "tmp").mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(runtime),
        "TMPDIR": str(home / "tmp"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",  # kritarunner exits without flushing Python's stdout: buffered prints are lost
    }
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------------------------------------
# Krita: scripts through kritarunner (no display), plugins and screenshots through the full app under Xvfb

def krita_available() -> bool:
    """kritarunner is installed (tests/hosts/krita.sh)."""
    return shutil.which("kritarunner") is not None


def krita_gui_available() -> bool:
    """The full Krita app can be run: krita, Xvfb and xwd are installed (tests/hosts/krita.sh)."""
    return all(shutil.which(tool) for tool in ("krita", "Xvfb", "xwd"))


def require_krita(gui: bool = False) -> None:
    ok = krita_available() and (krita_gui_available() if gui else True)
    require_host("Krita" + (" (with Xvfb)" if gui else ""), ok, "sh tests/hosts/krita.sh")


def run_krita(script_dir: Path, module: str, function: str, env: dict | None = None,
              timeout: float = 180) -> HostRun:
    """Run `module.function()` from script_dir inside real Krita via kritarunner (offscreen, no display).

    Code inside can `from irodori_emit import emit` (HOST_SCRIPTS is on PYTHONPATH too) and call emit({...});
    the parsed dicts are in `.results` / `.result`. HOME and the XDG dirs point to a fresh temporary profile
    unless env sets HOME.
    Returns a HostRun (args, returncode, stdout, stderr like subprocess.CompletedProcess) and does not raise
    on a non-zero exit: call `.check()` or read `.result`. Raises HostError on timeout.
    """
    with tempfile.TemporaryDirectory(prefix="irodori-krita-") as tmp:
        home = Path((env or {}).get("HOME", Path(tmp) / "home"))
        full_env = _base_env(home, {"QT_QPA_PLATFORM": "offscreen",
                                    "PYTHONPATH": f"{Path(script_dir).resolve()}{os.pathsep}{HOST_SCRIPTS}"})
        full_env.update(env or {})
        return _run(["kritarunner", "-s", module, "-f", function], full_env, timeout, cwd=tmp)


def make_krita_profile(home: Path, pykrita_dirs: list[Path] = (), enable: list[str] | None = None) -> Path:
    """Create a fresh Krita profile in `home` with plugins installed and enabled; returns its pykrita dir.

    Finding (tests/hosts/README.md): the full app loads Python plugins from
    $XDG_DATA_HOME/krita/pykrita (default ~/.local/share/krita/pykrita): a NAME.desktop with
    X-KDE-Library=NAME plus a NAME/ package; it imports one only when $XDG_CONFIG_HOME/kritarc
    (default ~/.config/kritarc) has `[python]` `enable_NAME=true`. kritarunner never loads plugins.
    Every *.desktop + package in each of pykrita_dirs is copied; `enable` defaults to all of them. The test
    kit (KRITA_TESTKIT: runs the startup file, see its docstring) is always installed and enabled.
    """
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    (home / ".config").mkdir(parents=True, exist_ok=True)
    names = []
    for src in [KRITA_TESTKIT, *pykrita_dirs]:
        for desktop in sorted(Path(src).glob("*.desktop")):
            name = desktop.stem
            shutil.copy2(desktop, pykrita / desktop.name)
            if (Path(src) / name).is_dir():
                shutil.copytree(Path(src) / name, pykrita / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            names.append(name)
    enabled = names if enable is None else ["irodori_testkit", *enable]
    lines = ["[python]"] + [f"enable_{name}=true" for name in enabled]
    # Skip the first-start dialogs that would sit on top of a screenshot.
    lines += ["", "[General]", "ShowTipsAtStartup=false"]
    (home / ".config" / "kritarc").write_text("\n".join(lines) + "\n")
    return pykrita


class Xvfb:
    """A private X server on a free display number (Xvfb picks it and reports it via -displayfd)."""

    def __init__(self, size: tuple[int, int] = (1440, 900)):
        self.size = size
        self.proc: subprocess.Popen | None = None
        self.display = ""

    def __enter__(self) -> "Xvfb":
        read_fd, write_fd = os.pipe()
        w, h = self.size
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{w}x{h}x24",
                                      "-nolisten", "tcp", "-noreset"], pass_fds=(write_fd,),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        os.close(write_fd)
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()  # blocks until the server is ready, EOF if it died
        if not number:
            self.__exit__()
            raise HostError("Xvfb did not start (is the xvfb package installed? sh tests/hosts/krita.sh)")
        self.display = f":{number}"
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc.wait()
            self.proc = None

    def screenshot(self) -> "np.ndarray":  # noqa: F821
        """The whole screen as an (H, W, 3) uint8 RGB array, via xwd."""
        out = subprocess.run(["xwd", "-root", "-silent", "-display", self.display], capture_output=True,
                             timeout=60, check=True)
        return decode_xwd(out.stdout)


def decode_xwd(data: bytes) -> "np.ndarray":  # noqa: F821
    """Decode an xwd dump of a TrueColor ZPixmap (what Xvfb -screen WxHx24 gives) to RGB uint8."""
    import numpy as np

    header = np.frombuffer(data[:100], ">u4")
    (header_size, version, fmt, _depth, width, height, _xoff, byte_order, _unit, _bit_order, _pad, bpp,
     bytes_per_line, visual_class, red_mask, green_mask, blue_mask) = (int(v) for v in header[:17])
    ncolors = int(header[19])
    if version != 7 or fmt != 2 or bpp != 32 or visual_class not in (4, 5):  # TrueColor/DirectColor
        raise HostError(f"unsupported xwd dump (version {version}, format {fmt}, {bpp} bpp, class {visual_class})")
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data[start:start + height * bytes_per_line], np.uint8).reshape(height, bytes_per_line)
    pixels = rows[:, :width * 4].copy().view("<u4" if byte_order == 0 else ">u4").reshape(height, width)
    channels = []
    for mask in (red_mask, green_mask, blue_mask):
        shift = (mask & -mask).bit_length() - 1
        channels.append(((pixels & mask) >> shift).astype(np.uint8))
    return np.stack(channels, axis=-1)


def run_krita_gui(pykrita_dirs: list[Path] = (), startup: str | None = None, args: list[str] = (),
                  env: dict | None = None, timeout: float = 180, screenshot: Path | None = None,
                  size: tuple[int, int] = (1440, 900), delay: float = 1.0, enable: list[str] | None = None
                  ) -> HostRun:
    """Run the full Krita app under a private Xvfb with a fresh profile holding pykrita_dirs' plugins.

    `startup` is Python source run inside Krita `delay` seconds after the main window appears, with
    `Krita`, `emit(obj)` and `quit_krita()` in scope (or imported from irodori_testkit). What it emits comes
    back in `.results`, after the test kit's own {"testkit": "loaded"}; if it raises, HostError carries its
    traceback. With `screenshot`, the screen is saved as PNG after the startup code ran and Krita is then
    killed; without it Krita quits by itself after the startup code. `args` go to krita (e.g. a file to
    open). `enable` lists the plugin names to enable in kritarc (default: all found in pykrita_dirs).
    """
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="irodori-kritagui-") as tmp:
        tmp_path = Path(tmp)
        home = tmp_path / "home"
        make_krita_profile(home, [Path(p) for p in pykrita_dirs], enable)
        result_file = tmp_path / "results.txt"
        result_file.touch()
        startup_file = tmp_path / "startup.py"
        startup_file.write_text(textwrap.dedent(startup or ""))
        with Xvfb(size) as xvfb:
            full_env = _base_env(home, {"DISPLAY": xvfb.display, "IRODORI_RESULT_FILE": str(result_file),
                                        "PYTHONPATH": str(HOST_SCRIPTS),  # the test kit's host_markers
                                        "IRODORI_KRITA_STARTUP": str(startup_file),
                                        "IRODORI_KRITA_DELAY": str(delay),
                                        "IRODORI_KRITA_QUIT": "0" if screenshot else "1"})
            full_env.update(env or {})
            cmd = ["krita", "--nosplash", *[str(a) for a in args]]
            if screenshot is None:
                run = _run(cmd, full_env, timeout, cwd=tmp)
            else:
                run = _krita_screenshot_run(cmd, full_env, timeout, tmp, result_file, xvfb, screenshot, Image)
        run.results = parse_results(result_file.read_text()) + run.results
        errors = [r["testkit_error"] for r in run.results if isinstance(r, dict) and "testkit_error" in r]
        if errors:
            raise HostError(f"the startup code raised inside Krita:\n{errors[0]}")
        return run


def _krita_screenshot_run(cmd, env, timeout, cwd, result_file, xvfb, out_png, Image) -> HostRun:
    log = Path(cwd) / "krita.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while READY not in result_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = f"exited {proc.returncode}" if proc.returncode is not None else f"timed out ({timeout:.0f} s)"
                    tail = _filter_noise(log.read_text(errors="replace"))[-MAX_OUTPUT_CHARS:]
                    raise HostError(f"Krita {why} before its window was ready\n{tail}")
                time.sleep(0.2)
            Path(out_png).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(xvfb.screenshot()).save(out_png)
        finally:
            _kill_group(proc)
            proc.wait()
    return HostRun(cmd, 0, _filter_noise(log.read_text(errors="replace")), "")


def krita_screenshot(script_dir: Path | None, out_png: Path, document: Path | None = None,
                     startup: str | None = None, delay: float = 5.0, size: tuple[int, int] = (1440, 900),
                     timeout: float = 180) -> HostRun:
    """Screenshot of a real Krita window under Xvfb, saved as PNG at out_png.

    script_dir: a pykrita folder (NAME.desktop + NAME/ packages, e.g. plugin_krita/) to install and
    enable, or None. document: a file Krita opens on start. startup: code run once the window is up
    (e.g. to show a docker). delay: seconds to wait after the window appears (lets the canvas draw).
    """
    return run_krita_gui([script_dir] if script_dir else [], startup=startup,
                         args=[str(document)] if document else [], timeout=timeout, screenshot=Path(out_png),
                         size=size, delay=delay)


# ----------------------------------------------------------------------------------------------------------
# GIMP 3 inside the Debian 13 chroot built by tests/hosts/gimp.sh

def gimp_chroot() -> Path | None:
    """The completely built GIMP chroot ($IRODORI_GIMP_CHROOT or the default), or None."""
    root = Path(os.environ.get("IRODORI_GIMP_CHROOT", GIMP_CHROOT_DEFAULT))
    if (root / GIMP_MARKER).is_file() and (root / "usr/bin/gimp-console-3.0").exists():
        return root
    return None


def gimp_available() -> bool:
    """The chroot is built and we can enter it (root; unshare for a private /proc mount)."""
    return gimp_chroot() is not None and os.geteuid() == 0 and shutil.which("unshare") is not None


def require_gimp() -> None:
    require_host("GIMP 3 (chroot)", gimp_available(), "sh tests/hosts/gimp.sh")


_GIMP_PRELUDE = '''\
import json, os, sys
RUN_DIR = {run_dir!r}
os.chdir(RUN_DIR)
sys.path.insert(0, RUN_DIR)
from irodori_emit import emit
'''


def run_gimp_process(script: str, files: dict[str, bytes] | None = None, timeout: float = 180,
                     plugins: dict[str, Path] | None = None) -> HostRun:
    """Run Python source inside real GIMP 3 (gimp-console-3.0, python-fu-eval) in the chroot.

    The script runs with the chroot's per-run dir `RUN_DIR` (under /tmp) as cwd, where `files`
    ({name: bytes}) were written, and with `emit(obj)` defined (also importable: `from irodori_emit import
    emit`). `script` is Python source, e.g. a file of HOST_SCRIPTS read as text. /proc is mounted in a private mount
    namespace that vanishes with the run, so nothing stays mounted even when the run is killed.
    HOME is /root, so plug-ins in ROOT/root/.config/GIMP/3.0/plug-ins/ are found; with `plugins`
    ({name: path of NAME.py or of a folder holding it}) HOME is instead a fresh per-run profile with
    exactly those plug-ins. The host's 127.0.0.1 is reachable (shared network namespace).
    """
    root = gimp_chroot()
    if root is None:
        raise HostError("no GIMP chroot: build it with `sh tests/hosts/gimp.sh` (as root)")
    run_dir = Path(tempfile.mkdtemp(prefix="irodori-gimp-", dir=root / "tmp"))
    inner = "/tmp/" + run_dir.name
    try:
        for name, data in (files or {}).items():
            if "/" in name or name in ("", ".", "..", *(m.name for m in EMIT_MODULES)) or name.startswith("_irodori"):
                raise ValueError(f"bad file name for the GIMP run dir: {name!r}")
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(f"{name}: {len(data)} bytes is over the {MAX_FILE_BYTES} byte limit")
            (run_dir / name).write_bytes(data)
        home = "/root"
        if plugins:
            home = f"{inner}/_irodori_home"
            for name, src in plugins.items():
                dest = run_dir / "_irodori_home/.config/GIMP/3.0/plug-ins" / name
                src = Path(src)
                if src.is_dir():
                    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    dest.mkdir(parents=True)
                    shutil.copy2(src, dest / f"{name}.py")
                (dest / f"{name}.py").chmod(0o755)
        for module in EMIT_MODULES:
            shutil.copy(module, run_dir / module.name)
        (run_dir / "_irodori_script.py").write_text(_GIMP_PRELUDE.format(run_dir=inner) + textwrap.dedent(script))
        batch = f'exec(compile(open("{inner}/_irodori_script.py").read(), "script.py", "exec"))'
        inside = ["env", "-i", f"HOME={home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                  "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "gimp-console-3.0", "-i", "--quit",
                  "--batch-interpreter", "python-fu-eval", "-b", batch]
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t proc proc "$1/proc" && shift && exec chroot "$@"', "sh", str(root), str(root), *inside]
        return _run(cmd, dict(os.environ), timeout)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_gimp(script: str, files: dict[str, bytes] | None = None, timeout: float = 180,
             plugins: dict[str, Path] | None = None) -> dict:
    """run_gimp_process(...) and return its last emitted result; raises HostError with the log otherwise."""
    run = run_gimp_process(script, files, timeout, plugins)
    result = run.result
    run.check()
    return result
