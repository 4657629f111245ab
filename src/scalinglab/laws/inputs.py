"""Where fits get their numbers: a DataFrame, a CSV or Parquet file, or a run store, checked before fitting.

A run store is recognised by the SQLite magic header and read through `scalinglab.store.RunStore`, imported
only then, so fitting a CSV never needs the store (or torch).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.errors import DataError, FitError, StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"

# Column names tried, in order, when the caller does not name one. The store's names come last.
DEFAULT_COLUMNS = {
    "L": ("loss", "L", "final_test_loss", "test_loss"),
    "N": ("N", "n", "params", "n_params"),
    "D": ("D", "tokens"),
    "C": ("C", "flop", "compute"),
    "S": ("S", "steps", "step"),
    "B": ("B", "batch_tokens"),
    "B_crit": ("B_crit", "bcrit"),
    "U": ("U", "D_unique", "d_unique", "unique_tokens"),
}


def is_store(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def read_store(path: str | Path, level: str = "runs") -> pd.DataFrame:
    """Finished runs (level='runs': one row per run, loss = final test loss) or their learning curves
    (level='curves': one row per evaluation, with N and B of the run, group = run id)."""
    try:
        from scalinglab.store import RunStore
    except ImportError as exc:  # the store module is not there: say so rather than a traceback
        raise StoreError(f"{path}: is a SQLite run store but scalinglab.store cannot be imported ({exc})") from exc
    st = RunStore(str(path), readonly=True)
    runs = st.runs()
    if "status" in runs.columns:
        runs = runs[runs["status"] == "done"]
    if runs.empty:
        raise DataError(f"{path}: the run store has no finished runs (status 'done'); train some runs first")
    if level == "runs":
        out = runs.copy()
        out["loss"] = out["final_test_loss"]
        out["group"] = out["run_id"]
        return out
    curves = st.curves()
    keep = [c for c in ("run_id", "N", "B", "batch_size", "name", "study") if c in runs.columns]
    out = curves.merge(runs[keep], on="run_id", how="inner")
    out["S"], out["D"], out["C"] = out["step"], out["tokens"], out["flop"]
    out["loss"] = out["test_loss"]
    out["group"] = out["run_id"]
    return out


def read_table(path: str | Path, level: str = "runs") -> pd.DataFrame:
    """A CSV, a Parquet file or a run store, by content and suffix."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; give a CSV, a Parquet file or a run store")
    if is_store(path):
        return read_store(path, level)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path)
            with open(path, newline="", encoding="utf-8", errors="replace") as f:  # pandas renames repeats
                names = next(csv.reader(f), [])
            _no_duplicates([n.strip() for n in names if n.strip()], path)
        _no_duplicates(list(map(str, df.columns)), path)
        return df
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot be read as a table ({first}); give a CSV with a header row, "
                        "a Parquet file or a run store") from exc


def _no_duplicates(names: list[str], where) -> None:
    """A table naming one column twice is refused: which of the two a fit should read cannot be known."""
    seen = set()
    for n in names:
        if n in seen:
            raise DataError(f"{where}: the column {n!r} appears twice; rename one of them so that each column has "
                            "its own name")
        seen.add(n)


@dataclass
class Prepared:
    """Validated arrays for one fit."""

    X: dict[str, np.ndarray]
    y: np.ndarray
    groups: np.ndarray  # integer group index per point (the run each point belongs to)
    weights: np.ndarray
    frame: pd.DataFrame  # the rows used, with the variables under their standard names
    columns: dict[str, str]  # variable -> column it came from (or a derivation such as "C/(6N)")
    dropped: int


def _resolve(df: pd.DataFrame, var: str, given: str | None, where: str) -> str | None:
    if given is not None:
        if given not in df.columns:
            raise DataError(f"{where}: no column {given!r} for {var}; columns are: {', '.join(map(str, df.columns))}")
        return given
    for cand in DEFAULT_COLUMNS.get(var, (var,)):
        if cand in df.columns:
            return cand
    return None


def prepare(df: pd.DataFrame, inputs: tuple[str, ...], response: str, columns: dict[str, str | None],
            n_params: int, *, group: str | None = None, weights: str | None = None, drop_highest: int = 0,
            where: str = "data") -> Prepared:
    """Pick, derive and check the columns a form needs. Raises DataError/FitError with one actionable line."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{where}: expected a pandas DataFrame or a file path, got {type(df).__name__}")
    _no_duplicates(list(map(str, df.columns)), where)
    found = {v: _resolve(df, v, columns.get(v), where) for v in set(inputs) | {response, "N", "D", "C"}}
    out, used = {}, {}
    for v in (response,) + tuple(inputs):
        col = found.get(v)
        if col is not None:
            out[v] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
            used[v] = str(col)
        elif v == "D" and found.get("C") and found.get("N"):  # tokens from compute, as Chinchilla's points
            out[v] = (pd.to_numeric(df[found["C"]], errors="coerce") /
                      (6.0 * pd.to_numeric(df[found["N"]], errors="coerce"))).to_numpy(dtype=float)
            used[v] = f"{found['C']}/(6*{found['N']})"
        elif v == "C" and found.get("N") and found.get("D"):
            out[v] = (6.0 * pd.to_numeric(df[found["N"]], errors="coerce") *
                      pd.to_numeric(df[found["D"]], errors="coerce")).to_numpy(dtype=float)
            used[v] = f"6*{found['N']}*{found['D']}"
        else:
            flag = {"L": "--loss", "B_crit": "--loss", "N": "--n", "D": "--d", "C": "--c", "S": "--s",
                    "U": "--u"}.get(v, v)
            raise DataError(f"{where}: no column for {v}; name it with {flag} COL (columns are: "
                            f"{', '.join(map(str, df.columns))})")
    if "U" in out and "D" in out:  # a run without a data subset saw every token once: U = D
        out["U"] = np.where(np.isfinite(out["U"]), out["U"], out["D"])
    for v, arr in out.items():
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: column {used[v]!r} ({v}) has {int(bad.sum())} missing or non-numeric "
                            f"value(s), first at row {row}; remove or fill those rows")
        if (arr <= 0).any() and v != "G":  # G: a group's index, 0 included
            row = int(np.flatnonzero(arr <= 0)[0])
            raise DataError(f"{where}: column {used[v]!r} ({v}) has {int((arr <= 0).sum())} non-positive value(s), "
                            f"first at row {row} ({arr[row]:g}); scaling laws need positive values")
    if group is not None:
        if group not in df.columns:
            raise DataError(f"{where}: no group column {group!r}; columns are: {', '.join(map(str, df.columns))}")
        gcodes = pd.factorize(df[group])[0]
    else:
        gcodes = np.arange(len(df))
    if weights is not None:
        if weights not in df.columns:
            raise DataError(f"{where}: no weights column {weights!r}")
        w = pd.to_numeric(df[weights], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise DataError(f"{where}: weights column {weights!r} must be finite, >= 0 and not all zero")
    else:
        w = np.ones(len(df))
    keep = np.ones(len(df), dtype=bool)
    if drop_highest > 0:  # e.g. Epoch drops the 5 highest-loss points as outliers
        keep[np.argsort(out[response])[::-1][:drop_highest]] = False
    frame = pd.DataFrame({v: a[keep] for v, a in out.items()})
    if group is not None:
        frame["group"] = df[group].to_numpy()[keep]
    n = int(keep.sum())
    if n < n_params + 1:
        raise FitError(f"{where}: {n} usable points for a law with {n_params} parameters; need at least "
                       f"{n_params + 1}")
    g = pd.factorize(gcodes[keep])[0]
    return Prepared(X={v: out[v][keep] for v in inputs}, y=out[response][keep], groups=g, weights=w[keep],
                    frame=frame, columns=used, dropped=int((~keep).sum()))
