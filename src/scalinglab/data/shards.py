"""Token shards on disk, the fixed evaluation sets, and the random-window sampler.

A prepared dataset is a directory:

    meta.json          format, version, tokenizer, vocab_size, dtype, splits {name: {file, n_tokens, n_docs}},
                       transfer {name: {...}}, sources [...]
    train.bin          the training split: one document-shuffled token stream (documents joined by the EOT
                       token). A data subset of D tokens is the first D tokens of it, so subsets nest.
    test.bin           held-out documents of the training distribution (reported losses)
    validation.bin     other held-out documents, disjoint from test (early stopping, "best over the curve")
    transfer-<name>.bin  other distributions, never trained on (Kaplan section 3.2.2)
    tokenizer.json     the tokenizer, when it is a trained one

Files are raw little-endian uint16 (uint32 when the vocabulary needs it), read through numpy memmaps.
Documents in a split are found by their end-of-text tokens (or, where a dataset has no such token, by an
optional `<split>.docs.bin` of int64 document start offsets): evaluation windows are spread over them.
"""

from __future__ import annotations

import functools
import math
import hashlib
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalinglab import outdir
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
    validation: np.ndarray | None = None,
    doc_starts: dict[str, np.ndarray] | None = None,
    force: bool = False,
) -> Path:
    """Write a dataset directory: the files are built beside it, then renamed into it (a new directory appears
    complete or not at all; a rebuilt one loses its meta.json first and gets the new one last, so it is never
    read half-replaced). Only scalinglab's own files are replaced or removed (scalinglab.outdir): a directory
    holding any other file is refused, or with `force` kept beside the new shards. `doc_starts` gives, for
    splits whose documents are not delimited by an end-of-text token, the offset where each document starts."""
    out = Path(out_dir)
    outdir.check(out, legacy=dataset_files, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    outdir.clear_stale_tmp(out.parent, out.name)  # what a killed earlier write of this dataset left beside it
    tmp = outdir.tmp_path(out)
    tmp.mkdir()
    try:
        splits, transfers = {}, {}
        n_docs = n_docs or {}
        for name, arr, table, fname in (
            [("train", train, splits, "train.bin"), ("test", test, splits, "test.bin")]
            + ([("validation", validation, splits, "validation.bin")] if validation is not None else [])
            + [(k, v, transfers, f"transfer-{k}.bin") for k, v in (transfer or {}).items()]
        ):
            arr = np.asarray(arr)
            if arr.size and int(arr.max()) >= vocab_size:
                raise DataError(f"split {name!r} has token id {int(arr.max())} >= vocab_size {vocab_size}")
            with open(tmp / fname, "wb") as f:  # not ndarray.tofile: its short write loses the errno (disk full)
                f.write(np.ascontiguousarray(arr, dtype=dtype).data)
            table[name] = {"file": fname, "n_tokens": int(arr.size), "n_docs": int(n_docs.get(name, 0))}
            if doc_starts and name in doc_starts:
                starts = np.asarray(doc_starts[name], dtype=np.int64)
                if starts.size == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= arr.size:
                    raise DataError(f"split {name!r}: document starts must begin at 0 and increase within the split")
                starts.astype("<i8").tofile(tmp / f"{name}.docs.bin")
                table[name].update(docs_file=f"{name}.docs.bin", n_docs=int(starts.size))
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
        if out.is_dir() and outdir.read_manifest(out) is None:
            outdir.claim(out, "dataset", legacy=dataset_files, force=force)  # adopt an older version's files
        outdir.install(tmp, out, first_removed="meta.json", last="meta.json", kind="dataset")
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if outdir.is_disk_full(exc):
            raise DataError(f"{out}: no space left to write the token shards ({exc.strerror}); nothing was "
                            "changed: free space and run again") from None
        raise
    return out


def dataset_files(path: Path) -> set[str]:
    """The files of a dataset directory an older scalinglab (one without output manifests) wrote: meta.json of
    this format, the shards and document offsets it names, tokenizer.json. None of a directory without it."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return set()
    names = {"meta.json", "tokenizer.json"}
    for table in (meta.get("splits"), meta.get("transfer")):
        for entry in (table or {}).values():
            if isinstance(entry, dict):
                names.update(str(entry[k]) for k in ("file", "docs_file") if entry.get(k))
    return {n for n in names if "/" not in n and (path / n).is_file()}


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
        self._cache: dict = {}  # split -> memmap, ('eval', split, n_ctx, max_tokens) -> EvalSet

    @property
    def eval_sets(self) -> list[str]:
        """'test' first, then the transfer sets. (The validation split, where there is one, is evaluated
        beside the test split by the trainer: see `has_validation`.)"""
        return ["test", *self.meta.get("transfer", {}).keys()]

    @property
    def has_validation(self) -> bool:
        return "validation" in self.meta["splits"]

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

    def doc_starts(self, split: str) -> np.ndarray:
        """int64 offsets where each document of `split` starts: after each end-of-text token (a trained
        tokenizer ends every document with one), from `<split>.docs.bin` where the dataset wrote one, else the
        whole split as one document."""
        entry = self._entry(split)
        if entry.get("docs_file"):
            f = self.path / entry["docs_file"]
            try:
                return np.fromfile(f, dtype="<i8").astype(np.int64)
            except OSError:
                raise DataError(f"{f}: missing; prepare the data again") from None
        toks = self.tokens(split)
        eot = self.meta.get("tokenizer", {}).get("eot_id")
        if eot is None or toks.size == 0:
            return np.zeros(1, dtype=np.int64)
        ends = np.flatnonzero(np.asarray(toks) == eot) + 1
        starts = np.concatenate([[0], ends[ends < toks.size]])
        return starts.astype(np.int64)

    def eval_set(self, split: str, n_ctx: int, max_tokens: int) -> "EvalSet":
        """The fixed evaluation set of `split` for context n_ctx: see `EvalSet`. Cached per (split, n_ctx,
        max_tokens); the same for every load of the same dataset."""
        key = ("eval", split, n_ctx, max_tokens)
        if key not in self._cache:
            self._cache[key] = make_eval_set(self.tokens(split), self.doc_starts(split), n_ctx, max_tokens, split)
        return self._cache[key]

    def eval_windows(self, split: str, n_ctx: int, max_tokens: int) -> np.ndarray:
        """The windows of `eval_set(split, n_ctx, max_tokens)`: int64 [n_windows, n_ctx + 1]."""
        return self.eval_set(split, n_ctx, max_tokens).windows


@dataclass(frozen=True)
class EvalSet:
    """A fixed evaluation set: windows of n_ctx+1 tokens spread over every document of a split.

    `windows` int64 [W, n_ctx + 1]; `doc` [W] the document each window starts in; `weight` [W] the tokens of
    its document each window stands for (document length / windows in it), so that the weighted mean of the
    window losses estimates the split's token-weighted mean loss whatever the allocation rounding did; `start`
    [W] where each window starts in the split's token stream."""

    windows: np.ndarray
    start: np.ndarray
    doc: np.ndarray
    weight: np.ndarray
    n_docs: int

    @property
    def n_docs_evaluated(self) -> int:
        return int(np.unique(self.doc).size)

    @property
    def eval_tokens(self) -> int:
        """Tokens predicted (n_ctx per window)."""
        return int(self.windows.shape[0] * (self.windows.shape[1] - 1))

    def describe(self) -> dict:
        return {"n_docs": self.n_docs, "n_docs_evaluated": self.n_docs_evaluated, "eval_tokens": self.eval_tokens,
                "n_windows": int(self.windows.shape[0])}

    def mean_and_se(self, window_loss: np.ndarray) -> tuple[float, float]:
        """The weighted mean of per-window losses and its document-clustered standard error.

        Windows of one document are correlated (same topic, style, overlapping vocabulary), so treating them as
        independent would understate the uncertainty. The SE is the cluster-robust (CR1, linearisation) SE of a
        weighted mean with documents as clusters: with weights v_j, mean m = sum v_j x_j / sum v_j and per-document
        totals t_g = sum_{j in g} v_j (x_j - m), SE^2 = G / (G - 1) * sum_g t_g^2 / (sum v_j)^2. It measures how
        the loss would vary over another draw of documents from the same distribution. NaN with one document."""
        x = np.asarray(window_loss, dtype=np.float64)
        v = self.weight
        mean = float(np.sum(v * x) / np.sum(v))
        _, g = np.unique(self.doc, return_inverse=True)
        n_groups = int(g.max()) + 1 if g.size else 0
        if n_groups < 2:
            return mean, float("nan")
        totals = np.bincount(g, weights=v * (x - mean), minlength=n_groups)
        var = n_groups / (n_groups - 1) * float(np.sum(totals**2)) / float(np.sum(v)) ** 2
        return mean, math.sqrt(var)


def make_eval_set(tokens: np.ndarray, starts: np.ndarray, n_ctx: int, max_tokens: int, split: str) -> EvalSet:
    """Spread max_tokens // n_ctx windows over the documents of a token stream.

    With at least as many windows as documents, every document gets one window and the rest are shared out in
    proportion to document length (largest remainders), at most as many as fit side by side in the document;
    inside a document the windows are evenly spaced from a seeded offset. With fewer windows than documents,
    documents are drawn with probability proportional to length (systematic sampling), one window each. A
    document shorter than a window gets one window that starts at its start and runs on into the next. The seed
    is a fixed function of the split's name, so every run of a dataset sees the same windows."""
    toks = np.asarray(tokens)
    T = int(toks.size)
    if T < n_ctx + 1:
        raise DataError(f"split {split!r} has {T} tokens, fewer than one window of {n_ctx + 1}")
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], T)
    length = (ends - starts).astype(np.float64)
    G = int(starts.size)
    rng = np.random.default_rng([20200123, zlib.crc32(split.encode())])
    capacity = np.maximum(1, (ends - starts) // n_ctx)
    W = int(min(max(1, max_tokens // n_ctx), capacity.sum()))
    if W >= G:
        k = np.ones(G, dtype=np.int64)
        left = W - G
        while left > 0:  # share the rest by length, never more windows than fit in a document
            room = capacity - k
            open_ = room > 0
            if not open_.any():
                break
            target = left * length * open_ / length[open_].sum()
            add = np.minimum(np.floor(target).astype(np.int64), room)
            if add.sum() == 0:
                order = np.argsort(-(target - add), kind="stable")
                add = np.zeros(G, dtype=np.int64)
                add[[i for i in order if room[i] > 0][:left]] = 1
            k += add
            left -= int(add.sum())
    else:
        cum = np.concatenate([[0.0], np.cumsum(length)])
        picks = (np.arange(W) + rng.random()) * cum[-1] / W
        k = np.bincount(np.searchsorted(cum, picks, side="right") - 1, minlength=G).astype(np.int64)
    doc = np.repeat(np.arange(G), k)
    weight = np.repeat(length / np.maximum(k, 1), k)
    win_start = np.empty(doc.size, dtype=np.int64)
    pos = 0
    for i in np.flatnonzero(k):
        span = max(1, int(ends[i] - starts[i]) - n_ctx)  # window starts that stay inside the document
        j = np.arange(k[i])
        win_start[pos : pos + k[i]] = starts[i] + np.floor((j + rng.random()) * span / k[i]).astype(np.int64)
        pos += k[i]
    win_start = np.minimum(win_start, T - n_ctx - 1)
    idx = win_start[:, None] + np.arange(n_ctx + 1)[None, :]
    return EvalSet(np.asarray(toks[idx], dtype=np.int64), win_start, doc, weight, G)


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
