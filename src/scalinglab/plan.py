"""Compute-optimal allocation: for a budget C, the model size, tokens, batch, steps and the loss to expect.

Laws to plan with: the published constants below (copied from the papers, see each `source`), or a fitted
Chinchilla-form law (from `scalinglab fit --json`, or fitted here on a run store). Also Kaplan's checks:
the overfitting bound D >= k N^(alpha_N/alpha_D) (eq. 4.4), the early-stopping step (eq. 5.7), and the extra
compute of a model x times the optimal size. No torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from scalinglab.published import CHINCHILLA2022, EPOCH2024, KAPLAN2020, PF_DAY, PUBLISHED  # noqa: F401
from scalinglab.errors import ConfigError, FitError

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


# ------------------------------------------------------------------------------------------------ pieces


def chinchilla_point(p: dict, C: float) -> tuple[float, float, float]:
    """N_opt = G (C/6)^a, D_opt = (C/6)^b / G, and the loss there, for L = E + A/N^alpha + B/D^beta."""
    al, be = p["alpha"], p["beta"]
    G = (al * p["A"] / (be * p["B"])) ** (1.0 / (al + be))
    N = G * (C / 6.0) ** (be / (al + be))
    D = (C / 6.0) ** (al / (al + be)) / G
    return N, D, p["E"] + p["A"] / N ** al + p["B"] / D ** be


def chinchilla_size_penalty(p: dict, C: float, x: float) -> float:
    """Compute a model x times the optimal size needs to reach the optimal loss, over the optimal compute.
    inf when the model is too small to ever reach it."""
    N, D, L = chinchilla_point(p, C)
    rest = L - p["E"] - p["A"] / (x * N) ** p["alpha"]
    if rest <= 0:
        return math.inf
    D2 = (p["B"] / rest) ** (1.0 / p["beta"])
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


def bcrit_kaplan(L: float) -> float:
    return KAPLAN2020["B_star"] / L ** (1.0 / KAPLAN2020["alpha_B"])


# ------------------------------------------------------------------------------------------------ the plan


@dataclass
class Plan:
    compute: float  # FLOP
    law: str
    N_opt: float
    D_opt: float
    B_crit: float  # tokens per step
    steps: float
    loss: float
    intervals: dict = field(default_factory=dict)  # name -> (low, high), 95%
    overfitting: dict = field(default_factory=dict)
    early_stopping_step: float = float("nan")
    size_penalty: dict = field(default_factory=dict)  # x -> compute ratio
    notes: list = field(default_factory=list)

    def to_dict(self):
        def num(v):
            return None if v is None or not np.isfinite(v) else float(v)

        return {"compute_flop": self.compute, "compute_pf_days": self.compute / PF_DAY, "law": self.law,
                "N_opt": num(self.N_opt), "D_opt": num(self.D_opt), "B_crit": num(self.B_crit),
                "steps": num(self.steps), "loss": num(self.loss),
                "ci95": {k: [num(a), num(b)] for k, (a, b) in self.intervals.items()},
                "overfitting": self.overfitting, "early_stopping_step": num(self.early_stopping_step),
                "size_penalty": {str(k): num(v) for k, v in self.size_penalty.items()}, "notes": self.notes}


def plan_compute(compute, law="chinchilla2022", *, bcrit_law=None, size_factors=(0.5, 0.75, 1.5, 2.0),
                 overfit_tol: float = 0.02) -> Plan:
    """Plan a run of `compute` FLOP (or a string with units) under a published law name or a FittedLaw."""
    C = parse_compute(compute)
    notes = []
    samples, names = None, None
    if isinstance(law, str):
        if law not in PUBLISHED:
            raise ConfigError(f"unknown law {law!r}; choose one of {', '.join(PUBLISHED)} or give a fitted law")
        kind, params, source = PUBLISHED[law]
        label = law
        notes.append(f"constants: {source}")
    else:
        if law.form.name != "chinchilla":
            raise FitError(f"planning needs a chinchilla-form law (E + A/N^alpha + B/D^beta), got {law.form.name}")
        if not law.converged:
            raise FitError(f"the fitted law did not converge ({law.message}); refit before planning with it")
        kind, params, label = "chinchilla", law.params, "fitted: " + law.text()
        samples, names = law.samples, law.form.param_names

    intervals = {}
    if kind == "kaplan":
        k = KAPLAN2020
        cm = C / PF_DAY
        N, D = k["N_e"] * cm ** k["p_N"], k["D_e"] * cm ** k["p_D"]
        loss = (k["C_c_min"] / cm) ** k["alpha_C_min"]
        B_crit = bcrit_kaplan(loss)
        steps = k["S_e"] * cm ** k["p_S"]
        notes.append("Kaplan's frontier treats C as C_min (PF-days) and N as non-embedding parameters; steps are "
                     "S_min of Table 6; published constants carry no covariance, so no intervals")
        penalty = {x: kaplan_size_penalty(x) for x in size_factors}
    else:
        N, D, loss = chinchilla_point(params, C)
        if bcrit_law is not None:
            from scalinglab.laws.batch import bcrit_of

            B_crit = float(bcrit_of(bcrit_law, loss))
        else:
            B_crit = bcrit_kaplan(loss)
            notes.append("B_crit from Kaplan's B*/L^(1/alpha_B) (WebText2 losses): a rough transfer; fit your own "
                         "with a batch-size sweep")
        steps = D / B_crit
        penalty = {x: chinchilla_size_penalty(params, C, x) for x in size_factors}
        if samples is not None and len(samples) >= 2:
            draws = np.array([chinchilla_point(dict(zip(names, s)), C) for s in samples])
            lo, hi = np.nanpercentile(draws, [2.5, 97.5], axis=0)
            intervals = {"N_opt": (lo[0], hi[0]), "D_opt": (lo[1], hi[1]), "loss": (lo[2], hi[2])}
            if bcrit_law is None:
                bl = [bcrit_kaplan(x) for x in (hi[2], lo[2])]
                intervals["B_crit"] = (min(bl), max(bl))
            intervals["steps"] = (lo[1] / B_crit, hi[1] / B_crit)
        elif label == "epoch2024":
            notes.append("Epoch's published standard errors are per parameter, without covariance; intervals "
                         "of derived quantities are not computed")
        if label == "chinchilla2022":
            notes.append("Chinchilla's N counts all parameters, embeddings included")

    kk, ex = overfit_threshold(KAPLAN2020["nd_N_c"], KAPLAN2020["nd_D_c"], KAPLAN2020["nd_alpha_N"],
                               KAPLAN2020["nd_alpha_D"], overfit_tol)
    D_need = kk * N ** ex
    over = {"k": kk, "exponent": ex, "tolerance": overfit_tol, "D_needed": D_need, "D_ok": bool(D >= D_need),
            "law": "Kaplan eq. 4.3 with the published L(N, D) constants"}
    return Plan(compute=C, law=label, N_opt=float(N), D_opt=float(D), B_crit=float(B_crit), steps=float(steps),
                loss=float(loss), intervals=intervals, overfitting=over,
                early_stopping_step=float(early_stopping_step(N, D)), size_penalty=penalty, notes=notes)


def overfit_threshold_from_law(law, tol: float = 0.02):
    """(k, exponent) from a fitted kaplan_nd law: the fitted k of D >= k N^(alpha_N/alpha_D)."""
    if law.form.name != "kaplan_nd":
        raise FitError(f"the overfitting bound needs a kaplan_nd law, got {law.form.name}")
    p = law.params
    return overfit_threshold(p["N_c"], p["D_c"], p["alpha_N"], p["alpha_D"], tol)
