"""The laws of a study, fitted from its runs the way the paper fits them, each beside the paper's constants.

Every entry is a `LawFit`: the fitted law (or None) and, when it could not be fitted, the reason (too few model
sizes, no data subsets...), so a report and the findings can show what is missing instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.errors import ScalingLabError
from scalinglab.published import KAPLAN2020_LAWS
from scalinglab.analysis.study_data import StudyData

# Kaplan et al. 2020: the constants each law is compared with
PAPER = KAPLAN2020_LAWS


@dataclass
class PowerFit:
    """y = k x^a fitted in log-log space, with a bootstrap over runs: for N_opt(C_min), where the exponent may
    have either sign and the law is a plain regression rather than a loss law."""

    name: str
    exponent: float
    scale: float
    ci: dict[str, tuple[float, float]]
    x: np.ndarray
    y: np.ndarray
    converged: bool = True

    @property
    def params(self) -> dict[str, float]:
        return {"exponent": self.exponent, "k": self.scale}

    def predict(self, x) -> np.ndarray:
        return self.scale * np.asarray(x, float) ** self.exponent

    def text(self) -> str:
        return f"{self.name} = {self.scale:.3g} * C^{self.exponent:.3g}"


@dataclass
class LawFit:
    key: str  # "L(N)", ...
    title: str
    law: object | None = None  # a FittedLaw (or PowerFit); None when not fitted
    note: str = ""  # why it was not fitted, or a caveat about the data used
    data: pd.DataFrame = field(default_factory=pd.DataFrame)  # the points fitted

    @property
    def ok(self) -> bool:
        return self.law is not None and bool(getattr(self.law, "converged", False))


def power_fit(x, y, groups=None, n_resamples: int = 400, seed: int = 0, name: str = "y") -> PowerFit:
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    a, b = np.polyfit(lx, ly, 1)
    groups = np.arange(len(lx)) if groups is None else pd.factorize(np.asarray(groups))[0]
    rng = np.random.default_rng(seed)
    ug = np.unique(groups)
    slopes = []
    for _ in range(n_resamples):
        pick = rng.choice(ug, size=len(ug), replace=True)
        idx = np.concatenate([np.flatnonzero(groups == g) for g in pick])
        if np.unique(lx[idx]).size >= 2:
            slopes.append(np.polyfit(lx[idx], ly[idx], 1)[0])
    lo, hi = np.percentile(slopes, [2.5, 97.5]) if len(slopes) > 10 else (np.nan, np.nan)
    return PowerFit(name, float(a), float(np.exp(b)), {"exponent": (float(lo), float(hi))}, np.exp(lx), np.exp(ly))


def _fit(df: pd.DataFrame, form: str, n_resamples: int, **kw):
    from scalinglab.laws import fit_law

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_law(df, form, n_resamples=n_resamples, **kw)


# ------------------------------------------------------------------------------------------------ frontier


def compute_frontier(sd: StudyData, n_grid: int = 40, bcrit=None) -> pd.DataFrame:
    """Kaplan Fig. 1 left / Chinchilla approach 1: the lower envelope of all learning curves of the full-data
    runs in (C, test loss), on a log grid of C (scalinglab.laws.frontier.envelope). Each point keeps the run
    (and its N) that reached it. With `bcrit` (a B_crit(L) law), C is C_min."""
    from scalinglab.laws.frontier import envelope

    cur = sd.curves
    empty = pd.DataFrame(columns=["C", "loss", "run_id", "N"])
    if cur.empty:
        return empty
    cur = cur[~cur["repeats"].astype(bool)]
    cur = cur[(cur["flop"] > 0) & (cur["step"] >= 0.1 * cur["S_total"])]  # past warm-up's plateau
    if cur.empty or cur["run_id"].nunique() < 2:
        return empty
    if bcrit is not None:
        cur = _to_critical_batch(cur, bcrit)
    fr = envelope(cur.rename(columns={"test_loss": "loss"}), n_grid=n_grid, n_resamples=0)
    return fr.table.rename(columns={"run": "run_id"})[["C", "loss", "run_id", "N"]]


# ------------------------------------------------------------------------------------------------ all laws


def _fingerprint(df: pd.DataFrame, form: str, n_resamples: int) -> str:
    blob = pd.util.hash_pandas_object(df.reset_index(drop=True), index=False).to_numpy().tobytes()
    return hashlib.sha256(blob + f"{form}/{n_resamples}".encode()).hexdigest()[:16]


def fit_study(sd: StudyData, n_resamples: int = 300, cache: str | Path | None = None) -> dict[str, LawFit]:
    """Every law the study's runs allow, by name. With `cache` (a JSON file), a law whose points have not
    changed since it was last fitted is read back instead of refitted, and new fits are written to it."""
    from scalinglab.laws.fit import FittedLaw

    out: dict[str, LawFit] = {}
    cached: dict = {}
    if cache is not None and Path(cache).is_file():
        try:
            cached = json.loads(Path(cache).read_text())
        except (OSError, ValueError):
            cached = {}
    fresh: dict = {}

    def attempt(key, title, df, form, need, what, **kw):
        if len(df) < need:
            out[key] = LawFit(key, title, note=f"not fitted: {len(df)} {what}, need at least {need}", data=df)
            return
        fp = _fingerprint(df, form, n_resamples)
        if cached.get(key, {}).get("fingerprint") == fp:
            law = FittedLaw.from_dict(cached[key]["law"])
        else:
            try:
                law = _fit(df, form, n_resamples, **kw)
            except ScalingLabError as exc:
                out[key] = LawFit(key, title, note=f"not fitted: {exc}", data=df)
                return
        fresh[key] = {"fingerprint": fp, "law": law.to_dict(max_samples=400)}
        note = "" if law.converged else f"the fit did not converge ({law.message})"
        out[key] = LawFit(key, title, law=law, note=note, data=df)

    # L(N): the best run at each N of the size sweep
    byn = sd.main_by_n()
    df = pd.DataFrame({"N": byn.get("N", []), "loss": byn.get("loss", []), "group": byn.get("run_id", [])})
    attempt("L(N)", "L(N): loss against non-embedding parameters", df, "kaplan_n", 3, "model sizes")

    # L(D): early-stopped loss of the largest model trained on each data subset
    sub = sd.subsets
    if not sub.empty:
        big = sub[sub["N"] == sub["N"].max()]
        big = big.loc[big.groupby("d_unique")["best_loss"].idxmin()]
        df = pd.DataFrame({"D": big["d_unique"].astype(float), "loss": big["best_loss"], "group": big["run_id"]})
    else:
        df = pd.DataFrame(columns=["D", "loss", "group"])
    attempt("L(D)", "L(D): early-stopped loss against data-subset size", df, "kaplan_d", 3, "data subsets")

    # L(N, D): data-limited runs at D = D_unique, with the full-data runs at D = their tokens seen
    rr = pd.concat([sd.subsets, sd.main]) if not sd.subsets.empty else pd.DataFrame()
    if not rr.empty:
        dd = np.where(rr["repeats"], rr["d_unique"].astype(float), rr["D"].astype(float))
        df = pd.DataFrame({"N": rr["N"].astype(float), "D": dd, "loss": rr["best_loss"], "group": rr["run_id"]})
    else:
        df = pd.DataFrame(columns=["N", "D", "loss", "group"])
    attempt("L(N,D)", "L(N, D): loss against model size and data (eq. 1.5)", df, "kaplan_nd", 6,
            "runs (sizes x data subsets)")

    # B_crit(L): measured directly from a batch-size sweep where the study has one (Kaplan section 5), with the
    # noise scale read at the same losses beside it; else from the gradient noise scale alone
    noise = noise_scale_points(sd)
    sweep = batch_sweep_bcrit(sd, n_resamples)
    if sweep is not None:
        note = (f"from the batch-size sweep at N = {sweep.N:,} ({len(sweep.batch_sizes)} batch sizes, "
                f"{len(sweep.table)} target losses)")
        data = sweep.table.rename(columns={"target": "L"})
        out["B_crit(L)"] = LawFit("B_crit(L)", "B_crit(L): critical batch against loss", law=sweep.law, note=note,
                                  data=data)
    else:
        attempt("B_crit(L)", "B_crit(L): critical batch against loss", noise, "bcrit", 4, "noise-scale points",
                loss="B_crit", l="L")
        if "B_crit(L)" in out:
            out["B_crit(L)"].note = (out["B_crit(L)"].note + "; " if out["B_crit(L)"].note else "") + \
                "from the gradient noise scale (no batch-size sweep in this study)"
    # Kaplan section 5: with a measured B_crit(L), steps and compute are corrected to what each run would have
    # needed at the critical batch, S_min = S/(1 + B_crit/B) and C_min = C/(1 + B/B_crit), before L(N, S_min)
    # and L(C_min) are fitted; the uncorrected exponents stay in the notes for comparison
    bcrit = critical_batch_law(out)

    def add_note(key: str, text: str) -> None:
        if key in out:
            out[key].note = (out[key].note + "; " if out[key].note else "") + text

    def uncorrected(df, form, exponent) -> str:
        try:
            return f"{_fit(df, form, 0).params[exponent]:.3g}"
        except ScalingLabError:
            return "not fitted"

    # L(N, S): learning curves of the size sweep after warm-up
    df = learning_curve_points(sd, bcrit=bcrit)
    attempt("L(N,S)", "L(N, S): learning curves against steps (eq. 1.6)", df, "kaplan_ns", 8, "curve points")
    if bcrit is not None and len(df) >= 8:
        add_note("L(N,S)", "S_min corrected with the sweep's B_crit(L); uncorrected alpha_S = "
                 + uncorrected(learning_curve_points(sd), "kaplan_ns", "alpha_S"))

    # L(C_min): the compute frontier (lower envelope of the learning curves)
    fr = compute_frontier(sd, bcrit=bcrit)
    df = pd.DataFrame({"C": fr["C"], "loss": fr["loss"], "group": fr["run_id"]})
    attempt("L(C_min)", "L(C): compute-efficient frontier", df, "kaplan_cmin", 4, "frontier points")
    if bcrit is None:
        add_note("L(C_min)", "frontier at the batch sizes trained (no C_min batch correction)")
    elif len(df) >= 4:
        raw = compute_frontier(sd)
        add_note("L(C_min)", "C_min corrected with the sweep's B_crit(L); uncorrected alpha_C = " + uncorrected(
            pd.DataFrame({"C": raw["C"], "loss": raw["loss"], "group": raw["run_id"]}), "kaplan_cmin",
            "alpha_C_min"))
    if len(fr) >= 4 and fr["N"].nunique() >= 2:
        pf = power_fit(fr["C"], fr["N"], groups=fr["run_id"], name="N_opt")
        out["N_opt(C)"] = LawFit("N_opt(C)", "N_opt(C): the model size on the frontier", law=pf,
                                 data=fr.rename(columns={"loss": "L"}))
    else:
        out["N_opt(C)"] = LawFit("N_opt(C)", "N_opt(C)", note=f"not fitted: the frontier has "
                                 f"{fr['N'].nunique() if len(fr) else 0} model size(s), need at least 2")

    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(cache) + ".tmp")
        tmp.write_text(json.dumps(fresh, indent=1))
        tmp.replace(cache)
    return out


def critical_batch_law(fits: dict):
    """The B_crit(L) law to correct runs with: only one measured from a batch-size sweep that converged (the
    noise scale alone is too noisy to correct with)."""
    lf = fits.get("B_crit(L)")
    if lf is None or lf.law is None or not lf.law.converged or "B_noise" not in lf.data:
        return None
    return lf.law


def _to_critical_batch(c: pd.DataFrame, bcrit) -> pd.DataFrame:
    """Curve points with step -> S_min and flop -> C_min at the critical batch of their loss (eqs. 5.4, 5.5)."""
    from scalinglab.laws.batch import correct_to_critical_batch

    fixed = correct_to_critical_batch(c, bcrit, loss="test_loss", step="step", flop="flop", batch="B")
    return fixed.assign(step=fixed["S_min"], flop=fixed["C_min"])


def learning_curve_points(sd: StudyData, upto_frac: float = 1.0, bcrit=None) -> pd.DataFrame:
    """Test-loss points of the size sweep's curves past warm-up (5% of steps) and up to a fraction of S; with
    `bcrit` (a B_crit(L) law), S is S_min."""
    cur = sd.curves
    main_ids = set(sd.main["run_id"])
    if cur.empty or not main_ids:
        return pd.DataFrame(columns=["N", "S", "loss", "group"])
    c = cur[cur["run_id"].isin(main_ids)]
    c = c[(c["step"] > 0.05 * c["S_total"]) & (c["step"] <= upto_frac * c["S_total"] + 1e-9)]
    if bcrit is not None and len(c):
        c = _to_critical_batch(c, bcrit)
    return pd.DataFrame({"N": c["N"].astype(float), "S": c["step"].astype(float), "loss": c["test_loss"],
                         "group": c["run_id"]}).reset_index(drop=True)


def batch_sweep_bcrit(sd: StudyData, n_resamples: int):
    """The batch-size sweep with the most target losses (scalinglab.analysis.critical_batch), or None without one."""
    from scalinglab.analysis.critical_batch import analyze_batch_sweep

    if sd.curves.empty or "B" not in sd.all_runs:
        return None
    try:
        sweeps = analyze_batch_sweep(sd.all_runs, sd.curves, n_resamples=max(n_resamples, 200))
    except ScalingLabError:
        return None
    sweeps = [r for r in sweeps if r.law is not None]
    return max(sweeps, key=lambda r: (len(r.table), r.N)) if sweeps else None


def noise_scale_points(sd: StudyData) -> pd.DataFrame:
    """(loss, B_simple) at each evaluation of runs that measured the noise scale, past the first 20% of steps
    (the estimate's moving averages need time to settle)."""
    cur = sd.curves
    if cur.empty or "b_simple" not in cur:
        return pd.DataFrame(columns=["L", "B_crit", "group"])
    c = cur[np.isfinite(pd.to_numeric(cur["b_simple"], errors="coerce"))]
    c = c[(c["b_simple"] > 0) & (c["step"] > 0.2 * c["S_total"])]
    return pd.DataFrame({"L": c["test_loss"].astype(float), "B_crit": c["b_simple"].astype(float),
                         "group": c["run_id"]}).reset_index(drop=True)
