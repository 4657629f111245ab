"""The runs of a study, read once from its store and arranged the way the paper's analyses need them.

A study's store holds runs of several kinds side by side: a sweep over model size, data subsets, shapes at a
fixed N, batch sizes. Nothing in the store says which run belongs to which analysis, and a user's own study may
mix them freely, so the roles are read off the runs themselves (what varies against what), never from names:

- `main`: the full-data runs (no repetition) of the most common (token budget, batch, LR scale) setting: the
  size sweep behind L(N), L(N, S) and the compute frontier;
- `subsets`: runs trained on a data subset they repeat (D_unique < tokens): L(D) and L(N, D);
- shape groups: runs of one budget whose N agree within ~25% while their shapes differ (Kaplan section 3.1);
- batch groups: runs of one shape and budget at several batch sizes (Kaplan section 5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.errors import StoreError

# N values closer than this (ratio) count as "the same N" for the shape analysis.
SAME_N_RATIO = 1.25


def _config(raw) -> dict:
    try:
        return json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    except (TypeError, ValueError):
        return {}


@dataclass
class StudyData:
    name: str
    runs: pd.DataFrame  # finished runs ('done'), one row each, with derived columns
    curves: pd.DataFrame  # test-loss evaluations of those runs: run_id, step, tokens, flop, test_loss, N, ...
    all_runs: pd.DataFrame  # every run in the store, any status (the run table of the report)
    store_path: Path | None = None
    transfer_sets: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_store(cls, path: str | Path, name: str | None = None) -> "StudyData":
        from scalinglab.store import RunStore

        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such run store; run the study first (scalinglab study run SPEC)")
        with RunStore(path, readonly=True) as st:
            snap = st.snapshot()
        return cls.from_frames(snap["runs"], snap["curves"], name=name or path.stem, store_path=path)

    @classmethod
    def from_frames(cls, runs: pd.DataFrame, curves: pd.DataFrame, name: str = "study",
                    store_path: Path | None = None) -> "StudyData":
        all_runs = runs.copy()
        done = runs[runs["status"] == "done"].copy() if "status" in runs else runs.copy()
        done = done[np.isfinite(pd.to_numeric(done["final_test_loss"], errors="coerce"))]
        cfgs = [_config(c) for c in done.get("config", pd.Series([{}] * len(done)))]
        done["lr_scale"] = [c.get("lr_scale", 1.0) for c in cfgs]
        done["seed"] = [c.get("seed", 0) for c in cfgs]
        done["tokens_budget"] = done["D"]
        d_unique = pd.to_numeric(done["d_unique"], errors="coerce")
        epochs = pd.to_numeric(done.get("epochs"), errors="coerce").fillna(0.0)
        done["repeats"] = d_unique.notna() & (epochs > 1.0 + 1e-9)
        done["aspect_ratio"] = done["d_model"] / done["n_layer"]
        done["d_ff_ratio"] = done["d_ff"] / done["d_model"]
        done["loss"] = done["final_test_loss"].astype(float)
        metrics = [_config(m) for m in done.get("final_metrics", pd.Series([{}] * len(done)))]
        transfer = sorted({k for m in metrics for k in (m.get("eval_losses") or {}) if k not in ("test", "validation")})
        for s in transfer:
            done[f"loss_{s}"] = [(m.get("eval_losses") or {}).get(s, np.nan) for m in metrics]

        cur = curves.copy() if curves is not None else pd.DataFrame()
        if not cur.empty:
            cur = cur[cur["run_id"].isin(done["run_id"])]
            cur = cur[np.isfinite(pd.to_numeric(cur.get("test_loss"), errors="coerce"))]
            keep = ["run_id", "N", "n_params_total", "n_layer", "B", "batch_size", "S", "D", "d_unique", "repeats"]
            cur = cur.merge(done[keep].rename(columns={"S": "S_total", "D": "D_total"}), on="run_id")
            cur = cur.sort_values(["run_id", "step"]).reset_index(drop=True)
            best = cur.groupby("run_id")["test_loss"].min()
            done["best_loss"] = done["run_id"].map(best).fillna(done["loss"])
        else:
            done["best_loss"] = done["loss"]
        done = done.reset_index(drop=True)
        return cls(name=name, runs=done, curves=cur, all_runs=all_runs, store_path=store_path,
                   transfer_sets=transfer)

    # ------------------------------------------------------------------------------------------ roles
    @property
    def full_data(self) -> pd.DataFrame:
        """Runs that never repeat data."""
        return self.runs[~self.runs["repeats"]]

    @property
    def main(self) -> pd.DataFrame:
        """The size sweep: full-data runs of the (tokens, B, LR scale) setting with the most distinct N."""
        fd = self.full_data
        if fd.empty:
            return fd
        keys = ["tokens_budget", "B", "lr_scale"]
        counts = fd.groupby(keys)["N"].nunique()
        best = counts.idxmax()
        sel = fd
        for k, v in zip(keys, best if isinstance(best, tuple) else (best,)):
            sel = sel[sel[k] == v]
        return sel

    def main_by_n(self) -> pd.DataFrame:
        """One row per N from the size sweep: the best run at that N (the best shape, as Kaplan's L(N))."""
        m = self.main
        if m.empty:
            return m
        return m.loc[m.groupby("N")["loss"].idxmin()].sort_values("N").reset_index(drop=True)

    @property
    def subsets(self) -> pd.DataFrame:
        """Runs limited by a data subset they repeat (the early-stopped loss is `best_loss`)."""
        return self.runs[self.runs["repeats"]]

    def shape_groups(self, min_shapes: int = 3) -> list[pd.DataFrame]:
        """Groups of full-data runs with one budget and about the same N but different shapes."""
        out = []
        fd = self.full_data
        for _, g in fd.groupby(["tokens_budget", "B", "lr_scale"]):
            g = g.sort_values("N")
            logn = np.log(g["N"].to_numpy(float))
            used = np.zeros(len(g), bool)
            for i in range(len(g)):
                if used[i]:
                    continue
                near = (~used) & (np.abs(logn - logn[i]) <= np.log(SAME_N_RATIO))
                grp = g[near]
                shapes = grp[["n_layer", "d_model", "n_head", "d_ff"]].drop_duplicates()
                if len(shapes) >= min_shapes:
                    out.append(grp)
                    used |= near
        return out

    def batch_groups(self, min_batches: int = 3) -> list[pd.DataFrame]:
        """Runs of one shape and data setting at several batch sizes."""
        out = []
        keys = ["n_layer", "d_model", "n_head", "d_ff", "d_unique", "lr_scale"]
        rr = self.full_data.copy()
        rr["d_unique"] = rr["d_unique"].fillna(-1)
        for _, g in rr.groupby(keys):
            if g["B"].nunique() >= min_batches:
                out.append(g.sort_values("B"))
        return out

    def curve(self, run_id: str) -> pd.DataFrame:
        return self.curves[self.curves["run_id"] == run_id]
