"""A store's learning curves for the schedule-aware curve law (laws/curve.py), and its backtest on the cooldown
branches of warm-up-stable-decay runs.

`curve_data` reads every run's curve with the exact LR of every update (from its config and its effective peak,
not only the LR recorded at logged steps), and drops the points of a cooldown branch up to its branch step when its
parent (the stable phase) is read too: they are copies of the parent's, and would count the stable phase twice.

`backtest_cooldowns` holds out the longest cooldown of each stable phase, fits the law on the stable phase and the
shorter cooldowns, and predicts the held-out cooldown's final loss (the issue's "fit on the stable phase and the
shorter cooldowns, predict the longest cooldown's end").
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from scalinglab.errors import FitError
from scalinglab.laws.curve import CurveBacktest, backtest_curve_law
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
