"""The runs of a study, read once from its store and arranged by the roles its study specs gave them.

Every run carries the roles its spec declared (scalinglab.store.ROLES; a run shared by two specs has both), and
every analysis reads them; nothing here guesses what a run is for from its budget or its size:

- `sizes`: the size sweep behind L(N), L(N, S) and the compute frontier;
- `subsets`: runs on a data subset (D_unique): L(D), L(N, D), overfitting;
- `shape`: shapes at fixed N (Kaplan section 3.1), one group per spec and target N;
- `batch`: one shape at several batch sizes (Kaplan section 5); with an LR sweep at each batch size the run with
  the best validation loss stands for that batch size, and the choice is recorded (`lr_choice`).

Losses: `loss_final` is the test loss at the end of a run; `loss_best` the test loss at the step the validation
split picks (lowest validation loss), or, in a store without a validation split, the lowest test loss (an
optimistic choice, said in `best_by`). `loss` is `loss_final`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.errors import StoreError

VALIDATION = "validation"  # the early-stopping split: never a transfer set
SHAPE_COLS = ["n_layer", "d_model", "n_head", "d_ff"]


def _config(raw) -> dict:
    try:
        return json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    except (TypeError, ValueError):
        return {}


def family_of(raw_config) -> str:
    """A run's model family from its stored config (runs from before families are gpt2)."""
    return str(_config(raw_config).get("family") or "gpt2")


def _num(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x


def study_snapshot(path: str | Path) -> dict:
    """A run store's runs, curves and roles (RunStore.snapshot), read-only; a missing store or one whose runs have
    no roles is a StoreError with what to do."""
    from scalinglab.store import RunStore

    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such run store; run the study first (scalinglab study run SPEC)")
    with RunStore(path, readonly=True) as st:
        snap = st.snapshot()
    roles = snap.get("roles")
    if roles is None or roles.empty:
        raise StoreError(no_roles_message(path))
    return snap


def no_roles_message(path) -> str:
    return (f"{path}: no run in this store has a role (a store written before run roles, or runs trained outside "
            "a study spec); register them with `scalinglab study run SPEC` for each of the study's specs (done "
            "runs are not retrained)")


@dataclass
class StudyData:
    name: str
    runs: pd.DataFrame  # finished runs ('done'), one row each, with derived columns and a `roles` column (sets)
    curves: pd.DataFrame  # evaluations of those runs: run_id, step, tokens, flop, flop_exact, test_loss, N, ...
    all_runs: pd.DataFrame  # every run in the store, any status (the run table of the report)
    roles: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["run_id", "role", "study"]))
    store_path: Path | None = None
    transfer_sets: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_store(cls, path: str | Path, name: str | None = None) -> "StudyData":
        path = Path(path)
        snap = study_snapshot(path)
        return cls.from_frames(snap["runs"], snap["curves"], snap["roles"], name=name or path.stem, store_path=path)

    @classmethod
    def from_frames(cls, runs: pd.DataFrame, curves: pd.DataFrame, roles: pd.DataFrame, name: str = "study",
                    store_path: Path | None = None) -> "StudyData":
        """`roles`: run_id, role (and optionally study, the spec that gave it) for each role of each run."""
        if roles is None or roles.empty:
            raise StoreError(no_roles_message(store_path or name))
        roles = roles.copy()
        if "study" not in roles:
            roles["study"] = ""
        all_runs = runs.copy()
        done = runs[runs["status"] == "done"].copy() if "status" in runs else runs.copy()
        done = done[np.isfinite(pd.to_numeric(done["final_test_loss"], errors="coerce"))]
        cfgs = [_config(c) for c in done.get("config", pd.Series([{}] * len(done)))]
        done["lr_scale"] = [c.get("lr_scale", 1.0) for c in cfgs]
        done["seed"] = [c.get("seed", 0) for c in cfgs]
        done["family"] = [family_of(c) for c in cfgs]
        done["labels"] = [c.get("extra") or {} for c in cfgs]
        done["tokens_budget"] = done["D"]
        d_unique = pd.to_numeric(done["d_unique"], errors="coerce")
        epochs = pd.to_numeric(done.get("epochs"), errors="coerce").fillna(0.0)
        done["repeats"] = d_unique.notna() & (epochs > 1.0 + 1e-9)
        done["aspect_ratio"] = done["d_model"] / done["n_layer"]
        done["d_ff_ratio"] = done["d_ff"] / done["d_model"]
        done["loss_final"] = done["final_test_loss"].astype(float)
        done["loss"] = done["loss_final"]
        if "C_exact" not in done:
            done["C_exact"] = np.nan
        metrics = [_config(m) for m in done.get("final_metrics", pd.Series([{}] * len(done)))]
        transfer = sorted({k for m in metrics for k in (m.get("eval_losses") or {}) if k not in ("test", VALIDATION)})
        for s in transfer:
            done[f"loss_{s}"] = [(m.get("eval_losses") or {}).get(s, np.nan) for m in metrics]
        done["roles"] = done["run_id"].map(roles.groupby("run_id")["role"].agg(frozenset))
        done["roles"] = [r if isinstance(r, frozenset) else frozenset() for r in done["roles"]]

        cur = curves.copy() if curves is not None else pd.DataFrame()
        if not cur.empty:
            cur = cur[cur["run_id"].isin(done["run_id"])]
            cur = cur[np.isfinite(pd.to_numeric(cur.get("test_loss"), errors="coerce"))]
            if "flop_exact" not in cur:
                cur["flop_exact"] = np.nan
            keep = ["run_id", "N", "n_params_total", "n_layer", "B", "batch_size", "S", "D", "d_unique", "repeats"]
            cur = cur.merge(done[keep].rename(columns={"S": "S_total", "D": "D_total"}), on="run_id")
            cur = cur.sort_values(["run_id", "step"]).reset_index(drop=True)
        done = done.reset_index(drop=True)
        best = [_best_of_run(m, cur[cur["run_id"] == rid] if not cur.empty else cur, lf)
                for rid, m, lf in zip(done["run_id"], metrics, done["loss_final"])]
        done["loss_best"] = [b[0] for b in best]
        done["best_step"] = [b[1] for b in best]
        done["best_by"] = [b[2] for b in best]
        done["val_loss_best"] = [b[3] for b in best]
        done["best_loss"] = done["loss_best"]
        return cls(name=name, runs=done, curves=cur, all_runs=all_runs, roles=roles, store_path=store_path,
                   transfer_sets=transfer)

    # ------------------------------------------------------------------------------------------ roles
    def role(self, role: str) -> pd.DataFrame:
        """Finished runs the study specs gave `role`."""
        return self.runs[[role in r for r in self.runs["roles"]]]

    @property
    def full_data(self) -> pd.DataFrame:
        """Runs that never repeat data."""
        return self.runs[~self.runs["repeats"]]

    @property
    def sizes(self) -> pd.DataFrame:
        """The size sweep (role `sizes`)."""
        return self.role("sizes")

    main = sizes  # the name the figures used

    def main_by_n(self) -> pd.DataFrame:
        """One row per N of the size sweep: the run with the lowest early-stopped loss at that N (the best shape,
        as Kaplan's L(N))."""
        m = self.sizes
        if m.empty:
            return m
        return m.loc[m.groupby("N")["loss_best"].idxmin()].sort_values("N").reset_index(drop=True)

    @property
    def subsets(self) -> pd.DataFrame:
        """Runs of the data-subset role."""
        return self.role("subsets")

    def run_noise(self) -> tuple[float, int, int]:
        """(sigma, degrees of freedom, groups): the run-to-run noise of the final test loss, the pooled standard
        deviation of log loss over groups of runs that differ only by their seed (role `seeds` beside the size
        sweep runs they replicate: same shape, batch, tokens, data and learning rate). NaN without replicates."""
        runs = pd.concat([self.sizes, self.role("seeds")]).drop_duplicates("run_id")
        if runs.empty or self.role("seeds").empty:
            return float("nan"), 0, 0
        key = ["N", "n_layer", "d_model", "B", "D", "lr"]
        ss = df = groups = 0
        for _, g in runs.assign(lr=runs["lr"].astype(float).round(10)).groupby(key, dropna=False):
            if len(g) >= 2:
                x = np.log(g["loss_final"].astype(float).to_numpy())
                ss += float(np.sum((x - x.mean()) ** 2))
                df += len(g) - 1
                groups += 1
        return (float(np.sqrt(ss / df)) if df else float("nan")), df, groups

    @property
    def best_by(self) -> str:
        """How this study's early-stopping points were chosen: 'validation', 'test' or 'validation and test'."""
        ways = set(self.runs["best_by"]) if len(self.runs) else {"validation"}
        return " and ".join(sorted(ways))

    def shape_groups(self, min_shapes: int = 3) -> list[pd.DataFrame]:
        """Runs of the shape role, one group per spec and target N (the spec's n_params label; a spec of explicit
        shapes is one group), with at least `min_shapes` distinct shapes."""
        sh = self.role("shape")
        if sh.empty:
            return []
        spec = sh["run_id"].map(self.roles[self.roles["role"] == "shape"].groupby("run_id")["study"].first())
        target = [str(lab.get("n_params", "")) for lab in sh["labels"]]
        out = []
        for _, g in sh.groupby([spec.fillna("").to_numpy(), np.array(target), sh["tokens_budget"].to_numpy()]):
            if len(g[SHAPE_COLS].drop_duplicates()) >= min_shapes:
                out.append(g.sort_values("aspect_ratio"))
        return out

    def batch_groups(self, min_batches: int = 3) -> list[pd.DataFrame]:
        """Runs of the batch role, one group per shape and data setting with >= `min_batches` batch sizes; where
        several learning rates were tried at one batch size, the one with the lowest validation-chosen loss
        stands for it (`lr_choice` of the group's runs records which)."""
        out = []
        rr = self.role("batch").copy()
        rr["d_unique"] = rr["d_unique"].fillna(-1)
        for _, g in rr.groupby(SHAPE_COLS + ["d_unique"]):
            if g["B"].nunique() >= min_batches:
                out.append(g.sort_values("B"))
        return out

    def lr_choice(self, group: pd.DataFrame) -> pd.DataFrame:
        """One run per batch size of a batch group: the learning rate with the lowest validation loss at its
        early-stopping step (the test loss only where a run has no validation curve), so the choice never reads the
        test split the losses are reported on."""
        key = group["val_loss_best"].where(np.isfinite(group["val_loss_best"].astype(float)), group["loss_best"])
        pick = group.loc[key.groupby(group["B"]).idxmin()].copy()
        tried = group.groupby("B")["lr"].apply(lambda s: sorted(set(np.round(s.astype(float), 8))))
        pick["lrs_tried"] = pick["B"].map(tried)
        return pick.sort_values("B")

    def curve(self, run_id: str) -> pd.DataFrame:
        return self.curves[self.curves["run_id"] == run_id]


def _best_of_run(metrics: dict, curve: pd.DataFrame, loss_final: float) -> tuple[float, float, str, float]:
    """(test loss at the early-stopping step, that step, how it was chosen, the validation loss there) of one
    run."""
    at_best = _num(metrics.get("test_loss_at_best"))
    if np.isfinite(at_best):
        return at_best, _num(metrics.get("best_step")), "validation", _num(metrics.get("val_loss_at_best"))
    if not curve.empty and "loss_validation" in curve:
        c = curve[np.isfinite(pd.to_numeric(curve["loss_validation"], errors="coerce"))]
        if len(c):
            i = c["loss_validation"].astype(float).idxmin()
            return (float(c.at[i, "test_loss"]), float(c.at[i, "step"]), "validation",
                    float(c.at[i, "loss_validation"]))
    if not curve.empty:
        i = curve["test_loss"].astype(float).idxmin()
        return float(curve.at[i, "test_loss"]), float(curve.at[i, "step"]), "test", float("nan")
    return float(loss_final), float("nan"), "final", float("nan")
