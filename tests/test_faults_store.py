"""A damaged run store says so: random bytes written into the middle of a real store file make every command that
opens it (runs list, fit, report, train into it) print one line that says what to do and exit 2, without a
traceback and without writing to it; `runs export` saves what can still be read; a good backup beside it is named."""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3

import pytest
from conftest import run_cli

from scalinglab.errors import StoreError
from scalinglab.store import RunStore


def real_store(path):
    """A store written by RunStore itself: 12 finished runs with 200 curve points and 50 evaluations each (~20
    pages of points), so that its middle holds curve data."""
    st = RunStore(path)
    for i in range(12):
        rid = f"run{i:02d}"
        st.add_run(rid, {"i": i}, name=rid, study="s", info=dict(N=1000 * (i + 1), D=50_000, C=6e8 * (i + 1)))
        st.add_roles(rid, ["sizes"], study="s")
        st.mark_running(rid)
        st.finish_run(rid, "done", {"final_test_loss": 5.0 - 0.1 * i},
                      points=[dict(step=s, tokens=64 * s, train_loss=5.0 / s ** 0.1) for s in range(1, 201)],
                      evals=[dict(step=4 * s, eval_set="test", loss=5.0 / s ** 0.1) for s in range(1, 51)])
    st.close()
    return path


def damage(path, seed: int = 0) -> None:
    """One page in the middle of the file overwritten with random bytes (the store's journal folded in first)."""
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = c.execute("PRAGMA page_size").fetchone()[0]
    size = path.stat().st_size
    at = (size // page // 2) * page
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes(rng.randrange(256) for _ in range(page)))


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def damaged(tmp_path):
    path = real_store(tmp_path / "s.sqlite")
    damage(path)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:  # the premise: SQLite itself finds the damage
        try:
            ok = c.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        except sqlite3.DatabaseError:
            ok = False
    assert not ok
    return path


def test_every_command_on_a_damaged_store_is_one_line_and_writes_nothing(damaged, tmp_path):
    before = _digest(damaged)
    commands = {
        "runs list": ["runs", "list", "--store", str(damaged)],
        "fit": ["fit", str(damaged), "--n", "N", "--loss", "final_test_loss"],
        "report": ["report", str(damaged), "--out", str(tmp_path / "rep"), "--bootstrap", "10"],
        "train": ["train", "--store", str(damaged), "--data", str(tmp_path / "none"), "--tokens", "1000"],
    }
    for name, args in commands.items():
        r = run_cli(*args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and "Traceback" not in r.stderr, (name, r.stderr[-2000:])
        assert len(lines) == 1 and "damaged" in lines[0] and "runs export" in lines[0], (name, lines)
        assert "no backup" in lines[0]
        assert _digest(damaged) == before, name  # nothing written
    with pytest.raises(StoreError, match="damaged"):
        RunStore(damaged)


def test_export_saves_what_can_be_read_and_a_backup_is_named(damaged, tmp_path):
    good = real_store(tmp_path / "good.sqlite")
    r = run_cli("runs", "export", "--store", str(damaged), "--out", str(tmp_path / "rescued" / "s"))
    assert r.returncode == 0, r.stderr
    assert "damaged" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    import pandas as pd

    runs = pd.read_csv(tmp_path / "rescued" / "s_runs.csv")
    curves = pd.read_csv(tmp_path / "rescued" / "s_curves.csv")
    assert len(runs) == 12 and 0 < len(curves) < 12 * 200  # the runs are all there; part of the curves is lost
    # a good copy beside it is named as the way back
    shutil.copy(good, damaged.with_name(damaged.name + ".bak"))
    r = run_cli("runs", "list", "--store", str(damaged))
    assert r.returncode == 2 and f"last good backup is {damaged}.bak" in r.stderr, r.stderr


def test_a_sound_store_passes_the_check_and_a_missing_column_is_named(tmp_path):
    path = real_store(tmp_path / "s.sqlite")
    assert len(RunStore(path, readonly=True).runs()) == 12
    with sqlite3.connect(path) as c:
        c.execute("ALTER TABLE points DROP COLUMN train_loss")
    with pytest.raises(StoreError, match="lacks the column train_loss"):
        RunStore(path, readonly=True)
