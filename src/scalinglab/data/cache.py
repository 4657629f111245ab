"""The user cache directory and atomic writes into it.

Everything downloaded or derived (registry packages, cleaned corpora, trained tokenizers) lives under one root:
`--cache-dir`, else $SCALINGLAB_CACHE, else $XDG_CACHE_HOME/scalinglab, else ~/.cache/scalinglab.

Every entry is built in a temporary sibling directory and moved into place with os.replace, so a process killed
mid-way leaves at most a stale `.tmp-<pid>-*` directory (swept on the next run), never a half-written entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        root = Path(cache_dir)
    elif os.environ.get("SCALINGLAB_CACHE"):
        root = Path(os.environ["SCALINGLAB_CACHE"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(xdg) / "scalinglab"
    return root.expanduser()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(parent: Path) -> None:
    """Remove temporary directories left by processes that no longer run (killed mid-acquisition)."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if not entry.name.startswith(TMP_PREFIX):
            continue
        try:
            pid = int(entry.name[len(TMP_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it becomes `final` in one rename.

    If another process finished the same entry first, its result is kept and ours discarded: both are
    built from the same inputs, so either is correct."""
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{final.name}-", dir=final.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def text_hash(text: str) -> str:
    """Content hash of one document (used for de-duplication and the train/test split)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
