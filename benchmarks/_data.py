"""A real-text dataset for benchmarks that needs no download: the CPython standard library's source, as bytes
remapped into a vocabulary of the requested size (so the unembedding costs what it would at that vocabulary)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from scalinglab.data.corpora import stdlib_source_bytes
from scalinglab.data.shards import write_dataset


def stdlib_dataset(vocab_size: int = 4096, max_bytes: int = 8_000_000) -> Path:
    raw = np.frombuffer(stdlib_source_bytes(max_bytes), dtype=np.uint8).astype(np.int64)
    # pairs of bytes -> ids modulo the vocabulary: a real, skewed token distribution at the wanted size
    ids = ((raw[:-1] * 256 + raw[1:]) % vocab_size)[::2].astype(np.uint16)
    out = Path(tempfile.mkdtemp(prefix="scalinglab-bench-")) / "data"
    cut = int(ids.size * 0.95)
    return write_dataset(out, train=ids[:cut], test=ids[cut:], vocab_size=vocab_size, tokenizer={"name": "bench"})
