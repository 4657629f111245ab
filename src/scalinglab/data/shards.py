"""Token shards on disk, the fixed evaluation sets, and the random-window sampler.

A prepared dataset is a directory:

    meta.json          format, version, tokenizer, vocab_size, dtype, splits {name: {file, n_tokens, n_docs}},
                       transfer {name: {...}}, sources [...]
    train.bin          the training split: one document-shuffled token stream (documents joined by the EOT
                       token). A data subset of D tokens is the first D tokens of it, so subsets nest.
    test.bin           held-out documents of the training distribution
    transfer-<name>.bin  other distributions, never trained on (Kaplan section 3.2.2)
    tokenizer.json     the tokenizer, when it is a trained one

Files are raw little-endian uint16 (uint32 when the vocabulary needs it), read through numpy memmaps.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalinglab.errors import DataError

FORMAT = "scalinglab-tokens"
VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_dataset(
    out_dir: str | os.PathLike,
    *,
    train: np.ndarray,
    test: np.ndarray,
    vocab_size: int,
    tokenizer: dict,
    transfer: dict[str, np.ndarray] | None = None,
    n_docs: dict[str, int] | None = None,
    sources: list[dict] | None = None,
    tokenizer_json: str | None = None,
    extra_meta: dict | None = None,
) -> Path:
    """Write a dataset directory atomically: it appears complete or not at all."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        splits, transfers = {}, {}
        n_docs = n_docs or {}
        for name, arr, table, fname in (
            [("train", train, splits, "train.bin"), ("test", test, splits, "test.bin")]
            + [(k, v, transfers, f"transfer-{k}.bin") for k, v in (transfer or {}).items()]
        ):
            arr = np.asarray(arr)
            if arr.size and int(arr.max()) >= vocab_size:
                raise DataError(f"split {name!r} has token id {int(arr.max())} >= vocab_size {vocab_size}")
            with open(tmp / fname, "wb") as f:  # not ndarray.tofile: its short write loses the errno (disk full)
                f.write(np.ascontiguousarray(arr, dtype=dtype).data)
            table[name] = {"file": fname, "n_tokens": int(arr.size), "n_docs": int(n_docs.get(name, 0))}
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "vocab_size": int(vocab_size),
            "dtype": dtype.name,
            "tokenizer": tokenizer,
            "splits": splits,
            "transfer": transfers,
            "sources": sources or [],
            **(extra_meta or {}),
        }
        if tokenizer_json is not None:
            (tmp / "tokenizer.json").write_text(tokenizer_json)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DataError(f"{out}: no space left to write the token shards ({exc.strerror}); nothing was "
                            "changed: free space and run again") from None
        raise
    return out


class TokenDataset:
    """A prepared dataset directory, opened read-only."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise DataError(f"{self.path}: not a prepared dataset (no meta.json); run `scalinglab data prepare`")
        try:
            self.meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{meta_file}: corrupt metadata ({exc.__class__.__name__}); prepare the data again")
        if self.meta.get("format") != FORMAT:
            raise DataError(f"{meta_file}: not a scalinglab dataset (format={self.meta.get('format')!r})")
        if self.meta.get("version") != VERSION:
            raise DataError(f"{meta_file}: dataset format version {self.meta.get('version')}, expected {VERSION}")
        self.vocab_size = int(self.meta["vocab_size"])
        self.dtype = np.dtype(self.meta["dtype"])
        self._cache: dict[str, np.ndarray] = {}

    @property
    def eval_sets(self) -> list[str]:
        """'test' first, then the transfer sets."""
        return ["test", *self.meta.get("transfer", {}).keys()]

    def n_tokens(self, split: str) -> int:
        return int(self._entry(split)["n_tokens"])

    def _entry(self, split: str) -> dict:
        entry = self.meta["splits"].get(split) or self.meta.get("transfer", {}).get(split)
        if entry is None:
            known = ", ".join([*self.meta["splits"], *self.meta.get("transfer", {})])
            raise DataError(f"{self.path}: no split {split!r} (has: {known})")
        return entry

    def tokens(self, split: str) -> np.ndarray:
        """The whole split as a read-only memmap."""
        if split not in self._cache:
            entry = self._entry(split)
            f = self.path / entry["file"]
            expected = int(entry["n_tokens"]) * self.dtype.itemsize
            if not f.is_file() or f.stat().st_size != expected:
                raise DataError(f"{f}: missing or truncated ({expected} bytes expected); prepare the data again")
            self._cache[split] = np.memmap(f, dtype=self.dtype, mode="r") if expected else np.zeros(0, self.dtype)
        return self._cache[split]

    def train_subset(self, d_unique: int | None = None) -> np.ndarray:
        """The first `d_unique` training tokens (all of them when None). Subsets nest by construction."""
        train = self.tokens("train")
        if d_unique is None:
            return train
        if d_unique > train.size:
            raise DataError(
                f"data subset D={d_unique:,} tokens is larger than the training split ({train.size:,} tokens)"
            )
        return train[: int(d_unique)]

    def eval_windows(self, split: str, n_ctx: int, max_tokens: int) -> np.ndarray:
        """A fixed evaluation set: consecutive non-overlapping windows of n_ctx+1 tokens from the start of the
        split, at most `max_tokens` predicted tokens. Returns int64 [n_windows, n_ctx + 1]."""
        toks = self.tokens(split)
        n_win = min(max(1, max_tokens // n_ctx), (toks.size - 1) // n_ctx)
        if n_win < 1:
            raise DataError(f"split {split!r} has {toks.size} tokens, fewer than one window of {n_ctx + 1}")
        idx = np.arange(n_win)[:, None] * n_ctx + np.arange(n_ctx + 1)[None, :]
        return np.asarray(toks[idx], dtype=np.int64)


@dataclass
class WindowSampler:
    """Random windows of n_ctx+1 tokens. The batch at step s depends only on (seed, s), so a resumed run
    sees exactly the batches an uninterrupted one would, and no sampler state needs saving."""

    tokens: np.ndarray
    n_ctx: int
    batch_size: int
    seed: int = 0

    def __post_init__(self):
        self.n_starts = int(self.tokens.size) - self.n_ctx - 1
        if self.n_starts < 1:
            raise DataError(f"training data of {self.tokens.size} tokens is shorter than one window ({self.n_ctx + 1})")

    def batch(self, step: int, micro: int = 0) -> np.ndarray:
        """int64 array [batch_size, n_ctx + 1] for optimizer step `step` (and micro-batch `micro`)."""
        rng = np.random.default_rng([self.seed, step, micro])
        starts = rng.integers(0, self.n_starts + 1, size=self.batch_size)
        idx = starts[:, None] + np.arange(self.n_ctx + 1)[None, :]
        return np.asarray(self.tokens[idx], dtype=np.int64)

    def epochs(self, tokens_seen: int) -> float:
        """How many times over the data the run has gone, on average (> 1 means repetition)."""
        return tokens_seen / float(self.tokens.size)

    def repeats(self, tokens_seen: int) -> bool:
        """True once the run has seen more tokens than the data holds (D > D_unique): it repeats data."""
        return tokens_seen > self.tokens.size


def dataset_fingerprint(path: str | os.PathLike) -> str | None:
    """A content identity of a prepared dataset (tokenizer, token counts, source checksums), independent of
    where the directory lies: run ids use it, so moving or copying a dataset keeps its runs' ids. None when
    `path` is not a prepared dataset."""
    meta_file = Path(path) / "meta.json"
    try:
        st = meta_file.stat()
    except OSError:
        return None
    return _fingerprint(str(meta_file.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _fingerprint(meta_file: str, _mtime_ns: int, _size: int) -> str | None:
    try:
        meta = json.loads(Path(meta_file).read_text())
    except (OSError, ValueError):
        return None
    keys = ("format", "version", "vocab_size", "dtype", "tokenizer", "splits", "transfer", "sources")
    blob = json.dumps({k: meta.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:24]
