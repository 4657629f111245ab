"""Compute-optimal frontiers, the three ways of Hoffmann et al. 2022 and Kaplan's L(C_min).

- `envelope`: the lower envelope of all learning curves in (FLOP, loss), on a log-spaced compute grid, with the
  run that is best at each compute (Kaplan Fig. 1 left; Chinchilla approach 1).
- `isoflop_minima`: for each compute budget, a parabola in log N through the final losses, and its minimum
  (Chinchilla approach 2).
- `chinchilla_optimal`: N_opt(C) = G (C/6)^a, D_opt(C) = (C/6)^b / G from a fitted L(N, D) = E + A/N^alpha +
  B/D^beta (approach 3), with intervals from the law's bootstrap draws.
- `power_law_fit`: y = k x^a by least squares in log-log, with bootstrap intervals (over runs or budgets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalinglab.errors import DataError, FitError
from scalinglab.laws.forms import fmt_number  # noqa: F401
from scalinglab.laws.result import PowerLawFit, _loglog, power_law_fit  # noqa: F401 (re-exported)


# ------------------------------------------------------------------------------------------------ approach 1


def _curve_matrix(curves: pd.DataFrame, grid: np.ndarray, run: str, flop: str, loss: str,
                  carry_forward: bool = True):
    """Loss of each run at each grid compute: the best loss reached so far, interpolated in log-log; NaN
    before the run's first point. Past its last point the run's final loss is carried forward (a budget C
    can always stop early at a run that ended below C), so the envelope never rises with compute; with
    carry_forward=False it is NaN there too."""
    runs = list(pd.unique(curves[run]))
    M = np.full((len(runs), grid.size), np.nan)
    lg = np.log(grid)
    for i, r in enumerate(runs):
        c = curves[curves[run] == r].sort_values(flop)
        x = np.log(c[flop].to_numpy(float))
        y = np.minimum.accumulate(c[loss].to_numpy(float))
        if len(x) < 2:
            continue
        inside = (lg >= x[0]) & (lg <= x[-1])
        M[i, inside] = np.exp(np.interp(lg[inside], x, np.log(y)))
        if carry_forward:
            M[i, lg > x[-1]] = y[-1]
    return runs, M


@dataclass
class Frontier:
    table: pd.DataFrame  # C, loss, run, N, D: the envelope on the compute grid
    loss_law: PowerLawFit  # L(C_min) ~ power law of the envelope
    n_opt: PowerLawFit | None  # N_opt(C) (approach 1)
    d_opt: PowerLawFit | None  # D_opt(C) = C / (6 N_opt)


def envelope(curves: pd.DataFrame, *, run: str = "run_id", flop: str = "flop", loss: str = "loss",
             n: str | None = "N", n_grid: int = 40, n_resamples: int = 500, seed: int = 0,
             c_range: tuple[float, float] | None = None, monotone: bool = True) -> Frontier:
    """The compute-efficient frontier: min over runs of the loss at each compute on a log-spaced grid.

    c_range limits the grid (and so the power-law fits): at the ends of a study the optimum falls outside the
    model sizes trained, and the envelope saturates at the smallest or largest model."""
    for col in (run, flop, loss):
        if col not in curves.columns:
            raise DataError(f"frontier: no column {col!r}; columns are: {', '.join(map(str, curves.columns))}")
    cv = curves[[c for c in (run, flop, loss, n) if c and c in curves.columns]].dropna()
    cv = cv[(cv[flop] > 0) & (cv[loss] > 0)]
    if cv[run].nunique() < 2:
        raise FitError("frontier: need learning curves of at least 2 runs")
    lo = cv.groupby(run)[flop].min().min()
    hi = cv[flop].max()
    if c_range is not None:
        lo, hi = max(lo, c_range[0]), min(hi, c_range[1])
    grid = np.geomspace(lo, hi, n_grid)
    runs, M = _curve_matrix(cv, grid, run, flop, loss, carry_forward=monotone)
    has = np.isfinite(M).any(axis=0)
    grid, M = grid[has], M[:, has]
    best = np.nanargmin(M, axis=0)
    table = pd.DataFrame({"C": grid, "loss": M[best, np.arange(grid.size)], "run": [runs[i] for i in best]})
    if n and n in cv.columns:
        size = cv.groupby(run)[n].first()
        table["N"] = table["run"].map(size).to_numpy(float)
        table["D"] = table["C"] / (6.0 * table["N"])
    # intervals by resampling runs: recompute the envelope from a bootstrap set of runs
    rng = np.random.default_rng(seed)
    loss_fit = power_law_fit(grid, table["loss"], n_resamples=0, name="L", var="C_min")
    lc, le, nc, ne = [], [], [], []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(runs), len(runs))
        Mb = M[pick]
        okc = np.isfinite(Mb).any(axis=0)
        if okc.sum() < 3:
            continue
        bb = np.nanargmin(np.where(np.isfinite(Mb[:, okc]), Mb[:, okc], np.inf), axis=0)
        c, e = _loglog(grid[okc], Mb[bb, np.flatnonzero(okc)])
        lc.append(c)
        le.append(e)
        if "N" in table:
            nb = np.array([size[runs[pick[i]]] for i in bb])
            if len(np.unique(nb)) >= 2:
                c2, e2 = _loglog(grid[okc], nb)
                nc.append(c2)
                ne.append(e2)

    def ci(v):
        return tuple(map(float, np.percentile(v, [2.5, 97.5]))) if len(v) >= 2 else (float("nan"),) * 2

    def set_ci(fit, cs, es):
        fit.ci = {"coef": ci(cs), "exponent": ci(es)}
        fit.n_resamples, fit.n_resamples_ok = n_resamples, len(es)
        fit.se = {"coef": float(np.std(cs)) if len(cs) >= 2 else float("nan"),
                  "exponent": float(np.std(es)) if len(es) >= 2 else float("nan")}

    set_ci(loss_fit, lc, le)
    n_opt = d_opt = None
    if "N" in table and table["N"].nunique() >= 2:
        n_opt = power_law_fit(grid, table["N"], n_resamples=0, name="N_opt", var="C")
        set_ci(n_opt, nc, ne)
        d_opt = power_law_fit(grid, table["D"], n_resamples=0, name="D_opt", var="C")
        # D = C/(6N): its exponent is 1 - a and its coefficient 1/(6 G), interval for interval
        d_opt.ci = {"exponent": (1 - n_opt.exponent_ci[1], 1 - n_opt.exponent_ci[0]),
                    "coef": (1 / (6 * n_opt.coef_ci[1]), 1 / (6 * n_opt.coef_ci[0]))}
        d_opt.se = {"exponent": n_opt.se["exponent"], "coef": float("nan")}
        d_opt.n_resamples, d_opt.n_resamples_ok = n_opt.n_resamples, n_opt.n_resamples_ok
    return Frontier(table=table, loss_law=loss_fit, n_opt=n_opt, d_opt=d_opt)


# ------------------------------------------------------------------------------------------------ approach 2


@dataclass
class IsoFlop:
    minima: pd.DataFrame  # per budget: C, N_opt, D_opt, loss_opt, curvature, n_points
    n_opt: PowerLawFit
    d_opt: PowerLawFit


def isoflop_minima(runs: pd.DataFrame, *, n: str = "N", c: str = "C", loss: str = "loss", budget: str | None = None,
                   n_resamples: int = 1000, seed: int = 0) -> IsoFlop:
    """Approach 2: group final losses by compute budget (a `budget` column, or C rounded to 2 significant
    digits in log10), fit loss = a (log N)^2 + b log N + c per budget, take its minimum."""
    for col in (n, c, loss):
        if col not in runs.columns:
            raise DataError(f"isoflop: no column {col!r}; columns are: {', '.join(map(str, runs.columns))}")
    df = runs[[n, c, loss] + ([budget] if budget else [])].dropna()
    key = df[budget] if budget else np.round(np.log10(df[c].astype(float)), 1)
    rows = []
    for k, part in df.groupby(key):
        if part[n].nunique() < 3:
            continue
        x = np.log(part[n].to_numpy(float))
        y = part[loss].to_numpy(float)
        a, b, _ = np.polyfit(x, y, 2)
        if a <= 0:  # no minimum: the budget's sizes do not bracket the optimum
            continue
        xm = -b / (2 * a)
        C = float(np.exp(np.mean(np.log(part[c].to_numpy(float)))))
        rows.append({"C": C, "N_opt": float(np.exp(xm)), "D_opt": C / (6 * float(np.exp(xm))),
                     "loss_opt": float(np.polyval([a, b, _], xm)), "curvature": float(a), "n_points": len(part),
                     "bracketed": bool(x.min() <= xm <= x.max())})
    minima = pd.DataFrame(rows)
    if len(minima) < 2:
        raise FitError("isoflop: fewer than 2 compute budgets with >= 3 model sizes and a parabola with a "
                       "minimum; add sizes on both sides of the optimum")
    n_opt = power_law_fit(minima["C"], minima["N_opt"], n_resamples=n_resamples, seed=seed, name="N_opt", var="C")
    d_opt = power_law_fit(minima["C"], minima["D_opt"], n_resamples=n_resamples, seed=seed, name="D_opt", var="C")
    return IsoFlop(minima=minima, n_opt=n_opt, d_opt=d_opt)


# ------------------------------------------------------------------------------------------------ approach 3


def chinchilla_allocation(params: dict) -> dict:
    """Closed form of the compute-optimal allocation under L = E + A/N^alpha + B/D^beta with C = 6 N D:
    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, a = beta/(alpha+beta), b = alpha/(alpha+beta),
    G = (alpha A / (beta B))^(1/(alpha+beta))."""
    A, B, al, be = params["A"], params["B"], params["alpha"], params["beta"]
    G = (al * A / (be * B)) ** (1.0 / (al + be))
    return {"G": G, "a": be / (al + be), "b": al / (al + be)}


def chinchilla_optimal(law_or_params, C, level: float = 0.95) -> pd.DataFrame:
    """N_opt, D_opt and the loss at the optimum for compute C (FLOP), with intervals from bootstrap draws
    when the law has them."""
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
