"""Shared fixtures: small prepared datasets of real text (no mocks), built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "reference"

# Tests train tiny models: one thread each keeps them deterministic and lets pytest-xdist-free runs stay fast.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def stdlib_text_bytes(max_bytes: int) -> bytes:
    """Real text that every machine has: the CPython standard library's source, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, n = [], 0
    for p in sorted(root.glob("*.py")):
        b = p.read_bytes()
        out.append(b)
        n += len(b)
        if n >= max_bytes:
            break
    return b"".join(out)[:max_bytes]


@pytest.fixture(scope="session")
def byte_dataset(tmp_path_factory) -> Path:
    """A byte-level (vocab 256) dataset of ~2 MB of real text with a held-out split and one transfer set."""
    from scalinglab.data.shards import write_dataset

    text = np.frombuffer(stdlib_text_bytes(2_400_000), dtype=np.uint8).astype(np.uint16)
    cut = int(text.size * 0.85)
    xfer = int(text.size * 0.95)
    out = tmp_path_factory.mktemp("data") / "bytes"
    write_dataset(out, train=text[:cut], test=text[cut:xfer], transfer={"tail": text[xfer:]}, vocab_size=256,
                  tokenizer={"name": "bytes"})  # fmt: skip
    return out


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `scalinglab` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "scalinglab.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
