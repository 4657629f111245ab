import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from conftest import run_cli
from scalinglab.errors import StoreError
from scalinglab.store import RunStore

WRITER = textwrap.dedent("""
    import sys
    from scalinglab.store import RunStore
    st = RunStore(sys.argv[1])
    st.add_run("r1", {"x": 1})
    st.mark_running("r1")
    for k in range(300):
        # each transaction adds 10 points and the one evaluation at the last of them
        pts = [dict(step=10 * k + i, tokens=10 * k + i, train_loss=1.0) for i in range(1, 11)]
        st.add_curve("r1", pts, [dict(step=10 * k + 10, eval_set="test", loss=1.0)])
    st.finish_run("r1", "done", {"final_test_loss": 1.0})
""")


def test_reader_sees_consistent_snapshots_while_a_run_writes(tmp_path):
    path = tmp_path / "s.sqlite"
    RunStore(path).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    reader = RunStore(path, readonly=True)
    seen = set()
    while writer.poll() is None or len(seen) < 2:
        snap = reader.snapshot()
        n_pts, n_ev = len(snap["points"]), len(snap["evals"])
        assert n_pts % 10 == 0 and n_ev == n_pts // 10, (n_pts, n_ev)  # never half a transaction
        if len(snap["runs"]):
            assert snap["runs"].iloc[0]["status"] in ("planned", "running", "done")
        seen.add(n_pts)
        if writer.poll() is not None:
            break
    assert writer.wait() == 0
    final = reader.snapshot()
    assert len(final["points"]) == 3000 and final["runs"].iloc[0]["status"] == "done"
    assert len(seen) > 2  # the reader really overlapped the writer


def _assert_one_line_exit2(store, needle):
    r = run_cli("runs", "list", "--store", str(store))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_corrupt_and_foreign_files_give_one_line(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all\n" * 100)
    _assert_one_line_exit2(garbage, "not an SQLite file")
    assert garbage.read_bytes() == b"this is not a database at all\n" * 100  # left untouched

    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        c.execute("INSERT INTO users VALUES (1, 'ada')")
    _assert_one_line_exit2(foreign, "not a scalinglab run store")
    with sqlite3.connect(foreign) as c:
        assert c.execute("SELECT name FROM users").fetchall() == [("ada",)]

    good = tmp_path / "good.sqlite"
    st = RunStore(good)
    st.add_run("abc", {"k": 1})
    st.close()
    damaged = tmp_path / "damaged.sqlite"
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # header intact, schema page destroyed
    damaged.write_bytes(bytes(data))
    _assert_one_line_exit2(damaged, "corrupt")

    missing = tmp_path / "nope.sqlite"
    _assert_one_line_exit2(missing, "no such run store")
    assert not missing.exists()


def test_schema_version_mismatch_is_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    RunStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999"):
        RunStore(path)


def test_export_csv_and_parquet_roundtrip(tmp_path):
    st = RunStore(tmp_path / "s.sqlite")
    st.add_run("r1", {"a": 1}, info=dict(N=1000, D=5000))
    st.add_curve("r1", [dict(step=s, tokens=100 * s, train_loss=5.0 / s) for s in (1, 2, 3)],
                 [dict(step=3, eval_set="test", loss=1.5), dict(step=3, eval_set="wiki", loss=2.5)])  # fmt: skip
    st.finish_run("r1", "done", {"final_test_loss": 1.5})
    for fmt in ("csv", "parquet"):
        runs_p, curves_p = st.export(tmp_path / "out" / "study", fmt)
        read = pd.read_csv if fmt == "csv" else pd.read_parquet
        runs, curves = read(runs_p), read(curves_p)
        assert runs.loc[0, "N"] == 1000 and runs.loc[0, "status"] == "done"
        assert list(curves["step"]) == [1, 2, 3]
        assert curves["test_loss"].iloc[-1] == 1.5 and curves["loss_wiki"].iloc[-1] == 2.5


def test_column_reads_one_field_per_run_without_pandas(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as st:
        st.add_run("a", {"x": 1}, info={"C": 1.5e9})
        st.add_run("b", {"x": 2})
        st.finish_run("b", "diverged", {"C": 2.0e9})
        assert st.column("status") == {"a": "planned", "b": "diverged"}
        assert st.column("C") == {"a": 1.5e9, "b": 2.0e9}
        with pytest.raises(ValueError, match="unknown run column"):
            st.column("C; DROP TABLE runs")
        assert st.column("status") == {"a": "planned", "b": "diverged"}  # nothing was run, nothing lost


def test_eval_standard_errors_in_curves_and_older_stores_without_them(tmp_path):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as st:
        st.add_run("r1", {"x": 1})
        st.add_curve("r1", [dict(step=5, tokens=50, train_loss=2.0)],
                     [dict(step=5, eval_set="test", loss=2.5, se=0.01),
                      dict(step=5, eval_set="validation", loss=2.4, se=0.02),
                      dict(step=5, eval_set="sotu", loss=3.0, se=None)])
        c = st.curves().iloc[0]
    assert (c["test_loss"], c["test_loss_se"], c["loss_validation"], c["loss_validation_se"]) == (2.5, 0.01, 2.4, 0.02)
    assert c["loss_sotu"] == 3.0 and pd.isna(c["loss_sotu_se"])

    # a store written before evaluations carried a standard error: readable as it is, upgraded on write
    old = tmp_path / "old.sqlite"
    with RunStore(old) as st:
        st.add_run("r1", {"x": 1})
    with sqlite3.connect(old) as conn:
        conn.execute("ALTER TABLE evals DROP COLUMN se")
        conn.execute("INSERT INTO evals (run_id, step, eval_set, loss) VALUES ('r1', 3, 'test', 2.75)")
    with RunStore(old, readonly=True) as st:
        c = st.curves().iloc[0]
        assert c["test_loss"] == 2.75 and pd.isna(c["test_loss_se"])
    with RunStore(old) as st:
        st.add_curve("r1", evals=[dict(step=4, eval_set="test", loss=2.5, se=0.03)])
        c = st.curves()
        assert list(c["test_loss"]) == [2.75, 2.5] and pd.isna(c["test_loss_se"][0]) and c["test_loss_se"][1] == 0.03


def test_precision_column_and_older_stores_gain_it_from_their_devices(tmp_path):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as st:
        st.add_run("r1", {"precision": "bf16"}, info={"precision": "bf16"})
        assert st.column("precision") == {"r1": "bf16"}

    # a store written before runs recorded their precision: its CPU runs computed in float32, its CUDA runs under
    # bf16 autocast (and a planned run, not yet on any device, in float32 as the CPU default then was)
    old = tmp_path / "old.sqlite"
    with RunStore(old) as st:
        for rid, device in (("cpu_run", "cpu"), ("gpu_run", "cuda:0"), ("group_run", "cpu (group of 4)")):
            st.add_run(rid, {"x": 1})
            st.mark_running(rid, device=device)
        st.add_run("planned_run", {"x": 1})
    with sqlite3.connect(old) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN precision")
    with RunStore(old, readonly=True) as st:  # readable as it is
        assert "precision" not in st.runs().columns and len(st.runs()) == 4
    with RunStore(old) as st:  # upgraded when opened for writing
        assert st.column("precision") == {"cpu_run": "fp32", "gpu_run": "bf16", "group_run": "fp32",
                                          "planned_run": "fp32"}
    with RunStore(old) as st:  # and opened again: nothing to add
        assert st.column("precision")["gpu_run"] == "bf16"


def test_branch_columns_and_older_stores_gain_them(tmp_path):
    """A cooldown branch records its parent run and branch step; a store from before has neither column, is read
    as it is, and gains them (NULL) when opened for writing."""
    path = tmp_path / "s.sqlite"
    with RunStore(path) as st:
        st.add_run("trunk", {"x": 1})
        st.add_run("branch", {"x": 2}, info={"parent_run_id": "trunk", "branch_step": 160})
        assert st.column("parent_run_id") == {"trunk": None, "branch": "trunk"}
        assert st.column("branch_step") == {"trunk": None, "branch": 160}
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN parent_run_id")
        conn.execute("ALTER TABLE runs DROP COLUMN branch_step")
    with RunStore(path, readonly=True) as st:
        assert "parent_run_id" not in st.runs().columns and len(st.runs()) == 2
    with RunStore(path) as st:
        assert st.column("parent_run_id") == {"trunk": None, "branch": None}
        st.update_run("branch", parent_run_id="trunk", branch_step=160)
        assert st.run("branch")["branch_step"] == 160
