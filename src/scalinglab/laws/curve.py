"""A schedule-aware learning-curve law, fitted on every point of whole curves (Tissue et al. 2024, "Scaling Law
with Learning Rate Annealing", arXiv:2408.11029):

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

where, with eta_i the learning rate of update i (1-based),

    S1(s) = sum_{i=1..s} eta_i                      the forward area: the area under the LR curve
    m_i   = lam * m_{i-1} + (eta_{i-1} - eta_i)     the annealing momentum (m_0 = 0)
    S2(s) = sum_{i=1..s} m_i                        the annealing area

and lam is the paper's decay factor (it recommends a value near 0.999, the default here). A drop of the LR adds
to S2 not at once but through the momentum m, so the loss keeps falling for a while after the LR has settled: the
delay the paper observed after a step decay. During warm-up the LR rises, which is no annealing: here the annealing
increments count from the update at which the LR first reaches its maximum (warm-up adds to S1 only).

The law is linear in (L0, A, C) given alpha, so it is fitted by variable projection: for each alpha, non-negative
least squares of the loss points on (1, S1^-alpha, -S2); alpha by a bounded one-dimensional search. Intervals come
from the project's bootstrap that resamples whole runs (laws/result.py): the points of one curve share its seed
and data order and move together.

A point may be an evaluation after update s (the model after s updates), or a train-loss point that averages the
losses of the updates since the previous point (`averaged`): the loss of update i is that of the model after i-1
updates, so such a point is compared with the mean of L over those states. The learning rates come from the curve
itself (the scheduled LR is recorded at every logged point, linear between them: `schedule_from_points`), or from
a full per-update schedule a caller gives.

No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar, nnls
from scipy.signal import lfilter

from scalinglab.errors import DataError, FitError
from scalinglab.laws.result import NAN2, Result, bootstrap_groups, param, percentile_ci

DECAY = 0.999  # Tissue et al. 2024's decay factor lam of the annealing momentum
ALPHA_BOUNDS = (0.01, 4.0)
PARAMS = ("L0", "A", "alpha", "C")


# ------------------------------------------------------------------------------------------------ schedule areas


def schedule_areas(lr, decay: float = DECAY) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) after each update of a per-update LR schedule lr[0..T-1] (lr[i-1] is eta_i): element s-1 of
    each is the area after update s."""
    eta = np.asarray(lr, float)
    if eta.ndim != 1 or eta.size == 0 or not np.isfinite(eta).all() or (eta < 0).any():
        raise DataError("curve law: a learning-rate schedule must be a non-empty sequence of finite values >= 0")
    if not 0 <= decay < 1:
        raise DataError(f"curve law: the annealing decay factor must be in [0, 1), got {decay}")
    drop = np.zeros_like(eta)
    drop[1:] = eta[:-1] - eta[1:]
    drop[: int(np.argmax(eta)) + 1] = 0.0  # warm-up (the LR rising to its peak) is no annealing
    momentum = lfilter([1.0], [1.0, -decay], drop)  # m_i = decay * m_{i-1} + drop_i
    return np.cumsum(eta), np.cumsum(momentum)


def schedule_from_points(steps, lr, last_step: int | None = None) -> np.ndarray:
    """The per-update LR schedule (element i-1 is the LR of update i, for i = 1..last_step) from the LR recorded
    at logged steps: linear between them, the first and last recorded values beyond them."""
    steps, lr = np.asarray(steps, float), np.asarray(lr, float)
    ok = np.isfinite(steps) & np.isfinite(lr)
    steps, lr = steps[ok], lr[ok]
    if steps.size == 0:
        raise DataError("curve law: a curve has no recorded learning rate (column lr)")
    order = np.argsort(steps, kind="stable")
    steps, lr = steps[order], lr[order]
    T = int(last_step if last_step is not None else steps.max())
    return np.interp(np.arange(1, T + 1), steps, lr)


# ------------------------------------------------------------------------------------------------ design


@dataclass
class _Curves:
    """Every run's per-update areas, concatenated, and each loss point as a window [lo, hi] of model states
    (indices into the concatenation) whose law values it is compared with (their mean)."""

    S1: np.ndarray  # S1 of each state (after update s, s = 0..T of each run; S1 of state 0 is 0)
    S2: np.ndarray
    lo: np.ndarray  # per point
    hi: np.ndarray
    y: np.ndarray
    runs: np.ndarray  # per point: its run
    S2_mean: np.ndarray  # per point: the mean of S2 over its window

    def features(self, alpha: float, idx=None) -> np.ndarray:
        lo, hi = (self.lo, self.hi) if idx is None else (self.lo[idx], self.hi[idx])
        with np.errstate(divide="ignore"):
            f = np.where(self.S1 > 0, self.S1, np.inf) ** (-alpha)
        c = np.concatenate([[0.0], np.cumsum(f)])
        mean_f = (c[hi + 1] - c[lo]) / (hi - lo + 1)
        s2 = self.S2_mean if idx is None else self.S2_mean[idx]
        return np.column_stack([np.ones_like(mean_f), mean_f, -s2])


def _prepare(curves: pd.DataFrame, *, loss: str, run: str, step: str, lr: str, averaged: bool,
             min_step, decay: float, schedules: dict | None) -> tuple[_Curves, dict]:
    missing = [c for c in (run, step, loss) + (() if schedules else (lr,)) if c not in curves.columns]
    if missing:
        raise DataError(f"curve law: missing column(s) {', '.join(missing)}; columns are: "
                        f"{', '.join(map(str, curves.columns))}")
    S1s, S2s, lo, hi, y, runs, s2m = [], [], [], [], [], [], []
    offset = 0
    info = {}
    for r, c in curves.groupby(run, sort=False):
        c = c.sort_values(step)
        sched = np.asarray(schedules[r], float) if schedules and r in schedules else \
            schedule_from_points(c[step], c[lr], int(c[step].max()))
        S1, S2 = schedule_areas(sched, decay)
        S1 = np.concatenate([[0.0], S1])  # state s = 0..T
        S2 = np.concatenate([[0.0], S2])
        T = len(sched)
        pts = c[[step, loss]].apply(pd.to_numeric, errors="coerce").dropna()
        s = pts[step].to_numpy(int)
        v = pts[loss].to_numpy(float)
        if averaged:  # the mean loss of the updates since the previous logged point: states prev..s-1
            all_steps = np.unique(c[step].dropna().to_numpy(int))
            prev = np.concatenate([[0], all_steps[:-1]])
            a = prev[np.searchsorted(all_steps, s)]
            b = s - 1
        else:
            a = b = s
        first = int(np.argmax(sched)) + 1 if min_step is None else int(min_step)
        keep = (a >= 1) & (s >= first) & (b <= T) & (b >= a)
        a, b, v = a[keep], b[keep], v[keep]
        csum = np.concatenate([[0.0], np.cumsum(S2)])
        s2m.append((csum[b + 1] - csum[a]) / (b - a + 1))
        lo.append(a + offset)
        hi.append(b + offset)
        y.append(v)
        runs.append(np.full(len(v), r, dtype=object))
        S1s.append(S1)
        S2s.append(S2)
        offset += T + 1
        info[r] = {"steps": T, "points": int(len(v)), "first_step": first}
    if not y or sum(len(v) for v in y) == 0:
        raise FitError("curve law: no loss points to fit (after warm-up, with a learning rate)")
    cat = np.concatenate
    return _Curves(S1=cat(S1s), S2=cat(S2s), lo=cat(lo).astype(int), hi=cat(hi).astype(int), y=cat(y),
                   runs=cat(runs), S2_mean=cat(s2m)), info


def _solve(data: _Curves, idx=None, bounds=ALPHA_BOUNDS) -> tuple[np.ndarray, float]:
    """The least-squares (L0, A, alpha, C) with L0, A, C >= 0, and the residual sum of squares."""
    y = data.y if idx is None else data.y[idx]

    def rss(la):
        X = data.features(np.exp(la), idx)
        _, r = nnls(X, y)
        return r * r

    grid = np.linspace(np.log(bounds[0]), np.log(bounds[1]), 33)
    vals = np.array([rss(g) for g in grid])
    k = int(np.nanargmin(vals))
    lo_, hi_ = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(rss, bounds=(lo_, hi_), method="bounded", options={"xatol": 1e-10})
    la = res.x if res.fun <= vals[k] else grid[k]
    alpha = float(np.exp(la))
    coef, r = nnls(data.features(alpha, idx), y)
    return np.array([coef[0], coef[1], alpha, coef[2]]), float(r * r)


# ------------------------------------------------------------------------------------------------ the result


@dataclass
class CurveLaw(Result):
    """L(s) = L0 + A S1^-alpha - C S2 fitted on whole learning curves, in the result protocol (params, ci, se,
    converged, message, n_points, n_resamples, n_resamples_ok, predict, to_dict/from_dict, summary)."""

    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    converged: bool
    message: str
    n_points: int
    n_runs: int = 0
    decay: float = DECAY
    rmse: float = float("nan")  # of the fitted points, in loss units
    run_scatter: float = float("nan")  # s.d. of the runs' mean residuals: a new run's offset from the law
    loss_column: str = ""
    n_resamples: int = 0
    n_resamples_ok: int = 0
    samples: np.ndarray = field(default=None, repr=False)  # (K, 4) bootstrap draws of (L0, A, alpha, C)

    L0, A, alpha, C = param(), param(), param(), param()
    L0_ci, alpha_ci = param(), param()

    @staticmethod
    def _law(p, lr, steps, decay) -> np.ndarray:
        S1, S2 = schedule_areas(lr, decay)
        s = np.asarray(steps, int) - 1
        if (s < 0).any() or (s >= len(S1)).any():
            raise DataError(f"curve law: steps must lie in 1..{len(S1)} (the schedule's updates)")
        return p[0] + p[1] * S1[s] ** (-p[2]) - p[3] * S2[s]

    def predict(self, lr, steps=None) -> np.ndarray:
        """The loss after each of `steps` (1-based update counts; default: every update) of a run trained with
        the per-update LR schedule `lr` (lr[i-1] is the LR of update i)."""
        lr = np.asarray(lr, float)
        steps = np.arange(1, len(lr) + 1) if steps is None else np.atleast_1d(steps)
        return self._law([self.params[k] for k in PARAMS], lr, steps, self.decay)

    def predict_final(self, lr) -> float:
        """The loss at the end of a run with the per-update LR schedule `lr`."""
        return float(self.predict(lr, [len(lr)])[0])

    def predict_interval(self, lr, steps=None, level: float = 0.95, kind: str = "mean"):
        """(low, high) arrays: kind='mean' from the bootstrap draws of the law; kind='observation' adds a new
        run's offset from the law (drawn from the fitted runs' mean residuals' spread)."""
        lr = np.asarray(lr, float)
        steps = np.arange(1, len(lr) + 1) if steps is None else np.atleast_1d(steps)
        if self.samples is None or len(self.samples) < 20:
            nan = np.full(len(steps), np.nan)
            return nan, nan.copy()
        S1, S2 = schedule_areas(lr, self.decay)
        s = np.asarray(steps, int) - 1
        P = self.samples
        draws = P[:, [0]] + P[:, [1]] * S1[s][None, :] ** (-P[:, [2]]) - P[:, [3]] * S2[s][None, :]
        if kind == "observation" and np.isfinite(self.run_scatter):
            draws = draws + np.random.default_rng(0).normal(0, self.run_scatter, (len(P), 1))
        q = 100 * (1 - level) / 2
        lo, hi = np.nanpercentile(draws, [q, 100 - q], axis=0)
        return lo, hi

    def text(self) -> str:
        from scalinglab.laws.forms import fmt_number

        p = self.params
        return (f"L(s) = {fmt_number(p['L0'])} + {fmt_number(p['A'])} S1^-{fmt_number(p['alpha'])} - "
                f"{fmt_number(p['C'])} S2")

    def __str__(self):
        return f"{self.text()} (Tissue et al. 2024; annealing decay {self.decay:g})"

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(formula=self.text(), n_runs=self.n_runs, decay=self.decay, loss_column=self.loss_column,
                 rmse=None if not np.isfinite(self.rmse) else float(self.rmse),
                 run_scatter=None if not np.isfinite(self.run_scatter) else float(self.run_scatter))
        if self.samples is not None and len(self.samples):
            d["bootstrap_samples"] = [[float(f"{v:.9g}") for v in row] for row in self.samples]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CurveLaw":
        samples = np.array(d.get("bootstrap_samples") or np.empty((0, 4)), float)
        nan = float("nan")
        return cls(**cls.fields_from_dict(d), n_runs=int(d.get("n_runs", 0)), decay=float(d.get("decay", DECAY)),
                   rmse=nan if d.get("rmse") is None else d["rmse"],
                   run_scatter=nan if d.get("run_scatter") is None else d["run_scatter"],
                   loss_column=d.get("loss_column", ""), samples=samples)


def fit_curve_law(curves: pd.DataFrame, *, loss: str = "loss_validation", run: str = "run_id", step: str = "step",
                  lr: str = "lr", averaged: bool | None = None, min_step: int | None = None, decay: float = DECAY,
                  schedules: dict | None = None, n_resamples: int = 1000, seed: int = 0) -> CurveLaw:
    """Fit L(s) = L0 + A S1^-alpha - C S2 on every point of every curve in `curves` (one row per logged step,
    as RunStore.curves() gives: a run column, the step, the scheduled LR and the loss column).

    loss: the column fitted (an evaluation: `loss_validation`, `test_loss`; or `train_loss`, whose points are
    means over the updates since the previous point: `averaged`, default True for train_loss).
    min_step: fit only points at or after it (default: each run's end of warm-up).
    schedules: {run: per-update LR array}, where a curve's recorded LR is not enough (default: from the curve).
    The bootstrap resamples whole runs (needs at least 2 runs; with fewer the law has no interval)."""
    if averaged is None:
        averaged = loss == "train_loss"
    data, info = _prepare(curves, loss=loss, run=run, step=step, lr=lr, averaged=averaged, min_step=min_step,
                          decay=decay, schedules=schedules)
    if len(data.y) < 4:
        raise FitError(f"curve law: {len(data.y)} loss points; need at least 4 for 4 parameters")
    est, rss = _solve(data)
    X = data.features(est[2])
    resid = data.y - X @ est[[0, 1, 3]]
    run_means = pd.Series(resid).groupby(data.runs).mean()
    n_runs = len(info)
    notes = []
    if not (data.S2_mean > 0).any():
        notes.append("no curve anneals (S2 = 0 everywhere): C is not identified")
    if est[0] == 0.0:
        notes.append("L0 at its bound 0: the curves are far from their floor (L0 and alpha not identified apart)")
    at_edge = np.isclose(est[2], ALPHA_BOUNDS, rtol=1e-3).any()
    if at_edge:
        notes.append(f"alpha at the edge of its search range {ALPHA_BOUNDS}")
    draws = bootstrap_groups(lambda idx: _solve(data, idx)[0], data.runs, n_resamples if n_runs >= 2 else 0, seed)
    ok = np.isfinite(draws).all(axis=1) if draws.size else np.zeros(0, bool)
    n_ok = int(ok.sum())
    cis = percentile_ci(draws[ok]) if n_ok else [NAN2] * 4
    se = {k: float(np.std(draws[ok, j])) if n_ok >= 2 else float("nan") for j, k in enumerate(PARAMS)}
    if n_runs < 2:
        notes.append("one run: no bootstrap over runs, no interval")
    message = "variable projection (non-negative least squares, bounded search in alpha)" + \
              ("; " + "; ".join(notes) if notes else "")
    return CurveLaw(params=dict(zip(PARAMS, map(float, est))), ci=dict(zip(PARAMS, cis)), se=se,
                    converged=bool(np.isfinite(est).all() and not at_edge), message=message,
                    n_points=int(len(data.y)), n_runs=n_runs, decay=decay,
                    rmse=float(np.sqrt(rss / len(data.y))),
                    run_scatter=float(run_means.std(ddof=1)) if n_runs >= 2 else float("nan"),
                    loss_column=loss, n_resamples=n_resamples if n_runs >= 2 else 0, n_resamples_ok=n_ok,
                    samples=draws[ok] if n_ok else None)


# ------------------------------------------------------------------------------------------------ backtest


@dataclass
class CurveBacktest(Result):
    """Fit the curve law on some curves (and, optionally, the held-out run's own points up to a step), predict
    the held-out run's final loss under its own schedule, and compare: params predicted, measured, error
    (predicted - measured) and rel_error; ci of predicted is the law's 95% observation interval."""

    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    converged: bool
    message: str
    n_points: int
    law: CurveLaw = None
    holdout: str = ""
    final_step: int = 0
    n_resamples: int = 0
    n_resamples_ok: int = 0

    predicted, measured, error, rel_error = param(), param(), param(), param()
    predicted_ci = param()

    @property
    def covered(self) -> bool:
        lo, hi = self.ci["predicted"]
        return bool(lo <= self.measured <= hi)

    def predict(self, lr, steps=None) -> np.ndarray:
        return self.law.predict(lr, steps)

    def __str__(self):
        lo, hi = self.ci["predicted"]
        return (f"held-out {self.holdout} (step {self.final_step}): predicted {self.predicted:.4f} "
                f"[{lo:.4f}, {hi:.4f}], measured {self.measured:.4f}, error {self.error:+.4f} "
                f"({100 * self.rel_error:+.2f}%)")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(holdout=str(self.holdout), final_step=int(self.final_step), covered=self.covered,
                 law=self.law.to_dict() if self.law is not None else None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CurveBacktest":
        return cls(**cls.fields_from_dict(d), law=CurveLaw.from_dict(d["law"]) if d.get("law") else None,
                   holdout=d.get("holdout", ""), final_step=int(d.get("final_step", 0)))


def backtest_curve_law(curves: pd.DataFrame, holdout, *, known_until: int | None = None,
                       loss: str = "loss_validation", run: str = "run_id", step: str = "step", lr: str = "lr",
                       measured: float | None = None, schedules: dict | None = None, **fit_kw) -> CurveBacktest:
    """Hold out run `holdout`: fit the law on every other curve (plus the held-out curve's points at steps
    <= known_until, e.g. its stable phase), predict its loss at its last step under its own recorded schedule,
    and compare with the measured value (its last point of `loss`, or `measured`, e.g. its final test loss).
    The held-out run's schedule is an input known before it trains: its recorded LR (or schedules[holdout])."""
    if run not in curves.columns or holdout not in set(curves[run]):
        raise DataError(f"curve backtest: no run {holdout!r} in the curves")
    held = curves[curves[run] == holdout].sort_values(step)
    train = curves[curves[run] != holdout]
    if known_until is not None:
        train = pd.concat([train, held[held[step] <= known_until]])
    law = fit_curve_law(train, loss=loss, run=run, step=step, lr=lr, schedules=schedules, **fit_kw)
    sched = np.asarray(schedules[holdout], float) if schedules and holdout in schedules else \
        schedule_from_points(held[step], held[lr])
    last = held.dropna(subset=[loss]) if measured is None else held
    final_step = int(held[step].max())
    if measured is None:
        if last.empty or int(last[step].max()) != final_step:
            raise DataError(f"curve backtest: run {holdout!r} has no {loss} at its last step")
        measured = float(last[loss].iloc[-1])
    pred = law.predict_final(sched)
    lo, hi = law.predict_interval(sched, [final_step], kind="observation")
    err = pred - measured
    return CurveBacktest(params={"predicted": pred, "measured": float(measured), "error": err,
                                 "rel_error": err / measured},
                         ci={"predicted": (float(lo[0]), float(hi[0]))}, se={}, converged=law.converged,
                         message=f"fitted on {law.n_runs} curves, {law.n_points} points; {law.message}",
                         n_points=law.n_points, law=law, holdout=str(holdout), final_step=final_step,
                         n_resamples=law.n_resamples, n_resamples_ok=law.n_resamples_ok)
