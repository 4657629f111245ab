"""The critical batch size of a batch-size sweep, measured two ways (Kaplan et al. 2020, section 5).

1. Directly: runs of one model at several batch sizes B; for each target loss, the steps S and tokens E at which
   each run first reaches it; the trade-off (S/S_min - 1)(E/E_min - 1) = 1 fitted per target gives
   B_crit(L) = E_min / S_min (scalinglab.laws.batch), and across targets B_crit(L) = B* / L^(1/alpha_B).
2. From inside the runs: the gradient noise scale B_simple logged by the trainer (scalinglab.training.noise_scale), read off
   each run where it reaches the target loss. McCandlish et al. 2018 find B_crit ~ B_simple, within a small factor.

`analyze_batch_sweep(store)` does both for every model size in a store that has >= 3 batch sizes at one shape.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalinglab.errors import FitError
from scalinglab.laws import fit_law
from scalinglab.laws.batch import fit_batch_sweep, fit_tradeoff

SHAPE_COLS = ["n_layer", "d_model", "n_head", "d_ff", "n_ctx", "vocab_size"]


@dataclass
class BatchSweepResult:
    N: int
    shape: dict
    batch_sizes: list[int]  # tokens per step
    table: pd.DataFrame  # per target: B_crit with 95% CI, S_min, E_min, noise-scale B_simple, their ratio
    law: object  # FittedLaw of B_crit(L) = B*/L^(1/alpha_B), or None with < 3 targets
    points: pd.DataFrame  # run, B, target, S, E
    lr_note: str = ""  # which learning rate stood for each batch size, where several were tried


def _smoothed_curves(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Test-loss evaluations with each run's batch size in tokens, and its noise scale at each evaluation (the
    noise scale is logged with the train points, so it is carried forward to the evaluation steps)."""
    c = curves.drop(columns=[k for k in ("B", "loss") if k in curves]).merge(runs[["run_id", "B"]], on="run_id")
    c = c.sort_values(["run_id", "step"])
    c["b_simple"] = c.groupby("run_id")["b_simple"].ffill()
    return c.dropna(subset=["test_loss"]).rename(columns={"test_loss": "loss"})


def default_targets(curves: pd.DataFrame, n: int = 5, min_runs: int = 3) -> np.ndarray:
    """Target losses that at least `min_runs` runs reach, log-spaced from the loss every run has passed by 30% of
    its steps (past warm-up, where steps are bound by the schedule rather than by the batch size) down to the
    `min_runs`-th best loss."""
    best = curves.groupby("run_id")["loss"].min().sort_values()
    if len(best) < min_runs:
        raise FitError(f"batch sweep: {len(best)} runs; need at least {min_runs} batch sizes")
    low = float(best.iloc[min_runs - 1]) * 1.002
    def loss_at_30pct(c: pd.DataFrame) -> float:
        return float(c.loc[c["step"] >= 0.3 * c["step"].max(), "loss"].iloc[0])

    high = max(loss_at_30pct(c) for _, c in curves.groupby("run_id"))
    if not high > low:
        raise FitError("batch sweep: the runs' losses do not overlap enough to pick common targets")
    return np.geomspace(high, low, n)


def noise_scale_at(curves: pd.DataFrame, target: float) -> float:
    """Median over runs of B_simple where each run first reaches `target` (interpolated in loss)."""
    vals = []
    for _, c in curves.groupby("run_id"):
        lv = np.minimum.accumulate(c["loss"].to_numpy(float))
        b = c["b_simple"].to_numpy(float)
        hit = np.flatnonzero(lv <= target)
        if hit.size == 0 or not np.isfinite(b[hit[0]]):
            continue
        i = hit[0]
        if i > 0 and np.isfinite(b[i - 1]) and lv[i - 1] > lv[i] and b[i - 1] > 0 and b[i] > 0:
            w = (lv[i - 1] - target) / (lv[i - 1] - lv[i])
            vals.append(float(np.exp((1 - w) * np.log(b[i - 1]) + w * np.log(b[i]))))
        else:
            vals.append(float(b[i]))
    vals = [v for v in vals if v > 0]
    return float(np.median(vals)) if vals else float("nan")


def analyze_batch_sweep(runs: pd.DataFrame, curves: pd.DataFrame, *, n_targets: int = 5, n_resamples: int = 500,
                        seed: int = 0) -> list[BatchSweepResult]:
    """Every model shape with >= 3 batch sizes among the finished runs -> one BatchSweepResult. The intervals of
    B_crit at each target and of the B_crit(L) law come from one bootstrap over whole runs: a run's steps to
    every target move together, so each resample refits every trade-off and then the law."""
    done = runs[runs["status"] == "done"].copy()
    results = []
    for key, group in done.groupby(SHAPE_COLS, dropna=False):
        if group["B"].nunique() < 3:
            continue
        c = _smoothed_curves(curves[curves["run_id"].isin(group["run_id"])], group)
        targets = default_targets(c, n_targets)
        sweep = fit_batch_sweep(c, targets, n_resamples=0, seed=seed, loss="loss")
        table = sweep.tradeoffs.copy()
        law = sweep.bcrit_law
        if len(table) >= 3:
            table["weight"] = _precision_weights(table)
            law = _fit_bcrit(table, 0, seed)
            _bootstrap_runs(sweep.points, table, law, n_resamples, seed)
        if not table.empty:
            table["B_noise"] = [noise_scale_at(c, t) for t in table["target"]]
            table["ratio_bcrit_to_noise"] = table["B_crit"] / table["B_noise"]
        results.append(BatchSweepResult(
            N=int(group["N"].iloc[0]), shape=dict(zip(SHAPE_COLS, map(int, key))),
            batch_sizes=sorted(int(b) for b in group["B"].unique()), table=table, law=law,
            points=sweep.points,
        ))  # fmt: skip
    return results


def _bootstrap_runs(points: pd.DataFrame, table: pd.DataFrame, law, n_resamples: int, seed: int) -> None:
    """Resample whole runs of the sweep (scalinglab.laws.result.bootstrap_groups); in each resample refit the
    trade-off at every target and the B_crit(L) law (started from the full fit, with the full fit's precision
    weights). Writes B_crit_low/high per target into `table` and the law's ci, se and resample counts."""
    from scalinglab.laws.fit import fit_law
    from scalinglab.laws.result import bootstrap_groups, percentile_ci

    pts = points.reset_index(drop=True)
    targets = table["target"].to_numpy(float)
    weights = table["weight"].to_numpy(float)
    z0 = law.form.to_internal(law.form.theta(law.params)[None, :])

    def stat(idx):
        p = pts.iloc[idx]
        bc = np.full(targets.size, np.nan)
        for i, t in enumerate(targets):
            part = p[np.isclose(p["target"], t)]
            if part["B"].nunique() >= 3:
                bc[i] = fit_tradeoff(part["S"], part["E"], t).B_crit
        ok = np.isfinite(bc)
        lawp = [np.nan, np.nan]
        if ok.sum() >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = fit_law(pd.DataFrame({"L": targets[ok], "B_crit": bc[ok], "weight": weights[ok]}), "bcrit",
                            loss="B_crit", l="L", weights="weight", n_resamples=0, grid=z0)
            if b.converged:
                lawp = [b.params["B_star"], b.params["alpha_B"]]
        return np.concatenate([bc, lawp])

    draws = bootstrap_groups(stat, pts["run"], n_resamples, seed) if n_resamples > 0 else np.empty((0, 1))
    if draws.shape[0] == 0 or draws.shape[1] != targets.size + 2:
        law.n_resamples, law.n_resamples_ok = n_resamples, 0
        return
    cis = percentile_ci(draws)
    table["B_crit_low"] = [cis[i][0] for i in range(targets.size)]
    table["B_crit_high"] = [cis[i][1] for i in range(targets.size)]
    table["n_resamples_ok"] = np.isfinite(draws[:, :targets.size]).sum(axis=0)
    ok = np.isfinite(draws[:, -2:]).all(axis=1)
    law.ci = {"B_star": cis[-2], "alpha_B": cis[-1]}
    law.se = {"B_star": float(np.std(draws[ok, -2])) if ok.sum() > 1 else np.nan,
              "alpha_B": float(np.std(draws[ok, -1])) if ok.sum() > 1 else np.nan}
    law.samples = draws[ok][:, -2:]
    law.n_resamples, law.n_resamples_ok = n_resamples, int(ok.sum())


def _precision_weights(table: pd.DataFrame) -> np.ndarray:
    """Targets reached by few runs pin B_crit down poorly: weight each by the precision of its log B_crit."""
    sigma = (np.log(table["B_crit_high"]) - np.log(table["B_crit_low"])) / (2 * 1.96)
    return 1.0 / np.maximum(sigma.to_numpy(float), 1e-3) ** 2


def _fit_bcrit(table: pd.DataFrame, n_resamples: int, seed: int):
    return fit_law(table.rename(columns={"target": "L"}), form="bcrit", loss="B_crit", l="L", weights="weight",
                   n_resamples=n_resamples, seed=seed)


def analyze_store(path, **kw) -> list[BatchSweepResult]:
    from scalinglab.store import RunStore

    with RunStore(path, readonly=True) as st:
        snap = st.snapshot()
    return analyze_batch_sweep(snap["runs"], snap["curves"], **kw)


def to_json(results: list[BatchSweepResult]) -> list[dict]:
    out = []
    for r in results:
        law = r.law
        out.append(dict(
            N=r.N, shape=r.shape, batch_sizes=r.batch_sizes,
            targets=json.loads(r.table.to_json(orient="records")),
            bcrit_law=None if law is None else dict(params=dict(law.params),
                                                     ci95={k: list(v) for k, v in law.ci.items()},
                                                     converged=bool(law.converged)),
        ))  # fmt: skip
    return out
