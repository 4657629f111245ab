"""Output directories: scalinglab deletes or overwrites only the files it wrote.

Every directory scalinglab writes into holds `.scalinglab-manifest.json`, the names (relative paths) of the
files scalinglab wrote there. A file is replaced only when the manifest lists it, always atomically (the new
bytes are written beside it, then renamed over it), and removed only when the manifest lists it.

Two kinds of directory:
- an *output directory* (a prepared dataset, a report, a reproduction): `claim(dir)` refuses, with one line
  naming a file, a directory that holds any file scalinglab did not write; with `force=True` the directory is
  taken anyway, the tool's own files are replaced and the others left as they are;
- a *shared directory* (where `runs export` writes two files, a run's checkpoint folder): `claim(dir,
  shared=True)` takes it whatever else it holds; only the names scalinglab writes must be its own.

A directory written by a scalinglab older than the manifest has none: `claim` adopts the files its `legacy`
function recognises as scalinglab's (by their content: a dataset's meta.json names its shards, a report page
carries its title) and treats every other file as foreign. Temporary files a killed scalinglab left behind
(`.scalinglab-tmp-<pid>-<name>`) are its own and cleared.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

from scalinglab.errors import ScalingLabError

MANIFEST = ".scalinglab-manifest.json"
FORMAT = "scalinglab-output"
_TMP = re.compile(r"^\.scalinglab-tmp-(\d+)-")
# an older scalinglab's temporary names: a dataset's `.<name>.tmp-XXXXXXXX` (tempfile.mkdtemp), a report's
# `report.html.tmp`, a cache's `fits.json.tmp` (legacy recognisers adopt them)
OLD_TMP = re.compile(r"^(\..+\.tmp-[A-Za-z0-9_]{8}|.+\.(html|json)\.tmp)$")

Legacy = Callable[[Path], Iterable[str]]


class OutputError(ScalingLabError):
    """An output path holds files scalinglab did not write: it will not delete or overwrite them."""


def _is_tmp(name: str) -> bool:
    return bool(_TMP.match(name))


def tmp_path(path: Path) -> Path:
    """The temporary name a file is written under beside `path` before it is renamed into place."""
    return path.with_name(f".scalinglab-tmp-{os.getpid()}-{path.name}")


def read_manifest(directory: str | os.PathLike) -> set[str] | None:
    """The names the manifest of `directory` lists; None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(directory) / MANIFEST).read_text())
        if data.get("format") != FORMAT:
            return None
        return {str(n) for n in data.get("files", [])}
    except (OSError, ValueError, AttributeError):
        return None


def _write_manifest(directory: Path, names: Iterable[str], kind: str | None = None) -> None:
    path = directory / MANIFEST
    if kind is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            kind = json.loads(path.read_text()).get("kind")
    tmp = tmp_path(path)
    tmp.write_text(json.dumps({"format": FORMAT, "kind": kind or "", "files": sorted(set(names))}, indent=1))
    os.replace(tmp, path)


def _files(directory: Path, skip: set[str]) -> Iterator[str]:
    """Relative names of every file (and empty or unreadable directory) under `directory`, nested ones
    included, except the manifest, scalinglab's temporary files and the subdirectories in `skip`."""
    for root, dirs, files in os.walk(directory):
        rel = Path(root).relative_to(directory)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in skip and not _is_tmp(d)]
        for name in sorted(files):
            if rel == Path(".") and (name == MANIFEST or _is_tmp(name)):
                continue
            yield str(rel / name) if rel != Path(".") else name
        if not files and not dirs and rel != Path("."):
            yield str(rel) + "/"


def clear_stale_tmp(directory: Path, name: str | None = None) -> None:
    """Remove the temporary files of scalinglab processes that no longer run (killed mid-write) from `directory`:
    all of them, or those of the file or directory `name` only."""
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            m = _TMP.match(entry.name)
            if not m or int(m.group(1)) == os.getpid() or (name is not None and entry.name[m.end():] != name):
                continue
            try:
                os.kill(int(m.group(1)), 0)
                continue  # its writer still runs
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def owned(directory: str | os.PathLike, legacy: Legacy | None = None) -> set[str]:
    """The files of `directory` scalinglab wrote: its manifest's names, or (without one) what `legacy` recognises."""
    directory = Path(directory)
    names = read_manifest(directory)
    if names is not None:
        return names
    if legacy is None or not directory.is_dir():
        return set()
    return set(legacy(directory))


def foreign(directory: str | os.PathLike, legacy: Legacy | None = None, nested: Iterable[str] = ()) -> list[str]:
    """The files under `directory` scalinglab did not write (nested output directories in `nested` aside)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    mine = owned(directory, legacy)
    return [n for n in _files(directory, set(nested)) if n not in mine]


def _refusal(directory: Path, name: str, n: int, what: str) -> OutputError:
    more = f" (and {n - 1} more)" if n > 1 else ""
    return OutputError(f"{directory} holds {name!r}{more}, which scalinglab did not write; it never deletes or "
                       f"overwrites a file it did not write: give {what} an empty or new directory, or --force to "
                       "replace only scalinglab's own files there")


def check(directory: str | os.PathLike, *, legacy: Legacy | None = None, force: bool = False,
          nested: Iterable[str] = (), what: str = "--out") -> None:
    """Raise OutputError (one line, naming a file) when `directory` exists and holds a file scalinglab did not
    write, unless `force`. Writes nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: is a file, not a directory; give {what} a directory")
    if force:
        return
    bad = foreign(directory, legacy, nested)
    if bad:
        raise _refusal(directory, bad[0], len(bad), what)


def claim(directory: str | os.PathLike, kind: str, *, legacy: Legacy | None = None, force: bool = False,
          nested: Iterable[str] = (), shared: bool = False, what: str = "--out") -> Path:
    """Make `directory` scalinglab's to write into: create it, refuse it when it holds foreign files (unless
    `shared` or `force`), and give it a manifest (adopting an older scalinglab's files that `legacy`
    recognises). Returns the directory."""
    directory = Path(directory)
    if not shared:
        check(directory, legacy=legacy, force=force, nested=nested, what=what)
    elif directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: is a file, not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    clear_stale_tmp(directory)
    if read_manifest(directory) is None:
        _write_manifest(directory, owned(directory, legacy), kind)
    return directory


def check_names(directory: str | os.PathLike, names: Iterable[str], legacy: Legacy | None = None) -> None:
    """Raise OutputError when any of `names` exists in `directory` and its manifest does not list it: files a
    command is about to write, checked before its work (a `--force`d directory keeps such files)."""
    directory = Path(directory)
    mine = owned(directory, legacy)
    for name in names:
        if (directory / name).exists() and name not in mine:
            raise OutputError(f"{directory / name}: exists and scalinglab did not write it; it never overwrites a "
                              "file it did not write: move it away or choose another --out")


def adopt(directory: str | os.PathLike, names: Iterable[str]) -> None:
    """Record in the manifest of the claimed `directory` files scalinglab creates there by other means (a run
    store and its journals): the caller has checked that none of them is a file scalinglab did not write."""
    directory = Path(directory)
    have = read_manifest(directory) or set()
    if not set(names) <= have:
        _write_manifest(directory, have | set(names))


def _owned_or_refuse(path: Path) -> set[str]:
    """The manifest of `path`'s directory, after checking `path` may be written: absent, or listed."""
    names = read_manifest(path.parent)
    if names is None:
        names = set()
    if (path.exists() or path.is_symlink()) and path.name not in names:
        raise OutputError(f"{path}: exists and scalinglab did not write it; it never overwrites a file it did not "
                          "write: move it away or choose another output")
    return names


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file of an output directory: yields a temporary path beside `path` to write; on success the name
    is recorded in the manifest and the temporary file renamed over `path`. Refuses (OutputError) when `path`
    exists and the manifest does not list it. On failure the temporary file is removed and `path` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = _owned_or_refuse(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        if path.name not in names:
            _write_manifest(path.parent, names | {path.name})
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def remove(path: str | os.PathLike) -> bool:
    """Delete `path` when its directory's manifest lists it (and drop it from the manifest); a file scalinglab
    did not write is left alone. A manifest left listing nothing is removed, and so is its directory when that
    leaves it empty. Returns whether a file was removed."""
    path = Path(path)
    names = read_manifest(path.parent)
    if names is None or path.name not in names:
        return False
    path.unlink(missing_ok=True)
    names.discard(path.name)
    if names:
        _write_manifest(path.parent, names)
    else:
        (path.parent / MANIFEST).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()
    return True


def install(src: Path, directory: Path, *, first_removed: str | None = None, last: str | None = None,
            kind: str = "") -> None:
    """Move the files of the directory `src` (built beside) into the claimed output `directory`, each by an atomic
    rename, then remove the files the manifest listed that the new set lacks and write the new manifest.
    `first_removed`: a file removed before anything moves (what marks the directory complete), `last`: moved last.
    Where `directory` does not exist, or is empty, `src` becomes it in one rename."""
    new = sorted(p.name for p in src.iterdir() if p.name != MANIFEST)
    if not directory.exists() or (directory.is_dir() and not any(directory.iterdir())):
        _write_manifest(src, new, kind)
        if directory.exists():
            directory.rmdir()
        os.replace(src, directory)
        return
    old = read_manifest(directory) or set()
    for name in new:
        if (directory / name).exists() and name not in old:
            raise OutputError(f"{directory / name}: exists and scalinglab did not write it; it never overwrites a "
                              "file it did not write: move it away or choose another --out")
    _write_manifest(directory, old | set(new), kind)  # a kill from here on leaves only listed files
    if first_removed and first_removed in old:
        (directory / first_removed).unlink(missing_ok=True)
    order = [n for n in new if n != last] + ([last] if last in new else [])
    for name in order:
        os.replace(src / name, directory / name)
    for name in sorted(old - set(new)):
        if "/" not in name:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
    _write_manifest(directory, new, kind)
    with contextlib.suppress(OSError):
        shutil.rmtree(src)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
