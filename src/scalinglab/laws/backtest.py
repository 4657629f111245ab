"""Backtests: fit a law on the smaller runs, predict the larger runs it never saw, and score the prediction.

A scaling law is used to predict a run nobody has trained yet, so the number that matters is its error out of
sample, not its fit in sample. This module gives

- `parse_holdout`: which rows to hold out, from a small safe expression ("N > 5e8", "D >= 1e10 and N > 1e8",
  "largest", "largest 2"); nothing is evaluated as code;
- `prediction_interval`: 95% intervals for a new run, from the bootstrap of the law's parameters (resampling
  whole runs) plus the run-to-run scatter around the law, estimated from the fit's residuals, and never less
  than the out-of-sample error that nested backtests of the fitting data measured at the same extrapolation
  distance (`nested_error_model`: in-sample residuals are optimistic, and no resampling shows a misfit);
- `select_law`: `--form auto`, a choice among forms and fitting choices by nested backtesting inside the
  fitting data only (hold out its largest sizes, fit the rest, score the extrapolation), then a refit on all of
  the fitting data;
- `backtest`: all of it for one table, optionally per group (dataset), with the errors pooled.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalinglab.errors import FitError
from scalinglab.laws.inputs import prepare, read_table
from scalinglab.laws.fit import FittedLaw, fit_law
from scalinglab.laws.forms import FIX_E_FORMS, get_form
from scalinglab.laws.optimize import Objective, lbfgs_batched, process_pool
from scalinglab.laws.result import NAN2, Result, bootstrap_groups, param, percentile_ci

# N values closer than this ratio are one model size (extracted points of one model differ in the 6th digit)
SAME_SIZE_RATIO = 1.02
# forms `auto` chooses among, and the fitting choices it tries with each
AUTO_FORMS = ("chinchilla", "chinchilla_tied", "kaplan_nd")
AUTO_DELTAS = (1e-3, 1e-1)
AUTO_DROPS = ("none", "smallest")
LEVEL = 0.95
# the extrapolation term of the intervals is measured only on nested folds fitted to at least this many sizes
SLOPE_MIN_SIZES = 4


# ------------------------------------------------------------------------------------------------ BLAS threads


@contextlib.contextmanager
def single_threaded_blas():
    """The fits work on small arrays; on a shared machine OpenBLAS's thread team only adds synchronisation (an
    L-BFGS-B polish measured 6x slower with it on a loaded 2-core box). Limit every loaded OpenBLAS to one
    thread for the duration, and restore it."""
    libs = []
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                try:
                    get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                    put = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                except AttributeError:
                    continue
                libs.append((put, int(get())))
                put(1)
                break
            else:
                continue
            break
    try:
        yield
    finally:
        for put, n in libs:
            put(n)


# ------------------------------------------------------------------------------------------------ holdout


_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op>>=|<=|==|!=|>|<)|"
                    r"(?P<paren>[()])|(?P<bool>&&?|\|\|?)|`(?P<quoted>[^`]+)`|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))")
_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.isclose,
        "!=": lambda a, b: ~np.isclose(a, b)}
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


def size_codes(N) -> np.ndarray:
    """Integer size index per row (0 = smallest): N values within SAME_SIZE_RATIO of the next are one size."""
    N = np.asarray(N, float)
    u = np.unique(N)
    codes = np.zeros(len(u), int)
    for i in range(1, len(u)):
        new = u[i] > u[i - 1] * SAME_SIZE_RATIO
        codes[i] = codes[i - 1] + new
    return codes[np.searchsorted(u, N)]


def _tokens(expr: str):
    pos, out = 0, []
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise FitError(f"holdout {expr!r}: cannot read it at {expr[pos:pos + 12]!r}; write comparisons such as "
                           "\"N > 5e8\" joined by and/or, or 'largest' / 'largest K'")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "name" and val.lower() in ("and", "or"):
            kind, val = "bool", val.lower()
        elif kind == "bool":
            val = "and" if val.startswith("&") else "or"
        elif kind == "quoted":
            kind = "name"
        out.append((kind, val))
        pos = m.end()
    return out


def parse_holdout(expr: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean mask of the rows an expression holds out. `columns` maps every name the expression may use (the
    law's variables N, D, C, L, U and the table's own numeric columns) to its values.

    Grammar: `largest [K]` (the K largest model sizes, default 1), or comparisons `NAME OP NUMBER` (OP one of
    > >= < <= == !=; a name with spaces goes in backquotes) joined by `and`/`&`, `or`/`|`, with parentheses."""
    if not isinstance(expr, str) or not expr.strip():
        raise FitError("holdout: empty expression; give e.g. \"N > 5e8\" or 'largest'")
    words = expr.split()
    if words[0].lower() == "largest":
        if len(words) > 2 or (len(words) == 2 and not words[1].isdigit()) or (len(words) == 2 and int(words[1]) < 1):
            raise FitError(f"holdout {expr!r}: write 'largest' or 'largest K' with K a positive whole number")
        k = int(words[1]) if len(words) == 2 else 1
        if "N" not in columns:
            raise FitError(f"holdout {expr!r}: 'largest' holds out model sizes, and the data has no N")
        codes = size_codes(columns["N"])
        return codes > codes.max() - k
    toks = _tokens(expr)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def take(kind=None):
        nonlocal pos
        if pos >= len(toks) or (kind is not None and toks[pos][0] != kind):
            want = {"num": "a number", "op": "a comparison (> >= < <= == !=)", "name": "a column name",
                    "paren": "')'"}.get(kind, "more")
            raise FitError(f"holdout {expr!r}: expected {want} after {' '.join(v for _, v in toks[:pos]) or 'start'}")
        pos += 1
        return toks[pos - 1][1]

    def column(name):
        if name not in columns:
            raise FitError(f"holdout {expr!r}: no column {name!r}; use one of {', '.join(sorted(columns))}")
        return columns[name]

    def atom():
        kind, val = peek()
        if kind == "paren" and val == "(":
            take()
            m = disj()
            if take("paren") != ")":
                raise FitError(f"holdout {expr!r}: unbalanced parentheses")
            return m
        if kind == "name":
            name = take()
            op = take("op")
            num = float(take("num"))
            return _OPS[op](column(name), num)
        if kind == "num":
            num = float(take())
            op = take("op")
            name = take("name")
            return _OPS[_FLIP[op]](column(name), num)
        raise FitError(f"holdout {expr!r}: expected a comparison such as \"N > 5e8\", got {val!r}")

    def conj():
        m = atom()
        while peek() == ("bool", "and"):
            take()
            m = m & atom()
        return m

    def disj():
        m = conj()
        while peek() == ("bool", "or"):
            take()
            m = m | conj()
        return m

    mask = disj()
    if pos != len(toks):
        raise FitError(f"holdout {expr!r}: unexpected {toks[pos][1]!r}")
    return np.asarray(mask, bool)


# ------------------------------------------------------------------------------------------------ intervals


def noise_scale(law: FittedLaw) -> tuple[float, int]:
    """Run-to-run scatter around the law (log loss) estimated from the fit's residuals, and its degrees of freedom.

    The classical estimate sqrt(RSS / (n - p)) (p: the parameters fitted), over the residuals within 4 robust
    standard deviations (1.4826 x the median absolute deviation) of their median: a few gross outliers (a
    mis-extracted point, a diverged run) do not widen every interval, while normal scatter keeps its efficient
    estimate."""
    r = np.asarray(law.residuals if law.residuals is not None else [], float)
    p = len(law.form.internal_names)
    if len(r) <= p:
        return float("nan"), 0
    med = np.median(r)
    mad = 1.4826 * np.median(np.abs(r - med))
    keep = np.abs(r - med) <= 4 * mad if mad > 0 else np.ones(len(r), bool)
    dof = int(keep.sum()) - p
    if dof < 1:
        return float("nan"), 0
    return float(math.sqrt(np.sum(r[keep] ** 2) / dof)), dof


def prediction_interval(law: FittedLaw, X: dict, level: float = LEVEL, seed: int = 0,
                        extrapolation: tuple[float, float] | float = 0.0, axis: str = "N"):
    """(low, high) for the measured loss of new runs at inputs X: each bootstrap draw of the parameters (whole
    runs resampled; its spread corrected for the small number of runs) predicts, and a draw of the run-to-run
    noise is added (Student t in log loss with the scale and degrees of freedom of `noise_scale`, which carries
    the uncertainty of that scale).

    With `extrapolation` = (v0, k2) (`nested_error_model`), a point at t = log(x / x_max) >= 0 from the largest
    fitted value of `axis` (N, or D) gets, where the bootstrap's variance is smaller, the total variance
    v0 + k2 t^2 that nested backtests measured out of sample: it includes a misfit of the form, and the
    in-sample residuals' optimism, that no resampling of the same runs can show. (A bare number k is the older
    slope-only model, (0, k^2).) NaN where the law has no bootstrap samples."""
    n = len(next(iter(X.values())))
    if law.samples is None or len(law.samples) < 2:
        return np.full(n, np.nan), np.full(n, np.nan)
    lp = law.form.log_predict(law.form.to_internal(law.samples), X)
    # the bootstrap spread of a p-parameter fit to G runs is biased low by about (G - p)/G in variance, as the
    # residuals' is; widen it by the same factor (it matters with the few runs of a typical study)
    G, p = max(int(law.n_groups), 1), len(law.form.internal_names)
    if G > p + 1:
        centre = law.form.log_predict(law.form.to_internal(law.form.theta(law.params)[None, :]), X)
        lp = centre + math.sqrt(G / (G - p)) * (lp - centre)
    v0, k2 = (0.0, float(extrapolation) ** 2) if np.isscalar(extrapolation) else map(float, extrapolation)
    sigma, dof = noise_scale(law)
    if np.isfinite(sigma) and sigma > 0:
        scale = np.full(n, sigma)
        if (v0 > 0 or k2 > 0) and axis in X and law.data is not None and axis in law.data:
            # the nested backtests' out-of-sample error where it exceeds the bootstrap's plus the scatter's
            t = np.maximum(np.log(np.asarray(X[axis], float) / float(law.data[axis].max())), 0.0)
            scale = np.sqrt(np.maximum(sigma ** 2, v0 + k2 * t ** 2 - np.var(lp, axis=0)))
        rng = np.random.default_rng(seed)
        lp = lp + scale[None, :] * rng.standard_t(dof, size=lp.shape)
    q = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(lp, [q, 100 - q], axis=0)
    return np.exp(lo), np.exp(hi)


# ------------------------------------------------------------------------------------------------ auto


@dataclass
class Candidate:
    form: str
    delta: float = 1e-3
    drop: str = "none"  # "none", or "smallest": leave the smallest model size out of the fit

    @property
    def label(self) -> str:
        return f"{self.form} (Huber delta {self.delta:g}" + (", smallest size dropped)" if self.drop == "smallest"
                                                              else ")")

    def to_dict(self) -> dict:
        return {"form": self.form, "delta": self.delta, "drop": self.drop}


def _drop_rows(frame: pd.DataFrame, drop: str) -> pd.DataFrame:
    if drop == "smallest":
        codes = size_codes(frame["N"])
        if len(np.unique(codes)) >= 4:
            return frame[codes > 0]
    return frame


def _fit_candidate(frame: pd.DataFrame, cand: Candidate, n_resamples: int, seed: int, quick: bool,
                   n_jobs: int = 1, fix_e=None, max_iter: int = 500, method: str = "lbfgs") -> FittedLaw:
    cols = {"n": "N", "d": "D", "loss": "L", "u": "U" if "U" in frame.columns else None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by = "_by" if cand.form == "chinchilla_shared_e" else None
        return fit_law(_drop_rows(frame, cand.drop).reset_index(drop=True), cand.form, run="group", by=by,
                       n_resamples=n_resamples, huber_delta=cand.delta, seed=seed, grid="quick" if quick else None,
                       n_jobs=n_jobs, fix_e=fix_e, max_iter=max_iter, method=method, **cols)


def nested_folds(frame: pd.DataFrame, max_folds: int = 3, min_train_sizes: int = 3, axis: str = "N"):
    """(train mask, test mask) pairs inside the fitting data: fold k holds out its largest h_k model sizes
    (h_k = k for up to 6 sizes, else about k/6 of them, so the extrapolation spans a similar range of N). With
    axis='D' the folds hold out the largest values of D instead, as a backtest along the data axis does."""
    codes = size_codes(frame[axis])
    m = int(codes.max()) + 1 if len(codes) else 0
    n_folds = min(max_folds, m - min_train_sizes)
    folds = []
    for k in range(1, n_folds + 1):
        h = k if m <= 6 else max(1, round(k * m / 6))
        if m - h < min_train_sizes:
            break
        test = codes >= m - h
        folds.append((~test, test))
    return folds


def _drop_mask(codes: np.ndarray, train: np.ndarray, drop: str) -> np.ndarray:
    """The training mask of a fold after a fitting choice (drop the smallest size if >= 3 sizes remain)."""
    if drop == "smallest" and len(np.unique(codes[train])) >= 4:
        return train & (codes > codes[train].min())
    return train


def _nested_errors(frame: pd.DataFrame, form_name: str, delta: float, folds, drops, fix_e=None,
                   points: bool = False, axis: str = "N"):
    """Mean relative error of each (drop, fold) extrapolation for one form and Huber delta: every fold's fit
    from every start of the form's coarse grid runs in one batched L-BFGS call (a fold is a 0/1 weight row)."""

    form = get_form(form_name, fix_e=fix_e)
    X = {v: frame[v].to_numpy(float) for v in form.inputs}
    logy = np.log(frame["L"].to_numpy(float))
    codes = size_codes(frame["N"])
    masks = [(_drop_mask(codes, tr, dr), te) for dr in drops for tr, te in folds]
    obj = Objective(form, X, logy, delta)
    # stage 1: the coarse grid on all the fitting data; its best distinct optima start every fold's fit
    grid = getattr(form, "quick_grid", form.start_grid)(X, logy)
    r0 = lbfgs_batched(obj, grid, None, max_iter=100)
    order = np.argsort(np.where(np.isfinite(r0.f), r0.f, np.inf))
    starts = []
    for i in order[:len(order) // 2 + 1]:
        if np.isfinite(r0.f[i]) and all(np.max(np.abs(r0.Z[i] - z)) > 1e-2 for z in starts):
            starts.append(r0.Z[i])
        if len(starts) == 4:
            break
    grid = np.array(starts) if starts else grid
    G = grid.shape[0]
    W = np.repeat(np.array([m[0] for m in masks], float), G, axis=0)
    r = lbfgs_batched(obj, np.tile(grid, (len(masks), 1)), W, max_iter=300)
    errs = np.full(len(masks), np.inf)
    log_err, dist = [], []
    for j, (tr, te) in enumerate(masks):
        f = r.f[j * G:(j + 1) * G]
        if not np.isfinite(f).any() or tr.sum() <= len(form.internal_names):
            continue
        z = r.Z[j * G + int(np.nanargmin(np.where(np.isfinite(f), f, np.inf)))]
        pred = np.exp(form.log_predict(z[None, :], {v: x[te] for v, x in X.items()})[0])
        y = np.exp(logy[te])
        e = float(np.mean(np.abs(pred - y) / y))
        errs[j] = e if np.isfinite(e) else np.inf
        log_err.append(np.log(y) - np.log(pred))
        x = frame[axis].to_numpy(float)
        dist.append(np.log(x[te] / x[tr].max()))
    if points:  # every nested prediction's log error and its extrapolation distance log(N / largest N fitted)
        return (np.concatenate(log_err), np.concatenate(dist)) if log_err else (np.zeros(0), np.zeros(0))
    return errs.reshape(len(drops), len(folds))


def extrapolation_slope(log_err: np.ndarray, dist: np.ndarray, sigma: float) -> float:
    """k such that a prediction log(N / N_max) beyond the largest fitted size errs by about k log(N / N_max)
    beyond the noise: from the nested backtests, k^2 = median((r^2 - sigma^2) / t^2) / 0.455 (0.455: the median
    of a chi-square with one degree of freedom; medians, so a few outlying runs do not set it)."""
    ok = np.isfinite(log_err) & (dist > 1e-3)
    if ok.sum() < 3 or not np.isfinite(sigma):
        return 0.0
    k2 = np.median((log_err[ok] ** 2 - sigma ** 2) / dist[ok] ** 2) / 0.455
    return float(math.sqrt(k2)) if k2 > 0 else 0.0


def nested_error_model(log_err: np.ndarray, dist: np.ndarray, sigma: float) -> tuple[float, float]:
    """(v0, k2): the variance of a nested (out-of-sample) prediction's log error at extrapolation distance t,
    modelled as v0 + k2 t^2. The nested points, sorted by t, fall into up to 4 bins of at least 6; each bin's
    variance is the median of its squared errors / 0.455 (0.455: the median of a chi-square with one degree of
    freedom, so a few outlying runs do not set it), and (v0, k2) is their non-negative least-squares line in t^2.
    With fewer than 12 points the slope-only model of `extrapolation_slope` (v0 = 0)."""
    from scipy.optimize import nnls

    ok = np.isfinite(log_err) & (dist > 1e-3)
    n_bins = min(4, int(ok.sum()) // 6)
    if n_bins < 2:
        return 0.0, extrapolation_slope(log_err, dist, sigma) ** 2
    r2, t2 = log_err[ok] ** 2, dist[ok] ** 2
    bins = np.array_split(np.argsort(t2, kind="stable"), n_bins)
    v = np.array([np.median(r2[b]) / 0.455 for b in bins])
    x = np.array([np.mean(t2[b]) for b in bins])
    v0, k2 = nnls(np.column_stack([np.ones(n_bins), x]), v)[0]
    return float(v0), float(k2)


def _nested_job(frame, form_name, delta, folds, drops, fix_e):
    with single_threaded_blas():
        return _nested_errors(frame, form_name, delta, folds, drops, fix_e)


@dataclass
class Selection:
    """What `--form auto` chose, from which candidates, by nested backtests of the fitting data alone."""

    chosen: Candidate
    scores: dict  # candidate label -> mean relative error of its nested extrapolations (inf: failed)
    n_folds: int
    candidates: list = field(default_factory=list)

    @property
    def default_label(self) -> str:
        return Candidate("chinchilla").label

    def margin(self) -> tuple[str, float]:
        """The runner-up and how much larger its nested error is than the winner's (relative)."""
        ranked = sorted(self.scores.items(), key=lambda kv: kv[1])
        if len(ranked) < 2 or not np.isfinite(ranked[1][1]) or ranked[0][1] <= 0:
            return (ranked[1][0] if len(ranked) > 1 else "", float("nan"))
        return ranked[1][0], ranked[1][1] / ranked[0][1] - 1.0

    def text(self) -> str:
        best = self.scores[self.chosen.label]
        other, rel = self.margin()
        s = (f"auto chose {self.chosen.label}: nested backtest error {100 * best:.2f}% over {self.n_folds} "
             f"fold{'s' if self.n_folds != 1 else ''} "
             f"inside the fitting data")
        if other:
            s += f"; runner-up {other} {100 * self.scores[other]:.2f}% ({100 * rel:.0f}% worse)"
        d = self.scores.get(self.default_label)
        if d is not None and self.chosen.label != self.default_label:
            s += f"; plain chinchilla {100 * d:.2f}%"
        return s

    def to_dict(self) -> dict:
        return {"chosen": self.chosen.to_dict(), "label": self.chosen.label, "n_folds": self.n_folds,
                "scores": {k: (None if not np.isfinite(v) else float(v)) for k, v in self.scores.items()},
                "text": self.text()}


def auto_candidates(frame: pd.DataFrame) -> list[Candidate]:
    forms = list(AUTO_FORMS)
    if "U" in frame.columns and bool(np.any(frame["D"].to_numpy() > frame["U"].to_numpy() * (1 + 1e-9))):
        forms.append("data_constrained")  # only where some run repeats its data
    return [Candidate(f, dl, dr) for f in forms for dl in AUTO_DELTAS for dr in AUTO_DROPS]


def select_law(frame: pd.DataFrame, candidates: list[Candidate] | None = None, n_jobs: int = 1,
               fix_e=None, axis: str = "N") -> Selection:
    """Score every candidate by nested backtests of `frame` (the fitting data: never the holdout) and pick the
    smallest mean relative error of extrapolation. `frame` has the law's variables under their standard names
    (N, D, L, optionally U) and a `group` column (run id)."""
    candidates = candidates or auto_candidates(frame)
    if fix_e is not None:  # a fixed E belongs to the chinchilla family only
        candidates = [c for c in candidates if c.form in FIX_E_FORMS]
    folds = nested_folds(frame, axis=axis)
    if not folds:
        what = "model sizes" if axis == "N" else f"values of {axis}"
        raise FitError(f"--form auto needs at least 4 {what} in the fitting data to backtest inside it, got "
                       f"{len(np.unique(size_codes(frame[axis])))}; name a form instead")
    pairs = list(dict.fromkeys((c.form, c.delta) for c in candidates))
    drops = list(dict.fromkeys(c.drop for c in candidates))
    jobs = [(frame, f, dl, folds, drops, fix_e) for f, dl in pairs]
    if n_jobs > 1 and len(jobs) > 1:
        with process_pool(n_jobs) as pool:
            errs = list(pool.map(_nested_job, *zip(*jobs)))
    else:
        errs = [_nested_job(*j) for j in jobs]
    table = {(f, dl, dr): errs[i][k] for i, (f, dl) in enumerate(pairs) for k, dr in enumerate(drops)}
    scores = {c.label: float(np.mean(table[(c.form, c.delta, c.drop)])) for c in candidates}
    order = np.argsort([scores[c.label] for c in candidates], kind="stable")  # ties: the earlier, simpler one
    return Selection(chosen=candidates[int(order[0])], scores=scores, n_folds=len(folds), candidates=candidates)


# ------------------------------------------------------------------------------------------------ backtest


def _key(group) -> str:
    """A group's key in JSON: its value, or "all" for a backtest without groups."""
    return "all" if group is None else str(group)


@dataclass
class BacktestResult(Result):
    """Out-of-sample errors of a law fitted without the held-out rows. params: mean_rel_error, max_rel_error,
    coverage95 (fraction of held-out runs inside their 95% prediction interval); the interval of
    mean_rel_error resamples the held-out runs."""

    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    converged: bool
    message: str
    n_points: int  # held-out points
    n_resamples: int = 0
    n_resamples_ok: int = 0
    form: str = ""
    points: pd.DataFrame = field(default=None, repr=False)  # n, d, actual, predicted, low, high, rel_error, group
    laws: dict = field(default_factory=dict, repr=False)  # group -> FittedLaw on the fitting rows
    selections: dict = field(default_factory=dict, repr=False)  # group -> Selection (form auto)
    holdout: str = ""
    n_fit_points: int = 0

    mean_rel_error, max_rel_error, coverage95 = param(), param(), param()

    def predict(self, data=None, group=None, **inputs) -> np.ndarray:
        """The fitted law's prediction (of `group`'s law when the backtest ran per group)."""
        key = group if group is not None else next(iter(self.laws))
        return self.laws[key].predict(data, **inputs)

    def __str__(self):
        return (f"backtest of {self.form} on {self.n_points} held-out points ({self.holdout}): mean relative error "
                f"{100 * self.mean_rel_error:.2f}%, max {100 * self.max_rel_error:.2f}%, 95% interval coverage "
                f"{100 * self.coverage95:.0f}%")

    def to_dict(self) -> dict:
        d = super().to_dict()

        def num(x):
            return None if x is None or not np.isfinite(x) else float(x)

        pts = []
        for r in self.points.itertuples(index=False):
            p = {"n": num(r.n), "d": num(r.d), "actual": num(r.actual), "predicted": num(r.predicted),
                 "low": num(r.low), "high": num(r.high), "rel_error": num(r.rel_error)}
            if r.group is not None and str(r.group) != "":
                p["group"] = r.group if isinstance(r.group, (int, float, str)) else str(r.group)
            pts.append(p)
        d.update(form=self.form, points=pts, mean_rel_error=num(self.mean_rel_error),
                 max_rel_error=num(self.max_rel_error), coverage95=num(self.coverage95), holdout=self.holdout,
                 n_fit_points=self.n_fit_points,
                 laws={_key(k): v.to_dict(max_samples=0) for k, v in self.laws.items()},
                 selection={_key(k): v.to_dict() for k, v in self.selections.items()})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BacktestResult":
        pts = pd.DataFrame(d["points"])
        for c in ("n", "d", "actual", "predicted", "low", "high", "rel_error"):
            pts[c] = pd.to_numeric(pts.get(c), errors="coerce")
        if "group" not in pts:
            pts["group"] = ""
        return cls(params={k: float("nan") if v is None else v for k, v in d["params"].items()},
                   ci={k: tuple(float("nan") if a is None else a for a in v) for k, v in d["ci"].items()},
                   se={k: float("nan") if v is None else v for k, v in d["se"].items()},
                   converged=d["converged"], message=d["message"], n_points=d["n_points"],
                   n_resamples=d.get("n_resamples", 0), n_resamples_ok=d.get("n_resamples_ok", 0), form=d["form"],
                   points=pts, laws={k: FittedLaw.from_dict(v) for k, v in (d.get("laws") or {}).items()},
                   holdout=d.get("holdout", ""), n_fit_points=d.get("n_fit_points", 0))


def score_points(points: pd.DataFrame, *, form: str, holdout: str, laws: dict, selections: dict, converged: bool,
                 message: str, n_fit_points: int, seed: int = 0) -> BacktestResult:
    """Pool held-out points into a BacktestResult: mean and max relative error, coverage, and a 95% interval of
    the mean error over the held-out runs."""
    rel = points["rel_error"].to_numpy(float)
    inside = (points["actual"] >= points["low"]) & (points["actual"] <= points["high"])
    cover = float(inside.mean()) if np.all(np.isfinite(points[["low", "high"]].to_numpy(float))) and len(points) \
        else float("nan")
    draws = bootstrap_groups(lambda idx: float(np.mean(rel[idx])), np.arange(len(rel)), 1000 if len(rel) >= 3 else 0,
                             seed)
    ci = percentile_ci(draws)[0] if draws.size else NAN2
    se = float(np.nanstd(draws)) if draws.size else float("nan")
    nan = float("nan")
    lw = list(laws.values())
    return BacktestResult(
        params={"mean_rel_error": float(np.mean(rel)), "max_rel_error": float(np.max(rel)), "coverage95": cover},
        ci={"mean_rel_error": ci, "max_rel_error": NAN2, "coverage95": NAN2},
        se={"mean_rel_error": se, "max_rel_error": nan, "coverage95": nan},
        converged=converged, message=message, n_points=len(points),
        n_resamples=sum(w.n_resamples for w in lw), n_resamples_ok=sum(w.n_resamples_ok for w in lw), form=form,
        points=points.reset_index(drop=True), laws=laws, selections=selections, holdout=holdout,
        n_fit_points=n_fit_points)


def backtest_frame(frame: pd.DataFrame, holdout_mask: np.ndarray, form: str = "auto", *, n_resamples: int = 1000,
                   seed: int = 0, n_jobs: int = 1, fix_e=None, holdout: str = "", by: str | None = None,
                   min_fit_sizes: int = 2, max_iter: int = 500, axis: str = "N",
                   method: str = "lbfgs") -> BacktestResult:
    """Backtest on a frame with the standard columns N, D, L (and U, group = run id; `by`: a column whose values
    are fitted and backtested separately, their points pooled). The law is fitted on ~mask rows only. axis: the
    variable the holdout extrapolates in (N, or D): auto's nested folds and the intervals' extrapolation term
    follow it. method: how the final fit finds its optimum (fit_law's; auto's nested backtests keep their
    batched L-BFGS)."""
    holdout_mask = np.asarray(holdout_mask, bool)
    if not holdout_mask.any():
        raise FitError(f"holdout {holdout!r} selects no rows; nothing to predict")
    shared = form == "chinchilla_shared_e"  # one joint fit of all groups, E shared
    if shared and by is None:
        raise FitError("form chinchilla_shared_e fits groups jointly: name their column with --by COL")
    keys = [None] if by is None or shared else list(pd.unique(frame[by]))
    laws, sels, rows, msgs, conv, n_fit, slopes = {}, {}, [], [], True, 0, {}
    for key in keys:
        sub = np.ones(len(frame), bool) if key is None else (frame[by] == key).to_numpy()
        fit_rows = frame[sub & ~holdout_mask].reset_index(drop=True)
        test_rows = frame[sub & holdout_mask].reset_index(drop=True)
        where = "" if key is None else f" in group {key!r}"
        if test_rows.empty:
            continue
        n_sizes = len(np.unique(size_codes(fit_rows["N"]))) if len(fit_rows) else 0
        f0 = get_form("chinchilla" if form == "auto" else form, fix_e=fix_e)
        if len(fit_rows) < len(f0.internal_names) + 1 or n_sizes < min_fit_sizes:
            raise FitError(f"holdout {holdout!r} leaves {len(fit_rows)} fitting rows in {n_sizes} model size(s)"
                           f"{where}; a {f0.name} law needs at least {len(f0.internal_names) + 1} rows in "
                           f"{min_fit_sizes} sizes: hold out less")
        with single_threaded_blas():
            if form == "auto":
                sel = select_law(fit_rows, n_jobs=n_jobs, fix_e=fix_e, axis=axis)
                cand = sel.chosen
                sels[key] = sel
            else:
                cand = Candidate(form)
            law = _fit_candidate(fit_rows, cand, n_resamples, seed, quick=True, n_jobs=n_jobs, fix_e=fix_e,
                                 max_iter=max_iter, method=method)
        laws[key] = law
        n_fit += law.n_points
        if not law.converged:
            conv = False
            msgs.append(f"the fit{where} did not converge ({law.message})")
        if shared:
            labels = [str(x) for x in test_rows[by]]
            unknown = sorted(set(labels) - set(law.form.groups))
            if unknown:
                raise FitError(f"holdout {holdout!r}: group(s) {', '.join(unknown)} have no fitting rows; a shared-E "
                               "law cannot predict a group it never saw")
            test_rows = test_rows.assign(G=[float(law.form.groups.index(x)) for x in labels])
        X = {v: test_rows[v].to_numpy(float) for v in law.form.inputs}
        pred = law.form.predict(law.params, X)
        slope = (0.0, 0.0)
        kept = _drop_rows(fit_rows, cand.drop).reset_index(drop=True)
        folds = nested_folds(kept, min_train_sizes=SLOPE_MIN_SIZES, axis=axis)
        if len(folds) >= 2 and not shared:  # one fold of a barely determined fit says nothing of the full fit
            with single_threaded_blas():
                r, t = _nested_errors(kept, cand.form, cand.delta, folds, ["none"], fix_e, points=True, axis=axis)
            slope = nested_error_model(r, t, noise_scale(law)[0])
        slopes[key] = slope
        lo, hi = prediction_interval(law, {**X, axis: test_rows[axis].to_numpy(float)}, seed=seed,
                                     extrapolation=slope, axis=axis)
        actual = test_rows["L"].to_numpy(float)
        rows.append(pd.DataFrame({"n": test_rows["N"], "d": test_rows["D"], "actual": actual, "predicted": pred,
                                  "low": lo, "high": hi, "rel_error": np.abs(pred - actual) / actual,
                                  "group": test_rows[by].to_numpy() if shared else ("" if key is None else key)}))
    if not rows:
        raise FitError(f"holdout {holdout!r}: no group has both fitting and held-out rows")
    points = pd.concat(rows, ignore_index=True)
    form_name = form if form != "auto" else "auto: " + "; ".join(sorted({sels[k].chosen.label for k in laws}))
    msg = "; ".join(msgs) or "all fits converged"
    return score_points(points, form=form_name, holdout=holdout, laws=laws, selections=sels, converged=conv,
                        message=msg, n_fit_points=n_fit, seed=seed)


def holdout_axis(holdout: str) -> str:
    """The variable a holdout extrapolates in: D when its expression names D (or tokens) and not N, else N."""
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", holdout or ""))
    return "D" if names & {"D", "tokens"} and "N" not in names else "N"


def backtest(data, holdout: str = "largest", form: str = "auto", *, n: str | None = None, d: str | None = None,
             c: str | None = None, loss: str | None = None, u: str | None = None, by: str | None = None,
             run: str | None = None, n_resamples: int = 1000, seed: int = 0, n_jobs: int = 1,
             fix_e: float | None = None, max_iter: int = 500, method: str = "lbfgs",
             group: str | None = None) -> BacktestResult:
    """Fit `form` (or choose one: 'auto') on the rows outside `holdout`, predict the held-out rows with 95%
    prediction intervals, and score the prediction.

    data: a DataFrame, a CSV/Parquet file or a run store (its finished runs). n, d, c, loss, u name columns as in
    fit_law (D is C/(6N) when only C is given); by: a column (dataset) whose groups are fitted and backtested
    separately, their errors pooled (`group`: its older name); run: the run-id column the bootstrap resamples
    (default: each row a run; a store's run ids); method: fit_law's ('lbfgs' or 'vpnls')."""
    if group is not None:
        if by is not None:
            raise TypeError("backtest() got the grouping twice (as `group`, its older name, and as `by`)")
        by = group
    where = "data"
    if isinstance(data, (str, os.PathLike)):
        where, data = str(data), read_table(data, level="runs")
    elif isinstance(data, dict):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise FitError(f"backtest needs a DataFrame or a file, got {type(data).__name__}")
    data = data.reset_index(drop=True)
    if form != "auto":
        get_form(form, fix_e=fix_e)  # an unknown form fails here, with the list of forms
    f = get_form("chinchilla" if form == "auto" else form, fix_e=fix_e)
    has_u = form == "data_constrained" or u is not None or (
        form == "auto" and any(x in data.columns for x in ("U", "D_unique", "d_unique", "unique_tokens")))
    inputs = ("N", "D", "U") if has_u else ("N", "D")
    if run is None and "group" in data.columns and where != "data":
        run = "group"  # a run store's rows carry their run id
    for col, what in ((by, "--by"), (run, "--run")):
        if col is not None and col not in data.columns:
            raise FitError(f"{where}: no column {col!r} for {what}; columns are: {', '.join(map(str, data.columns))}")
    prep = prepare(data, inputs, "L", {"L": loss, "N": n, "D": d, "C": c, "U": u}, f.n_params,
                   group=run, where=where)
    frame = prep.frame.copy()
    frame["group"] = prep.groups
    if by is not None:
        frame["_by"] = data[by].to_numpy()
    names = {k: frame[k].to_numpy(float) for k in ("N", "D", "L", "U") if k in frame}
    names["C"] = 6.0 * names["N"] * names["D"]
    for col in data.columns:
        v = pd.to_numeric(data[col], errors="coerce")
        if v.notna().all():
            names.setdefault(str(col), v.to_numpy(float))
    mask = parse_holdout(holdout, names)
    if by is not None and holdout.split()[0].lower() == "largest":  # the largest sizes of each group
        mask = np.zeros(len(frame), bool)
        for key in pd.unique(frame["_by"]):
            sel = (frame["_by"] == key).to_numpy()
            mask[sel] = parse_holdout(holdout, {"N": names["N"][sel]})
    if mask.all():
        raise FitError(f"holdout {holdout!r} selects every row; nothing is left to fit")
    return backtest_frame(frame, mask, form, n_resamples=n_resamples, seed=seed, n_jobs=n_jobs, fix_e=fix_e,
                          holdout=holdout, by="_by" if by is not None else None, max_iter=max_iter,
                          axis=holdout_axis(holdout), method=method)
