"""One result protocol for every fit and derived quantity, and one bootstrap that resamples whole runs.

Every result (a fitted law, a power law of a frontier, a critical-batch estimate, a backtest) speaks the same
words: `params` (name -> estimate), `ci` (name -> 95% interval), `se` (name -> bootstrap standard error),
`converged`, `message`, `n_points`, `n_resamples` (bootstrap resamples asked for) and `n_resamples_ok` (those that
gave a finite value), `predict(...)`, `to_dict()` / `from_dict()`, and `summary()`.

The bootstrap resamples *groups* (runs), never points: the points of one learning curve, or the frontier points
one run contributes, share that run's seed, data order and hyper-parameters and move together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from scalinglab.errors import FitError
from scalinglab.laws.forms import fmt_number

NAN2 = (float("nan"), float("nan"))


def _num(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _pair(v) -> tuple[float, float]:
    if v is None:
        return NAN2
    lo, hi = v
    return (float("nan") if lo is None else float(lo), float("nan") if hi is None else float(hi))


class param:
    """A result's named quantity, read from its protocol: in a result class, `exponent = param()` reads
    self.params["exponent"] and `exponent_ci = param()` (a name ending in _ci) reads self.ci["exponent"].
    Read-only, like the property it stands for."""

    def __set_name__(self, owner, name: str):
        self.name = name
        self.table, self.key = ("ci", name[:-3]) if name.endswith("_ci") else ("params", name)
        self.__doc__ = f"{self.table}[{self.key!r}]"

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj, self.table)[self.key]

    def __set__(self, obj, value):
        raise AttributeError(f"{self.name} is read from {self.table}; set {self.table}[{self.key!r}] instead")


class Result:
    """Mixin with the protocol's shared behaviour. Subclasses are dataclasses with at least the fields
    params, ci, se, converged, message, n_points; they name their quantities with `param()`."""

    def interval_width(self, name: str, relative: bool = False) -> float:
        lo, hi = self.ci.get(name, NAN2)
        w = hi - lo
        return w / abs(self.params[name]) if relative and self.params.get(name) else w

    def informative(self, name: str, max_width: float, relative: bool = False) -> bool:
        """True when the interval of `name` exists and is no wider than `max_width`."""
        w = self.interval_width(name, relative)
        return bool(np.isfinite(w) and w <= max_width)

    def to_dict(self) -> dict:
        return {
            "kind": type(self).__name__,
            "params": {k: _num(v) for k, v in self.params.items()},
            "ci": {k: [_num(a) for a in v] for k, v in self.ci.items()},
            "se": {k: _num(v) for k, v in self.se.items()},
            "converged": bool(self.converged),
            "message": self.message,
            "n_points": int(self.n_points),
            "n_resamples": int(getattr(self, "n_resamples", 0)),
            "n_resamples_ok": int(getattr(self, "n_resamples_ok", 0)),
        }

    @staticmethod
    def fields_from_dict(d: dict) -> dict:
        """The protocol's fields from a to_dict() dict (None back to NaN): what every from_dict starts from."""
        return dict(params={k: float("nan") if v is None else v for k, v in d["params"].items()},
                    ci={k: _pair(v) for k, v in d["ci"].items()},
                    se={k: float("nan") if v is None else v for k, v in d["se"].items()},
                    converged=d["converged"], message=d["message"], n_points=d["n_points"],
                    n_resamples=d.get("n_resamples", 0), n_resamples_ok=d.get("n_resamples_ok", 0))

    def summary(self) -> str:
        lines = [str(self)]
        if not self.converged:
            lines.append(f"WARNING: did NOT converge ({self.message}); do not use these numbers")
        for k, v in self.params.items():
            lo, hi = self.ci.get(k, NAN2)
            se = self.se.get(k, float("nan"))
            # '-' where there is no interval (a published law, a fit without bootstrap), never "nan"
            iv = f"[{fmt_number(lo)}, {fmt_number(hi)}]" if np.isfinite([lo, hi]).all() else "-"
            lines.append(f"  {k:<12}{fmt_number(v):>14}  95% {iv}  s.e. {fmt_number(se) if np.isfinite(se) else '-'}")
        lines.append(f"  points {self.n_points}; bootstrap {getattr(self, 'n_resamples_ok', 0)}/"
                     f"{getattr(self, 'n_resamples', 0)} resamples usable")
        return "\n".join(lines)


def bootstrap_groups(statistic: Callable[[np.ndarray], object], groups, n_resamples: int = 1000,
                     seed: int = 0) -> np.ndarray:
    """Apply `statistic(idx)` to `n_resamples` resamples of whole groups (rows of the same group go together)
    and return the stacked results (rows of NaN where the statistic failed or returned None).

    `idx` is an array of row positions with repeats (a group drawn twice appears twice). The statistic may
    return a scalar or a 1-D array of fixed length."""
    g = pd.factorize(np.asarray(groups))[0]
    members = [np.flatnonzero(g == k) for k in range(g.max() + 1)] if len(g) else []
    G = len(members)
    rng = np.random.default_rng(seed)
    out = []
    width = None
    for _ in range(n_resamples if G >= 2 else 0):
        pick = rng.integers(0, G, G)
        idx = np.concatenate([members[k] for k in pick])
        try:
            v = statistic(idx)
        except (FitError, ValueError, FloatingPointError, np.linalg.LinAlgError, ZeroDivisionError):
            v = None
        v = None if v is None else np.atleast_1d(np.asarray(v, float))
        if v is not None:
            width = v.size
        out.append(v)
    if width is None:
        return np.empty((0, 1))
    return np.array([np.full(width, np.nan) if v is None else v for v in out])


def bootstrap_run_effects(statistic: Callable[[pd.Series], object], effects: pd.Series, n_resamples: int = 1000,
                          seed: int = 0, absorbed: int = 0, sigma: float | None = None,
                          sigma_dof: int = 0) -> np.ndarray:
    """A bootstrap for a fixed design: the runs stay (every size, every budget), only their run-to-run noise is
    redrawn. `effects` holds each run's estimated effect, its log offset from a smooth reference (a fitted law);
    `statistic(shift)` gets, per run, the log factor to multiply that run's losses by, new effect minus its own,
    and returns a value or a 1-D array as in bootstrap_groups.

    The new effects are drawn with replacement from the centred effects, inflated by sqrt(R / (R - absorbed)) for
    the `absorbed` parameters of the reference that soaked up run-level variation. With `sigma` measured by seed
    replicates (`sigma_dof` degrees of freedom), the effects are rescaled to the pooled standard deviation of both
    estimates. Resampling whole runs instead drops sizes from the design: a statistic built on minima over runs
    (the compute frontier) then loses its best runs, and its interval comes out about twice too wide."""
    e = pd.Series(effects, dtype=float).dropna()
    R = len(e)
    if R < 3 or n_resamples <= 0:
        return np.empty((0, 1))
    c = (e - e.mean()).to_numpy()
    dof = max(R - 1 - absorbed, 1)
    ss = float(np.sum(c ** 2))
    if sigma is not None and np.isfinite(sigma) and sigma_dof > 0:
        target = np.sqrt((ss + sigma ** 2 * sigma_dof) / (dof + sigma_dof))
    else:
        target = np.sqrt(ss / dof)
    sd = np.sqrt(ss / R)
    pool = c * (target / sd) if sd > 0 else c
    rng = np.random.default_rng(seed)
    out, width = [], None
    for _ in range(n_resamples):
        shift = pd.Series(rng.choice(pool, R) - c, index=e.index)  # new effect minus own, about their mean
        try:
            v = statistic(shift)
        except (FitError, ValueError, FloatingPointError, np.linalg.LinAlgError, ZeroDivisionError):
            v = None
        v = None if v is None else np.atleast_1d(np.asarray(v, float))
        if v is not None:
            width = v.size
        out.append(v)
    if width is None:
        return np.empty((0, 1))
    return np.array([np.full(width, np.nan) if v is None else v for v in out])


def percentile_ci(draws: np.ndarray, level: float = 0.95, min_ok: int = 20):
    """(low, high) percentile interval of each column, NaN where fewer than `min_ok` draws are finite."""
    draws = np.atleast_2d(np.asarray(draws, float))
    if draws.shape[0] == 1 and draws.shape[1] > 1 and draws.ndim == 2:
        pass
    q = 100 * (1 - level) / 2
    out = []
    for j in range(draws.shape[1]):
        col = draws[:, j]
        col = col[np.isfinite(col)]
        out.append(tuple(map(float, np.percentile(col, [q, 100 - q]))) if col.size >= min_ok else NAN2)
    return out


@dataclass
class PowerLawFit(Result):
    """y = coef * x^exponent by least squares in log-log, with 95% bootstrap intervals over groups (runs or
    budgets). Used for N_opt(C), D_opt(C) and every other plain power-law regression."""

    params: dict[str, float]  # {"coef": k, "exponent": a}
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    converged: bool
    message: str
    n_points: int
    n_resamples: int = 0
    n_resamples_ok: int = 0
    name: str = "y"
    var: str = "x"
    x: np.ndarray = field(default=None, repr=False)
    y: np.ndarray = field(default=None, repr=False)

    coef, exponent, coef_ci, exponent_ci = param(), param(), param(), param()

    def predict(self, x) -> np.ndarray:
        return self.coef * np.asarray(x, float) ** self.exponent

    def text(self) -> str:
        return f"{self.name} = {fmt_number(self.coef)} {self.var}^{fmt_number(self.exponent)}"

    def __str__(self):
        lo, hi = self.exponent_ci
        return f"{self.text()} (exponent 95% CI {fmt_number(lo)} - {fmt_number(hi)})"

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(name=self.name, var=self.var, formula=self.text())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PowerLawFit":
        return cls(**cls.fields_from_dict(d), name=d.get("name", "y"), var=d.get("var", "x"))


def _loglog(x, y):
    slope, icept = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(icept)), float(slope)


def power_law_fit(x, y, groups=None, n_resamples: int = 1000, seed: int = 0, name: str = "y",
                  var: str = "x") -> PowerLawFit:
    """Least squares of log y on log x; the bootstrap resamples whole groups (default: each point its own)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 2:
        raise FitError(f"{name}({var}): need at least 2 distinct points for a power law, got {len(np.unique(x))}")
    coef, expo = _loglog(x, y)
    g = np.arange(len(x)) if groups is None else np.asarray(groups)[ok]

    def stat(idx):
        return _loglog(x[idx], y[idx]) if len(np.unique(x[idx])) >= 2 else None

    n_groups = len(pd.unique(g))
    draws = bootstrap_groups(stat, g, n_resamples if n_groups >= 3 else 0, seed)
    n_ok = int(np.isfinite(draws).all(axis=1).sum()) if draws.size else 0
    (cci, eci) = percentile_ci(draws) if n_ok else (NAN2, NAN2)
    se = {"coef": float(np.nanstd(draws[:, 0])) if n_ok else float("nan"),
          "exponent": float(np.nanstd(draws[:, 1])) if n_ok else float("nan")}
    msg = "least squares in log-log" if n_groups >= 3 else f"only {n_groups} groups: no bootstrap interval"
    return PowerLawFit(params={"coef": coef, "exponent": expo}, ci={"coef": cci, "exponent": eci}, se=se,
                       converged=True, message=msg, n_points=int(len(x)), n_resamples=n_resamples if n_groups >= 3
                       else 0, n_resamples_ok=n_ok, name=name, var=var, x=x, y=y)
