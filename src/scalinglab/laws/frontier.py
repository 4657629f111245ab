"""Compute-optimal frontiers: the three approaches of Hoffmann et al. 2022, and Kaplan's L(C_min).

All three answer with one result type, `ComputeOptimal` (the protocol of laws/result.py): N_opt(C) = k_N C^a and
D_opt(C) = k_D C^b with 95% bootstrap intervals, the budgets used and those left out.

- `envelope` (approach 1): the lower envelope of all learning curves in (FLOP, loss) on a log-spaced compute
  grid, with the run that is best at each compute (Kaplan Fig. 1 left). Grid points where the best run is the
  smallest or largest size trained are saturated (the optimum lies outside the sizes) and left out of the fit.
- `isoflop_minima` (approach 2): per compute budget, a parabola in log N fitted *near the budget's observed
  minimum* (the lowest loss and up to `window` sizes on each side). An IsoFLOP curve is asymmetric in log N, so
  a parabola through every size is pulled towards the far side; and a budget whose lowest loss is at its
  smallest or largest size does not bracket its optimum: it is flagged and left out of the exponent. The
  minimum's interval resamples the scatter of its budget's points; the exponent's resamples budgets (and,
  within each, a draw of its minimum).
- `surface_optimum` (approach 3): fit L(N, D) = E + A/N^alpha + B/D^beta and minimise it along each budget's
  C = f(N) D, where f(N) is the FLOP per token (6N by default, or read off the data: re-counted FLOPs change
  f and so the allocation); intervals from the law's bootstrap draws. `chinchilla_optimal` is the closed form
  for f = 6N.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalinglab.errors import ConfigError, DataError, FitError
from scalinglab.laws.forms import fmt_number
from scalinglab.laws.result import (
    NAN2,
    PowerLawFit,
    Result,
    _loglog,
    _num,
    bootstrap_groups,
    param,
    percentile_ci,
    power_law_fit,
)

APPROACH_NAMES = {1: "envelope of learning curves", 2: "IsoFLOP minima", 3: "fitted L(N, D) surface"}
# Approach 1 fits an exponent only over bracketed budgets spanning at least this many decades of compute: this
# project's choice, from simulations of the cpu preset's design (benchmarks/calibration.py), where budgets bracketed
# over a short stretch gave exponents of 0.2 against a true 0.92
MIN_SPAN_DECADES = 0.5


# ------------------------------------------------------------------------------------------------ the result


@dataclass
class ComputeOptimal(Result):
    """N_opt(C) = n_coef C^n_exponent and D_opt(C) = d_coef C^d_exponent from one approach, with 95% intervals.

    `table` holds what the exponent was fitted on: the envelope's grid (approach 1), one row per budget with its
    minimum and `bracketed` flag (approach 2), or the surface's optimum on a compute grid (approach 3)."""

    params: dict[str, float]  # n_exponent, n_coef, d_exponent, d_coef
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    converged: bool
    message: str
    n_points: int
    n_resamples: int = 0
    n_resamples_ok: int = 0
    approach: int = 2
    table: pd.DataFrame = field(default=None, repr=False)
    budgets_used: list = field(default_factory=list)  # compute of each budget (grid point) in the fit
    budgets_unbracketed: list = field(default_factory=list)  # compute of each budget left out, flagged
    n_opt: PowerLawFit | None = None
    d_opt: PowerLawFit | None = None
    loss_law: PowerLawFit | None = None  # L(C) along the envelope (approach 1)
    law: object = field(default=None, repr=False)  # the fitted surface (approach 3)
    draws: np.ndarray = field(default=None, repr=False)  # bootstrap rows (log n_coef, n_exponent, log d_coef, d_exponent)

    n_exponent, d_exponent, n_exponent_ci, d_exponent_ci = param(), param(), param(), param()

    def predict(self, C) -> pd.DataFrame:
        """N_opt, D_opt and the tokens per parameter D_opt/N_opt at compute C (FLOP, in the data's convention)."""
        C = np.atleast_1d(np.asarray(C, float))
        N = self.params["n_coef"] * C ** self.n_exponent
        D = self.params["d_coef"] * C ** self.d_exponent
        return pd.DataFrame({"C": C, "N_opt": N, "D_opt": D, "tokens_per_param": D / N})

    def __str__(self):
        lo, hi = self.n_exponent_ci
        dlo, dhi = self.d_exponent_ci
        return (f"approach {self.approach} ({APPROACH_NAMES[self.approach]}): N_opt ~ C^{fmt_number(self.n_exponent)}"
                f" [{fmt_number(lo)}, {fmt_number(hi)}], D_opt ~ C^{fmt_number(self.d_exponent)} "
                f"[{fmt_number(dlo)}, {fmt_number(dhi)}]; {len(self.budgets_used)} budgets used, "
                f"{len(self.budgets_unbracketed)} left out")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(approach=self.approach, n_exponent=_num(self.n_exponent),
                 n_exponent_ci=[_num(v) for v in self.n_exponent_ci], d_exponent=_num(self.d_exponent),
                 d_exponent_ci=[_num(v) for v in self.d_exponent_ci],
                 budgets_used=[float(b) for b in self.budgets_used],
                 budgets_unbracketed=[float(b) for b in self.budgets_unbracketed])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ComputeOptimal:
        return cls(**cls.fields_from_dict(d), approach=int(d.get("approach", 2)),
                   budgets_used=list(d.get("budgets_used", [])),
                   budgets_unbracketed=list(d.get("budgets_unbracketed", [])))


# Kept names: approach 1's and approach 2's results are ComputeOptimal with their table under these names.
class Frontier(ComputeOptimal):
    pass


class IsoFlop(ComputeOptimal):
    @property
    def minima(self) -> pd.DataFrame:
        return self.table


def _from_draws(approach, cls, logC, logN, logD, draws, n_resamples, message, **kw) -> ComputeOptimal:
    """A ComputeOptimal from point estimates (log-log lines through logN, logD against logC) and bootstrap
    draws of (n_icept, n_slope, d_icept, d_slope) rows."""
    ns, ni = np.polyfit(logC, logN, 1)
    ds, di = np.polyfit(logC, logD, 1)
    draws = np.asarray(draws, float).reshape(-1, 4) if np.size(draws) else np.empty((0, 4))
    ok = np.isfinite(draws).all(axis=1)
    good = draws[ok]
    names = ("n_coef", "n_exponent", "d_coef", "d_exponent")
    ci, se = {}, {}
    for j, name in enumerate(names):
        col = np.exp(good[:, j]) if name.endswith("coef") else good[:, j]
        ci[name] = percentile_ci(col[:, None])[0] if len(col) else NAN2
        se[name] = float(np.std(col, ddof=1)) if len(col) >= 20 else float("nan")
    params = {"n_exponent": float(ns), "n_coef": float(np.exp(ni)), "d_exponent": float(ds),
              "d_coef": float(np.exp(di))}
    n_opt = PowerLawFit(params={"coef": params["n_coef"], "exponent": params["n_exponent"]},
                        ci={"coef": ci["n_coef"], "exponent": ci["n_exponent"]},
                        se={"coef": se["n_coef"], "exponent": se["n_exponent"]}, converged=True,
                        message=message, n_points=len(logC), n_resamples=n_resamples,
                        n_resamples_ok=int(ok.sum()), name="N_opt", var="C", x=np.exp(logC), y=np.exp(logN))
    d_opt = PowerLawFit(params={"coef": params["d_coef"], "exponent": params["d_exponent"]},
                        ci={"coef": ci["d_coef"], "exponent": ci["d_exponent"]},
                        se={"coef": se["d_coef"], "exponent": se["d_exponent"]}, converged=True,
                        message=message, n_points=len(logC), n_resamples=n_resamples,
                        n_resamples_ok=int(ok.sum()), name="D_opt", var="C", x=np.exp(logC), y=np.exp(logD))
    return cls(params=params, ci=ci, se=se, converged=True, message=message, n_points=len(logC),
               n_resamples=n_resamples, n_resamples_ok=int(ok.sum()), approach=approach, n_opt=n_opt,
               d_opt=d_opt, draws=good, **kw)


def _columns(df: pd.DataFrame, cols, what: str) -> None:
    for col in cols:
        if col is not None and col not in df.columns:
            raise DataError(f"{what}: no column {col!r}; columns are: {', '.join(map(str, df.columns))}")


def _numeric(df: pd.DataFrame, cols, what: str) -> pd.DataFrame:
    """The named columns as positive floats; a non-numeric or non-positive value is a DataError."""
    out = pd.DataFrame(index=df.index)
    for col in dict.fromkeys(c for c in cols if c is not None):
        v = pd.to_numeric(df[col], errors="coerce")
        bad = ~np.isfinite(v.to_numpy(float)) | (v.to_numpy(float) <= 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{what}: column {col!r} has {int(bad.sum())} missing, non-numeric or non-positive "
                            f"value(s), first at row {row} ({df[col].iloc[row]!r}); remove or fix those rows")
        out[col] = v.astype(float)
    return out


# ------------------------------------------------------------------------------------------------ approach 1


def _curve_matrix(curves: pd.DataFrame, grid: np.ndarray, run: str, flop: str, loss: str,
                  carry_forward: bool = True, tokens: str | None = None):
    """Loss of each run at each grid compute: the best loss reached so far, interpolated in log-log; NaN
    before the run's first point. Past its last point the run's final loss is carried forward (a budget C
    can always stop early at a run that ended below C), so the envelope never rises with compute; with
    carry_forward=False it is NaN there too. A run of one point (a CSV of final losses) counts from its
    compute on. With `tokens`, also the tokens each run had seen at that point (log-log interpolated)."""
    runs = list(pd.unique(curves[run]))
    M = np.full((len(runs), grid.size), np.nan)
    T = np.full_like(M, np.nan)
    lg = np.log(grid)
    for i, r in enumerate(runs):
        c = curves[curves[run] == r].sort_values(flop)
        x = np.log(c[flop].to_numpy(float))
        y = np.minimum.accumulate(c[loss].to_numpy(float))
        t = np.log(c[tokens].to_numpy(float)) if tokens else None
        inside = (lg >= x[0]) & (lg <= x[-1])
        if len(x) >= 2:
            M[i, inside] = np.exp(np.interp(lg[inside], x, np.log(y)))
            if t is not None:
                T[i, inside] = np.exp(np.interp(lg[inside], x, t))
        else:
            inside = np.isclose(lg, x[0])
            M[i, inside] = y[0]
            if t is not None:
                T[i, inside] = np.exp(t[0])
        if carry_forward:
            M[i, lg > x[-1]] = y[-1]
            if t is not None:
                T[i, lg > x[-1]] = np.exp(t[-1])
    return runs, M, T


def interpolated_optimum(M: np.ndarray, log_sizes: np.ndarray) -> np.ndarray:
    """log N_opt at each column of M (runs x compute grid, NaN where a run's curve does not reach that compute):
    per size the lowest loss of its runs; where the lowest size is interior among the sizes that reach that compute,
    the vertex of the parabola in log N through it and its two neighbours (kept between them); NaN where the
    budget is not bracketed by the sizes it actually has."""
    us, inv = np.unique(log_sizes, return_inverse=True)
    P = np.full((us.size, M.shape[1]), np.nan)
    for k in range(us.size):
        rows = M[inv == k]
        ok = np.isfinite(rows).any(axis=0)
        P[k, ok] = np.nanmin(rows[:, ok], axis=0)
    out = np.full(M.shape[1], np.nan)
    for j in range(M.shape[1]):
        have = np.flatnonzero(np.isfinite(P[:, j]))
        if have.size < 3:
            continue
        x, y = us[have], np.log(P[have, j])
        i = int(np.argmin(y))
        if i == 0 or i == x.size - 1:
            continue
        x3, y3 = x[i - 1:i + 2], y[i - 1:i + 2]
        a = np.polyfit(x3, y3, 2)
        v = -a[1] / (2 * a[0]) if a[0] > 0 else x[i]
        out[j] = float(np.clip(v, x3[0], x3[-1]))
    return out


def envelope(curves: pd.DataFrame, *, run: str = "run_id", flop: str = "flop", loss: str = "loss",
             n: str | None = "N", d: str | None = None, n_grid: int = 40, n_resamples: int = 500, seed: int = 0,
             c_range: tuple[float, float] | None = None, monotone: bool = True) -> Frontier:
    """Approach 1, the compute-efficient frontier: min over runs of the loss at each compute on a log grid.

    c_range limits the grid. N_opt at each grid compute is interpolated between the sizes whose curves reach it
    (interpolated_optimum: a parabola in log N through the best and its neighbours, not the discrete best size,
    whose staircase flattens the slope by about 1 - 1/K^2 with K sizes); a grid point is bracketed when the best
    of the sizes that reach it has one on each side, else it is left out of N_opt(C) and D_opt(C), flagged in
    `table['bracketed']`. D_opt is the tokens the best run had seen (`d` column), else C/(6N). Intervals
    resample whole runs and recompute the envelope."""
    _columns(curves, (run, flop, loss, d), "frontier")
    keep = [c for c in dict.fromkeys((run, flop, loss, n, d)) if c and c in curves.columns]
    cv = curves[keep].dropna()
    cv = cv[(cv[flop] > 0) & (cv[loss] > 0)]
    if cv[run].nunique() < 2:
        raise FitError("frontier: need learning curves (or final losses) of at least 2 runs")
    lo = cv.groupby(run)[flop].min().min()
    hi = cv[flop].max()
    if c_range is not None:
        lo, hi = max(lo, c_range[0]), min(hi, c_range[1])
    if not hi > lo:
        raise FitError("frontier: the runs span no range of compute")
    grid = np.geomspace(lo, hi, n_grid)
    if cv.groupby(run).size().max() == 1:  # final losses only: the grid is the runs' own computes
        grid = np.unique(cv[flop].to_numpy(float))
        grid = grid[(grid >= lo) & (grid <= hi)]
    runs, M, T = _curve_matrix(cv, grid, run, flop, loss, carry_forward=monotone, tokens=d)
    _, Mc, _ = _curve_matrix(cv, grid, run, flop, loss, carry_forward=False)  # where each curve really is
    has = np.isfinite(M).any(axis=0)
    grid, M, T, Mc = grid[has], M[:, has], T[:, has], Mc[:, has]
    best = np.nanargmin(M, axis=0)
    cols = np.arange(grid.size)
    table = pd.DataFrame({"C": grid, "loss": M[best, cols], "run": [runs[i] for i in best]})
    size = cv.groupby(run)[n].first() if n and n in cv.columns else None
    sizes = np.array([size[r] for r in runs], float) if size is not None else None
    if sizes is not None:
        table["N"] = sizes[best]
        table["D"] = T[best, cols] if d else table["C"] / (6.0 * table["N"])
        # N_opt interpolated between the sizes that reach each budget (no discrete staircase); bracketed where
        # the best of those sizes has one on either side
        table["N_opt"] = np.exp(interpolated_optimum(Mc, np.log(sizes)))
        table["bracketed"] = np.isfinite(table["N_opt"])
        # the tokens at the interpolated size: the best run's tokens scaled by N_best/N_opt (C = f(N) D with f
        # locally proportional to N)
        table["D"] = np.where(table["bracketed"], table["D"] * table["N"] / table["N_opt"], table["D"])
    loss_fit = power_law_fit(grid, table["loss"], n_resamples=0, name="L", var="C_min")

    def stat(idx):
        Mb = M[idx]
        okc = np.isfinite(Mb).any(axis=0)
        if okc.sum() < 3:
            return None
        bb = np.nanargmin(np.where(np.isfinite(Mb[:, okc]), Mb[:, okc], np.inf), axis=0)
        lc, le = _loglog(grid[okc], Mb[bb, np.flatnonzero(okc)])
        out = [lc, le, np.nan, np.nan, np.nan, np.nan]
        if sizes is not None:
            u = np.unique(idx)
            ln = interpolated_optimum(Mc[u], np.log(sizes[u]))
            inner = np.isfinite(ln)
            if inner.sum() >= 2 and np.ptp(ln[inner]) > 0:
                gc = grid[inner]
                bbf = np.nanargmin(np.where(np.isfinite(Mb), Mb, np.inf), axis=0)
                nb = sizes[idx][bbf][inner]
                db = (T[idx][bbf, np.arange(grid.size)][inner] if d else gc / (6 * nb)) * nb / np.exp(ln[inner])
                nc, ne = np.polyfit(np.log(gc), ln[inner], 1)[::-1]
                dc, de = np.polyfit(np.log(gc), np.log(db), 1)[::-1]
                out[2:] = [nc, ne, dc, de]
        return out

    draws = bootstrap_groups(stat, np.arange(len(runs)), n_resamples, seed) if n_resamples else np.empty((0, 6))
    if draws.shape[1] < 6:
        draws = np.full((len(draws), 6), np.nan)
    lok = np.isfinite(draws[:, :2]).all(axis=1)
    lci, eci = percentile_ci(draws[lok, :2]) if lok.any() else (NAN2, NAN2)
    loss_fit.ci = {"coef": lci, "exponent": eci}
    loss_fit.se = {"coef": float(np.std(draws[lok, 0])) if lok.sum() >= 2 else float("nan"),
                   "exponent": float(np.std(draws[lok, 1])) if lok.sum() >= 2 else float("nan")}
    loss_fit.n_resamples, loss_fit.n_resamples_ok = n_resamples, int(lok.sum())

    nan_params = {"n_exponent": float("nan"), "n_coef": float("nan"), "d_exponent": float("nan"),
                  "d_coef": float("nan")}
    if sizes is None:
        return Frontier(params=nan_params, ci={k: NAN2 for k in nan_params}, se={k: float("nan") for k in nan_params},
                        converged=False, message="no model-size column: N_opt(C) not measured", n_points=len(grid),
                        approach=1, table=table, loss_law=loss_fit)
    fit_rows = table[table["bracketed"]]
    used, left = fit_rows["C"].tolist(), table.loc[~table["bracketed"], "C"].tolist()
    span = float(np.log10(fit_rows["C"].max() / fit_rows["C"].min())) if len(fit_rows) else 0.0
    if fit_rows["N_opt"].nunique() >= 2 and span < MIN_SPAN_DECADES:
        return Frontier(params=nan_params, ci={k: NAN2 for k in nan_params}, se={k: float("nan") for k in nan_params},
                        converged=False, message=f"the bracketed budgets span {span:.2f} decades of compute, under "
                        f"{MIN_SPAN_DECADES}: too short a lever for an exponent (train sizes on both sides of the "
                        "optimum over a wider range of compute)", n_points=len(fit_rows), approach=1, table=table,
                        loss_law=loss_fit, budgets_used=used, budgets_unbracketed=left)
    if fit_rows["N_opt"].nunique() < 2:
        return Frontier(params=nan_params, ci={k: NAN2 for k in nan_params}, se={k: float("nan") for k in nan_params},
                        converged=False, message=f"the envelope has {fit_rows['N'].nunique()} unsaturated model "
                        "size(s); need at least 2 (train sizes on both sides of the optimum)", n_points=len(fit_rows),
                        approach=1, table=table, loss_law=loss_fit, budgets_used=used, budgets_unbracketed=left)
    # draws hold (log coef, exponent) pairs for N then D, in _from_draws' (icept, slope) order
    nd = draws[:, 2:]
    return _from_draws(1, Frontier, np.log(fit_rows["C"].to_numpy(float)), np.log(fit_rows["N_opt"].to_numpy(float)),
                       np.log(fit_rows["D"].to_numpy(float)), nd, n_resamples,
                       "envelope; bootstrap over runs", table=table, loss_law=loss_fit, budgets_used=used,
                       budgets_unbracketed=left)


# ------------------------------------------------------------------------------------------------ approach 2


def budget_groups(C: np.ndarray, tol_decades: float = 0.05) -> np.ndarray:
    """Budget labels for computes that cluster: sorted log10 C, a new budget wherever it jumps by more than
    `tol_decades` (runs of one nominal budget differ by rounding; give a budget column when they differ more)."""
    lc = np.log10(np.asarray(C, float))
    order = np.argsort(lc)
    lab = np.empty(len(lc), int)
    k = 0
    for j, i in enumerate(order):
        if j and lc[i] - lc[order[j - 1]] > tol_decades:
            k += 1
        lab[i] = k
    return lab


def _local_minimum(x: np.ndarray, y: np.ndarray, logd: np.ndarray | None, window: int):
    """(log N_opt, loss there, log D_opt, curvature, points used, why-not) for one budget: x = log N sorted, one
    point per size. The parabola goes through the lowest loss and up to `window` sizes on each side."""
    if len(x) < 3:
        return None, f"{len(x)} size(s): need 3"
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return None, f"lowest loss at the {'smallest' if i == 0 else 'largest'} size: optimum not bracketed"
    lo, hi = max(0, i - window), min(len(x), i + window + 1)
    xs, ys = x[lo:hi], y[lo:hi]
    a, b, c = np.polyfit(xs, ys, 2)
    if not a > 0:
        return None, "no curvature near the minimum"
    xm = -b / (2 * a)
    if not xs[0] <= xm <= xs[-1]:
        return None, "the local parabola's minimum lies outside its sizes"
    ld = float(np.polyval(np.polyfit(xs, logd[lo:hi], 1), xm)) if logd is not None else np.nan
    return (float(xm), float(np.polyval([a, b, c], xm)), ld, float(a), int(hi - lo)), ""


def _dedupe(x, y, logd):
    """One point per size (mean loss of repeats): a resample draws some sizes twice."""
    ux, inv = np.unique(x, return_inverse=True)
    cnt = np.bincount(inv)
    yy = np.bincount(inv, y) / cnt
    dd = np.bincount(inv, logd) / cnt if logd is not None else None
    return ux, yy, dd


def isoflop_minima(runs: pd.DataFrame, *, n: str = "N", c: str | None = "C", loss: str = "loss",
                   budget: str | None = None, d: str | None = None, window: int = 2, n_resamples: int = 1000,
                   seed: int = 0) -> IsoFlop:
    """Approach 2. Runs are grouped by compute budget (the `budget` column, or C clustered within 0.05
    decades); per budget a parabola in log N near the observed minimum gives N_opt; budgets that do not bracket
    their optimum are flagged (`minima['bracketed']`, with `why`) and left out of the exponents.

    C may be given as a column (`c`) or derived as 6 N D from a tokens column (`d`); D_opt is the tokens of the
    budget at N_opt (interpolated in log-log near the minimum), or C/(6 N_opt) without a tokens column.
    Intervals: per budget, a residual bootstrap of its points (`N_opt_low`, `N_opt_high`); for the exponents,
    every budget kept and the line refitted through the budgets' r-th resampled minima."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"window {window!r}: approach 2 fits its parabola to the lowest loss and `window` sizes "
                          "on each side of it, so it must be at least 1 (default 2)")
    if c is None and d is None:
        raise DataError("isoflop: give a compute column (c) or a tokens column (d)")
    _columns(runs, (n, c, loss, budget, d), "isoflop")
    vals = _numeric(runs, (n, c, loss, d), "isoflop")
    N = vals[n].to_numpy()
    y = vals[loss].to_numpy()
    C = vals[c].to_numpy() if c else 6.0 * N * vals[d].to_numpy()
    logd_all = np.log(vals[d].to_numpy()) if d else None
    key = runs[budget].to_numpy() if budget else budget_groups(C)
    rng = np.random.default_rng(seed)
    rows, fits = [], []
    for k in pd.unique(key):
        m = key == k
        Cb = float(np.exp(np.mean(np.log(C[m]))))
        xs, ys, ds = _dedupe(np.log(N[m]), y[m], logd_all[m] if d else np.log(C[m] / (6 * N[m])))
        res, why = _local_minimum(xs, ys, ds, window)
        row = {"budget": k, "C": Cb, "n_points": int(m.sum()), "n_sizes": len(xs), "bracketed": res is not None,
               "why": why, "N_best_observed": float(np.exp(xs[np.argmin(ys)])), "loss_best_observed": float(ys.min()),
               "N_opt": np.nan, "D_opt": np.nan, "loss_opt": np.nan, "curvature": np.nan, "n_fit": 0,
               "N_opt_low": np.nan, "N_opt_high": np.nan}
        if res is not None:
            xm, lm, ldm, curv, nfit = res
            row.update(N_opt=float(np.exp(xm)), D_opt=float(np.exp(ldm)), loss_opt=lm, curvature=curv, n_fit=nfit)
            fits.append((len(rows), xs, ys, ds))
        rows.append(row)
    # The minimum's uncertainty: a residual bootstrap within each budget. The local fits' residuals (scaled for
    # the 3 parameters each fit spends) are pooled over budgets, since run-to-run noise is one property of the
    # study and a budget's own 3-5 residuals say little; each resample puts drawn residuals on every point of
    # the budget (around the local fit inside its window, around the observation outside it) and redoes the
    # whole procedure: which size is lowest, the window, the parabola.
    pooled, base = [], []
    for i, xs, ys, ds in fits:
        j = int(np.argmin(ys))
        lo, hi = max(0, j - window), min(len(xs), j + window + 1)
        coef = np.polyfit(xs[lo:hi], ys[lo:hi], 2)
        yb = ys.copy()
        yb[lo:hi] = np.polyval(coef, xs[lo:hi])
        r = ys[lo:hi] - yb[lo:hi]
        if hi - lo > 3:
            pooled.extend(r * np.sqrt((hi - lo) / (hi - lo - 3)))
        base.append(yb)
    pooled = np.asarray(pooled)
    draws_n, draws_d = [], []
    for (i, xs, ys, ds), yb in zip(fits, base):
        bn, bd = np.full(n_resamples, np.nan), np.full(n_resamples, np.nan)
        if len(pooled) < 3:  # every local fit is exact (3 sizes): no scatter to resample, minima taken as given
            bn[:], bd[:] = np.log(rows[i]["N_opt"]), np.log(rows[i]["D_opt"])
        for r in range(n_resamples if len(pooled) >= 3 else 0):
            rb, _ = _local_minimum(xs, yb + rng.choice(pooled, len(xs)), ds, window)
            if rb is not None:
                bn[r], bd[r] = rb[0], rb[2]
        if np.isfinite(bn).sum() >= 20 and len(pooled) >= 3:
            rows[i]["N_opt_low"], rows[i]["N_opt_high"] = np.exp(np.nanpercentile(bn, [2.5, 97.5]))
        rows[i]["n_resamples_ok"] = int(np.isfinite(bn).sum())
        draws_n.append(bn)
        draws_d.append(bd)
    noise_sd = float(np.std(pooled)) if len(pooled) >= 3 else float("nan")
    minima = pd.DataFrame(rows).sort_values("C").reset_index(drop=True)
    used_rows = minima[minima["bracketed"]]
    used, left = used_rows["C"].tolist(), minima.loc[~minima["bracketed"], "C"].tolist()
    if len(used_rows) < 2:
        raise FitError(f"isoflop: {len(used_rows)} of {len(minima)} compute budgets bracket their optimum (a lowest "
                       "loss with a larger loss on each side); need at least 2: train sizes on both sides of the "
                       "optimum")
    # the budgets in the order the draws were collected
    order = [i for i, r in enumerate(rows) if r["bracketed"]]
    Cb = np.log(np.array([rows[i]["C"] for i in order]))
    DN, DD = np.array(draws_n), np.array(draws_d)
    # The exponents' uncertainty: the budgets are the design, not a sample, so they all stay; in draw r every
    # budget's minimum is its own r-th residual-bootstrap draw and the lines are refitted (resampling budgets
    # instead, with 4-6 budgets, gave intervals 2.5x the seed-to-seed spread: tests/test_calibration.py)
    nb = len(order)
    brng = np.random.default_rng(seed + 1)
    for b in range(nb):  # a resample in which a budget lost its bracket takes another of that budget's draws
        ok = np.isfinite(DN[b]) & np.isfinite(DD[b])
        if ok.any() and not ok.all():
            pick = brng.choice(np.flatnonzero(ok), int((~ok).sum()))
            DN[b, ~ok], DD[b, ~ok] = DN[b, pick], DD[b, pick]
    draws = np.full((n_resamples, 4), np.nan)
    for r in range(n_resamples):
        ln, ld = DN[:, r], DD[:, r]
        if np.isfinite(ln).all() and np.isfinite(ld).all():
            ns, ni = np.polyfit(Cb, ln, 1)
            ds, di = np.polyfit(Cb, ld, 1)
            draws[r] = [ni, ns, di, ds]
    msg = ("parabola near each budget's minimum; intervals from a residual bootstrap within every budget (the "
           "budgets kept)" + ("" if nb >= 3 else "; 2 budgets: the line through them is exact"))
    msg += (f"; loss scatter about the local fits {noise_sd:.3g}" if len(pooled) >= 3 else
            "; the local fits are exact (3 sizes each): the minima's own uncertainty is not measured")
    if left:
        msg += f"; {len(left)} budget(s) not bracketed, left out"
    ln_opt = np.log(used_rows["N_opt"].to_numpy(float))
    ld_opt = np.log(used_rows["D_opt"].to_numpy(float))
    return _from_draws(2, IsoFlop, np.log(used_rows["C"].to_numpy(float)), ln_opt, ld_opt, draws, n_resamples, msg,
                       table=minima, budgets_used=used, budgets_unbracketed=left)


# ------------------------------------------------------------------------------------------------ approach 3


def chinchilla_allocation(params: dict) -> dict:
    """Closed form of the compute-optimal allocation under L = E + A/N^alpha + B/D^beta with C = 6 N D:
    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, a = beta/(alpha+beta), b = alpha/(alpha+beta),
    G = (alpha A / (beta B))^(1/(alpha+beta))."""
    A, B, al, be = params["A"], params["B"], params["alpha"], params["beta"]
    G = (al * A / (be * B)) ** (1.0 / (al + be))
    return {"G": G, "a": be / (al + be), "b": al / (al + be)}


def chinchilla_optimal(law_or_params, C, level: float = 0.95) -> pd.DataFrame:
    """N_opt, D_opt and the loss at the optimum for compute C (FLOP, C = 6ND), with intervals from bootstrap
    draws when the law has them."""
    params = getattr(law_or_params, "params", law_or_params)
    C = np.atleast_1d(np.asarray(C, float))

    def at(p):
        al = chinchilla_allocation(p)
        N = al["G"] * (C / 6) ** al["a"]
        D = (C / 6) ** al["b"] / al["G"]
        L = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
        return N, D, L

    N, D, L = at(params)
    out = pd.DataFrame({"C": C, "N_opt": N, "D_opt": D, "loss": L})
    samples = getattr(law_or_params, "samples", None)
    if samples is not None and len(samples) >= 2:
        names = law_or_params.form.param_names
        draws = [at(dict(zip(names, s))) for s in samples]
        q = 100 * (1 - level) / 2
        for j, col in enumerate(("N_opt", "D_opt", "loss")):
            arr = np.array([d[j] for d in draws])
            out[col + "_low"], out[col + "_high"] = np.nanpercentile(arr, [q, 100 - q], axis=0)
    return out


def _surface_argmin(p: dict, logC: np.ndarray, logN: np.ndarray, logf: np.ndarray) -> np.ndarray:
    """log N minimising E + A/N^alpha + B/D^beta along D = C / f(N), for each log C (a fine grid of log N)."""
    logD = logC[:, None] - logf[None, :]
    L = p["A"] * np.exp(-p["alpha"] * logN)[None, :] + p["B"] * np.exp(-p["beta"] * logD)
    return _row_argmin(L, logN)


def flop_per_token_curve(N, flop_per_token) -> tuple[np.ndarray, np.ndarray, float]:
    """(log N grid, log f on it, the slope of log f in log N): the FLOP per token of each size, from the data's
    own accounting (exactly 6N for C = 6ND), interpolated in log-log between the sizes and continued along the
    end segments, on a fine grid 7 e-folds past the sizes each way."""
    sx, inv = np.unique(np.log(np.asarray(N, float)), return_inverse=True)
    sf = np.bincount(inv, np.log(np.asarray(flop_per_token, float))) / np.bincount(inv)
    logN = np.linspace(sx[0] - 7, sx[-1] + 7, 4001)
    if len(sx) >= 2:
        logf = np.interp(logN, sx, sf)
        lo_s, hi_s = (sf[1] - sf[0]) / (sx[1] - sx[0]), (sf[-1] - sf[-2]) / (sx[-1] - sx[-2])
        logf = np.where(logN < sx[0], sf[0] + lo_s * (logN - sx[0]), logf)
        logf = np.where(logN > sx[-1], sf[-1] + hi_s * (logN - sx[-1]), logf)
    else:
        logf = sf[0] + (logN - sx[0])
    fs = float(np.polyfit(sx, sf, 1)[0]) if len(sx) >= 2 else 1.0
    return logN, logf, fs


def _row_argmin(L: np.ndarray, logN: np.ndarray) -> np.ndarray:
    """log N of each row's minimum of L on the grid logN, refined by a parabola through its neighbours."""
    j = np.clip(np.argmin(L, axis=1), 1, len(logN) - 2)
    r = np.arange(L.shape[0])
    y0, y1, y2 = L[r, j - 1], L[r, j], L[r, j + 1]
    h = logN[1] - logN[0]
    den = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(den > 0, 0.5 * (y0 - y2) / den, 0.0)
    return logN[j] + np.clip(shift, -1, 1) * h


def _ns_loss(p: dict, logC: np.ndarray, logN: np.ndarray, logf: np.ndarray, log_batch: float,
             bcrit: dict | None) -> np.ndarray:
    """L(N, S) = (N_c/N)^alpha_N + (S_c/S)^alpha_S along C = f(N) B S on a (C, N) grid. With `bcrit`
    (B_star, alpha_B), S is S_min and C is C_min = f(N) B_crit(L) S_min (Kaplan eqs. 5.4, 5.5 multiplied out),
    an implicit equation in L solved by bisection in log L (L - L(N, S_min(L)) rises with L)."""
    ln_term = np.exp(p["alpha_N"] * (np.log(p["N_c"]) - logN))[None, :]
    if bcrit is None:
        logS = logC[:, None] - logf[None, :] - log_batch
        return ln_term + np.exp(p["alpha_S"] * (np.log(p["S_c"]) - logS))
    a = np.log(ln_term) + np.zeros((logC.size, 1))
    lo, hi = a.copy(), a + 30.0  # log L: L above the N term; 30 e-folds above is far past any root
    k = p["alpha_S"] * (np.log(p["S_c"]) + logf[None, :] + np.log(bcrit["B_star"]) - logC[:, None])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        # L - (N term) - (S_c f B_crit(L) / C)^alpha_S, with B_crit(L) = B* L^(-1/alpha_B)
        g = np.exp(mid) - ln_term - np.exp(k - p["alpha_S"] / bcrit["alpha_B"] * mid)
        lo, hi = np.where(g < 0, mid, lo), np.where(g < 0, hi, mid)
    return np.exp(0.5 * (lo + hi))


def ns_optimum(law, N, flop_per_token, batch: float, c_range: tuple[float, float], *, bcrit=None,
               n_grid: int = 20) -> ComputeOptimal:
    """Approach 3 on learning curves: N_opt(C) minimising Kaplan's L(N, S) (eq. 1.6, a fitted `kaplan_ns` law)
    along iso-compute lines C = f(N) B S, B the tokens per step and f the FLOP per token of each size (the data's
    own accounting, flop_per_token_curve). For C = 6 N B S the exponent is alpha_S/(alpha_N + alpha_S); with
    `bcrit` (a B_crit(L) law) steps are S_min and C is C_min. Exponents over c_range; intervals from the law's
    bootstrap draws (each paired with a draw of `bcrit`'s, so its uncertainty is carried too)."""
    logN, logf, fs = flop_per_token_curve(N, flop_per_token)
    logC = np.log(np.geomspace(c_range[0], c_range[1], n_grid))
    lb = float(np.log(batch))
    names = list(law.form.param_names)
    bnames = list(bcrit.form.param_names) if bcrit is not None else []

    def line(p, b):
        ln = _row_argmin(_ns_loss(p, logC, logN, logf, lb, b), logN)
        lf = np.interp(ln, logN, logf)
        ld = logC - lf  # tokens: C / f(N) (with bcrit, D_min at the critical batch)
        ns, ni = np.polyfit(logC, ln, 1)
        ds, di = np.polyfit(logC, ld, 1)
        return ln, ld, [ni, ns, di, ds]

    bp = dict(bcrit.params) if bcrit is not None else None
    ln, ld, _ = line(law.params, bp)
    samples = law.samples if law.samples is not None else np.empty((0, len(names)))
    bs = bcrit.samples if bcrit is not None and bcrit.samples is not None and len(bcrit.samples) else None
    rows = []
    for i, s in enumerate(samples):
        b = dict(zip(bnames, bs[i % len(bs)])) if bs is not None else bp
        rows.append(line(dict(zip(names, s)), b)[2])
    draws = np.array(rows) if rows else np.empty((0, 4))
    table = pd.DataFrame({"C": np.exp(logC), "N_opt": np.exp(ln), "D_opt": np.exp(ld)})
    msg = (f"L(N, S{'_min' if bcrit is not None else ''}) minimised along C = f(N) B S (f ~ N^{fs:.3g}); "
           "bootstrap draws of the law" + (" and of B_crit(L)" if bs is not None else ""))
    res = _from_draws(3, ComputeOptimal, logC, ln, ld, draws, len(samples), msg, table=table,
                      budgets_used=[], budgets_unbracketed=[], law=law)
    return res


def surface_optimum(data: pd.DataFrame | None = None, *, law=None, n: str = "N", d: str | None = None,
                    c: str | None = None, loss: str = "loss", run: str | None = None, n_resamples: int = 200,
                    seed: int = 0, c_range: tuple[float, float] | None = None, n_grid: int = 20,
                    grid=None) -> ComputeOptimal:
    """Approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta (or take `law`), then N_opt(C) minimises it along
    D = C / f(N). f(N), the FLOP per token, is C/D of the data (interpolated between its sizes) when both a compute
    and a tokens column are given (so re-counted FLOPs move the optimum), else 6N (Chinchilla's closed form).
    Exponents over `c_range` (default: the data's compute range); intervals from the law's bootstrap draws."""
    from scalinglab.laws.fit import fit_law

    if law is None:
        if data is None:
            raise FitError("surface_optimum: give data or a fitted law")
        if d is None and c is None:
            raise DataError("surface_optimum: give a tokens column (d) or a compute column (c)")
        _columns(data, (n, d, c, loss, run), "surface")
        vals = _numeric(data, (n, d, c, loss), "surface")
        N = vals[n].to_numpy()
        D = vals[d].to_numpy() if d else vals[c].to_numpy() / (6 * N)
        C = vals[c].to_numpy() if c else 6 * N * D
        frame = pd.DataFrame({"N": N, "D": D, "loss": vals[loss].to_numpy()})
        if run:
            frame["group"] = data[run].to_numpy()
        law = fit_law(frame, "chinchilla", n="N", d="D", loss="loss", run="group" if run else None,
                      n_resamples=n_resamples, seed=seed, grid=grid)
    else:
        frame = law.data
        N, D = frame["N"].to_numpy(float), frame["D"].to_numpy(float)
        C = 6 * N * D if c is None or data is None else _numeric(data, (c,), "surface")[c].to_numpy()
    if not law.converged:
        raise FitError(f"surface_optimum: the L(N, D) fit did not converge ({law.message})")
    lo, hi = c_range or (float(C.min()), float(C.max()))
    logC = np.log(np.geomspace(lo, hi, n_grid))
    logN, logf, fs = flop_per_token_curve(N, C / D)

    def line(p):
        ln = _surface_argmin(p, logC, logN, logf)
        ld = logC - np.interp(ln, logN, logf)
        ns, ni = np.polyfit(logC, ln, 1)
        ds, di = np.polyfit(logC, ld, 1)
        return ln, ld, [ni, ns, di, ds]

    ln, ld, _ = line(law.params)
    names = law.form.param_names
    draws = np.array([line(dict(zip(names, s)))[2] for s in law.samples]) if len(law.samples) else np.empty((0, 4))
    table = pd.DataFrame({"C": np.exp(logC), "N_opt": np.exp(ln), "D_opt": np.exp(ld)})
    msg = (f"L(N, D) fitted on {law.n_points} points; minimised along C = f(N) D (f, the FLOP per token, ~ N^{fs:.3g} over the sizes); bootstrap "
           f"draws of the law")
    res = _from_draws(3, ComputeOptimal, logC, ln, ld, draws, law.n_resamples, msg, table=table,
                      budgets_used=[], budgets_unbracketed=[], law=law)
    res.n_resamples_ok = law.n_resamples_ok
    return res
