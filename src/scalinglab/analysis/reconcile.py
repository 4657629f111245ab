"""Kaplan against Chinchilla on the same model family: where N_opt ~ C^0.73 becomes C^0.5 (issue 14).

Five settings add one correction at a time (Porian et al. 2024's path, `scalinglab.published.PORIAN2024_STEPS`):

  (a) Kaplan's method: C = 6 N D with N the non-embedding parameters; one long fixed warm-up, one LR and batch
      for all sizes, one cosine horizon for all runs (not matched to any budget);
  (b) + exact FLOPs, the unembedding and attention counted (parameters with embeddings reported beside);
  (c) + a warm-up proportional to the model (N tokens; at most a quarter of a run), short against the budgets;
  (d) + a cosine decay matched to each budget: one run per (size, budget);
  (e) + learning rate, batch size and AdamW beta2 chosen per size by a small sweep (the rule recorded).

Only what must be trained is: (a) and (b) read the same runs (a size's one long run, its learning curve cut at
each budget: under a fixed schedule a run stopped early is the curve at that point), (c) one long run per size
again, (d) and (e) a grid. For every setting: N_opt(C) and D_opt(C) exponents from the three approaches where
the data allow, the IsoFLOP curves, the optimal tokens per parameter, and findings on which corrections move
the exponent (measured, with intervals; "inconclusive" where they cannot tell).

This module analyzes the store; `scalinglab.sweep.reconcile_plan` expands the plan (studies/reconcile*/plan.toml)
into study specs and derives the tuned grid from the tuning runs; `scalinglab.report.reconcile` renders the result.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.errors import FitError, ScalingLabError, StoreError
from scalinglab.published import PORIAN2024_STEPS
from scalinglab.sweep.reconcile_plan import STUDY, choice_for, tuning_rule

SETTINGS = ("a", "b", "c", "d", "e")
TITLES = {
    "a": "Kaplan's method (6ND, non-embedding N, long fixed warm-up, fixed horizon, one LR/batch)",
    "b": "+ exact FLOPs (unembedding and attention counted)",
    "c": "+ warm-up proportional to the model",
    "d": "+ cosine decay matched to each budget",
    "e": "+ LR, batch and AdamW beta2 tuned per size",
}
PORIAN = dict(zip(SETTINGS, (v for _, v in PORIAN2024_STEPS)))
# Beside the path: (b)'s runs and FLOP with N counted with its embeddings (total parameters). At small N the
# embeddings are a large share of the parameters and the count alone moves the exponent (Pearce and Song 2024).
EXTRA = ("t",)
TITLES["t"] = "(b) with N counted with embeddings (total parameters)"
ALL_SETTINGS = SETTINGS + EXTRA
# The approach whose exponent each setting reports and the steps compare
PRIMARY = 2
SOURCE = {"a": "kaplan", "b": "kaplan", "c": "warmup", "d": "cosine", "e": "tuned"}
# A correction "does not move" the exponent when the 95% interval of the change lies within +-EQUIVALENCE: this
# project's choice, the smallest step of Porian et al.'s path (0.602 -> 0.571) rounded.
EQUIVALENCE = 0.03


# ------------------------------------------------------------------------------------------------ the data


def _flop_per_token(runs: pd.DataFrame, exact: bool) -> pd.Series:
    """Training FLOP per token of each run in one convention: 6N, or the exact count (C_exact / D)."""
    if exact:
        return runs["C_exact"].astype(float) / runs["D"].astype(float)
    return 6.0 * runs["N"].astype(float)


def curve_points(runs: pd.DataFrame, curves: pd.DataFrame, budgets, exact: bool) -> pd.DataFrame:
    """IsoFLOP points read off long runs: for each run and budget C, the test loss where the run had spent C
    (log-log interpolation between evaluations), when its curve reaches that far. Points inside a long warm-up
    are kept: that is Kaplan's method, and what setting (c) corrects."""
    rows = []
    f = _flop_per_token(runs, exact)
    for i, r in runs.reset_index(drop=True).iterrows():
        cur = curves[curves["run_id"] == r["run_id"]].sort_values("tokens")
        cur = cur[np.isfinite(cur["test_loss"].astype(float))]
        if len(cur) < 2:
            continue
        t = cur["tokens"].to_numpy(float)
        y = cur["test_loss"].to_numpy(float)
        for b in budgets:
            d = b / f.iloc[i]
            if d < t[0] or d > t[-1]:
                continue
            loss = float(np.exp(np.interp(np.log(d), np.log(t), np.log(y))))
            rows.append({"run_id": r["run_id"], "budget": float(b), "N": float(r["N"]),
                         "N_total": float(r["n_params_total"]), "D": d, "C": float(b), "loss": loss})
    return pd.DataFrame(rows)


def grid_points(runs: pd.DataFrame, budgets, exact: bool = True) -> pd.DataFrame:
    """IsoFLOP points of runs trained to one budget each: their final test losses, budget = the nearest planned."""
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "budget", "N", "N_total", "D", "C", "loss"])
    C = (runs["C_exact"] if exact else runs["C"]).astype(float).to_numpy()
    lb = np.log(np.asarray(budgets, float))
    near = np.asarray(budgets, float)[np.argmin(np.abs(np.log(C)[:, None] - lb[None, :]), axis=1)]
    return pd.DataFrame({"run_id": runs["run_id"].to_numpy(), "budget": near, "N": runs["N"].astype(float).to_numpy(),
                         "N_total": runs["n_params_total"].astype(float).to_numpy(),
                         "D": runs["D"].astype(float).to_numpy(), "C": C,
                         "loss": runs["final_test_loss"].astype(float).to_numpy()})


# ------------------------------------------------------------------------------------------------ the analysis


@dataclass
class SettingResult:
    key: str
    title: str
    points: pd.DataFrame  # the IsoFLOP points: run_id, budget, N, N_total, D, C, loss
    approaches: dict = field(default_factory=dict)  # 1, 2, 3 -> ComputeOptimal
    errors: dict = field(default_factory=dict)  # approach -> why it could not be measured
    n_total_exponent: float = float("nan")  # approach 2 with parameters counted with embeddings
    tokens_per_param: tuple = (float("nan"), float("nan"), float("nan"))  # median, min, max over used budgets
    porian: float = float("nan")

    @property
    def primary(self):
        return self.approaches.get(PRIMARY)

    def to_dict(self) -> dict:
        return {"setting": self.key, "title": self.title, "porian2024": self.porian, "primary": PRIMARY,
                "approaches": {str(k): v.to_dict() for k, v in self.approaches.items()},
                "errors": {str(k): v for k, v in self.errors.items()},
                "n_total_exponent": None if not np.isfinite(self.n_total_exponent) else self.n_total_exponent,
                "tokens_per_param": [None if not np.isfinite(v) else float(v) for v in self.tokens_per_param],
                "n_points": len(self.points)}


@dataclass
class Step:
    """One correction's effect on the approach-2 exponent: the change and its 95% interval, and a verdict."""

    frm: str
    to: str
    change: float
    ci: tuple[float, float]
    verdict: str  # yes (moves it), no (within +-EQUIVALENCE), inconclusive, not measured
    text: str

    def to_dict(self) -> dict:
        return {"from": self.frm, "to": self.to, "change": _n(self.change), "ci": [_n(v) for v in self.ci],
                "verdict": self.verdict, "text": self.text}


def _n(x):
    return None if x is None or not np.isfinite(x) else float(x)


@dataclass
class ReconcileAnalysis:
    settings: dict  # key -> SettingResult
    steps: list  # Step
    rule: pd.DataFrame  # the tuning sweep: candidates and the one chosen per size
    budgets: list

    def to_dict(self) -> dict:
        return {"settings": {k: v.to_dict() for k, v in self.settings.items()},
                "steps": [s.to_dict() for s in self.steps], "budgets": [float(b) for b in self.budgets],
                "tuning": self.rule.drop(columns=["run_id"], errors="ignore").to_dict("records")}


def _step(frm: str, to: str, change: float, lo: float, hi: float, x0: float, y0: float, how: str) -> Step:
    """The verdict on one correction's change of the exponent from its 95% interval."""
    if lo > 0 or hi < 0:
        verdict = "yes"
        text = (f"({frm}) -> ({to}) moves the exponent by {change:+.3f} (95% [{lo:+.3f}, {hi:+.3f}], {how}): from "
                f"{x0:.3f} to {y0:.3f}")
    elif -EQUIVALENCE <= lo and hi <= EQUIVALENCE:
        verdict = "no"
        text = (f"({frm}) -> ({to}) does not move the exponent by more than {EQUIVALENCE} (change {change:+.3f}, "
                f"95% [{lo:+.3f}, {hi:+.3f}], {how})")
    else:
        verdict = "inconclusive"
        text = (f"({frm}) -> ({to}): change {change:+.3f}, 95% [{lo:+.3f}, {hi:+.3f}] ({how}); the interval "
                f"({hi - lo:.3f} wide) contains 0 and is wider than +-{EQUIVALENCE}: this scale cannot tell")
    return Step(frm, to, float(change), (float(lo), float(hi)), verdict, text)


def _missing(frm: str, to: str) -> Step:
    return Step(frm, to, float("nan"), (float("nan"),) * 2, "not measured",
                f"({frm}) -> ({to}): not measured (an exponent is missing)")


def compare(x, y, frm: str, to: str, seed: int = 0) -> Step:
    """The change of the approach-2 exponent from setting `frm` to `to`, settings measured on different runs:
    a 95% interval from their bootstrap draws paired at random (independent estimates)."""
    if x is None or y is None or x.draws is None or y.draws is None or not len(x.draws) or not len(y.draws):
        return _missing(frm, to)
    rng = np.random.default_rng(seed)
    k = max(len(x.draws), len(y.draws))
    dx = x.draws[rng.integers(0, len(x.draws), k), 1]
    dy = y.draws[rng.integers(0, len(y.draws), k), 1]
    lo, hi = np.percentile(dy - dx, [2.5, 97.5])
    return _step(frm, to, y.n_exponent - x.n_exponent, lo, hi, x.n_exponent, y.n_exponent,
                 "independent runs, draws paired at random")


def paired_compare(px: pd.DataFrame, py: pd.DataFrame, x, y, frm: str, to: str, n_resamples: int = 400,
                   seed: int = 0) -> Step:
    """The change of the approach-2 exponent between two settings measured on the same runs (two conventions of
    one set of runs): both re-analysed in every resample of one bootstrap over whole runs
    (scalinglab.laws.result.bootstrap_groups), the same runs drawn for both, so what the runs share cancels."""
    from scalinglab.laws.frontier import isoflop_minima
    from scalinglab.laws.result import bootstrap_groups

    if x is None or y is None or not np.isfinite(x.n_exponent) or not np.isfinite(y.n_exponent):
        return _missing(frm, to)

    def expo(p):
        return isoflop_minima(p, n="N", c="C", d="D", loss="loss", budget="budget", n_resamples=0).n_exponent

    ids = pd.Series(sorted(set(px["run_id"]) & set(py["run_id"])))
    gx, gy = dict(tuple(px.groupby("run_id"))), dict(tuple(py.groupby("run_id")))

    def stat(idx):
        pick = ids.iloc[idx]
        return [expo(pd.concat([gx[r] for r in pick])), expo(pd.concat([gy[r] for r in pick]))]

    draws = bootstrap_groups(stat, ids.index.to_numpy(), n_resamples, seed)
    d = draws[:, 1] - draws[:, 0] if draws.shape[1] == 2 else np.empty(0)
    d = d[np.isfinite(d)]
    if d.size < 20:
        return _missing(frm, to)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return _step(frm, to, y.n_exponent - x.n_exponent, lo, hi, x.n_exponent, y.n_exponent,
                 f"the same runs, a paired bootstrap over them ({d.size}/{n_resamples} draws)")


def _n_total_exponent(res, pts: pd.DataFrame) -> float:
    """Approach 2's exponent with parameters counted with embeddings: each budget's N_opt mapped to total
    parameters through the sizes trained (log-log interpolation)."""
    sizes = pts.groupby("N")["N_total"].first().sort_index()
    m = res.minima[res.minima["bracketed"]]
    if len(m) < 2 or len(sizes) < 2:
        return float("nan")
    nt = np.interp(np.log(m["N_opt"]), np.log(sizes.index.to_numpy(float)), np.log(sizes.to_numpy(float)))
    return float(np.polyfit(np.log(m["C"].to_numpy(float)), nt, 1)[0])


def analyze_setting(key: str, pts: pd.DataFrame, curves: pd.DataFrame | None, runs: pd.DataFrame | None,
                    exact: bool, n_resamples: int = 400, seed: int = 0, surface_grid=None) -> SettingResult:
    """All three approaches on one setting's IsoFLOP points (approach 1 on the learning curves when the
    setting has long runs, else on the final losses)."""
    from scalinglab.laws.frontier import envelope, isoflop_minima, surface_optimum

    res = SettingResult(key=key, title=TITLES[key], points=pts, porian=PORIAN.get(key, float("nan")))
    if pts.empty:
        res.errors = {a: "no runs of this setting in the store" for a in (1, 2, 3)}
        return res
    try:
        iso = isoflop_minima(pts, n="N", c="C", d="D", loss="loss", budget="budget", n_resamples=n_resamples,
                             seed=seed)
        res.approaches[2] = iso
        used = iso.minima[iso.minima["bracketed"]]
        ratio = (used["D_opt"] / used["N_opt"]).to_numpy(float)
        res.tokens_per_param = (float(np.median(ratio)), float(ratio.min()), float(ratio.max()))
        res.n_total_exponent = _n_total_exponent(iso, pts)
    except ScalingLabError as exc:
        res.errors[2] = str(exc)
    try:
        if curves is not None and runs is not None:
            f = _flop_per_token(runs, exact)
            per_tok = dict(zip(runs["run_id"], f))
            cv = curves[curves["run_id"].isin(runs["run_id"])].copy()
            cv["flop_c"] = cv["tokens"].astype(float) * cv["run_id"].map(per_tok)
            cv = cv.merge(runs[["run_id", "N"]], on="run_id")
            cv = cv[np.isfinite(cv["test_loss"].astype(float))].rename(columns={"test_loss": "loss"})
            lo, hi = min(pts["budget"]), max(pts["budget"])
            res.approaches[1] = envelope(cv, run="run_id", flop="flop_c", loss="loss", n="N", d="tokens",
                                         n_resamples=n_resamples, seed=seed, c_range=(lo, hi), n_grid=24)
        else:
            res.approaches[1] = envelope(pts, run="run_id", flop="C", loss="loss", n="N", d="D",
                                         n_resamples=n_resamples, seed=seed)
        if not res.approaches[1].converged:
            res.errors[1] = res.approaches[1].message
            del res.approaches[1]
    except ScalingLabError as exc:
        res.errors[1] = str(exc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res.approaches[3] = surface_optimum(pts, n="N", d="D", c="C", loss="loss", run="run_id",
                                                n_resamples=min(n_resamples, 200), seed=seed,
                                                c_range=(min(pts["budget"]), max(pts["budget"])), grid=surface_grid)
    except ScalingLabError as exc:
        res.errors[3] = str(exc)
    return res


def analyze(store: str | Path, budgets=None, *, n_resamples: int = 400, seed: int = 0,
            surface_grid=None, run_ids=None) -> ReconcileAnalysis:
    """The reconcile analysis of a store written by the reconcile preset (runs found by their study names;
    `run_ids`, when given, keeps only those runs: the preset passes its current specs' runs, so runs of an
    earlier version of an edited plan, still in the store, are left out).
    `surface_grid`: approach 3's starting points (default: every 5th of Hoffmann et al.'s grid, ~900 starts, to
    keep five surface fits with their bootstraps to minutes)."""
    from scalinglab.laws.forms import get_form
    from scalinglab.store import RunStore

    if surface_grid is None:
        surface_grid = get_form("chinchilla").start_grid()[::5]

    store = Path(store)
    if not store.exists():
        raise StoreError(f"{store}: no such run store; run `scalinglab reproduce --preset reconcile` first")
    with RunStore(store, readonly=True) as st:
        snap = st.snapshot()
    runs, curves = snap["runs"], snap["curves"]
    if "study" not in runs.columns or not runs["study"].isin(list(STUDY.values())).any():
        raise StoreError(f"{store}: no runs of the reconcile studies ({', '.join(STUDY.values())}); is this the "
                         "store of `scalinglab reproduce --preset reconcile`?")
    done = runs[(runs["status"] == "done") & np.isfinite(pd.to_numeric(runs["final_test_loss"], errors="coerce"))]
    if run_ids is not None:
        done = done[done["run_id"].isin(set(run_ids))]
    by = {k: done[done["study"] == v].reset_index(drop=True) for k, v in STUDY.items()}
    if budgets is None:  # the grid's budgets, else a log grid over the long runs' compute
        g = by["cosine"]
        if len(g):
            from scalinglab.laws.frontier import budget_groups

            lab = budget_groups(g["C_exact"].astype(float).to_numpy())
            budgets = sorted(float(np.exp(np.mean(np.log(g["C_exact"].astype(float)[lab == k])))) for k in
                             np.unique(lab))
        else:
            k = by["kaplan"]
            budgets = list(np.geomspace(k["C"].min() / 30, k["C"].max() / 3, 5)) if len(k) else []
    budgets = list(map(float, budgets))
    # (e): the (d) grid with each size's chosen candidate (the nearest size's for sizes not swept): the tuned
    # study's runs, and the (d) runs of sizes whose choice was the baseline
    rule = tuning_rule(runs)
    e_runs = pd.DataFrame()
    if len(rule) and len(by["cosine"]):
        keep = [bool(choice_for(rule, float(r["N"]))["baseline"]) for _, r in by["cosine"].iterrows()]
        # a tuned run at the sweep's budget is the sweep's own run (same config, same id): stored under the sweep
        chosen_ids = set(rule.loc[rule["chosen"] & ~rule["baseline"], "run_id"])
        tuned = pd.concat([by["tuned"], by["tune"][by["tune"]["run_id"].isin(chosen_ids)]], ignore_index=True)
        if len(tuned):
            tuned = tuned[[not bool(choice_for(rule, float(r["N"]))["baseline"]) for _, r in tuned.iterrows()]]
        e_runs = pd.concat([tuned, by["cosine"][keep]], ignore_index=True).drop_duplicates("run_id")

    out = {}
    for key in SETTINGS:
        exact = key != "a"
        src = {"a": by["kaplan"], "b": by["kaplan"], "c": by["warmup"], "d": by["cosine"], "e": e_runs}[key]
        if key in ("a", "b", "c"):
            pts = curve_points(src, curves, budgets, exact) if len(src) else pd.DataFrame()
            out[key] = analyze_setting(key, pts, curves, src if len(src) else None, exact, n_resamples, seed,
                                       surface_grid)
        else:
            pts = grid_points(src, budgets) if len(src) else pd.DataFrame()
            out[key] = analyze_setting(key, pts, None, None, exact, n_resamples, seed, surface_grid)
    # (t): (b)'s runs with N counted with its embeddings
    kb = by["kaplan"]
    if len(kb):
        kt = kb.assign(N=kb["n_params_total"].astype(float))
        pts = curve_points(kt, curves, budgets, True)
        out["t"] = analyze_setting("t", pts, curves, kt, True, n_resamples, seed, surface_grid)
    else:
        out["t"] = analyze_setting("t", pd.DataFrame(), None, None, True, n_resamples, seed, surface_grid)
    shared = {("a", "b"), ("b", "t")}  # settings that re-analyze the same runs: paired

    def step(a, b):
        if (a, b) in shared and len(out[a].points) and len(out[b].points):
            return paired_compare(out[a].points, out[b].points, out[a].primary, out[b].primary, a, b,
                                  n_resamples, seed)
        return compare(out[a].primary, out[b].primary, a, b, seed)

    steps = [step(a, b) for a, b in itertools.pairwise(SETTINGS)]
    steps.append(step("a", "e"))
    steps.append(step("b", "t"))
    return ReconcileAnalysis(settings=out, steps=steps, rule=rule, budgets=budgets)


__all__ = [
    "ALL_SETTINGS",
    "PORIAN",
    "PRIMARY",
    "SETTINGS",
    "TITLES",
    "FitError",
    "ReconcileAnalysis",
    "SettingResult",
    "Step",
    "analyze",
    "compare",
    "paired_compare",
    "curve_points",
    "grid_points",
]
