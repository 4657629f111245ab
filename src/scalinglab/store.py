"""The run store: one SQLite file per study, holding every run's config, shape, counts, status and curves.

Durability: WAL mode (readers never block the writer and see a consistent snapshot), every write in a
transaction, synchronous=NORMAL (a power cut can lose the last transaction, never corrupt the file). A
`meta` table marks the file as ours and records the schema version; anything else is refused with one line.

Opening a store checks it before anything is written to it: that it is ours (another application's SQLite file
is refused unchanged), SQLite's quick check, and the schema (every table and column this version reads). A damaged
store is one line saying what to do (its last good backup, where one lies beside it; `runs export`, which reads
what it still can: `RunStore(path, salvage=True)`), never a traceback, and nothing is written to it.

Read API returns pandas DataFrames; nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pandas is imported on first read: a training worker that only writes never pays for it
    import pandas as pd

from scalinglab.errors import StoreError

SCHEMA_VERSION = 1
APP = "scalinglab"
# interrupted: stopped by Ctrl-C (SIGINT) before its end; run again, it resumes from its checkpoint
STATUSES = ("planned", "running", "done", "failed", "diverged", "interrupted")
# What a run is for, as its study spec says (one run may serve several analyses when two specs share it):
# sizes (the size sweep: L(N), L(N, S), the compute frontier), subsets (data subsets: L(D), L(N, D)),
# shape (shapes at fixed N), batch (batch sizes: B_crit), lr (a learning-rate sweep).
ROLES = ("sizes", "subsets", "shape", "batch", "lr", "seeds")
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT, study TEXT,
    status TEXT NOT NULL CHECK (status IN ('planned','running','done','failed','diverged','interrupted')),
    config TEXT NOT NULL,
    n_layer INTEGER, d_model INTEGER, n_head INTEGER, d_ff INTEGER, d_attn INTEGER, n_ctx INTEGER,
    vocab_size INTEGER,
    N INTEGER, n_params_total INTEGER, n_params_embed INTEGER,
    batch_size INTEGER, B INTEGER, S INTEGER, D INTEGER, d_unique INTEGER, epochs REAL,
    lr REAL, C REAL, C_exact REAL,
    final_test_loss REAL, final_train_loss REAL, final_metrics TEXT,
    wall_time_s REAL, tokens_per_s REAL, attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT, host TEXT, device TEXT,
    created_at REAL, started_at REAL, finished_at REAL,
    precision TEXT, parent_run_id TEXT, branch_step INTEGER
);
CREATE TABLE IF NOT EXISTS points (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step INTEGER NOT NULL, tokens INTEGER NOT NULL, flop REAL, flop_exact REAL, lr REAL,
    train_loss REAL, wall_time_s REAL, b_simple REAL, gns_g2 REAL, gns_trace REAL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS evals (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step INTEGER NOT NULL, eval_set TEXT NOT NULL, loss REAL NOT NULL, se REAL,
    PRIMARY KEY (run_id, step, eval_set)
);
CREATE TABLE IF NOT EXISTS run_roles (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    role TEXT NOT NULL, study TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, role, study)
);
"""
_ROLES_TABLE = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS run_roles"):]

_RUN_COLUMNS = [
    "run_id", "name", "study", "status", "config", "n_layer", "d_model", "n_head", "d_ff", "d_attn", "n_ctx",
    "vocab_size", "N", "n_params_total", "n_params_embed", "batch_size", "B", "S", "D", "d_unique", "epochs", "lr",
    "C", "C_exact", "final_test_loss", "final_train_loss", "final_metrics", "wall_time_s", "tokens_per_s",
    "attempts", "error", "host", "device", "created_at", "started_at", "finished_at", "precision",
    "parent_run_id", "branch_step",
]  # fmt: skip
_POINT_COLUMNS = ["step", "tokens", "flop", "flop_exact", "lr", "train_loss", "wall_time_s", "b_simple",
                  "gns_g2", "gns_trace"]  # fmt: skip


class RunStore:
    """A study's run store. `RunStore(path)` creates it if absent; `readonly=True` requires it to exist."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False, *, salvage: bool = False):
        self.path = Path(path)
        self.readonly = readonly or salvage
        self.damaged: str | None = None  # what the check found, when opened with `salvage` (read-only)
        readonly = self.readonly
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a run store file")
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            with open(self.path, "rb") as f:
                if f.read(16) != _SQLITE_MAGIC:
                    raise StoreError(f"{self.path}: not a scalinglab run store (not an SQLite file)")
        elif readonly:
            raise StoreError(f"{self.path}: no such run store")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create_atomically()
            exists = True
        try:
            if readonly:
                uri = f"file:{self.path.resolve()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
            else:
                self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 60000")
            self._check_ours()  # before any write: another application's file is never changed
            self._check_health(salvage)
            if not readonly:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._add_missing_columns()
                self._allow_new_statuses()
                # a store written before run roles gains their (empty) table
                self._conn.execute(_ROLES_TABLE.strip().rstrip(";"))
        except sqlite3.DatabaseError as exc:
            if salvage:
                raise StoreError(f"{self.path}: corrupt or unreadable run store ({exc}); not even its table of "
                                 "contents can be read, so nothing can be exported from it"
                                 + self._backup_hint()) from None
            raise self._damaged_error(f"corrupt or unreadable: {exc}") from None

    # ------------------------------------------------------------------------------------------ checks
    def _check_health(self, salvage: bool) -> None:
        """SQLite's quick check and the schema this version reads; a failure is a StoreError saying what to do
        (or, with `salvage`, recorded in `self.damaged` for a read of what is left)."""
        try:
            rows = [r[0] for r in self._conn.execute("PRAGMA quick_check(5)").fetchall()]
            lines = [ln.strip() for r in rows for ln in str(r).splitlines()
                     if ln.strip() and not ln.startswith("*** in database")]
            problem = None if rows == ["ok"] else "SQLite quick_check: " + "; ".join(lines[:2])
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        if problem is None:
            problem = self._schema_problem()
        if problem is None:
            return
        if salvage:
            self.damaged = problem
            return
        raise self._damaged_error(problem)

    _REQUIRED = {"runs": set(_RUN_COLUMNS), "points": {"run_id", *_POINT_COLUMNS},
                 "evals": {"run_id", "step", "eval_set", "loss"}}

    def _schema_problem(self) -> str | None:
        for table, cols in self._REQUIRED.items():
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            if not have:
                return f"the table {table} is missing"
            # columns added after version 1 shipped may be absent: an older store gains them when opened to write
            lacking = sorted(cols - have - set(self._ADDED_COLUMNS.get(table, {})))
            if lacking:
                return f"the table {table} lacks the column {lacking[0]}"
        return None

    def backups(self) -> list[Path]:
        """Copies of this store beside it (`<store>.bak*`, `<store>.backup*`) that pass the check, newest first."""
        found = []
        for p in sorted(self.path.parent.glob(self.path.name + ".ba*"), key=lambda q: -q.stat().st_mtime):
            if not (p.name.startswith(self.path.name + ".bak") or p.name.startswith(self.path.name + ".backup")):
                continue
            if p.suffix in (".lock",) or p.name.endswith(("-wal", "-shm", "-journal")):
                continue
            try:
                with sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True) as c:
                    if c.execute("PRAGMA quick_check").fetchall() == [("ok",)]:
                        found.append(p)
            except sqlite3.Error:
                continue
        return found

    def _backup_hint(self) -> str:
        good = self.backups()
        return f"; its last good backup is {good[0]}: copy it over {self.path.name}" if good else ""

    def _damaged_error(self, problem: str) -> StoreError:
        good = self.backups()
        fix = (f"its last good backup is {good[0]} (copy it over the store), and `scalinglab runs export --store "
               f"{self.path} --out rescued` saves what can still be read" if good else
               f"no backup of it lies beside it; `scalinglab runs export --store {self.path} --out rescued` saves "
               "what can still be read")
        return StoreError(f"{self.path}: the run store is damaged ({problem}); nothing was written to it: {fix}")

    # ------------------------------------------------------------------------------------------ set-up
    def _create_atomically(self) -> None:
        """Build the empty store beside its final name and link it into place, so no other process ever opens
        a half-created file (one without its meta table). If another process won the race, use its file."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            self._conn = conn
            self._create()
            conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot create the run store ({exc})") from None
        finally:
            tmp.unlink(missing_ok=True)
            for suffix in ("-wal", "-shm", "-journal"):
                Path(str(tmp) + suffix).unlink(missing_ok=True)

    def _create(self) -> None:
        cur = self._conn
        cur.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    cur.execute(stmt)
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?)", (APP,))
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (str(time.time()),))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._check_ours()

    def _check_ours(self) -> None:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise StoreError(f"{self.path}: an SQLite file, but not a scalinglab run store (no meta table)")
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app") != APP:
            raise StoreError(f"{self.path}: an SQLite file, but not a scalinglab run store (app={meta.get('app')!r})")
        if int(meta.get("schema_version", -1)) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: run store schema version {meta.get('schema_version')}, this scalinglab reads "
                f"version {SCHEMA_VERSION}; use a matching scalinglab or export and re-import the runs"
            )

    # Columns added after schema version 1 first shipped: an older store gains them (NULL) when opened for writing,
    # and is read as it is when opened read-only (the readers tolerate their absence).
    # runs.precision (the run config's resolved precision): runs stored before it computed in float32 on the CPU
    # and under bfloat16 autocast on CUDA, and are filled in so when the column is added.
    # runs.parent_run_id, runs.branch_step: a cooldown branch of a warm-up-stable-decay run records the run whose
    # stable phase it continues and the step it branched at (NULL for every other run, and for runs stored before).
    _ADDED_COLUMNS = {"evals": {"se": "REAL"},
                      "runs": {"precision": "TEXT", "parent_run_id": "TEXT", "branch_step": "INTEGER"}}
    _BACKFILL = {("runs", "precision"): "UPDATE runs SET precision = CASE WHEN device LIKE 'cuda%' THEN 'bf16' "
                                        "ELSE 'fp32' END WHERE precision IS NULL"}

    def _add_missing_columns(self) -> None:
        for table, cols in self._ADDED_COLUMNS.items():
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in cols.items():
                if name not in have:
                    try:
                        with self._tx() as c:  # the column and its values for the rows already there, at once
                            c.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                            if (table, name) in self._BACKFILL:
                                c.execute(self._BACKFILL[table, name])
                    except (sqlite3.OperationalError, StoreError) as exc:  # another process added it first
                        if "duplicate column" not in str(exc):
                            raise

    def _allow_new_statuses(self) -> None:
        """A store created before the 'interrupted' status has a CHECK constraint without it: its schema text is
        rewritten (SQLite's documented way to change a constraint without touching the stored rows: writable_schema,
        one transaction, schema_version bumped)."""
        def runs_sql():
            return self._conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()[0]

        old = "'failed','diverged')"
        if old not in runs_sql():
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            sql = runs_sql()
            if old in sql:  # (another process may have done it first)
                version = self._conn.execute("PRAGMA schema_version").fetchone()[0]
                self._conn.execute("PRAGMA writable_schema = ON")
                self._conn.execute("UPDATE sqlite_master SET sql = ? WHERE type='table' AND name='runs'",
                                   (sql.replace(old, "'failed','diverged','interrupted')"),))
                self._conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
                self._conn.execute("PRAGMA writable_schema = OFF")
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    class _Tx:
        """One write transaction. A write that fails (the disk is full, an I/O error) rolls the whole transaction
        back, so the file keeps what it held before, and becomes a StoreError with one line."""

        def __init__(self, conn, path: Path):
            self.conn, self.path = conn, path
            self.nested = conn.in_transaction  # inside another write: part of that transaction

        def __enter__(self):
            if self.nested:
                return self.conn
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _write_error(self.path, exc) from None
            return self.conn

        def __exit__(self, typ, exc, tb):
            if self.nested:
                return False
            if typ is None:
                try:
                    self.conn.execute("COMMIT")
                    return False
                except sqlite3.Error as commit_exc:
                    exc = commit_exc
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise _write_error(self.path, exc) from None
            return False

    def _tx(self) -> "_Tx":
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        return RunStore._Tx(self._conn, self.path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------------------------------ writes
    def add_run(self, run_id: str, config: dict, *, name: str = "", study: str | None = None,
                info: dict | None = None) -> bool:
        """Register a run as planned (no-op if it is already known). Returns True if it was new."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO runs (run_id, name, study, status, config, created_at) "
                "VALUES (?, ?, ?, 'planned', ?, ?)",
                (run_id, name, study, json.dumps(config, sort_keys=True), time.time()),
            )
            new = cur.rowcount == 1
            if info:
                self._update(c, run_id, info)
        return new

    def add_roles(self, run_id: str, roles: Iterable[str], study: str = "") -> None:
        """Record what a run is for (its study spec's roles); roles already recorded are kept."""
        roles = list(roles)
        bad = sorted(set(roles) - set(ROLES))
        if bad:
            raise StoreError(f"unknown run role {bad[0]!r} (known: {', '.join(ROLES)})")
        with self._tx() as c:
            c.executemany("INSERT OR IGNORE INTO run_roles (run_id, role, study) VALUES (?, ?, ?)",
                          [(run_id, r, study or "") for r in roles])

    def roles(self) -> pd.DataFrame | None:
        """run_id, role, study of every recorded role; None for a store written before run roles existed."""
        has = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='run_roles'").fetchone()
        return self._read("SELECT * FROM run_roles ORDER BY run_id, role") if has else None

    @staticmethod
    def _update(c, run_id: str, values: dict) -> None:
        bad = set(values) - set(_RUN_COLUMNS)
        if bad:
            raise ValueError(f"unknown run columns {sorted(bad)}")
        cols = ", ".join(f"{k} = ?" for k in values)
        c.execute(f"UPDATE runs SET {cols} WHERE run_id = ?", [*_sql_values(values.values()), run_id])

    def update_run(self, run_id: str, **values) -> None:
        with self._tx() as c:
            self._update(c, run_id, values)

    def mark_running(self, run_id: str, device: str = "") -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET status='running', attempts = attempts + 1, started_at = ?, host = ?, device = ?, "
                "error = NULL WHERE run_id = ?",
                (time.time(), socket.gethostname(), device, run_id),
            )

    def add_curve(self, run_id: str, points: Iterable[dict] = (), evals: Iterable[dict] = ()) -> None:
        """Append (or replace) curve points and evaluations in one transaction."""
        points, evals = list(points), list(evals)
        if not points and not evals:
            return
        with self._tx() as c:
            if points:
                cols = ", ".join(_POINT_COLUMNS)
                marks = ", ".join("?" * (len(_POINT_COLUMNS) + 1))
                c.executemany(
                    f"INSERT OR REPLACE INTO points (run_id, {cols}) VALUES ({marks})",
                    [[run_id, *_sql_values(p.get(k) for k in _POINT_COLUMNS)] for p in points],
                )
            if evals:
                c.executemany(
                    "INSERT OR REPLACE INTO evals (run_id, step, eval_set, loss, se) VALUES (?, ?, ?, ?, ?)",
                    [(run_id, int(e["step"]), e["eval_set"], float(e["loss"]),
                      None if e.get("se") is None or e["se"] != e["se"] else float(e["se"])) for e in evals],
                )

    def truncate_curve(self, run_id: str, after_step: int) -> None:
        """Drop points beyond `after_step` (a resumed run rewrites them exactly)."""
        with self._tx() as c:
            c.execute("DELETE FROM points WHERE run_id = ? AND step > ?", (run_id, after_step))
            c.execute("DELETE FROM evals WHERE run_id = ? AND step > ?", (run_id, after_step))

    def finish_run(self, run_id: str, status: str, summary: dict | None = None, *, points=(), evals=(),
                   replace_curve: bool = False) -> None:
        """Record the outcome (and optionally the whole curve) in one transaction."""
        if status not in STATUSES:
            raise ValueError(f"bad status {status!r}")
        with self._tx() as c:  # one transaction: a failed write (disk full) leaves the run as it was
            if replace_curve:
                c.execute("DELETE FROM points WHERE run_id = ?", (run_id,))
                c.execute("DELETE FROM evals WHERE run_id = ?", (run_id,))
            self.add_curve(run_id, points, evals)  # inside this transaction
            self._update(c, run_id, {**(summary or {}), "status": status, "finished_at": time.time()})

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"bad status {status!r}")
        with self._tx() as c:
            c.execute("UPDATE runs SET status = ?, error = ? WHERE run_id = ?", (status, error, run_id))

    def delete_run(self, run_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # ------------------------------------------------------------------------------------------ reads
    def _read(self, sql: str, params=()) -> pd.DataFrame:
        import pandas as pd

        if self.damaged:
            return self._salvage(sql, params)
        try:
            # one read transaction: a consistent snapshot even while a run writes
            return pd.read_sql_query(sql, self._conn, params=params)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read the run store ({exc})") from None

    def _salvage(self, sql: str, params=()) -> pd.DataFrame:
        """The rows of a damaged store's query that can still be read: the table scanned from its first row up to
        the damage and from its last row down to it (ORDER BY dropped: sorting would need every row first)."""
        import pandas as pd

        base = sql.split(" ORDER BY ")[0]
        rows: dict = {}
        cols = None
        for order in ("ASC", "DESC"):
            try:
                cur = self._conn.execute(base.replace("SELECT *", "SELECT rowid AS _salvage_rowid, *", 1) +
                                         f" ORDER BY rowid {order}", params)
                cols = [d[0] for d in cur.description]
                for row in cur:
                    rows[row[0]] = row
            except sqlite3.DatabaseError:
                continue
        if cols is None:  # nothing of it readable: its columns, no rows
            table = base.split(" FROM ")[1].split()[0]
            cols = ["_salvage_rowid"] + [r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")]
        df = pd.DataFrame([rows[k] for k in sorted(rows)], columns=cols)
        return df.drop(columns="_salvage_rowid")

    def column(self, name: str) -> dict:
        """{run_id: value} of one column of the runs table, without pandas (the study driver's bookkeeping)."""
        if name not in _RUN_COLUMNS:
            raise ValueError(f"unknown run column {name!r}")
        try:
            return dict(self._conn.execute(f"SELECT run_id, {name} FROM runs").fetchall())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read the run store ({exc})") from None

    def runs(self, status: str | None = None, study: str | None = None) -> pd.DataFrame:
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if study:
            where.append("study = ?")
            params.append(study)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at"
        return self._read(sql, params)

    def run(self, run_id: str) -> dict:
        df = self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if df.empty:
            matches = self._read("SELECT * FROM runs WHERE run_id LIKE ? OR name = ?", (run_id + "%", run_id))
            if len(matches) != 1:
                raise StoreError(f"{self.path}: no single run matches {run_id!r}")
            df = matches
        return df.iloc[0].to_dict()

    def evals(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        return self._filter("SELECT * FROM evals", run_ids, "ORDER BY run_id, step, eval_set")

    def _filter(self, sql: str, run_ids, order: str) -> pd.DataFrame:
        if run_ids is None:
            return self._read(f"{sql} {order}")
        ids = list(run_ids)
        marks = ",".join("?" * len(ids)) or "NULL"
        return self._read(f"{sql} WHERE run_id IN ({marks}) {order}", ids)

    def curves(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per logged step: train points joined with the evaluations at that step, as columns
        `test_loss` (the held-out split of the training distribution), `loss_validation` (the validation split)
        and `loss_<set>` (transfer sets), each with its standard error beside it: `test_loss_se`,
        `loss_validation_se`, `loss_<set>_se` (NaN where a store written before the SE was recorded)."""
        c = self.snapshot(run_ids)
        return c["curves"]

    def snapshot(self, run_ids: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
        """runs, points, evals and the joined curves, all read in one transaction (one consistent view)."""
        ids = None if run_ids is None else list(run_ids)
        self._conn.execute("BEGIN")
        try:
            runs = self._filter("SELECT * FROM runs", ids, "ORDER BY created_at")
            points = self._filter("SELECT * FROM points", ids, "ORDER BY run_id, step")
            evals = self._filter("SELECT * FROM evals", ids, "ORDER BY run_id, step, eval_set")
            roles = self.roles()
        finally:
            if self._conn.in_transaction:  # a read error may have ended it already
                with contextlib.suppress(sqlite3.DatabaseError):  # (a damaged store, read for salvage)
                    self._conn.execute("COMMIT")
        if self.damaged:  # salvaged rows come unsorted
            runs = runs.sort_values("created_at", kind="stable").reset_index(drop=True)
            points = points.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
            evals = evals.sort_values(["run_id", "step", "eval_set"], kind="stable").reset_index(drop=True)
        # a store from before the SE column (opened read-only) has none; SQLite NULLs come back as None
        evals = evals.assign(se=evals["se"].astype(float) if "se" in evals.columns else float("nan"))
        if not evals.empty:
            wide = evals.pivot(index=["run_id", "step"], columns="eval_set", values=["loss", "se"])
            wide.columns = [_eval_column(k, v == "se") for v, k in wide.columns]
            curves = points.merge(wide.reset_index(), on=["run_id", "step"], how="outer").sort_values(["run_id", "step"])
        else:
            curves = points.assign(test_loss=float("nan"), test_loss_se=float("nan"))
        return {"runs": runs, "points": points, "evals": evals, "curves": curves.reset_index(drop=True),
                "roles": roles}

    def export(self, out: str | os.PathLike, fmt: str | None = None) -> list[Path]:
        """Write runs and curves to OUT_runs.{csv,parquet} and OUT_curves.{csv,parquet}. Either file may replace
        only an earlier export (scalinglab.outdir: one listed in its directory's manifest, or an older
        scalinglab's export recognised by its columns); any other file of that name is refused before writing."""
        from scalinglab import outdir

        out = Path(out)
        fmt = fmt or (out.suffix.lstrip(".") or "csv")
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"export format must be csv or parquet, got {fmt!r}")
        stem = out.with_suffix("") if out.suffix in (".csv", ".parquet") else out
        targets = {key: Path(f"{stem}_{key}.{fmt}") for key in ("runs", "curves")}
        outdir.claim(stem.parent, "export", shared=True,
                     legacy=lambda d: {p.name for p in targets.values() if _is_export(p)})
        for p in targets.values():  # both checked before either is written
            if p.exists() and p.name not in (outdir.read_manifest(p.parent) or set()):
                raise outdir.OutputError(f"{p}: exists and scalinglab did not write it; it never overwrites a file "
                                         "it did not write: give --out another stem")
        snap = self.snapshot()
        for key, p in targets.items():
            with outdir.replacing(p) as tmp:
                df = snap[key]
                df.to_csv(tmp, index=False) if fmt == "csv" else df.to_parquet(tmp, index=False)
        return list(targets.values())


def _is_export(path: Path) -> bool:
    """An older scalinglab's export (written before output manifests): a runs or curves table by its columns."""
    want = "run_id,name,study,status,config" if path.stem.endswith("_runs") else "run_id,step,tokens"
    try:
        if path.suffix == ".csv":
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.readline().startswith(want)
        import pyarrow.parquet as pq

        return ",".join(pq.read_schema(path).names).startswith(want)
    except Exception:  # unreadable: not recognisably ours
        return False


def _write_error(path: Path, exc: sqlite3.Error) -> StoreError:
    msg = str(exc)
    if "full" in msg or "I/O" in msg:
        return StoreError(f"{path}: cannot write the run store: the disk is full or failing ({msg}); nothing stored "
                          "was changed; free space, then `scalinglab study run --retry-failed`")
    return StoreError(f"{path}: cannot write the run store ({msg})")


def _eval_column(eval_set: str, se: bool) -> str:
    """The curves column of an evaluation set's loss (or its standard error)."""
    name = "test_loss" if eval_set == "test" else f"loss_{eval_set}"
    return name + "_se" if se else name


def _sql_values(values: Iterable) -> list:
    out = []
    for v in values:
        if isinstance(v, (dict, list)):
            v = json.dumps(v, sort_keys=True)
        elif hasattr(v, "item"):  # numpy scalar
            v = v.item()
        out.append(v)
    return out
