"""A store's learning curves for the schedule-aware curve law (laws/curve.py), and its backtest on the cooldown
branches of warm-up-stable-decay runs.

`curve_data` reads every run's curve with the exact LR of every update (from its config and its effective peak,
not only the LR recorded at logged steps), and drops the points of a cooldown branch up to its branch step when its
parent (the stable phase) is read too: they are copies of the parent's, and would count the stable phase twice.

`losses_at_budgets` gives L at (N, D) from the curve law of each size's curves (saying so), at budgets of the
caller's choice, beside the measured final loss where a run of that budget finished.

`backtest_cooldowns` holds out the longest cooldown of each stable phase, fits the law on the stable phase and the
shorter cooldowns, and predicts the held-out cooldown's final loss (the issue's "fit on the stable phase and the
shorter cooldowns, predict the longest cooldown's end").
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from scalinglab.errors import FitError
from scalinglab.laws.curve import CurveBacktest, backtest_curve_law, fit_curve_law
from scalinglab.training.config import RunConfig


def run_schedules(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """{run id: the LR of every update} from each run's stored config and its effective peak (runs.lr)."""
    out = {}
    for row in runs.itertuples():
        cfg = RunConfig.from_dict(json.loads(row.config), where=f"run {row.run_id}")
        out[row.run_id] = np.asarray(cfg.lr_schedule(float(row.lr)), float)
    return out


def curve_data(store, run_ids=None, *, status: str = "done") -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(curves, schedules, runs) of the runs of `store` with `status` (or `run_ids`): one row per logged step
    (RunStore.curves), each run's per-update schedule, and the runs table. A branch's points up to its branch
    step are left out where its parent is among the runs."""
    snap = store.snapshot(run_ids)
    runs = snap["runs"]
    if status:
        runs = runs[runs["status"] == status]
    curves = snap["curves"][snap["curves"]["run_id"].isin(runs["run_id"])]
    if "parent_run_id" in runs.columns:
        have = set(runs["run_id"])
        cut = {r.run_id: int(r.branch_step) for r in runs.itertuples()
               if isinstance(r.parent_run_id, str) and r.parent_run_id in have}
        after = curves["step"] > curves["run_id"].map(cut).fillna(-1)
        curves = curves[after]
    return curves.reset_index(drop=True), run_schedules(runs), runs.reset_index(drop=True)


def backtest_cooldowns(store, *, loss: str = "test_loss", n_resamples: int = 1000,
                       seed: int = 0) -> list[CurveBacktest]:
    """For each stable phase in the store with at least two done cooldown branches: hold out its longest
    cooldown, fit the curve law on the stable phase and the other cooldowns, predict the held-out final loss
    (compared with its final `loss`)."""
    curves, schedules, runs = curve_data(store)
    if "parent_run_id" not in runs.columns:
        return []
    out = []
    for parent, kids in runs[runs["parent_run_id"].notna()].groupby("parent_run_id"):
        if parent not in set(runs["run_id"]) or len(kids) < 2:
            continue
        longest = kids.sort_values("S")["run_id"].iloc[-1]
        family = curves[curves["run_id"].isin([parent, *kids["run_id"]])]
        try:
            out.append(backtest_curve_law(family, longest, loss=loss, schedules=schedules, n_resamples=n_resamples,
                                          seed=seed))
        except FitError:
            continue
    return out


def losses_at_budgets(store, budgets=None, *, loss: str = "test_loss", n_resamples: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """L at (N, D) from whole curves: for each stable phase (a run with cooldowns) the curve law fitted on it
    and its finished cooldowns, evaluated at the end of a run of that size trained alone to each token budget D
    with the family's WSD schedule (its warm-up, decay fraction and shape). `budgets`: token budgets (default:
    the family's own cooldown budgets). One row per (family, D): run (the stable phase), N, D, loss, loss_low,
    loss_high (the law's 95% interval), measured (the final `loss` of a finished run of that budget, else NaN)
    and source, which says it is the curve law's and what it was fitted on."""
    curves, schedules, runs = curve_data(store)
    rows = []
    if "parent_run_id" not in runs.columns:
        return pd.DataFrame(rows)
    final = dict(zip(runs["run_id"], runs["final_test_loss"])) if loss == "test_loss" else {}
    for trunk in runs.itertuples():
        cfg = RunConfig.from_dict(json.loads(trunk.config), where=f"run {trunk.run_id}")
        if not cfg.cooldowns:
            continue
        kids = runs[runs["parent_run_id"] == trunk.run_id]
        family = curves[curves["run_id"].isin([trunk.run_id, *kids["run_id"]])]
        try:
            law = fit_curve_law(family, loss=loss, schedules=schedules, n_resamples=n_resamples, seed=seed)
        except FitError:
            continue
        source = (f"curve law (Tissue et al. 2024) fitted on {law.n_points} points of {loss} in {law.n_runs} "
                  f"curves of this size")
        alone = {b.tokens: b for b, _ in cfg.branches()}
        for D in (budgets if budgets is not None else sorted(alone)):
            b = alone.get(int(D)) or _alone(cfg, int(D))
            lr = np.asarray(b.lr_schedule(float(trunk.lr)), float)
            lo, hi = law.predict_interval(lr, [len(lr)])
            rows.append(dict(run=trunk.run_id, N=int(trunk.N), D=int(b.steps * b.batch_tokens),
                             loss=law.predict_final(lr), loss_low=float(lo[0]), loss_high=float(hi[0]),
                             measured=float(final.get(b.run_id(), np.nan) or np.nan), source=source))
    return pd.DataFrame(rows)


def _alone(cfg: RunConfig, tokens: int) -> RunConfig:
    """The run of this family's size trained alone to `tokens` with its WSD schedule (not necessarily stored)."""
    fixed = cfg.branches()[0][0]  # carries the family's warm-up written out
    return dataclasses.replace(fixed, tokens=tokens, name="")
