"""The checkpoint format: a run's TrainState (trainer.py) saved with torch.save, behind a one-line header that
carries the payload's SHA-256, written atomically beside the previous checkpoint.

A run's checkpoint folder holds `checkpoint.pt` (the newest) and `checkpoint.prev.pt` (the one before), listed in
the folder's manifest (scalinglab.outdir) so that only files scalinglab wrote are ever replaced or removed. A
checkpoint is a dict: run_id, data (the dataset's fingerprint), config (the run config without its data path and
the fields that do not define the run) and state (TrainState.state_dict()). Loading is weights_only: tensors and
plain containers, never code.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from scalinglab import outdir

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"
_CHECKPOINT_MAGIC = b"scalinglab-checkpoint sha256:"



class CheckpointError(Exception):
    """A checkpoint file that cannot be trusted (truncated, corrupt, foreign)."""


def _write_bytes(f, data: bytes) -> None:
    f.write(data)


def write_checkpoint(obj: dict, path: Path) -> None:
    """Serialise `obj` with a SHA-256 checksum into `path`, atomically: the bytes go to a temporary file that
    is fsynced, the current checkpoint becomes the previous one, the temporary file becomes the current one.
    A failed write (ENOSPC, EIO) removes the temporary file and leaves both older checkpoints as they were. Only
    checkpoints scalinglab wrote are replaced (the folder's manifest, scalinglab.outdir): a file of either name
    that scalinglab did not write stops the write (OutputError) and is left as it is."""
    outdir.claim(path.parent, "checkpoints", shared=True, legacy=_checkpoint_files)
    names = outdir.read_manifest(path.parent) or set()
    for p in (path, path.with_name(PREVIOUS_CHECKPOINT_NAME)):
        if p.exists() and p.name not in names:
            raise outdir.OutputError(f"{p}: exists and is not a checkpoint scalinglab wrote; it is left as it is: "
                                     "move it away and run again")
    outdir.adopt(path.parent, [path.name, PREVIOUS_CHECKPOINT_NAME])  # neither is another's file (checked above)
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    blob = _CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            _write_bytes(f, blob)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, path.with_name(PREVIOUS_CHECKPOINT_NAME))
    os.replace(tmp, path)


def _checkpoint_files(path: Path) -> set[str]:
    """The checkpoints an older scalinglab (no manifest) left in a run's folder: those that carry its header."""
    found = set()
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):
        try:
            with open(path / name, "rb") as f:
                if f.read(len(_CHECKPOINT_MAGIC)) == _CHECKPOINT_MAGIC:
                    found.add(name)
        except OSError:
            pass
    return found


def read_checkpoint(path: Path, device: torch.device) -> dict:
    """The dict `write_checkpoint` saved, after checking its checksum; loaded with weights_only=True (tensors and
    plain containers only, no code). Raises CheckpointError saying what is wrong."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"unreadable ({exc.strerror or exc})") from None
    head, sep, payload = blob.partition(b"\n")
    if not head.startswith(_CHECKPOINT_MAGIC) or not sep:
        raise CheckpointError("not a checksummed scalinglab checkpoint (truncated, or from an older version)")
    if hashlib.sha256(payload).hexdigest().encode() != head[len(_CHECKPOINT_MAGIC):]:
        raise CheckpointError(f"checksum mismatch ({len(payload):,} bytes: truncated or corrupt)")
    try:
        return torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
    except Exception as exc:  # the checksum matched, so this is a foreign or incompatible file
        raise CheckpointError(f"cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None


def checkpoint_paths(folder: Path | None) -> list[Path]:
    """A run's checkpoints, newest first (none without a folder)."""
    if folder is None:
        return []
    return [folder / CHECKPOINT_NAME, folder / PREVIOUS_CHECKPOINT_NAME]
