"""Shared fixtures: small prepared datasets of real text (no mocks), built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "reference"
TEST_DATA = REPO / "tests" / "data"  # public data vendored for the tests, each file's source in its README.md

# Tests train tiny models on one thread each: deterministic results, and no oversubscribed cores when a test
# starts worker processes of its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _slow_seconds(item) -> float:
    mark = item.get_closest_marker("slow")
    return 0.0 if mark is None else float(mark.kwargs.get("seconds", 60))


def pytest_collection_modifyitems(config, items):
    """Longest modules first (the sum of their tests' `slow(seconds=...)` estimates), each module's tests kept
    together and in order, the rest as collected. With the README's `-n 2 --dist loadfile` each worker takes
    the next whole module when it is free, so the long modules start at once instead of ending the run alone."""
    cost: dict[str, float] = {}
    for item in items:
        cost[item.module.__name__] = cost.get(item.module.__name__, 0.0) + _slow_seconds(item)
    items.sort(key=lambda it: -cost[it.module.__name__])  # a stable sort: collection order among equals


@pytest.fixture(scope="session")
def byte_dataset(tmp_path_factory) -> Path:
    """A byte-level (vocab 256) dataset of ~2 MB of real text with validation and test splits and one transfer
    set. Bytes have no end-of-text token: the held-out sets are cut into 4 KB documents (as prepare_dataset
    chunks long documents), so their evaluation windows are spread over many documents."""
    from scalinglab.data.shards import write_dataset

    from scalinglab.data.corpora import stdlib_source_bytes

    text = np.frombuffer(stdlib_source_bytes(2_400_000, recursive=False), dtype=np.uint8).astype(np.uint16)
    val = int(text.size * 0.80)
    cut = int(text.size * 0.85)
    xfer = int(text.size * 0.95)
    out = tmp_path_factory.mktemp("data") / "bytes"
    docs = {k: np.arange(0, n, 4096) for k, n in (("validation", cut - val), ("test", xfer - cut),
                                                  ("tail", text.size - xfer))}
    write_dataset(out, train=text[:val], validation=text[val:cut], test=text[cut:xfer], transfer={"tail": text[xfer:]},
                  vocab_size=256, tokenizer={"name": "bytes"}, doc_starts=docs)  # fmt: skip
    return out


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `scalinglab` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "scalinglab.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def train_store(path: Path, dataset: Path, study: str, runs, **base) -> Path:
    """A real run store of tiny runs: `runs` is a list of (RunConfig fields, roles), each trained on `dataset` on
    one thread with the shared `base` fields, in `study`, with its roles recorded as a study spec would."""
    from scalinglab.training.config import RunConfig
    from scalinglab.store import RunStore
    from scalinglab.training.trainer import train_run

    store = RunStore(path)
    try:
        for fields, roles in runs:
            res = train_run(RunConfig(data=str(dataset), threads=1, **base, **fields), store=store, study=study)
            store.add_roles(res.run_id, roles, study=study)
    finally:
        store.close()
    return path


def sequential_copy(study, store_path: Path):
    """Run `study` one run after another in this process, each run alone (no grouping), into another store: the
    reference an executor must reproduce. Returns the run summary."""
    import dataclasses

    from scalinglab.sweep import run_study

    return run_study(dataclasses.replace(study, store_path=store_path), executor="sequential", progress=False,
                     group=False)


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` is still alive."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
