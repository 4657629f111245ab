"""One check per finding of Kaplan et al. 2020: what the paper reported, what this study measured, and whether
they agree.

Each check reads whatever runs the store holds and says 'not measured' (with what is missing) when the runs it
needs are absent; it never fails for lack of data. Verdicts are 'yes', 'partial' (the qualitative trend holds
but a number differs from the paper's beyond its interval) or 'no', with the reason. The paper's numbers come
from much larger models and data (1e3 - 1e9 parameters, 2.3e10 tokens): at small scale the exponents are
expected to differ, and the qualitative statements are what the checks test first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalinglab.analysis.study_laws import PAPER, LawFit, fit_study, learning_curve_points, power_fit
from scalinglab.analysis.study_data import StudyData

NOT_MEASURED = "not measured"


@dataclass
class Finding:
    number: int
    finding: str
    paper: str
    measured: str = ""
    agrees: str = NOT_MEASURED  # yes | partial | no | not measured
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _ci(lo, hi, digits=3) -> str:
    if lo is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "[no interval]"
    return f"[{lo:.{digits}g}, {hi:.{digits}g}]"


def _boot(values_fn, groups: np.ndarray, n: int = 400, seed: int = 0):
    """95% bootstrap interval of a statistic of a set of runs, resampling the runs."""
    rng = np.random.default_rng(seed)
    ug = np.unique(groups)
    stats = []
    for _ in range(n):
        pick = rng.choice(ug, size=len(ug), replace=True)
        v = values_fn(pick)
        if v is not None and np.isfinite(v):
            stats.append(v)
    if len(stats) < 10:
        return np.nan, np.nan
    return tuple(np.percentile(stats, [2.5, 97.5]))


# ------------------------------------------------------------------------------------------------ 1 shape


def check_shape(sd: StudyData, fits) -> Finding:
    f = Finding(1, "At fixed N, loss depends only weakly on shape (aspect ratio, heads, d_ff ratio)",
                "loss within a few percent over aspect ratios 10-200 (a 40x range: ~3%), heads and d_ff ratio "
                "(Fig. 5)")
    groups = sd.shape_groups()
    if not groups:
        f.reason = "no group of >= 3 shapes at about the same N"
        return f
    parts, worst_in = [], 0.0
    for g in groups:
        loss = g["loss"].to_numpy(float)
        rel = loss / loss.min() - 1
        ar = g["aspect_ratio"].to_numpy(float)
        # Kaplan's claim is about a wide middle range of shapes: take aspect ratios within 40x of the best one
        best_ar = ar[np.argmin(loss)]
        wide = (ar >= best_ar / 40 ** 0.5) & (ar <= best_ar * 40 ** 0.5)
        spread = float(rel[wide].max())
        worst_in = max(worst_in, spread)
        parts.append(f"N~{g['N'].median():.3g}: {len(g)} shapes (aspect {ar.min():.3g}-{ar.max():.3g}), loss "
                     f"+{100 * spread:.1f}% over the best (all shapes: +{100 * rel.max():.1f}%)")
    f.measured = "; ".join(parts)
    if worst_in <= 0.05:
        f.agrees, f.reason = "yes", ("the loss varies by at most 5% across shapes at fixed N within a 40x range "
                                     "of aspect ratios around the best (the paper's range)")
    elif worst_in <= 0.10:
        f.agrees, f.reason = "partial", "the loss varies by 5-10% across shapes: weak, but more than the paper's"
    else:
        f.agrees, f.reason = "no", f"the loss varies by {100 * worst_in:.0f}% across shapes at fixed N"
    return f


# ------------------------------------------------------------------------------------------------ 2 embedding


def _rms_loglog(x, y) -> float:
    lx, ly = np.log(x), np.log(y)
    if np.unique(lx).size < 2:
        return np.nan
    a, b = np.polyfit(lx, ly, 1)
    return float(np.sqrt(np.mean((ly - (a * lx + b)) ** 2)))


def check_embedding(sd: StudyData, fits) -> Finding:
    f = Finding(2, "Against total parameters the trends split by depth; against N (non-embedding) they collapse",
                "one trend in N for all depths (>= 2 layers), separate trends in total parameters (Fig. 6)")
    m = sd.full_data
    m = m[m["tokens_budget"] == sd.main["tokens_budget"].iloc[0]] if not sd.main.empty else m
    if m.empty or m["n_layer"].nunique() < 2 or m["N"].nunique() < 3:
        f.reason = "needs full-data runs of >= 3 sizes and >= 2 depths at one token budget"
        return f
    ids = m["run_id"].to_numpy()
    N, T, L = (m[c].to_numpy(float) for c in ("N", "n_params_total", "loss"))

    def ratio(pick):
        idx = np.concatenate([np.flatnonzero(ids == p) for p in pick])
        rn, rt = _rms_loglog(N[idx], L[idx]), _rms_loglog(T[idx], L[idx])
        return rt / rn if rn and rn > 0 else np.nan

    r = ratio(ids)
    lo, hi = _boot(ratio, ids)
    f.measured = (f"scatter about one power law, total/non-embedding: {r:.3g}x {_ci(lo, hi)} "
                  f"({len(m)} runs, depths {sorted(m['n_layer'].unique().tolist())})")
    if np.isfinite(lo) and lo > 1:
        f.agrees, f.reason = "yes", "the trend in N is tighter than the trend in total parameters"
    elif r > 1:
        f.agrees, f.reason = "partial", "tighter in N, but the interval includes no difference"
    else:
        f.agrees, f.reason = "no", "total parameters describe the loss as well as N or better"
    return f


# ------------------------------------------------------------------------------------------------ 3 overfitting


def check_overfitting(sd: StudyData, fits) -> Finding:
    f = Finding(3, "Overfitting: deltaL against N^(alpha_N/alpha_D)/D falls on one curve",
                "deltaL = (1 + (N/N_c)^(alpha_N/alpha_D) D_c/D)^alpha_D - 1 with alpha_N/alpha_D = 0.74 "
                "(eq. 4.3, Fig. 9)")
    lf: LawFit = fits.get("L(N,D)")
    if lf is None or lf.law is None:
        f.reason = "no L(N, D) fit: " + (lf.note if lf else "needs runs on data subsets at >= 2 sizes")
        return f
    law = lf.law
    p, ci = law.params, law.ci
    ratio = p["alpha_N"] / p["alpha_D"]
    if law.samples is not None and len(law.samples) > 10:
        names = list(law.form.param_names)
        rs = law.samples[:, names.index("alpha_N")] / law.samples[:, names.index("alpha_D")]
        lo, hi = np.percentile(rs, [2.5, 97.5])
    else:
        lo, hi = np.nan, np.nan
    df = lf.data
    pred = law.predict(df)
    collapse_rms = float(np.sqrt(np.mean(np.log(df["loss"].to_numpy(float) / pred) ** 2)))
    f.measured = (f"alpha_N/alpha_D = {ratio:.3g} {_ci(lo, hi)}; eq. 1.5 fits {len(df)} runs with RMS "
                  f"{100 * collapse_rms:.1f}% (log); alpha_D = {p['alpha_D']:.3g} {_ci(*ci['alpha_D'])}")
    if not law.converged:
        f.agrees, f.reason = "no", "the L(N, D) fit did not converge"
    elif collapse_rms <= 0.02 and np.isfinite(lo) and lo <= 0.74 <= hi:
        f.agrees, f.reason = "yes", "the runs collapse on eq. 4.3 and the exponent ratio matches 0.74"
    elif collapse_rms <= 0.03:
        f.agrees = "partial"
        f.reason = "the runs collapse on one curve (eq. 1.5 within 3%), with an exponent ratio unlike 0.74"
    else:
        f.agrees, f.reason = "no", f"eq. 1.5 misses the runs by {100 * collapse_rms:.0f}% RMS"
    return f


# ------------------------------------------------------------------------------------------------ 4 L(N, S)


def check_learning_curves(sd: StudyData, fits, early_frac: float = 0.5, n_resamples: int = 100) -> Finding:
    f = Finding(4, "L(N, S) fitted on the early part of each learning curve predicts its final loss",
                "L(N, S_min) = (N_c/N)^0.077 + (S_c/S_min)^0.76 describes learning curves after warm-up "
                "(eq. 1.6, Fig. 4 right)")
    early = learning_curve_points(sd, upto_frac=early_frac)
    full = learning_curve_points(sd)
    if early["group"].nunique() < 2 or len(early) < 8:
        f.reason = "needs the learning curves of >= 2 model sizes with >= 8 evaluations past warm-up"
        return f
    from scalinglab.analysis.study_laws import _fit

    try:
        law = _fit(early, "kaplan_ns", n_resamples)
    except Exception as exc:  # a FitError: too few points
        f.reason = f"L(N, S) could not be fitted on the early curves ({exc})"
        return f
    last = full.loc[full.groupby("group")["S"].idxmax()]
    pred = law.predict(last)
    err = pred / last["loss"].to_numpy(float) - 1
    med = float(np.median(np.abs(err)))
    ids = last["group"].to_numpy()
    lo, hi = _boot(lambda pick: float(np.median(np.abs(np.concatenate([err[ids == p] for p in pick])))), ids)
    f.measured = (f"fitted on the first {int(100 * early_frac)}% of steps: alpha_S = {law.params['alpha_S']:.3g} "
                  f"{_ci(*law.ci['alpha_S'])}; final loss predicted within {100 * med:.1f}% {_ci(100 * lo, 100 * hi)}"
                  f"% (median |error|, {len(last)} runs; signed errors "
                  + ", ".join(f"{100 * e:+.1f}%" for e in err) + ")")
    if not law.converged:
        f.agrees, f.reason = "no", "the L(N, S) fit on the early curves did not converge"
    elif med <= 0.02:
        f.agrees, f.reason = "yes", "the early fit predicts the final losses within 2%"
    elif med <= 0.05:
        f.agrees = "partial"
        f.reason = ("the early fit predicts the final losses within 5%; the cosine decay's late drop, which "
                    "S_min alone does not model, adds the rest")
    else:
        f.agrees, f.reason = "no", f"the early fit misses the final losses by {100 * med:.0f}% (median)"
    return f


# ------------------------------------------------------------------------------------------------ 5 transfer


def check_transfer(sd: StudyData, fits) -> Finding:
    f = Finding(5, "Loss on each transfer set is the training-distribution loss plus a roughly constant offset",
                "transfer loss ~ test loss + constant: parallel lines against N (Fig. 8), slope ~ 1")
    if not sd.transfer_sets:
        f.reason = "the dataset has no transfer sets"
        return f
    m = sd.full_data
    if len(m) < 3:
        f.reason = "needs >= 3 finished full-data runs"
        return f
    parts, verdicts = [], []
    for s in sd.transfer_sets:
        col = f"loss_{s}"
        g = m[np.isfinite(m[col].astype(float))]
        if len(g) < 3:
            continue
        x, y, ids = g["loss"].to_numpy(float), g[col].to_numpy(float), g["run_id"].to_numpy()

        def slope(pick):
            idx = np.concatenate([np.flatnonzero(ids == p) for p in pick])
            return np.polyfit(x[idx], y[idx], 1)[0] if np.unique(x[idx]).size >= 2 else np.nan

        b = slope(ids)
        lo, hi = _boot(slope, ids)
        off = float(np.mean(y - x))
        parts.append(f"{s}: offset {off:+.3f} nats, slope {b:.3g} {_ci(lo, hi)}")
        verdicts.append("yes" if (np.isfinite(lo) and lo <= 1 <= hi) or 0.8 <= b <= 1.25
                        else "partial" if 0.5 <= b <= 2 else "no")
    if not parts:
        f.reason = "no transfer set was evaluated on >= 3 runs"
        return f
    f.measured = "; ".join(parts)
    f.agrees = "yes" if all(v == "yes" for v in verdicts) else "no" if all(v == "no" for v in verdicts) \
        else "partial"
    f.reason = {"yes": "each transfer loss tracks the test loss with slope ~1 (a constant offset)",
                "partial": "the offset is not constant on every set (slope away from 1)",
                "no": "the transfer losses do not track the test loss with a constant offset"}[f.agrees]
    return f


# ------------------------------------------------------------------------------------------------ 6 sample efficiency


def tokens_to_reach(curve: pd.DataFrame, target: float) -> float:
    """Tokens at which a test-loss curve first reaches `target` (log-linear interpolation), NaN if never."""
    t, l = curve["tokens"].to_numpy(float), curve["test_loss"].to_numpy(float)
    hit = np.flatnonzero(l <= target)
    if hit.size == 0:
        return np.nan
    i = hit[0]
    if i == 0:
        return t[0]
    frac = (l[i - 1] - target) / (l[i - 1] - l[i])
    return float(np.exp(np.log(t[i - 1]) + frac * (np.log(t[i]) - np.log(t[i - 1]))))


def check_sample_efficiency(sd: StudyData, fits) -> Finding:
    f = Finding(6, "Larger models reach a given loss with fewer tokens",
                "larger models are more sample-efficient: fewer tokens (and steps) to any given loss (Fig. 2)")
    byn = sd.main_by_n()
    if len(byn) < 2 or sd.curves.empty:
        f.reason = "needs the learning curves of >= 2 model sizes"
        return f
    curves = {r.run_id: sd.curve(r.run_id) for r in byn.itertuples()}
    ns = byn["N"].to_numpy(float)
    # targets every run reaches... and those only the larger ones reach count too (the small model never does)
    lo_t, hi_t = byn["loss"].max(), float(np.median([c["test_loss"].iloc[0] for c in curves.values()]))
    targets = np.linspace(lo_t, lo_t + 0.6 * (hi_t - lo_t), 6)
    wins, total = 0, 0
    for t in targets:
        need = np.array([tokens_to_reach(curves[r], t) for r in byn["run_id"]])
        for i in range(len(ns)):
            for j in range(i + 1, len(ns)):
                if np.isfinite(need[i]) and np.isfinite(need[j]):
                    total += 1
                    wins += need[j] <= need[i]
    if total == 0:
        f.reason = "no loss is reached by two model sizes"
        return f
    frac = wins / total
    f.measured = (f"in {wins} of {total} (model pair, target loss) comparisons the larger model needed fewer or "
                  f"equal tokens ({100 * frac:.0f}%; {len(ns)} sizes, 6 targets)")
    f.agrees = "yes" if frac >= 0.9 else "partial" if frac >= 0.6 else "no"
    f.reason = {"yes": "larger models are more sample-efficient at every target loss",
                "partial": "mostly, with exceptions (early in training, where warm-up dominates)",
                "no": "larger models were not more sample-efficient"}[f.agrees]
    return f


# ------------------------------------------------------------------------------------------------ 7 compute-efficient


def check_compute_efficient(sd: StudyData, fits) -> Finding:
    f = Finding(7, "Compute-efficient training: N_opt grows as a power of C, and those runs stop well before "
                   "convergence", "N_opt ~ C_min^0.73 (Table 6); compute-efficient runs stop ~10% above the "
                                  "converged loss (alpha_N/alpha_S)")
    nf: LawFit = fits.get("N_opt(C)")
    if nf is None or nf.law is None:
        f.reason = nf.note if nf else "no compute frontier"
        return f
    pf = nf.law
    lo, hi = pf.ci["exponent"]
    fr = nf.data
    final = sd.runs.set_index("run_id")["loss"]
    # how far above the model's final loss is each frontier point? (runs on the frontier before their end)
    gap = fr["L"].to_numpy(float) / final.reindex(fr["run_id"]).to_numpy(float) - 1
    n_models = fr["N"].nunique()
    early = float(np.mean(gap > 0.005))
    f.measured = (f"N_opt ~ C^{pf.exponent:.3g} {_ci(lo, hi)} over {n_models} model sizes on the frontier; "
                  f"{100 * early:.0f}% of frontier points are runs not yet at their final loss (median gap "
                  f"{100 * float(np.median(gap)):.1f}%)")
    grows = np.isfinite(lo) and lo > 0
    if grows and lo <= 0.73 <= hi and early >= 0.5:
        f.agrees, f.reason = "yes", "N_opt grows as C^a with a matching the paper's 0.73, stopping early"
    elif grows:
        f.agrees = "partial"
        f.reason = ("N_opt grows as a power of C" + ("" if lo <= 0.73 <= hi else
                    f", with exponent {pf.exponent:.2f} rather than 0.73 (Chinchilla-style training and exact "
                    "FLOP counts give ~0.5)") + ("" if early >= 0.5 else "; most frontier points are final losses"))
    elif pf.exponent > 0:
        f.agrees, f.reason = "partial", "N_opt grows with C, but the interval of the exponent includes 0"
    else:
        f.agrees, f.reason = "no", "the model size on the frontier does not grow with compute"
    return f


# ------------------------------------------------------------------------------------------------ 8 B_crit


def check_bcrit(sd: StudyData, fits) -> Finding:
    f = Finding(8, "B_crit is a power of the loss", "B_crit(L) = B*/L^(1/alpha_B), alpha_B = 0.21, "
                                                    "B* = 2e8 tokens (Fig. 10)")
    lf: LawFit = fits.get("B_crit(L)")
    if lf is None or lf.law is None:
        f.reason = (lf.note if lf else "") or "needs runs that measure the gradient noise scale"
        return f
    law = lf.law
    lo, hi = law.ci["alpha_B"]
    a = law.params["alpha_B"]
    if "B_noise" in lf.data:  # measured from a batch-size sweep
        ratio = (lf.data["B_crit"] / lf.data["B_noise"]).to_numpy(float)
        source = (f"from a batch-size sweep at {len(lf.data)} target losses; B_crit / noise scale = "
                  f"{np.nanmin(ratio):.2g} to {np.nanmax(ratio):.2g}")
    else:
        source = f"from the gradient noise scale at {len(lf.data)} points of {lf.data['group'].nunique()} runs"
    f.measured = (f"alpha_B = {a:.3g} {_ci(lo, hi)}, B* = {law.params['B_star']:.3g} tokens, {source} "
                  f"(R^2 log {law.r2_log:.2f})")
    if not law.converged:
        f.agrees, f.reason = "no", "the B_crit(L) fit did not converge"
    elif not law.r2_log >= 0.5:
        f.agrees = "no"
        what = "B_crit measurements" if "B_noise" in lf.data else "noise-scale estimates"
        f.reason = (f"the {what} scatter too much to show a power law of the loss (R^2 {law.r2_log:.2f}) over "
                    f"losses {lf.data['L'].min():.3g} to {lf.data['L'].max():.3g}; longer runs or a wider "
                    f"batch-size sweep are needed")
    elif np.isfinite(lo) and lo <= 0.21 <= hi:
        f.agrees, f.reason = "yes", "B_crit rises as the loss falls, with the paper's exponent"
    elif np.isfinite(lo) and lo > 0:
        f.agrees, f.reason = "partial", "B_crit rises as a power of falling loss, with a different exponent"
    else:
        f.agrees, f.reason = "no", "no clear power law of the loss"
    return f


CHECKS = [check_shape, check_embedding, check_overfitting, check_learning_curves, check_transfer,
          check_sample_efficiency, check_compute_efficient, check_bcrit]


def check_findings(sd: StudyData, fits: dict | None = None) -> list[Finding]:
    """Every finding, in the paper's order."""
    fits = fit_study(sd) if fits is None else fits
    return [check(sd, fits) for check in CHECKS]


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([x.to_dict() for x in findings])


__all__ = ["Finding", "check_findings", "findings_frame", "PAPER", "power_fit", "NOT_MEASURED"]
