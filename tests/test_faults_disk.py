"""Disk full while writing the store or a token shard: the run (or the data step) fails with the reason, nothing
already stored is damaged, and once space is back `study run --retry-failed` (or the same command) finishes it.

The failures are real ones of the real write path: SQLite's own "database or disk is full" (the worker's
connection may not grow the file past its size: PRAGMA max_page_count), and the kernel refusing a shard write past
a file-size limit (RLIMIT_FSIZE, EFBIG: what a full quota or disk looks like to the writer)."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys

import pytest
from test_study import results, write_spec

import scalinglab.sweep.worker as worker
from scalinglab.store import RunStore
from scalinglab.sweep import load_study, run_study


class _FullDiskStore(RunStore):
    """The worker's store on a full disk: its connection cannot add a page to the file."""

    def __init__(self, path, readonly=False):
        super().__init__(path, readonly=readonly)
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        self._conn.execute(f"PRAGMA max_page_count = {pages}")


def _snapshot(path) -> dict:
    with RunStore(path, readonly=True) as s:
        snap = s.snapshot()
    return {k: v.drop(columns=[c for c in ("wall_time_s",) if c in v.columns and k != "runs"])
            for k, v in snap.items()}


def test_store_full_mid_run_fails_the_run_with_its_reason_and_retry_finishes_it(byte_dataset, tmp_path,
                                                                                monkeypatch):
    # two specs on one store: "a" has one of "b"'s two runs (a point every step: the curves need new pages)
    axes_a = "[[axes]]\nd_model = [16]\ntrain_log_every = [1]\n"
    axes_b = "[[axes]]\nd_model = [16, 32]\ntrain_log_every = [1]\n"
    store = 'store = "full.sqlite"'
    first = load_study(write_spec(tmp_path, byte_dataset, name="a", axes=axes_a, extra=store))
    study = load_study(write_spec(tmp_path, byte_dataset, name="b", axes=axes_b, extra=store))
    assert run_study(first, executor="sequential", progress=False).done == 1  # a run already stored
    before = _snapshot(study.store_path)
    done_id = first.run_ids()[0]

    monkeypatch.setattr(worker, "RunStore", _FullDiskStore)  # the disk fills up
    s1 = run_study(study, executor="sequential", progress=False)
    assert (s1.done, s1.failed) == (1, 1)
    [(rid, _, error)] = s1.failures
    assert rid != done_id and "disk is full" in error and "\n" not in error
    with RunStore(study.store_path, readonly=True) as s:
        row = s.run(rid)
        assert row["status"] == "failed" and "disk is full" in row["error"]
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    after = _snapshot(study.store_path)
    for key in ("points", "evals"):  # the run already stored is untouched
        old = before[key][before[key].run_id == done_id].reset_index(drop=True)
        new = after[key][after[key].run_id == done_id].reset_index(drop=True)
        assert old.equals(new), key
    keep = ["status", "config", "final_test_loss", "final_train_loss", "final_metrics", "attempts", "finished_at"]
    row_before = before["runs"].set_index("run_id").loc[done_id, keep]
    assert row_before.equals(after["runs"].set_index("run_id").loc[done_id, keep])

    monkeypatch.undo()  # space is back
    assert run_study(study, executor="sequential", progress=False).ran == 0  # failed runs wait for the retry
    s2 = run_study(study, executor="sequential", progress=False, retry_failed=True)
    assert s2.ran == 1 and s2.ok and s2.done == 2
    (tmp_path / "ref").mkdir()
    ref_study = load_study(write_spec(tmp_path / "ref", byte_dataset, name="b", axes=axes_b))
    assert run_study(ref_study, executor="sequential", progress=False).done == 2
    want, got = results(ref_study.store_path), results(study.store_path)
    for r, w in want.items():
        assert got[r]["status"] == "done" and got[r]["curve"] == w["curve"] and got[r]["test"] == w["test"]
    with RunStore(study.store_path, readonly=True) as s:
        assert not s.curves().duplicated(["run_id", "step"]).any()


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def _prepare(out, cache, seed, preexec=None):
    cmd = [sys.executable, "-m", "scalinglab.cli", "data", "prepare", "--corpus", "stdlib", "--tokenizer", "bpe-300",
           "--max-bytes", "200000", "--out", str(out), "--cache-dir", str(cache), "--seed", str(seed), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=preexec)


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_shard_write_out_of_space_changes_nothing_and_says_so(tmp_path):
    out, cache = tmp_path / "ds", tmp_path / "cache"
    ok = _prepare(out, cache, seed=0)
    assert ok.returncode == 0, ok.stderr
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert (out / "train.bin").stat().st_size > 60_000

    full = _prepare(out, cache, seed=1, preexec=_limit_file_size(50_000))  # re-prepare: new inputs, no space
    assert full.returncode == 2, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left to write the token shards" in lines[0] and "Traceback" not in full.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # the dataset already there is intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.tmp")] == []  # no half-written copy

    again = _prepare(out, cache, seed=1)  # space is back
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "meta.json").read_text())["inputs"]["seed"] == 1
