"""Compute-optimal allocation: for a budget C, the model size, tokens, batch, steps and the loss to expect.

Laws to plan with: the published constants (scalinglab.published, each with its source), or a law the user
fitted: a FittedLaw, or its JSON (`scalinglab fit --json`, or a study's report/fits.json). Any fitted law of N
and D plans: the Chinchilla family (tied exponents, a fixed E, the over-training form, the data-constrained form
with fresh tokens, one group of a shared-E law) by the closed form of laws.frontier on its five natural
parameters, any other (Kaplan's eq. 1.5, ...) by minimising the law along 6 N D = C. A fitted law's bootstrap draws are carried
through, so N_opt, D_opt, the loss, B_crit and the steps come with 95% intervals. Also Kaplan's checks: the
overfitting bound D >= k N^(alpha_N/alpha_D) (eq. 4.4), the early-stopping step (eq. 5.7), and the extra compute
of a model x times the optimal size. No torch.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalinglab.errors import ConfigError, DataError, FitError
from scalinglab.laws.forms import fmt_number, get_form
from scalinglab.laws.result import NAN2, Result, _num, _pair, percentile_ci
from scalinglab.published import COMPUTE_RANGES, KAPLAN2020, PF_DAY, PUBLISHED

# ------------------------------------------------------------------------------------------------ units

_UNITS = {"": 1.0, "flop": 1.0, "flops": 1.0, "pf-days": PF_DAY, "pf-day": PF_DAY, "pfdays": PF_DAY,
          "pfday": PF_DAY, "pf_days": PF_DAY, "petaflop-days": PF_DAY, "pf-s": 1e15, "ef-days": PF_DAY * 1e3,
          "zflop": 1e21, "yflop": 1e24}


def parse_compute(text) -> float:
    """'5.76e23', '5.76e23 FLOP', '3e3PF-days', '3e3 pf-days' -> FLOP."""
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z_/-]*)\s*", str(text))
        if not m:
            raise ConfigError(f"compute {text!r}: write a number with an optional unit, e.g. 5.76e23 or 3e3PF-days")
        value, unit = float(m.group(1)), m.group(2).lower()
    if unit not in _UNITS:
        raise ConfigError(f"compute {text!r}: unknown unit {unit!r}; use FLOP or PF-days")
    flop = value * _UNITS[unit]
    if not (flop > 0 and math.isfinite(flop)):
        raise ConfigError(f"compute {text!r}: must be a positive number of FLOP")
    return flop


# ------------------------------------------------------------------------------------------------ laws


# families of forms that are Chinchilla's law in other words (tied exponents, a fixed E, Gadre et al.'s
# over-training variables, Muennighoff et al.'s data-constrained form, one group of a shared-E fit): they plan by
# Chinchilla's closed-form allocation of their five natural parameters
CHINCHILLA_FAMILIES = ("chinchilla", "overtrain", "chinchilla_shared_e")
PLANNABLE_TEXT = ("chinchilla, chinchilla_tied, overtrain, data_constrained, chinchilla_shared_e (one group), "
                  "kaplan_nd")


def _family(form) -> str | None:
    return getattr(form, "family", None)


def _plannable(form) -> bool:
    return form.response == "L" and (set(form.inputs) == {"N", "D"} or _family(form) in CHINCHILLA_FAMILIES)


def _not_plannable(form) -> FitError:
    return FitError(f"planning needs a law of model size N and tokens D with a compute-optimal allocation "
                    f"({PLANNABLE_TEXT}); got {form.name}, a law of {', '.join(form.inputs)}")


def chinchilla_terms(law, group: str | None = None):
    """A fitted law of the chinchilla family in Chinchilla's five natural parameters E, A, B, alpha, beta:
    (params, draws, notes), draws a dict of arrays (one per bootstrap draw; None without draws). `group` picks
    one group of a chinchilla_shared_e law (needed when it has several)."""
    form, params = law.form, dict(law.params)
    samples = law.samples if law.samples is not None and len(law.samples) >= 2 else None
    draws = None if samples is None else dict(zip(form.param_names, samples.T))
    notes = []
    family = _family(form)
    if family == "overtrain":
        params = form.chinchilla_params(params)
        draws = None if draws is None else form.chinchilla_params(draws)
        notes.append("the over-training law L(C, M) planned as the Chinchilla law it equals (alpha = beta = 2 eta)")
    elif family == "chinchilla_shared_e":
        groups = list(form.groups)
        if group is None and len(groups) == 1:
            group = groups[0]
        if group is None or str(group) not in groups:
            what = "name one" if group is None else f"it has no group {group!r}; name one"
            raise FitError(f"a chinchilla_shared_e law holds one law per group ({', '.join(groups)}): {what} "
                           "with --law-key GROUP")
        params = form.group_params(params, group)
        draws = None if draws is None else form.group_params(draws, group)
        notes.append(f"group {group} of a law with E shared by {len(groups)} groups")
    elif form.name == "data_constrained":
        notes.append("the data-constrained law planned with fresh tokens (no repetition), where it is Chinchilla's: "
                     "with fewer unique tokens than D_opt the loss will be higher")
    elif family != "chinchilla":
        raise _not_plannable(form)
    keys = ("E", "A", "B", "alpha", "beta")
    return ({k: float(params[k]) for k in keys}, None if draws is None else {k: np.asarray(draws[k], float)
                                                                            for k in keys}, notes)


def load_law(source, key: str | None = None):
    """A fitted law to plan with, from a FittedLaw, its to_dict(), or a JSON file holding either one law
    (`scalinglab fit --json`) or a study's fits (report/fits.json: name -> {"law": ...}). In a file of several
    laws `key` names one; without it the one law of N and D is taken (a Chinchilla-form law first)."""
    from scalinglab.laws.fit import FittedLaw

    if isinstance(source, FittedLaw):
        return source
    where = "fitted law"
    if isinstance(source, (str, os.PathLike)):
        where = str(source)
        try:
            source = json.loads(Path(source).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{where}: cannot read a fitted law ({type(exc).__name__}: {exc}); write one with "
                            "`scalinglab fit ... --json`") from None
    if not isinstance(source, dict):
        raise DataError(f"{where}: not a fitted law (expected a JSON object from `scalinglab fit --json` or a "
                        "study's fits.json)")
    if "form" in source:
        laws = {"": source}
        if source.get("form") == "chinchilla_shared_e":
            key = None  # the key names one of its groups: plan_compute picks it (chinchilla_terms)
    else:  # a study's fits: name -> {"fingerprint", "law"}
        laws = {k: v["law"] for k, v in source.items() if isinstance(v, dict) and isinstance(v.get("law"), dict)}
        if not laws:
            raise DataError(f"{where}: holds no fitted law (expected the output of `scalinglab fit --json` or a "
                            "study's fits.json)")
    if key is not None:
        if key not in laws:
            raise DataError(f"{where}: no law {key!r}; it holds {', '.join(map(repr, laws)) or 'one unnamed law'}")
        chosen = {key: laws[key]}
    else:
        chosen = laws
    fitted = {}
    for k, v in chosen.items():
        try:
            fitted[k] = FittedLaw.from_dict(v)
        except FitError as exc:  # one law: its error; a study's fits: the laws this version can read
            if len(chosen) == 1:
                raise DataError(f"{where}: {exc}") from None
    if key is not None or "form" in source:
        return next(iter(fitted.values()))
    usable = {k: v for k, v in fitted.items() if _plannable(v.form) and v.converged}
    if not usable:
        raise DataError(f"{where}: no converged law of N and D to plan with (it holds {', '.join(fitted)}); fit "
                        "one with `scalinglab fit --form chinchilla --json`, or run a study with data subsets")
    best = ([k for k, v in usable.items() if v.form.name == "chinchilla"] or
            [k for k, v in usable.items() if _family(v.form) == "chinchilla"] or list(usable))
    if len(best) != 1:
        raise DataError(f"{where}: {len(best)} laws of N and D ({', '.join(best)}); name one with --law-key")
    return fitted[best[0]]


def optimal_allocation(form, params: dict, C: float):
    """N_opt, D_opt and the loss there at compute C (FLOP = 6 N D), for each row of `params` (name -> array of K
    values, or floats). The Chinchilla form by its closed form (laws.frontier.chinchilla_optimal); any other law
    of N and D by minimising it along 6 N D = C in log N. NaN where the law has no minimum in N_opt within 1e7x
    of sqrt(C/6) either way."""
    from scalinglab.laws.frontier import chinchilla_optimal

    rows = {k: np.atleast_1d(np.asarray(v, float)) for k, v in params.items()}
    K = len(next(iter(rows.values())))
    if form.name == "chinchilla":
        t = chinchilla_optimal(rows, np.full(K, float(C)))
        return t["N_opt"].to_numpy(), t["D_opt"].to_numpy(), t["loss"].to_numpy()
    if not _plannable(form) or set(form.inputs) != {"N", "D"}:
        raise _not_plannable(form)
    Z = form.to_internal(np.column_stack([rows[p] for p in form.param_names]))
    lnN = 0.5 * math.log(C / 6.0) + np.linspace(-7, 7, 1401) * math.log(10)
    N = np.exp(lnN)
    lp = form.log_predict(Z, {"N": N, "D": C / (6.0 * N)})
    lp = np.where(np.isfinite(lp), lp, np.inf)
    i = np.argmin(lp, axis=1)
    inside = (i > 0) & (i < N.size - 1) & np.isfinite(lp[np.arange(K), i])
    j = np.clip(i, 1, N.size - 2)
    y0, y1, y2 = (lp[np.arange(K), j + d] for d in (-1, 0, 1))
    curv = y0 - 2 * y1 + y2
    shift = np.where(curv > 0, 0.5 * (y0 - y2) / np.where(curv > 0, curv, 1.0), 0.0)  # vertex of the parabola
    x = lnN[j] + shift * (lnN[1] - lnN[0])
    n_opt = np.where(inside, np.exp(x), np.nan)
    d_opt = C / (6.0 * n_opt)
    ok = np.isfinite(n_opt)
    loss = np.full(K, np.nan)
    if ok.any():
        loss[ok] = np.exp(form.log_predict(Z[ok], {"N": n_opt[ok], "D": d_opt[ok]}).diagonal())
    return n_opt, d_opt, loss


# ------------------------------------------------------------------------------------------------ pieces


def size_penalty(form, params: dict, C: float, x: float) -> float:
    """Compute a model x times the optimal size needs to reach the optimal loss, over the optimal compute.
    inf when the model is too small to ever reach it."""
    from scipy.optimize import brentq

    N, D, L = (float(v[0]) for v in optimal_allocation(form, params, C))
    if not np.isfinite(L):
        return math.nan

    def gap(log_d):
        return float(form.predict(params, {"N": np.array([x * N]), "D": np.array([math.exp(log_d)])})[0]) - L

    lo, hi = math.log(D) - 60.0, math.log(D) + 60.0
    if gap(hi) > 0:  # even unlimited data leaves the smaller model above the optimal loss
        return math.inf
    if gap(lo) < 0:
        return math.nan
    D2 = math.exp(brentq(gap, lo, hi, xtol=1e-10))
    return (x * N * D2) / (N * D)


def kaplan_size_penalty(x: float, alpha_N: float = KAPLAN2020["ns_alpha_N"],
                        alpha_S: float = KAPLAN2020["alpha_S"]) -> float:
    """Extra compute of an x-times-optimal model under L(N, S_min) (eq. 1.6) at a fixed loss: C_min ~ N S_min
    with S_min = S_c (L - (N_c/N)^alpha_N)^(-1/alpha_S). With u = (N_c/N)^alpha_N / L, N S_min ~
    u^(-1/alpha_N) (1-u)^(-1/alpha_S), minimal at u* = alpha_S/(alpha_N+alpha_S); the ratio does not depend on L."""
    u0 = alpha_S / (alpha_N + alpha_S)
    u = u0 * x ** (-alpha_N)
    if u >= 1:
        return math.inf
    return x * ((1 - u0) / (1 - u)) ** (1.0 / alpha_S)


def overfit_threshold(N_c: float, D_c: float, alpha_N: float, alpha_D: float, tol: float = 0.02):
    """D >= k N^(alpha_N/alpha_D) keeps the overfitting penalty of eq. 4.3 below `tol` (relative loss):
    (1 + (N/N_c)^(alpha_N/alpha_D) D_c/D)^alpha_D - 1 <= tol. Returns (k, exponent); Kaplan's eq. 4.4 is
    k ~ 5e3, exponent 0.74."""
    ex = alpha_N / alpha_D
    k = D_c * N_c ** (-ex) / ((1.0 + tol) ** (1.0 / alpha_D) - 1.0)
    return k, ex


def kaplan_nd_loss(N, D, N_c=KAPLAN2020["nd_N_c"], D_c=KAPLAN2020["nd_D_c"], alpha_N=KAPLAN2020["nd_alpha_N"],
                   alpha_D=KAPLAN2020["nd_alpha_D"]):
    return ((N_c / N) ** (alpha_N / alpha_D) + D_c / D) ** alpha_D


def early_stopping_step(N: float, D: float) -> float:
    """Kaplan eq. 5.7: S_stop(N, D) >~ S_c / [L(N, D) - L(N, inf)]^(1/alpha_S), the step at which a run on D
    tokens starts to overfit (Kaplan's published constants)."""
    k = KAPLAN2020
    gap = kaplan_nd_loss(N, D) - (k["nd_N_c"] / N) ** k["nd_alpha_N"]
    return k["S_c"] / gap ** (1.0 / k["alpha_S"]) if gap > 0 else math.inf


def bcrit_kaplan(L):
    return KAPLAN2020["B_star"] / np.asarray(L, float) ** (1.0 / KAPLAN2020["alpha_B"])


# ------------------------------------------------------------------------------------------------ the plan

PLAN_QUANTITIES = ("N_opt", "D_opt", "B_crit", "steps", "loss")


@dataclass
class Plan(Result):
    """A compute-optimal plan for one budget, in the result protocol: `params` holds N_opt (parameters), D_opt
    (tokens), B_crit (tokens per step), steps and loss (nats per token), `ci` their 95% intervals from the
    law's bootstrap draws (NaN for published constants, which carry no covariance)."""

    compute: float  # FLOP
    law: str  # the law planned with, as it prints
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    converged: bool
    message: str
    n_points: int = 0  # points the law was fitted on (0: published constants)
    n_resamples: int = 0  # the law's bootstrap draws carried through
    n_resamples_ok: int = 0  # draws with a finite optimum
    overfitting: dict = field(default_factory=dict)
    early_stopping_step: float = float("nan")
    size_penalty: dict = field(default_factory=dict)  # x -> compute ratio
    notes: list = field(default_factory=list)
    # the compute range the law was measured over and how far this budget lies outside it: {"compute_range":
    # [lo, hi] or None (unknown), "source", "factor" (1 inside; C/hi above; lo/C below), "outside": bool}
    extrapolation: dict = field(default_factory=dict)
    _predictor: object = field(default=None, repr=False, compare=False)  # compute -> loss at the optimum

    def __getattr__(self, name):  # plan.N_opt, plan.loss, ...
        if name in PLAN_QUANTITIES and "params" in self.__dict__:
            return self.params[name]
        raise AttributeError(name)

    def predict(self, compute) -> np.ndarray | float:
        """The loss to expect at the compute-optimal allocation of each budget (FLOP, or strings with units): a
        float for one budget, an array for a list of them."""
        if self._predictor is None:
            raise FitError("this plan was read back from JSON without its law; plan again to predict")
        C = [parse_compute(c) for c in np.atleast_1d(np.asarray(compute, dtype=object))]
        out = np.array([self._predictor(c) for c in C], dtype=float)
        return float(out[0]) if np.ndim(np.asarray(compute, dtype=object)) == 0 else out

    def __str__(self):
        return (f"plan for C = {fmt_number(self.compute)} FLOP ({fmt_number(self.compute / PF_DAY)} PF-days) "
                f"under {self.law}")

    def summary(self) -> str:
        return "\n".join([super().summary()] + self.checks())

    def checks(self) -> list[str]:
        """Kaplan's checks of the plan and the notes, one line each (below the numbers in summary())."""
        lines = []
        o = self.overfitting
        if o:
            lines.append(f"  overfitting: D >= {fmt_number(o['k'])} N^{fmt_number(o['exponent'])} = "
                         f"{fmt_number(o['D_needed'])} tokens -> {'ok' if o['D_ok'] else 'TOO FEW TOKENS'} "
                         f"({o['law']})")
        lines.append(f"  early-stopping step (Kaplan eq. 5.7): {fmt_number(self.early_stopping_step)}")
        for x, r in self.size_penalty.items():
            lines.append(f"  a model {x:g}x the optimal size needs {fmt_number(r)}x the compute for the same loss")
        warning = self.extrapolation.get("warning")
        return lines + [f"  {'warning' if n == warning else 'note'}: {n}" for n in self.notes]

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(compute_flop=self.compute, compute_pf_days=self.compute / PF_DAY, law=self.law,
                 overfitting=self.overfitting, early_stopping_step=_num(self.early_stopping_step),
                 size_penalty={str(k): _num(v) for k, v in self.size_penalty.items()}, notes=list(self.notes),
                 extrapolation=self.extrapolation)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        nan = float("nan")
        return cls(compute=float(d["compute_flop"]), law=d.get("law", ""),
                   params={k: nan if v is None else float(v) for k, v in d["params"].items()},
                   ci={k: _pair(v) for k, v in d.get("ci", {}).items()},
                   se={k: nan if v is None else float(v) for k, v in d.get("se", {}).items()},
                   converged=bool(d.get("converged", False)), message=d.get("message", ""),
                   n_points=int(d.get("n_points", 0)), n_resamples=int(d.get("n_resamples", 0)),
                   n_resamples_ok=int(d.get("n_resamples_ok", 0)), overfitting=d.get("overfitting", {}),
                   early_stopping_step=nan if d.get("early_stopping_step") is None else d["early_stopping_step"],
                   size_penalty={float(k): (math.inf if v is None else v) for k, v in
                                 d.get("size_penalty", {}).items()},
                   notes=list(d.get("notes", [])), extrapolation=d.get("extrapolation", {}))


def _kaplan_frontier(C: float):
    """Kaplan's Table 6 compute-efficient frontier (C read as C_min in PF-days): N, D, loss, steps."""
    k = KAPLAN2020
    cm = C / PF_DAY
    return (k["N_e"] * cm ** k["p_N"], k["D_e"] * cm ** k["p_D"], (k["C_c_min"] / cm) ** k["alpha_C_min"],
            k["S_e"] * cm ** k["p_S"])


def plan_compute(compute, law="chinchilla2022", *, law_key: str | None = None, bcrit_law=None,
                 size_factors=(0.5, 0.75, 1.5, 2.0), overfit_tol: float = 0.02) -> Plan:
    """Plan a run of `compute` FLOP (or a string with units) under a published law name, a FittedLaw, its
    to_dict(), or a fitted-law JSON file (see load_law; `law_key` picks one law of a study's fits.json)."""
    C = parse_compute(compute)
    if bcrit_law is not None:
        bcrit_law = load_law(bcrit_law)
        if bcrit_law.form.name != "bcrit":
            raise FitError(f"the critical-batch law must be a B_crit(L) fit (`scalinglab fit --form bcrit`), got "
                           f"{bcrit_law.form.name}")
    notes = []
    form = None
    n_points = 0
    span = None  # (lowest, highest, where from) of the compute the law was measured over
    if isinstance(law, str) and law in PUBLISHED:
        kind, params, source = PUBLISHED[law]
        span = COMPUTE_RANGES.get(law)
        label = law
        notes.append(f"constants: {source}")
        draws_params = None
        if kind == "chinchilla":
            form = get_form("chinchilla")
    elif isinstance(law, str) and not (law.endswith(".json") or Path(law).exists()):
        raise ConfigError(f"unknown law {law!r}; choose one of {', '.join(PUBLISHED)}, or give a fitted-law JSON "
                          "file (`scalinglab fit --json`)")
    else:
        fitted = load_law(law, law_key)
        if not fitted.converged:
            raise FitError(f"the fitted law did not converge ({fitted.message}); refit before planning with it")
        kind, form, params = "fitted", fitted.form, fitted.params
        if "C" in fitted.ranges:
            span = (*fitted.ranges["C"], f"the {fitted.n_points} points it was fitted on (6 N D)")
        if not _plannable(form):
            raise _not_plannable(form)
        label, n_points = "fitted: " + fitted.text(), fitted.n_points
        if _family(form) in CHINCHILLA_FAMILIES:  # Chinchilla's closed form, on its five parameters

            params, draws_params, more = chinchilla_terms(fitted, law_key)
            notes += more
            shared = _family(form) == "chinchilla_shared_e"
            form = get_form("chinchilla")
            if shared:  # the chosen group's law
                label = "fitted: " + form.text(params)
        else:
            samples = fitted.samples if fitted.samples is not None else np.empty((0, form.n_params))
            draws_params = dict(zip(form.param_names, samples.T)) if len(samples) >= 2 else None

    ci, se = {}, {}
    n_res = n_ok = 0
    if kind == "kaplan":
        N, D, loss, steps = _kaplan_frontier(C)
        B_crit = float(bcrit_kaplan(loss))
        notes.append("Kaplan's frontier treats C as C_min (PF-days) and N as non-embedding parameters; steps are "
                     "S_min of Table 6; published constants carry no covariance, so no intervals")
        penalty = {x: kaplan_size_penalty(x) for x in size_factors}

        def predictor(c):
            return _kaplan_frontier(c)[2]
    else:
        N, D, loss = (float(v[0]) for v in optimal_allocation(form, params, C))
        if not np.isfinite(N):
            raise FitError(f"{label}: no compute-optimal size at C = {C:.3g} FLOP (the law keeps falling with N "
                           "or with D along 6 N D = C); it cannot be planned with")

        def bcrit_at(L):
            if bcrit_law is not None:
                from scalinglab.laws.batch import bcrit_of

                return np.asarray(bcrit_of(bcrit_law, L), float)
            return bcrit_kaplan(L)

        B_crit = float(bcrit_at(loss))
        if bcrit_law is None:
            notes.append("B_crit from Kaplan's B*/L^(1/alpha_B) (WebText2 losses): a rough transfer; fit your own "
                         "with a batch-size sweep")
        steps = D / B_crit
        penalty = {x: size_penalty(form, params, C, x) for x in size_factors}
        if draws_params is not None:
            dN, dD, dL = optimal_allocation(form, draws_params, C)
            dB = bcrit_at(dL)
            draws = np.column_stack([dN, dD, dB, dD / dB, dL])
            n_res, n_ok = len(draws), int(np.isfinite(draws).all(axis=1).sum())
            for name, interval, col in zip(PLAN_QUANTITIES, percentile_ci(draws), draws.T):
                ci[name] = interval
                se[name] = float(np.nanstd(col, ddof=1)) if np.isfinite(col).sum() >= 2 else float("nan")
            if n_ok < n_res:
                notes.append(f"{n_res - n_ok} of {n_res} bootstrap draws of the law have no optimum at this "
                             "budget; the intervals use the others")
        elif label == "epoch2024":
            notes.append("Epoch's published standard errors are per parameter, without covariance; intervals "
                         "of derived quantities are not computed")
        if label == "chinchilla2022":
            notes.append("Chinchilla's N counts all parameters, embeddings included")

        def predictor(c):
            return float(optimal_allocation(form, params, c)[2][0])

    values = {"N_opt": N, "D_opt": D, "B_crit": B_crit, "steps": steps, "loss": loss}
    for name in PLAN_QUANTITIES:
        ci.setdefault(name, NAN2)
        se.setdefault(name, float("nan"))

    if form is not None and form.name == "kaplan_nd":  # the user's own L(N, D) gives the overfitting bound
        p = params
        kk, ex = overfit_threshold(p["N_c"], p["D_c"], p["alpha_N"], p["alpha_D"], overfit_tol)
        source = "Kaplan eq. 4.3 with the fitted L(N, D)"
    else:
        kk, ex = overfit_threshold(KAPLAN2020["nd_N_c"], KAPLAN2020["nd_D_c"], KAPLAN2020["nd_alpha_N"],
                                   KAPLAN2020["nd_alpha_D"], overfit_tol)
        source = "Kaplan eq. 4.3 with the published L(N, D) constants"
    D_need = kk * N ** ex
    over = {"k": kk, "exponent": ex, "tolerance": overfit_tol, "D_needed": D_need, "D_ok": bool(D >= D_need),
            "law": source}
    msg = "published constants" if kind != "fitted" else (
        f"{n_ok}/{n_res} bootstrap draws of the law carried through" if n_res else "the law has no bootstrap "
        "draws: no intervals")
    extrapolation = extrapolation_of(C, span)
    if extrapolation["outside"]:
        lo, hi = extrapolation["compute_range"]
        extrapolation["warning"] = (f"C = {C:.3g} FLOP is outside the compute the law was measured over ({lo:.3g} "
                                    f"to {hi:.3g} FLOP, {span[2]}): {extrapolation['factor']:.3g}x "
                                    f"{'above' if C > hi else 'below'} it, so this plan extrapolates the law that far")
        notes.insert(0, extrapolation["warning"])
    return Plan(compute=C, law=label, params={k: float(v) for k, v in values.items()}, ci=ci, se=se,
                converged=True, message=msg, n_points=n_points, n_resamples=n_res, n_resamples_ok=n_ok,
                overfitting=over, early_stopping_step=float(early_stopping_step(N, D)), size_penalty=penalty,
                notes=notes, extrapolation=extrapolation, _predictor=predictor)


def extrapolation_of(C: float, span) -> dict:
    """How far the budget C lies outside the compute range `span` = (lo, hi, source) of a law (None: unknown)."""
    if span is None:
        return {"compute_range": None, "source": None, "factor": None, "outside": False}
    lo, hi, source = span
    factor = C / hi if C > hi else lo / C if C < lo else 1.0
    return {"compute_range": [float(lo), float(hi)], "source": source, "factor": float(factor),
            "outside": bool(C > hi or C < lo)}
