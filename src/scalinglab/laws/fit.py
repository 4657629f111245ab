"""`fit_law`: one verb that fits any form, with bootstrap intervals, goodness of fit and a convergence verdict.

The bootstrap resamples *groups* (runs), not points: the points of one learning curve share the run's seed,
data order and hyper-parameters, so they move together. A resample is a vector of counts per group, which turns
into point weights; all resamples are then fitted together by the batched L-BFGS of optimize.py, starting from
the full-data optimum and from any other local optimum the grid found that was nearly as good.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from scalinglab.errors import FitError
from scalinglab.laws import vpnls
from scalinglab.laws.inputs import Prepared, prepare, read_table
from scalinglab.laws.optimize import Objective, Optimum, lbfgs_batched, multistart, process_pool
from scalinglab.laws.forms import Form, fmt_number, get_form
from scalinglab.laws.result import Result


METHODS = ("lbfgs", "vpnls")  # how fit_prepared finds its starts (see there)


class FitWarning(UserWarning):
    """A fit that did not converge, or whose bootstrap mostly failed."""


@dataclass
class FittedLaw(Result):
    """A fitted law: its form, parameters, 95% intervals, the data it saw, and predict(). Speaks the result
    protocol of laws/result.py (params, ci, se, converged, message, n_points, n_resamples, n_resamples_ok,
    predict, to_dict/from_dict, summary)."""

    form: Form
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]  # 95% percentile bootstrap intervals (NaN without bootstrap)
    se: dict[str, float]  # bootstrap standard errors
    converged: bool
    message: str
    n_points: int
    n_groups: int
    objective: float
    rmse_log: float  # RMSE of log residuals
    r2_log: float  # R^2 of log response
    huber_delta: float  # the Huber threshold on log residuals the fit minimised with
    samples: np.ndarray = field(repr=False)  # (K, P) natural parameters of converged bootstrap resamples
    n_resamples: int = 0
    n_resamples_ok: int = 0
    residuals: np.ndarray = field(repr=False, default=None)  # log residuals of the fit (observed - predicted)
    data: pd.DataFrame = field(repr=False, default=None)
    columns: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)  # variable -> (lowest, highest) of the data it was fitted on

    # -- use ----------------------------------------------------------------------------------------
    def _inputs(self, data=None, **kw) -> dict[str, np.ndarray]:
        src = {} if data is None else data
        X = {}
        for v in self.form.inputs:
            if v in kw:
                X[v] = np.atleast_1d(np.asarray(kw[v], dtype=float))
            elif v in src:
                X[v] = np.atleast_1d(np.asarray(src[v], dtype=float))
            else:
                raise FitError(f"predict needs {', '.join(self.form.inputs)}; {v} is missing")
        shape = np.broadcast_shapes(*(a.shape for a in X.values()))
        return {k: np.broadcast_to(a, shape).ravel() for k, a in X.items()}

    def predict(self, data=None, **inputs) -> np.ndarray:
        """The response (loss, or B_crit) at the given inputs: predict(N=..., D=...) or predict(frame)."""
        return self.form.predict(self.params, self._inputs(data, **inputs))

    def predict_interval(self, data=None, level: float = 0.95, kind: str = "mean", **inputs):
        """(low, high) arrays. kind='mean': uncertainty of the law itself (bootstrap parameter draws);
        kind='observation': also the scatter of a new run around the law (resampled fit residuals)."""
        X = self._inputs(data, **inputs)
        if self.samples is None or len(self.samples) < 2:
            nan = np.full(next(iter(X.values())).shape, np.nan)
            return nan, nan.copy()
        Z = self.form.to_internal(self.samples)
        lp = self.form.log_predict(Z, X)
        if kind == "observation" and self.residuals is not None and len(self.residuals):
            rng = np.random.default_rng(0)
            lp = lp + rng.choice(self.residuals, size=lp.shape)
        q = 100 * (1 - level) / 2
        lo, hi = np.nanpercentile(lp, [q, 100 - q], axis=0)
        return np.exp(lo), np.exp(hi)

    # -- print ----------------------------------------------------------------------------------------
    def text(self) -> str:
        return self.form.text(self.params)

    def latex(self) -> str:
        return self.form.latex(self.params)

    def __str__(self):
        return self.text()

    def summary(self) -> str:
        lines = [f"{self.form.title}: {self.form.text()}"]
        if not self.converged:
            lines.append(f"WARNING: the fit did NOT converge ({self.message}); do not use these numbers")
        lines.append(f"  {self.text()}")
        lines.append(f"  {'param':<12}{'estimate':>14}{'95% low':>14}{'95% high':>14}{'s.e.':>12}")
        for p in self.form.param_names:
            lo, hi = self.ci[p]
            lines.append(f"  {p:<12}{fmt_number(self.params[p]):>14}{fmt_number(lo):>14}{fmt_number(hi):>14}"
                         f"{fmt_number(self.se[p]):>12}")
        lines.append(f"  points {self.n_points} in {self.n_groups} groups; RMSE(log) {self.rmse_log:.4g}; "
                     f"R^2(log) {r2_text(self.r2_log)}; Huber delta {self.huber_delta:g}")
        lines.append(f"  converged: {self.converged} ({self.message}); bootstrap {self.n_resamples_ok}/"
                     f"{self.n_resamples} resamples converged")
        return "\n".join(lines)

    def to_dict(self, max_samples: int = 1000) -> dict:
        def num(x):
            return None if x is None or not np.isfinite(x) else float(x)

        d = super().to_dict()  # kind, params, ci, se, converged, message, n_points, n_resamples, n_resamples_ok
        d.update({
            "form": self.form.name,
            "irreducible": bool(getattr(self.form, "irreducible", False)),
            "form_options": dict(getattr(self.form, "options", {})),
            "formula": self.text(),
            "latex": self.latex(),
            "ci95": d["ci"],  # the older name of `ci`, kept for files and readers written before the protocol
            "n_groups": self.n_groups,
            "objective": num(self.objective),
            "rmse_log": num(self.rmse_log),
            "r2_log": num(self.r2_log),
            "huber_delta": self.huber_delta,
            "columns": self.columns,
            "diagnostics": self.diagnostics,
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ranges.items()},
        })
        if self.samples is not None and len(self.samples):
            s = self.samples[:max_samples]
            d["bootstrap_samples"] = [[float(f"{v:.7g}") for v in row] for row in s]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FittedLaw":
        """A law back from to_dict() (e.g. `scalinglab fit --json` output), good for predict and plan."""
        try:
            form = get_form(d["form"], irreducible=bool(d.get("irreducible", False)),
                            **(d.get("form_options") or {}))
            params = {k: float(d["params"][k]) for k in form.param_names}
        except (KeyError, TypeError, ValueError) as exc:
            raise FitError(f"fitted-law JSON is missing or has a bad field ({exc}); write it with "
                           "`scalinglab fit ... --json`") from exc
        samples = np.array(d.get("bootstrap_samples") or np.empty((0, form.n_params)), dtype=float)
        nan = float("nan")
        intervals = d.get("ci") or d.get("ci95") or {}
        ci = {k: tuple(nan if v is None else v for v in intervals.get(k, [nan, nan])) for k in form.param_names}
        se = {k: (d.get("se", {}).get(k) or nan) for k in form.param_names}
        return cls(form=form, params=params, ci=ci, se=se, converged=bool(d.get("converged", False)),
                   message=str(d.get("message", "")), n_points=int(d.get("n_points", 0)),
                   n_groups=int(d.get("n_groups", 0)), objective=d.get("objective") or nan,
                   rmse_log=d.get("rmse_log") or nan, r2_log=d.get("r2_log") or nan,
                   huber_delta=float(d.get("huber_delta", 1e-3)), samples=samples,
                   n_resamples=int(d.get("n_resamples", 0)),
                   n_resamples_ok=int(d.get("n_resamples_ok", 0)), columns=d.get("columns", {}),
                   ranges={k: (float(v[0]), float(v[1])) for k, v in (d.get("ranges") or {}).items()})


def data_ranges(frame: pd.DataFrame, inputs) -> dict:
    """(lowest, highest) of each input the law was fitted on, and of the compute C = 6 N D where the data has N
    and D but no C: the range a plan or a prediction with the law stays inside, or extrapolates from."""
    out = {}
    for v in inputs:
        if v in frame.columns:
            x = pd.to_numeric(frame[v], errors="coerce").to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            if x.size:
                out[v] = (float(x.min()), float(x.max()))
    if "C" not in out and {"N", "D"} <= set(frame.columns):
        c = 6.0 * pd.to_numeric(frame["N"], errors="coerce").to_numpy(float) * \
            pd.to_numeric(frame["D"], errors="coerce").to_numpy(float)
        c = c[np.isfinite(c)]
        if c.size:
            out["C"] = (float(c.min()), float(c.max()))
    return out


# ------------------------------------------------------------------------------------------------ bootstrap


def _fit_resamples(objective: Objective, starts: np.ndarray, W: np.ndarray, max_iter: int, start_fn=None):
    """Fit each row of W (point weights of one resample) from every start; keep the best per resample.
    start_fn(W), when given, adds one start per resample (VPNLS: each resample's own least-squares optimum)."""
    best_Z = np.zeros((W.shape[0], starts.shape[1]))
    best_f = np.full(W.shape[0], np.inf)
    best_c = np.zeros(W.shape[0], dtype=bool)
    rows = [] if start_fn is None else [start_fn(W)]
    for Z0 in rows + [np.repeat(z0[None, :], W.shape[0], axis=0) for z0 in starts]:
        r = lbfgs_batched(objective, Z0, W, max_iter=max_iter)
        better = r.f < best_f
        best_Z[better], best_f[better], best_c[better] = r.Z[better], r.f[better], r.converged[better]
    return best_Z, best_f, best_c


def bootstrap(objective: Objective, starts: np.ndarray, groups: np.ndarray, weights: np.ndarray, n_resamples: int,
              seed: int = 0, n_jobs: int = 1, max_iter: int = 500, chunk: int = 500, start_fn=None):
    """Resample groups with replacement n_resamples times and refit. Returns (Z, f, converged)."""
    rng = np.random.default_rng(seed)
    G = int(groups.max()) + 1
    counts = rng.multinomial(G, np.full(G, 1.0 / G), size=n_resamples).astype(float)
    W = counts[:, groups] * weights[None, :]
    pieces = [W[i:i + chunk] for i in range(0, n_resamples, chunk)]
    if n_jobs > 1 and len(pieces) > 1:
        with process_pool(n_jobs) as pool:
            results = list(pool.map(_fit_resamples, [objective] * len(pieces), [starts] * len(pieces), pieces,
                                    [max_iter] * len(pieces), [start_fn] * len(pieces)))
    else:
        results = [_fit_resamples(objective, starts, w, max_iter, start_fn) for w in pieces]
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]),
            np.concatenate([r[2] for r in results]))


# ------------------------------------------------------------------------------------------------ fit_law


def _load(data, level, where):
    if isinstance(data, (str, os.PathLike)):
        return read_table(data, level=level), str(data)
    if isinstance(data, dict):
        return pd.DataFrame(data), where
    return data, where


# ------------------------------------------------------------------------------------------------ identifiability

MIN_SHARE = 1e-6  # a free term below this share of the prediction at every point has left the law
MIN_CURVATURE = 1e-6  # least/greatest singular value of the column-scaled Jacobian below this: singular
LOG_LIMIT = 699.0  # a natural parameter exp(+-699) or beyond sits at the clip of forms._exp (700)
EXTREME_LOG10 = 30.0  # inputs whose median is beyond 1e+-30 are rescaled before fitting


def _distinct(x: np.ndarray) -> int:
    """Distinct positive values, equal when their logs agree to 1e-9."""
    lx = np.sort(np.log(np.asarray(x, float)))
    return int(1 + np.sum(np.diff(lx) > 1e-9)) if lx.size else 0


def design_problems(form: Form, X: dict, logy: np.ndarray, weights: np.ndarray) -> list[str]:
    """Why the data cannot identify the form's parameters, before any fit (empty: they may). A necessary
    condition only; what it lets through, the curvature test of `fit_problems` catches.

    - The response must vary: a constant log loss has nothing for the parameters to explain.
    - The counting rule. A term of input x (A/N^alpha) is seen only through the values it takes at the distinct
      x of the data, and the law's other terms add a level to those values. So each input needs one distinct
      value per parameter that acts through its term alone (`Form.own_params`: A and alpha for N), plus one when
      the law has a free additive constant (E, L_inf) that can absorb the term's level (`Form.free_level`). A
      power law needs 2 distinct x, with an irreducible term 3; Chinchilla 3 distinct N and 3 distinct D (with E
      fixed, or the exponents tied, 2 each; both, 1); Kaplan's L(N, D) 2 distinct N; L(N, S) 2 distinct N and S. And a
      sum of one-input terms (`Form.additive`: E + f(N) + g(D)) depends on its parameters only through f at the
      n_N distinct N and g at the n_D distinct D, less the level they share: it pins at most n_N + n_D - 1
      free parameters. chinchilla_shared_e applies the rule within each group (its E shared, no free level of
      the group's own) and needs sum over groups of (n_N + n_D - 1) >= all its free parameters.
    """
    keep = weights > 0
    ly = logy[keep]
    if ly.size and np.ptp(ly) <= 1e-12 * max(1.0, float(np.max(np.abs(ly)))):
        return [f"the response is constant (every point {math.exp(float(ly[0])):.6g}): there is nothing for "
                "the parameters to explain"]
    X = {k: np.asarray(v)[keep] for k, v in X.items()}
    own, n_free = form.own_params, len(form.internal_names)
    groups = np.unique(X["G"]).astype(int) if "G" in X else [None]
    problems, total = [], 0
    for g in groups:
        sel = slice(None) if g is None else X["G"] == g
        where = "" if g is None else f" in group {form.groups[g]}"
        vals = form.design_values({k: v[sel] for k, v in X.items()})
        have = {v: _distinct(vals[v]) for v in own}
        for v, k in own.items():
            need = k + (1 if form.free_level else 0)
            if have[v] < need:
                what = f"{k} parameter{'s act' if k > 1 else ' acts'} through {form.sym(v)} alone"
                problems.append(f"only {have[v]} distinct {form.sym(v)}{where}; {form.name} needs at least {need} "
                                f"({what}" + (", plus one for the level the free constant shares)"
                                              if form.free_level else ")"))
        pinned = sum(have.values()) - (len(own) - 1)
        total += pinned
        if form.additive and g is not None and pinned < sum(own.values()) and not problems:
            problems.append(f"{' and '.join(f'{have[v]} distinct {v}' for v in own)}{where} pin at most "
                            f"{pinned} of the group's {sum(own.values())} parameters")
    if form.additive and total < n_free and not problems:
        problems.append(f"{' and '.join(f'{have[v]} distinct {form.sym(v)}' for v in own)} pin at most {total} "
                        f"parameters of a sum of one-input terms; the form has {n_free}")
    return problems


def fit_problems(form: Form, z: np.ndarray, X: dict, weights: np.ndarray,
                 theta: np.ndarray | None = None) -> tuple[list[str], dict]:
    """Why a fit at internal row z did not identify its parameters (empty: it did), and the figures behind the
    verdict: parameters (natural, `theta` where z is of a rescaled problem) that ran off (non-finite, or at the
    exp() clip of the transforms), a free term that
    left the law (below MIN_SHARE of every prediction: its coefficient at 0 or its exponent run away, a bound
    of the parameter space), and a singular curvature.

    The curvature is the Gauss-Newton matrix J'WJ of the log predictions (J: their Jacobian in the internal
    coordinates, W: the point weights), the Hessian of the least-squares objective at the fit. The Huber
    objective's own Hessian is not used: with delta = 1e-3 most residuals sit on its linear arms, where its
    second derivative is 0, so a finite-difference Hessian measures the kinks, not the data (measured: it has
    negative eigenvalues on well-posed fits). J's columns are scaled to unit length, so the test does not depend
    on the units of the coordinates, and the fit is singular when the smallest singular value is below
    MIN_CURVATURE times the largest. Measured (benchmarks/identifiability.py): well-posed fits 4.5e-3 (the Epoch
    Chinchilla points) to 7e-2 (Kaplan L(N, S) recovery), and 6.6e-4 the least of the 1,887 fits the study and
    analysis tests make (tiny-store L(N, D)); broken ones 2e-7 (every run at D = 20 N), 4e-9 to 1e-11 (L(N, S)
    on compute-optimal points, where the two terms keep a fixed ratio) and 1e-16 (two distinct N). The
    Huber Hessian's least scaled eigenvalue reads -1.5e-3 on two distinct N and 3e-5 on the Epoch points.
    """
    z = np.asarray(z, float)
    theta = form.to_natural(z[None, :])[0] if theta is None else np.asarray(theta, float)
    problems, figures = [], {}
    with np.errstate(divide="ignore", invalid="ignore"):
        size = np.abs(np.log(np.abs(theta)))
    off = [p for p, t, s in zip(form.param_names, theta, size) if not np.isfinite(t) or (t != 0 and s >= LOG_LIMIT)]
    if off:
        problems.append("parameters ran off to the limits of a float: " + ", ".join(
            f"{p} = {fmt_number(float(theta[form.param_names.index(p)]))}" for p in off))
        return problems, figures
    keep = weights > 0
    Xk = {k: np.asarray(v)[keep] for k, v in X.items()}
    shares = form.term_shares(z[None, :], Xk)
    gone = {t: float(np.max(p)) for t, p in shares.items() if np.max(p) < MIN_SHARE}
    if gone:
        problems.append("a term left the law (its parameters at a bound): " + ", ".join(
            f"{t} is at most {v:.1e} of every prediction" for t, v in gone.items()))
    _, J = form.log_predict(z[None, :], Xk, jac=True)
    cols = [np.broadcast_to(a[0] if v is None else a[0] * v, (int(keep.sum()),)) for a, v in J]
    Jm = np.stack(cols, axis=1) * np.sqrt(weights[keep])[:, None]
    norms = np.linalg.norm(Jm, axis=0)
    if not np.all(np.isfinite(Jm)) or np.any(norms <= 1e-300):
        ratio = 0.0
        v = (norms <= 1e-300).astype(float)
    else:
        _, sv, vt = np.linalg.svd(Jm / norms, full_matrices=False)
        ratio, v = float(sv[-1] / sv[0]), vt[-1]
    figures["curvature"] = ratio
    if ratio < MIN_CURVATURE and not gone:
        names = [form.internal_names[i] for i in np.flatnonzero(np.abs(v) >= 0.3)]
        problems.append(f"the curvature is singular (least/greatest singular value of the scaled Jacobian "
                        f"{ratio:.1e}, below {MIN_CURVATURE:g}): the data do not pin down a combination of "
                        + ", ".join(names))
    return problems, figures


def _rescaling(form: Form, X: dict) -> dict[str, float]:
    """{input: log s} for inputs whose median lies beyond 1e+-EXTREME_LOG10, s the power of ten that brings the
    median to 1e9 (the scale of the Chinchilla family's start grids); inputs in `scale_with` take their
    partner's factor. Empty for data at physical scales, whose fits are untouched."""
    out = {}
    for v in form.inputs:
        if v == "G" or v in form.scale_with:
            continue
        m = float(np.median(np.log10(np.asarray(X[v], float))))
        if abs(m) > EXTREME_LOG10:
            out[v] = (round(m) - 9) * math.log(10.0)
    for v, partner in form.scale_with.items():
        if partner in out and v in X:
            out[v] = out[partner]
    return out


def r2_text(r2: float) -> str:
    """R^2 of the log response for a summary line: nan and negative values say what they mean."""
    if not np.isfinite(r2):
        return "n/a (the response does not vary)"
    if r2 < 0:
        return f"{r2:.4g} (worse than a constant)"
    return f"{r2:.4f}"


def fit_prepared(prep: Prepared, form: Form, *, n_resamples: int = 1000, huber_delta: float = 1e-3,
                 seed: int = 0, max_iter: int = 500, n_jobs: int = 1, grid: np.ndarray | None = None,
                 strict: bool = False, method: str = "lbfgs") -> FittedLaw:
    """Fit `form` to prepared data; the one place every fit goes through (fit_law, the analyses, backtests).

    A fit reads converged only when the optimiser converged *and* the data identify the parameters: the design
    holds enough distinct values of each input (`design_problems`), and at the optimum no parameter ran off,
    no free term left the law and the curvature is not singular (`fit_problems`). Otherwise converged is False,
    the message names the reason, and no bootstrap is run (its intervals would read as valid). A fixed E at or
    above the lowest observed loss raises FitError: the law exceeds E everywhere, so no parameters fit.
    Inputs beyond 1e+-30 are rescaled by a power of ten for the optimiser and the law mapped back
    (`Form.rescale`), so their fit is the fit of the same data at a physical scale.

    method: 'lbfgs', L-BFGS from the form's grid of starts (or `grid`); 'vpnls', from the variable-projection
    optima instead (laws/vpnls.py: the least-squares profile's best local minima and the Huber profile's; the
    chinchilla family, other forms keep the grid), each bootstrap resample also from its own least-squares
    optimum besides the full-data one. Both minimise the same Huber-log objective."""
    if method not in METHODS:
        raise FitError(f"unknown fit method {method!r}; choose one of {', '.join(METHODS)}")
    logy = np.log(prep.y)
    fix_e = getattr(form, "fix_e", None)
    if fix_e is not None and fix_e >= float(prep.y.min()):
        raise FitError(f"the fixed irreducible loss E = {fmt_number(fix_e)} is not below every observed loss "
                       f"(the lowest is {fmt_number(float(prep.y.min()))}): the law E + A/N^alpha + B/D^beta "
                       "is above E everywhere; fix E below the lowest loss, or fit it")
    log_s = _rescaling(form, prep.X)
    X = {k: (v / math.exp(log_s[k]) if k in log_s else v) for k, v in prep.X.items()}

    def back(Z):  # internal rows of the rescaled problem -> the law of the data as given
        return form.rescale(Z, log_s) if log_s else np.atleast_2d(Z)

    objective = Objective(form, X, logy, huber_delta)
    profile, method_diag = None, {"method": "lbfgs"}
    if method == "vpnls" and vpnls.supports(form):
        profile = vpnls.Profile(form, X, prep.y, prep.weights)  # on the (rescaled) inputs the objective sees
        found = profile.fit(delta=huber_delta)  # the least-squares optimum, other local minima, the Huber one
        grid = profile.internal(np.array([t for t, _ in found]))
        method_diag = {"method": "vpnls", "vpnls_rss": found[0][1],
                       "vpnls_params": dict(zip(("E", "A", "B", "alpha", "beta"), map(float, found[0][0])))}
    if isinstance(grid, str) and grid == "quick":
        grid = getattr(form, "quick_grid", form.start_grid)(X, logy)
    elif grid is not None and log_s:
        grid = form.rescale(np.asarray(grid, float), {k: -v for k, v in log_s.items()})
    grid = form.start_grid(X, logy) if grid is None else np.asarray(grid, float)
    opt: Optimum = multistart(objective, grid, prep.weights, max_iter=max_iter, n_jobs=n_jobs)
    theta = form.to_natural(back(opt.z))[0]
    params = dict(zip(form.param_names, map(float, theta)))
    lp = form.log_predict(opt.z[None, :], X)[0]
    resid = logy - lp
    rmse = float(np.sqrt(np.mean(resid ** 2)))
    sst = float(np.sum((logy - logy.mean()) ** 2))
    r2 = float(1 - np.sum(resid ** 2) / sst) if sst > 0 else float("nan")
    problems = design_problems(form, X, logy, prep.weights)  # the cause, when the design has one; else
    figures = {}  # what the optimum shows (a term gone, a singular curvature) is the reason
    if np.isfinite(opt.f):
        more, figures = fit_problems(form, opt.z, X, prep.weights, theta)
        problems = problems or more
    converged = bool(opt.converged and np.isfinite(opt.f) and np.all(np.isfinite(theta)) and not problems)
    if problems:
        message = "not identifiable: " + "; ".join(problems)
    else:
        message = opt.message if np.all(np.isfinite(theta)) else opt.message + "; parameters ran off to infinity"
    if log_s:
        message += "; inputs rescaled for the fit: " + ", ".join(
            f"{k} by 1e{round(v / math.log(10.0))}" for k, v in log_s.items())

    samples = np.empty((0, form.n_params))
    n_conv = 0
    n_groups = int(prep.groups.max()) + 1
    if n_resamples > 0 and converged and n_groups >= 3:
        # other local optima almost as good as the best are extra starts, so a resample may switch basins
        others = [c for c in opt.candidates[1:] if np.max(np.abs(c - opt.z)) > 0.1
                  and objective(c[None, :], prep.weights, grad=False)[0] <= 1.1 * opt.f]
        starts = np.vstack([opt.z[None, :]] + [c[None, :] for c in others[:2]])
        Zb, fb, cb = bootstrap(objective, starts, prep.groups, prep.weights, n_resamples, seed=seed,
                               n_jobs=n_jobs, max_iter=max_iter, start_fn=profile)
        nat = form.to_natural(back(Zb))
        ok = cb & np.all(np.isfinite(nat), axis=1)
        samples, n_conv = nat[ok], int(ok.sum())
    if len(samples) >= 2:
        lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
        sd = samples.std(axis=0, ddof=1)
        ci = {p: (float(lo[i]), float(hi[i])) for i, p in enumerate(form.param_names)}
        se = {p: float(sd[i]) for i, p in enumerate(form.param_names)}
    else:
        ci = {p: (float("nan"), float("nan")) for p in form.param_names}
        se = {p: float("nan") for p in form.param_names}
    law = FittedLaw(form=form, params=params, ci=ci, se=se, converged=converged, message=message,
                    n_points=len(logy), n_groups=n_groups, objective=float(opt.f), rmse_log=rmse, r2_log=r2,
                    huber_delta=huber_delta, samples=samples, n_resamples=int(n_resamples if converged else 0),
                    n_resamples_ok=n_conv, residuals=resid, data=prep.frame, columns=prep.columns,
                    diagnostics={"n_starts": opt.n_starts, "n_starts_converged": opt.n_starts_converged,
                                 "n_starts_at_best": opt.n_starts_at_best, "scipy_iterations": opt.n_iter,
                                 "gradient_max_abs": opt.gnorm, "points_dropped": prep.dropped,
                                 "identifiable": not problems, "curvature": figures.get("curvature"),
                                 **({"rescaled_log": log_s} if log_s else {}), **method_diag},
                    ranges=data_ranges(prep.frame, form.inputs))
    if not converged:
        if strict:
            raise FitError(f"{form.name} fit did not converge ({message}); try more iterations or better data")
        warnings.warn(f"{form.name} fit did not converge ({message}); the result is not to be trusted",
                      FitWarning, stacklevel=3)
    elif n_resamples > 0 and n_conv < 0.9 * n_resamples:
        warnings.warn(f"only {n_conv}/{n_resamples} bootstrap resamples converged; intervals may be "
                      "too narrow", FitWarning, stacklevel=3)
    return law


@dataclass(frozen=True)
class Columns:
    """Which column of the data holds what; a column left None is looked up under its usual names (N, D, C, S,
    loss, ...), and D is derived as C/(6N) when only C and N are present."""

    n: str | None = None  # N, non-embedding parameters
    d: str | None = None  # D, training tokens
    c: str | None = None  # C, training FLOP
    s: str | None = None  # S, steps
    u: str | None = None  # unique tokens, for data_constrained (runs without one saw each token once)
    loss: str | None = None  # the response: the loss (for form bcrit, the B_crit column)
    l: str | None = None  # noqa: E741 - the loss column of form bcrit
    b_crit: str | None = None  # the B_crit column of form bcrit (the same as `loss` there)
    run: str | None = None  # the run id: the bootstrap resamples whole runs (default: a column `group`, else rows)
    weights: str | None = None  # point weights
    by: str | None = None  # the groups (data sets) chinchilla_shared_e fits jointly, E shared


@dataclass(frozen=True)
class FitOptions:
    """How a law is fitted (see fit_prepared)."""

    irreducible: bool = False  # add L_inf to the single-variable Kaplan power laws
    fix_e: float | None = None  # fix E of the chinchilla family (laws.forms.FIX_E_FORMS)
    n_resamples: int = 1000  # bootstrap resamples (of runs)
    huber_delta: float = 1e-3  # Huber threshold on log residuals
    seed: int = 0
    max_iter: int = 500  # L-BFGS iterations per start
    n_jobs: int = 1  # worker processes for the grid and the bootstrap
    drop_highest_loss: int = 0  # drop the K highest-loss points
    level: str | None = None  # a store's level: 'runs' or 'curves' (default: by the form)
    grid: object = None  # 'quick': the form's coarse grid of starts, where it has one
    strict: bool = False
    method: str = "lbfgs"  # 'lbfgs' or 'vpnls'


_COLUMN_FIELDS = tuple(Columns.__dataclass_fields__)
_OPTION_FIELDS = tuple(FitOptions.__dataclass_fields__)
_OLDER_NAMES = {"group": "run", "delta": "huber_delta"}  # keywords of earlier versions, still accepted


def fit_spec(columns: Columns | None = None, options: FitOptions | None = None,
             **keywords) -> tuple[Columns, FitOptions]:
    """The columns and options of a fit from a Columns, a FitOptions and keywords naming any field of either
    (keywords win); an unknown keyword is a TypeError, as for any function."""
    cols, opts = {}, {}
    for given, value in keywords.items():
        key = _OLDER_NAMES.get(given, given)
        if key in cols or key in opts:
            raise TypeError(f"fit_law() got {key!r} twice (as {given!r}, its older name, and as {key!r})")
        if key in _COLUMN_FIELDS:
            cols[key] = value
        elif key in _OPTION_FIELDS:
            opts[key] = value
        else:
            raise TypeError(f"fit_law() got an unexpected keyword argument {given!r}")
    columns = replace(columns, **cols) if columns is not None else Columns(**cols)
    options = replace(options, **opts) if options is not None else FitOptions(**opts)
    return columns, options


def fit_law(data, form: str = "chinchilla", columns: Columns | None = None, options: FitOptions | None = None,
            **keywords) -> FittedLaw:
    """Fit a law to data (DataFrame, dict of columns, or a CSV/Parquet/run-store path).

    columns: a Columns (which column is N, D, C, S, U, the loss, the run id, the weights, the groups of
    chinchilla_shared_e); options: a FitOptions (bootstrap resamples, Huber delta, seed, a fixed E, method, ...).
    Any field of either may also be given by name: fit_law("runs.csv", form="chinchilla", n="N", d="D",
    loss="loss", n_resamples=400). `group=` and `delta=` are accepted as the older names of `run=` and
    `huber_delta=`. method: 'lbfgs' (L-BFGS from the grid of starts) or 'vpnls' (from the variable-projection
    least-squares optimum; the chinchilla family), see fit_prepared.
    """
    cols, opts = fit_spec(columns, options, **keywords)
    by, run, level = cols.by, cols.run, opts.level
    f = get_form(form, irreducible=opts.irreducible, fix_e=opts.fix_e)
    if f.name == "chinchilla_shared_e":  # one law per group of `by`, E shared: the groups become input G
        df, where = _load(data, level or "runs", "data")
        if isinstance(df, pd.DataFrame) and by is not None and by not in df.columns:
            raise FitError(f"{where}: no column {by!r} for the groups of chinchilla_shared_e; columns are: "
                           f"{', '.join(map(str, df.columns))}")
        if by is None or not isinstance(df, pd.DataFrame):
            raise FitError(f"form chinchilla_shared_e needs the column of its groups (fit_law(..., by=COL), or "
                           f"`--by COL` on the command line); got {by!r}")
        codes, labels = pd.factorize(df[by])
        data, f = df.assign(G=codes.astype(float)), get_form(form, groups=[str(x) for x in labels])
    if level is None:  # learning-curve forms read every evaluation of a store, the others one row per run
        level = "curves" if f.name in ("kaplan_ns", "learning_curve") else "runs"
    df, where = _load(data, level, "data")
    if run is None and isinstance(df, pd.DataFrame) and "group" in df.columns:
        run = "group"  # a run store's rows carry their run id under `group`
    if f.response == "B_crit":
        names = {"B_crit": cols.loss or cols.b_crit, "L": cols.l}
    else:
        names = {"L": cols.loss or cols.l, "N": cols.n, "D": cols.d, "C": cols.c, "S": cols.s, "U": cols.u,
                 "G": "G" if "G" in f.inputs else None}
    prep = prepare(df, f.inputs, f.response, names, f.n_params, group=run, weights=cols.weights,
                   drop_highest=opts.drop_highest_loss, where=where)
    return fit_prepared(prep, f, n_resamples=opts.n_resamples, huber_delta=opts.huber_delta, seed=opts.seed,
                        max_iter=opts.max_iter, n_jobs=opts.n_jobs, grid=opts.grid, strict=opts.strict,
                        method=opts.method)
