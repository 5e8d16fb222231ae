"""`irodori plugin krita|gimp --zip DIR | --install [DIR]`: build or install the host plugins.

The protocol exists once, as the standard-library-only package backend/protocol/. Each plugin's source tree
links to it (Krita: irodori/protocol, GIMP: irodori/irodori_protocol, both symbolic links), so readers and
tools see the dependency; the build copies the linked files and refuses a link that points anywhere else,
so the plugins cannot drift from the backend. One function, `copy_plugin`, lays a plugin out for both hosts;
the zip and the install are that layout written to a zip file or to the host's plugin folder.
"""
from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backend import __version__

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "backend" / "protocol"
ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip, byte for byte
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".DS_Store")


@dataclass(frozen=True)
class PluginSpec:
    host: str
    source: Path  # folder holding what goes to the zip root / install folder
    package: str  # the plugin's package folder under `source`
    protocol_name: str  # the link to backend/protocol/ inside the package
    top_files: tuple[str, ...] = ()  # files next to the package (Krita's .desktop)
    executable: str | None = None  # a file in the package that must stay executable (GIMP's plug-in)
    required: tuple[str, ...] = ()  # files in the package that must exist


PLUGINS = {
    "krita": PluginSpec("krita", ROOT / "plugin_krita", "irodori", "protocol", top_files=("irodori.desktop",),
                        required=("__init__.py",)),
    "gimp": PluginSpec("gimp", ROOT / "plugin_gimp", "irodori", "irodori_protocol", executable="irodori.py",
                       required=("irodori.py",)),
}


def default_install_dir(host: str, platform: str = sys.platform, env: dict | None = None,
                        home: Path | None = None) -> Path:
    """Where the host looks for user plugins: Krita's pykrita folder or GIMP 3's plug-ins folder."""
    env = os.environ if env is None else env
    home = Path(home) if home is not None else Path.home()
    if platform.startswith("win"):
        base = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        return base / "krita" / "pykrita" if host == "krita" else base / "GIMP" / "3.0" / "plug-ins"
    if platform == "darwin":
        base = home / "Library" / "Application Support"
        return base / "krita" / "pykrita" if host == "krita" else base / "GIMP" / "3.0" / "plug-ins"
    if host == "krita":
        return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "krita" / "pykrita"
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "GIMP" / "3.0" / "plug-ins"


def copy_plugin(spec: PluginSpec, dest: Path, protocol: Path = PROTOCOL) -> list[Path]:
    """Lay the plugin out in `dest` (top files + package/ with the protocol package); returns the paths made.

    An older copy of the package in `dest` is replaced, so no stale module survives an upgrade.
    """
    package_src = spec.source / spec.package
    missing = [name for name in spec.required if not (package_src / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{spec.host} plugin sources are incomplete: {', '.join(missing)} missing in "
                                f"{package_src} (run from an Irodori source checkout)")
    link = package_src / spec.protocol_name
    if not (protocol / "__init__.py").is_file():
        raise FileNotFoundError(f"{protocol} is missing")
    if not link.is_symlink() or link.resolve() != protocol.resolve():
        raise FileExistsError(f"{link} must be a symbolic link to {protocol} (the one protocol package); "
                              f"restore it with: ln -sfn {os.path.relpath(protocol, link.parent)} {link}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    for name in spec.top_files:
        shutil.copy2(spec.source / name, dest / name)
        made.append(dest / name)
    package_dest = dest / spec.package
    if package_dest.exists():
        shutil.rmtree(package_dest)
    shutil.copytree(package_src, package_dest, ignore=SKIP)  # follows the protocol link: a real copy
    if spec.executable:
        exe = package_dest / spec.executable
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    made.append(package_dest)
    return made


def build_zip(spec: PluginSpec, out_dir: Path, protocol: Path = PROTOCOL) -> Path:
    """The zip for the host's installer (Krita: Tools > Scripts > Import Python Plugin from File...).

    Directory entries are written too: Krita's importer finds the package by its `irodori/` entry.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"irodori-{spec.host}-{__version__}.zip"
    with tempfile.TemporaryDirectory(prefix="irodori-plugin-") as tmp:
        copy_plugin(spec, Path(tmp), protocol)
        paths = sorted(Path(tmp).rglob("*"))
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in paths:
                rel = path.relative_to(tmp).as_posix()
                if path.is_dir():
                    info = zipfile.ZipInfo(rel + "/", ZIP_TIME)
                    info.external_attr = (0o40755 << 16) | 0x10
                    zf.writestr(info, b"")
                else:
                    info = zipfile.ZipInfo(rel, ZIP_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    mode = 0o755 if os.access(path, os.X_OK) and spec.executable == path.name else 0o644
                    info.external_attr = (0o100000 | mode) << 16
                    zf.writestr(info, path.read_bytes())
    return target


def install(spec: PluginSpec, target: Path | None = None, protocol: Path = PROTOCOL) -> Path:
    """Copy the built plugin into the host's plugin folder (default: the per-OS user folder)."""
    target = Path(target).expanduser() if target else default_install_dir(spec.host)
    copy_plugin(spec, target, protocol)
    return target


ENABLE_HELP = {
    "krita": ("Restart Krita, then enable the plugin: Settings > Configure Krita... > Python Plugin Manager > "
              "tick \"Irodori\", and restart Krita once more. Show the docker with Settings > Dockers > Irodori. "
              "Start the backend with `irodori serve` (or from the docker)."),
    "gimp": ("Restart GIMP: the plug-in appears as Filters > Irodori > Colorize from Reference... "
             "Start the backend with `irodori serve`."),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("host", choices=sorted(PLUGINS), help="which plugin")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--zip", metavar="DIR", type=Path,
                       help="write irodori-HOST-VERSION.zip into DIR (Krita: Tools > Scripts > Import Python "
                            "Plugin from File...)")
    group.add_argument("--install", metavar="DIR", nargs="?", const="", type=str,
                       help="copy the plugin into the host's plugin folder (default: Krita's pykrita folder or "
                            "GIMP 3's plug-ins folder for this user and OS)")


def main(args: argparse.Namespace) -> int:
    spec = PLUGINS[args.host]
    try:
        if args.zip is not None:
            path = build_zip(spec, args.zip)
            print(path)
            if spec.host == "krita":
                print("Install it in Krita with Tools > Scripts > Import Python Plugin from File..., then "
                      + ENABLE_HELP["krita"][len("Restart Krita, then "):], file=sys.stderr)
            return 0
        target = install(spec, Path(args.install) if args.install else None)
    except (OSError, ValueError) as exc:
        print(f"irodori plugin: {exc}", file=sys.stderr)
        return 1
    print(f"installed the {spec.host} plugin into {target}")
    print(ENABLE_HELP[spec.host])
    return 0
