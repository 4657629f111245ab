"""Batch-size laws (Kaplan et al. 2020, section 5): the steps/examples trade-off, B_crit(L), and the S_min and
C_min corrections.

A batch-size sweep trains one model size at several batch sizes B (tokens per step). For a target loss L, the
run at batch B first reaches L after S steps and E = B S tokens, and across batch sizes
    (S/S_min - 1)(E/E_min - 1) = 1,   i.e.   S(B) = S_min (1 + B_crit/B),  E(B) = E_min (1 + B/B_crit),
with B_crit = E_min / S_min. Fitting S(B) per target gives S_min, E_min and B_crit(L); across targets
B_crit(L) = B* / L^(1/alpha_B). Runs are then corrected to what they would have needed at the critical batch:
S_min = S / (1 + B_crit(L)/B) and C_min = C / (1 + B/B_crit(L)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.stats import t as student_t

from scalinglab.errors import DataError, FitError
from scalinglab.laws.fit import FittedLaw, fit_law
from scalinglab.laws.result import Result, _num, _pair


def _need(df, cols, where):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; columns are: "
                        f"{', '.join(map(str, df.columns))}")


def steps_to_targets(curves: pd.DataFrame, targets, *, run: str = "run_id", step: str = "step",
                     tokens: str = "tokens", loss: str = "loss", batch: str = "B") -> pd.DataFrame:
    """For each run and target loss: the steps S and tokens E at which the run first reaches the target.

    The curve is made monotone (best loss so far), and S, E are interpolated linearly in log between the two
    evaluations that bracket the target. Targets a run never reaches are left out."""
    _need(curves, [run, step, tokens, loss, batch], "batch sweep")
    rows = []
    for r, c in curves.groupby(run, sort=False):
        c = c.sort_values(step)
        c = c[c[step] > 0]
        s, e = c[step].to_numpy(float), c[tokens].to_numpy(float)
        lv = np.minimum.accumulate(c[loss].to_numpy(float))
        B = float(c[batch].iloc[0])
        for L in targets:
            hit = np.flatnonzero(lv <= L)
            if hit.size == 0:
                continue
            i = hit[0]
            if i == 0 or lv[i - 1] == lv[i]:
                S, E = s[i], e[i]
            else:
                w = (lv[i - 1] - L) / (lv[i - 1] - lv[i])
                S = float(np.exp(np.log(s[i - 1]) + w * (np.log(s[i]) - np.log(s[i - 1]))))
                E = float(np.exp(np.log(e[i - 1]) + w * (np.log(e[i]) - np.log(e[i - 1]))))
            rows.append({"run": r, "B": B, "target": float(L), "S": S, "E": E})
    return pd.DataFrame(rows, columns=["run", "B", "target", "S", "E"])


@dataclass
class Tradeoff(Result):
    """(S/S_min - 1)(E/E_min - 1) = 1 fitted at one target loss, in the result protocol: params S_min (steps),
    E_min (tokens) and B_crit = E_min/S_min (tokens per step); ci from the fit's covariance in log space (Student
    t, not a bootstrap: n_resamples is 0); converged is least_squares' own verdict."""

    target: float
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]  # 95%
    se: dict[str, float]  # delta-method standard errors of the natural parameters
    converged: bool
    message: str
    n_points: int  # batch sizes (runs) that reached the target
    rmse_log: float
    n_resamples: int = 0
    n_resamples_ok: int = 0

    S_min = property(lambda self: self.params["S_min"])
    E_min = property(lambda self: self.params["E_min"])
    B_crit = property(lambda self: self.params["B_crit"])
    n_runs = property(lambda self: self.n_points)

    def predict(self, B) -> np.ndarray:
        """Steps to reach the target at batch size B (tokens per step): S = S_min (1 + B_crit/B)."""
        return self.S_min * (1.0 + self.B_crit / np.asarray(B, float))

    def __str__(self):
        from scalinglab.laws.forms import fmt_number

        return (f"(S/S_min - 1)(E/E_min - 1) = 1 at L = {self.target:g}: S_min = {fmt_number(self.S_min)}, "
                f"E_min = {fmt_number(self.E_min)}, B_crit = {fmt_number(self.B_crit)}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(target=self.target, rmse_log=_num(self.rmse_log))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Tradeoff":
        nan = float("nan")
        return cls(target=float(d["target"]), params={k: nan if v is None else v for k, v in d["params"].items()},
                   ci={k: _pair(v) for k, v in d["ci"].items()},
                   se={k: nan if v is None else v for k, v in d["se"].items()}, converged=bool(d["converged"]),
                   message=d.get("message", ""), n_points=int(d["n_points"]),
                   rmse_log=nan if d.get("rmse_log") is None else d["rmse_log"])


def fit_tradeoff(S, E, target: float = float("nan"), max_nfev: int | None = None) -> Tradeoff:
    """Fit S(B) = S_min (1 + B_crit/B) with B = E/S, by least squares in log S (equivalently in log E)."""
    S, E = np.asarray(S, float), np.asarray(E, float)
    if len(S) < 3:
        raise FitError(f"trade-off at loss {target:g}: {len(S)} batch sizes reached it; need at least 3")
    B = E / S
    lS = np.log(S)

    def resid(p):
        return p[0] + np.log1p(np.exp(p[1]) / B) - lS

    x0 = np.array([np.log(S.min()), np.log(np.median(B))])
    r = least_squares(resid, x0, method="lm", max_nfev=max_nfev)
    converged = bool(r.success and np.all(np.isfinite(r.x)) and np.all(np.isfinite(r.fun)))
    message = r.message if r.success else f"least_squares did not converge: {r.message}"
    dof = max(len(S) - 2, 1)
    s2 = float(np.sum(r.fun ** 2) / dof)
    try:
        cov = np.linalg.inv(r.jac.T @ r.jac) * s2
        se = np.sqrt(np.maximum(np.diag(cov), 0))
    except np.linalg.LinAlgError:
        cov, se = None, np.array([np.nan, np.nan])
    tq = student_t.ppf(0.975, dof)
    ls, lb = r.x
    S_min, B_crit = float(np.exp(ls)), float(np.exp(lb))
    se_le = float(np.sqrt(max(cov[0, 0] + cov[1, 1] + 2 * cov[0, 1], 0))) if cov is not None else np.nan
    ci = {"S_min": (np.exp(ls - tq * se[0]), np.exp(ls + tq * se[0])),
          "B_crit": (np.exp(lb - tq * se[1]), np.exp(lb + tq * se[1])),
          "E_min": (np.exp(ls + lb - tq * se_le), np.exp(ls + lb + tq * se_le))}
    values = {"S_min": S_min, "E_min": S_min * B_crit, "B_crit": B_crit}
    se_log = {"S_min": se[0], "B_crit": se[1], "E_min": se_le}
    return Tradeoff(target=float(target), params=values,
                    ci={k: (float(a), float(b)) for k, (a, b) in ci.items()},
                    se={k: float(values[k] * se_log[k]) for k in values}, converged=converged, message=message,
                    n_points=len(S), rmse_log=float(np.sqrt(np.mean(r.fun ** 2))))


@dataclass
class BatchStudy(Result):
    """The section-5 analysis of one batch-size sweep, in the result protocol: params, ci, se and predict(L) are
    those of the fitted B_crit(L) = B*/L^(1/alpha_B); n_points counts the target losses with a converged
    trade-off (the rows of `tradeoffs`)."""

    points: pd.DataFrame  # run, B, target, S, E
    tradeoffs: pd.DataFrame  # per converged target: S_min, E_min, B_crit with intervals
    bcrit_law: object  # FittedLaw of form bcrit, or None with fewer than 3 targets
    message: str = ""

    params = property(lambda self: dict(self.bcrit_law.params) if self.bcrit_law is not None else {})
    ci = property(lambda self: dict(self.bcrit_law.ci) if self.bcrit_law is not None else {})
    se = property(lambda self: dict(self.bcrit_law.se) if self.bcrit_law is not None else {})
    converged = property(lambda self: bool(self.bcrit_law is not None and self.bcrit_law.converged))
    n_points = property(lambda self: len(self.tradeoffs))
    n_resamples = property(lambda self: self.bcrit_law.n_resamples if self.bcrit_law is not None else 0)
    n_resamples_ok = property(lambda self: self.bcrit_law.n_resamples_ok if self.bcrit_law is not None else 0)

    def predict(self, L) -> np.ndarray:
        """B_crit (tokens per step) at loss L."""
        if self.bcrit_law is None:
            raise FitError(f"no B_crit(L) law: {self.message}")
        return bcrit_of(self.bcrit_law, L)

    def __str__(self):
        return f"batch-size sweep: {self.bcrit_law.text() if self.bcrit_law is not None else self.message}"

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(tradeoffs=self.tradeoffs.to_dict(orient="records"), points=self.points.to_dict(orient="records"),
                 bcrit_law=self.bcrit_law.to_dict() if self.bcrit_law is not None else None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BatchStudy":
        law = FittedLaw.from_dict(d["bcrit_law"]) if d.get("bcrit_law") else None
        return cls(points=pd.DataFrame(d.get("points", [])), tradeoffs=pd.DataFrame(d.get("tradeoffs", [])),
                   bcrit_law=law, message=d.get("message", ""))


def fit_batch_sweep(curves: pd.DataFrame, targets, *, n_resamples: int = 500, seed: int = 0, **cols) -> BatchStudy:
    """The whole section-5 analysis of one batch-size sweep: points, one trade-off per target, B_crit(L).
    A trade-off whose least squares did not converge is left out of the table (and said in the message)."""
    pts = steps_to_targets(curves, targets, **cols)
    rows, failed = [], []
    for L, part in pts.groupby("target"):
        if part["B"].nunique() < 3:
            continue
        t = fit_tradeoff(part["S"], part["E"], L)
        if not t.converged:
            failed.append(f"L = {L:g} ({t.message})")
            continue
        rows.append({"target": L, "S_min": t.S_min, "E_min": t.E_min, "B_crit": t.B_crit,
                     "B_crit_low": t.ci["B_crit"][0], "B_crit_high": t.ci["B_crit"][1],
                     "S_min_low": t.ci["S_min"][0], "S_min_high": t.ci["S_min"][1],
                     "E_min_low": t.ci["E_min"][0], "E_min_high": t.ci["E_min"][1], "n_runs": t.n_runs,
                     "rmse_log": t.rmse_log})
    trade = pd.DataFrame(rows)
    law = None
    if len(trade) >= 3:
        law = fit_law(trade.rename(columns={"target": "L"}), form="bcrit", loss="B_crit", l="L",
                      n_resamples=n_resamples, seed=seed)
    message = (f"{len(trade)} target losses with a converged trade-off" +
               (f"; left out: {', '.join(failed)}" if failed else "") +
               ("" if law is not None else "; fewer than 3: no B_crit(L) law"))
    return BatchStudy(points=pts, tradeoffs=trade, bcrit_law=law, message=message)


def bcrit_of(law_or_params, L):
    """B_crit(L) = B*/L^(1/alpha_B) from a fitted bcrit law or a dict with B_star and alpha_B."""
    p = getattr(law_or_params, "params", law_or_params)
    return p["B_star"] / np.asarray(L, float) ** (1.0 / p["alpha_B"])


def correct_to_critical_batch(curves: pd.DataFrame, bcrit, *, loss: str = "loss", step: str = "step",
                              flop: str = "flop", batch: str = "B") -> pd.DataFrame:
    """Add S_min = S/(1 + B_crit(L)/B) and C_min = C/(1 + B/B_crit(L)) (Kaplan eqs. 5.4, 5.5) to every point
    of the learning curves; the uncorrected S and C stay, for comparison."""
    _need(curves, [loss, step, flop, batch], "batch correction")
    out = curves.copy()
    bc = bcrit_of(bcrit, out[loss].to_numpy(float))
    B = out[batch].to_numpy(float)
    out["B_crit"] = bc
    out["S_min"] = out[step].to_numpy(float) / (1.0 + bc / B)
    out["C_min"] = out[flop].to_numpy(float) / (1.0 + B / bc)
    return out
