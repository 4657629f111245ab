"""One check per finding of Kaplan et al. 2020: what the paper reported, what this study measured, and whether
they agree.

Verdicts are exactly:
- `yes`: the measurement agrees with the paper and its 95% interval is narrow enough to say so;
- `no`: the interval excludes the paper's statement;
- `inconclusive`: the interval contains the paper's statement but is wider than the stated limit, or reaches
  both sides of the line the statement draws: this study cannot tell;
- `not measured`: the study lacks the runs (the reason says which).
Every threshold says where it comes from (`basis`): the paper's own statement or figure, or this project's choice.
Each check compares like with like: losses at one early-stopping rule, shapes corrected to one N, exponents
against the paper's exponent. Intervals come from bootstraps over whole runs (scalinglab.laws.result).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalinglab.analysis.study_data import StudyData
from scalinglab.analysis.study_laws import PAPER, LawFit, fit_study, learning_curve_points
from scalinglab.errors import ScalingLabError
from scalinglab.laws.result import bootstrap_groups, percentile_ci
from scalinglab.published import KAPLAN2020

YES, NO, INCONCLUSIVE, NOT_MEASURED = "yes", "no", "inconclusive", "not measured"
VERDICTS = (YES, NO, INCONCLUSIVE, NOT_MEASURED)

# An exponent's interval must be narrower than this fraction of the paper's exponent for a 'yes': this project's
# choice (an interval that narrow tells the paper's value from zero and from twice itself).
REL_WIDTH = 0.5
# Seed-to-seed noise of the loss in Kaplan et al. 2020 (section 4.2, eq. 4.4: "~0.02"): as a relative tolerance
SEED_NOISE = 0.02
N_RESAMPLES = 400


@dataclass
class Finding:
    number: int
    finding: str
    paper: str
    measured: str = ""
    agrees: str = NOT_MEASURED  # yes | no | inconclusive | not measured
    reason: str = ""
    basis: str = ""  # the threshold of the verdict and its source

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _ci(lo, hi, digits=3) -> str:
    if lo is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "[no interval]"
    return f"[{lo:.{digits}g}, {hi:.{digits}g}]"


def compare_exponent(f: Finding, name: str, value: float, lo: float, hi: float, paper: float,
                     rel_width: float = REL_WIDTH) -> Finding:
    """The verdict of a measured exponent against the paper's: `no` when the interval excludes it,
    `inconclusive` when it contains it but is wider than rel_width * paper, `yes` otherwise."""
    limit = rel_width * abs(paper)
    f.basis = (f"the paper's {name} = {paper:g}; a 'yes' needs a 95% interval containing it and narrower than "
               f"{limit:.3g} ({rel_width:g}x the paper's value: this project's choice)")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        f.agrees, f.reason = INCONCLUSIVE, f"{name} = {value:.3g} has no bootstrap interval: too few runs to tell"
    elif not lo - 1e-9 * abs(paper) <= paper <= hi + 1e-9 * abs(paper):  # rounding: exact data's interval is a point
        f.agrees, f.reason = NO, f"the interval {_ci(lo, hi)} of {name} excludes the paper's {paper:g}"
    elif hi - lo > limit:
        f.agrees = INCONCLUSIVE
        f.reason = (f"the interval {_ci(lo, hi)} contains {paper:g} but is {hi - lo:.3g} wide, wider than the limit "
                    f"{limit:.3g}: too wide to tell")
    else:
        f.agrees, f.reason = YES, f"the interval {_ci(lo, hi)} of {name} contains the paper's {paper:g}"
    return f


def compare_band(f: Finding, what: str, lo: float, hi: float, band: tuple[float, float], basis: str) -> Finding:
    """`yes` when the interval lies inside the band the paper's statement allows, `no` when it lies outside it,
    `inconclusive` when it reaches across the band's edge."""
    f.basis = basis
    a, b = band
    if not (np.isfinite(lo) and np.isfinite(hi)):
        f.agrees, f.reason = INCONCLUSIVE, f"{what} has no bootstrap interval: too few runs to tell"
    elif a <= lo and hi <= b:
        f.agrees, f.reason = YES, f"the interval {_ci(lo, hi)} of {what} lies inside [{a:g}, {b:g}]"
    elif hi < a or lo > b:
        f.agrees, f.reason = NO, f"the interval {_ci(lo, hi)} of {what} lies outside [{a:g}, {b:g}]"
    else:
        f.agrees = INCONCLUSIVE
        f.reason = (f"the interval {_ci(lo, hi)} of {what} reaches across the edge of [{a:g}, {b:g}]: too wide "
                    "to tell")
    return f


def _boot(stat, groups, n: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% interval of a statistic of a set of runs (stat(idx) on row positions), resampling whole runs."""
    draws = bootstrap_groups(stat, groups, n, seed)
    if draws.size == 0:
        return np.nan, np.nan
    return percentile_ci(draws[:, :1])[0]


def _law_exponent(lf: LawFit | None, name: str) -> tuple[float, float, float] | None:
    if lf is None or lf.law is None or not lf.law.converged:
        return None
    lo, hi = lf.law.ci.get(name, (np.nan, np.nan))
    return float(lf.law.params[name]), float(lo), float(hi)


# ------------------------------------------------------------------------------------------------ 1 shape


def check_shape(sd: StudyData, fits) -> Finding:
    f = Finding(1, "At fixed N, loss depends only weakly on shape (aspect ratio, heads, d_ff ratio)",
                "over a 40x range of aspect ratios around the best the loss changes by a few percent (Fig. 5)")
    groups = sd.shape_groups()
    if not groups:
        f.reason = "needs >= 3 shapes at one target N (runs with the role 'shape')"
        return f
    ln = _law_exponent(fits.get("L(N)"), "alpha_N")
    parts, lows, highs = [], [], []
    for g in groups:
        n = g["N"].to_numpy(float)
        n_ref = float(np.median(n))
        if ln is None and n.max() / n.min() > 1.01:
            f.reason = "the shapes' N differ and there is no L(N) fit to correct their losses to one N"
            return f
        a, alo, ahi = ln if ln is not None else (0.0, 0.0, 0.0)
        loss = g["loss_best"].to_numpy(float)
        ar = g["aspect_ratio"].to_numpy(float)

        def spread(alpha):
            corr = loss * (n / n_ref) ** alpha  # L ~ N^-alpha: each loss as at N_ref
            best = np.argmin(corr)
            wide = (ar >= ar[best] / 40 ** 0.5) & (ar <= ar[best] * 40 ** 0.5)
            return float((corr[wide] / corr[best] - 1).max())

        s = spread(a)
        span = [spread(x) for x in (alo, ahi) if np.isfinite(x)] + [s]
        se = pd.to_numeric(g.get("final_test_loss_se", pd.Series(np.nan, index=g.index)), errors="coerce")
        rel_se = float(np.nanmax(se.to_numpy(float) / loss)) if se.notna().any() else 0.0
        noise = 1.96 * np.sqrt(2) * rel_se  # a difference of two losses, each with its evaluation error
        lo, hi = max(min(span) - noise, 0.0), max(span) + noise
        lows.append(lo)
        highs.append(hi)
        parts.append(f"N~{n_ref:.3g}: {len(g)} shapes (aspect {ar.min():.3g}-{ar.max():.3g}), loss up to "
                     f"+{100 * s:.1f}% {_ci(100 * lo, 100 * hi)}% over the best, corrected to one N")
    f.measured = "; ".join(parts) + (
        f" (through L(N)'s alpha_N {ln[0]:.3g}; the range spans its interval and the evaluation error)"
        if ln is not None else "")
    return compare_band(f, "the largest loss excess at fixed N", max(lows), max(highs), (0.0, 0.05),
                        "the paper: a few percent over a 40x range of aspect ratios (Fig. 5); 5% is this "
                        "project's reading of 'a few'")


# ------------------------------------------------------------------------------------------------ 2 embedding


def _rms_loglog(x, y) -> float:
    lx, ly = np.log(x), np.log(y)
    if np.unique(lx).size < 3:
        return np.nan
    a, b = np.polyfit(lx, ly, 1)
    return float(np.sqrt(np.mean((ly - (a * lx + b)) ** 2)))


def check_embedding(sd: StudyData, fits) -> Finding:
    f = Finding(2, "Against total parameters the trends split by depth; against N (non-embedding) they collapse",
                "one trend in N for models of >= 2 layers, separate trends in total parameters (Fig. 6)")
    m = sd.sizes
    m = m[(m["n_layer"] >= 2) & ~m["repeats"]]
    if m.empty or m["n_layer"].nunique() < 2 or m["N"].nunique() < 4:
        f.reason = "needs size-sweep runs of >= 2 layers: >= 4 sizes and >= 2 depths"
        return f
    N, T, L = (m[c].to_numpy(float) for c in ("N", "n_params_total", "loss_best"))

    def ratio(idx):
        rn, rt = _rms_loglog(N[idx], L[idx]), _rms_loglog(T[idx], L[idx])
        return rt / rn if np.isfinite(rn) and rn > 0 else None

    r = ratio(np.arange(len(m)))
    lo, hi = _boot(ratio, m["run_id"].to_numpy())
    f.measured = (f"scatter about one power law, total parameters / non-embedding N: {r:.3g}x {_ci(lo, hi)} "
                  f"({len(m)} runs, depths {sorted(m['n_layer'].unique().tolist())})" if r else "no scatter")
    f.basis = ("the paper: the trend in N is tighter than in total parameters (Fig. 6), so the ratio of "
               "scatters is > 1; a 'yes' needs its interval above 1")
    if r is None or not np.isfinite(lo) or hi - lo <= 1e-9 * abs(r):  # a resample-invariant ratio: no interval
        f.agrees, f.reason = INCONCLUSIVE, "the runs fall on a power law in N exactly or too few runs: no interval"
    elif lo > 1:
        f.agrees, f.reason = YES, f"the interval {_ci(lo, hi)} lies above 1: the trend in N is tighter"
    elif hi < 1:
        f.agrees, f.reason = NO, f"the interval {_ci(lo, hi)} lies below 1: total parameters describe the loss better"
    else:
        f.agrees, f.reason = INCONCLUSIVE, f"the interval {_ci(lo, hi)} contains 1: too wide to tell"
    return f


# ------------------------------------------------------------------------------------------------ 3 overfitting


def check_overfitting(sd: StudyData, fits) -> Finding:
    ratio_paper = KAPLAN2020["nd_alpha_N"] / KAPLAN2020["nd_alpha_D"]  # eq. 4.3: 0.74
    f = Finding(3, "Overfitting: deltaL against N^(alpha_N/alpha_D)/D falls on one curve",
                f"deltaL = (1 + (N/N_c)^(alpha_N/alpha_D) D_c/D)^alpha_D - 1, alpha_N/alpha_D = {ratio_paper:.2f} "
                "(eq. 4.3, Fig. 9)")
    lf: LawFit = fits.get("L(N,D)")
    if lf is None or lf.law is None:
        f.reason = "no L(N, D) fit: " + (lf.note if lf else "needs runs on data subsets at >= 2 sizes")
        return f
    law = lf.law
    if not law.converged:
        f.agrees, f.reason = INCONCLUSIVE, f"the L(N, D) fit did not converge ({law.message})"
        return f
    df = lf.data.reset_index(drop=True)
    # out of sample: each run's loss predicted by eq. 1.5 fitted without that run
    from scalinglab.analysis.study_laws import _fit

    z0 = law.form.to_internal(law.form.theta(law.params)[None, :])
    errs = []
    for i in range(len(df)):
        try:
            held = _fit(df.drop(index=i), "kaplan_nd", 0, grid=z0)
        except ScalingLabError:
            continue
        if held.converged:
            errs.append(float(np.log(df.at[i, "loss"] / held.predict(df.iloc[[i]])[0])))
    rms = float(np.sqrt(np.mean(np.square(errs)))) if errs else np.nan
    names = list(law.form.param_names)
    p = law.params
    ratio = p["alpha_N"] / p["alpha_D"]
    if law.samples is not None and len(law.samples) > 20:
        rs = law.samples[:, names.index("alpha_N")] / law.samples[:, names.index("alpha_D")]
        lo, hi = np.percentile(rs, [2.5, 97.5])
    else:
        lo, hi = np.nan, np.nan
    f.measured = (f"alpha_N/alpha_D = {ratio:.3g} {_ci(lo, hi)}; eq. 1.5 predicts each of {len(errs)} runs fitted "
                  f"without it within {100 * rms:.1f}% RMS (out of sample)")
    if not np.isfinite(rms) or rms > 2 * SEED_NOISE:
        f.agrees = NO if np.isfinite(rms) else INCONCLUSIVE
        f.reason = (f"the runs do not fall on one curve: out-of-sample RMS {100 * rms:.1f}% > "
                    f"{100 * 2 * SEED_NOISE:.0f}%" if np.isfinite(rms) else "no out-of-sample prediction")
        f.basis = (f"one curve: out-of-sample error within twice the paper's seed noise ({SEED_NOISE}, section 4.2); "
                   "then the exponent ratio against 0.74")
        return f
    compare_exponent(f, "alpha_N/alpha_D", ratio, lo, hi, ratio_paper)
    f.basis = (f"one curve: out-of-sample error within twice the paper's seed noise ({SEED_NOISE}, section 4.2), "
               "then " + f.basis)
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
    except ScalingLabError as exc:
        f.reason = f"L(N, S) could not be fitted on the early curves ({exc})"
        return f
    if not law.converged:
        f.agrees, f.reason = INCONCLUSIVE, f"the L(N, S) fit on the early curves did not converge ({law.message})"
        return f
    last = full.loc[full.groupby("group")["S"].idxmax()].reset_index(drop=True)
    err = law.predict(last) / last["loss"].to_numpy(float) - 1
    med = float(np.median(np.abs(err)))
    lo, hi = _boot(lambda idx: float(np.median(np.abs(err[idx]))), last["group"].to_numpy())
    f.measured = (f"fitted on the first {int(100 * early_frac)}% of steps (S, not S_min): alpha_S = "
                  f"{law.params['alpha_S']:.3g} {_ci(*law.ci['alpha_S'])}; final loss predicted within "
                  f"{100 * med:.1f}% {_ci(100 * lo, 100 * hi)}% (median |error| over {len(last)} runs; signed "
                  + ", ".join(f"{100 * e:+.1f}%" for e in err) + ")")
    return compare_band(f, "the median |error| of the predicted final loss", lo, hi, (0.0, 0.03),
                        "a good extrapolation errs by a few percent (Choshen et al. 2024); 3% is this project's "
                        "reading of 'a few'")


# ------------------------------------------------------------------------------------------------ 5 transfer


def check_transfer(sd: StudyData, fits) -> Finding:
    f = Finding(5, "Loss on each transfer set is the training-distribution loss plus a roughly constant offset",
                "transfer loss ~ test loss + constant: parallel lines against N (Fig. 8), slope ~ 1")
    if not sd.transfer_sets:
        f.reason = "the dataset has no transfer sets"
        return f
    m = sd.sizes[~sd.sizes["repeats"]]
    band = (0.8, 1.25)
    basis = ("the paper: parallel lines, slope ~1 (Fig. 8); a slope within [0.8, 1.25] (this project's reading of "
             "'~1') at every set is a 'yes'; test and transfer losses both at the end of each run")
    parts, verdicts = [], []
    for s in sd.transfer_sets:
        g = m[np.isfinite(m[f"loss_{s}"].astype(float))]
        if len(g) < 3:
            continue
        x, y = g["loss_final"].to_numpy(float), g[f"loss_{s}"].to_numpy(float)

        def slope(idx):
            return np.polyfit(x[idx], y[idx], 1)[0] if np.unique(x[idx]).size >= 2 else None

        b = slope(np.arange(len(g)))
        lo, hi = _boot(slope, g["run_id"].to_numpy())
        part = compare_band(Finding(0, "", ""), f"the slope on {s}", lo, hi, band, basis)
        verdicts.append(part.agrees)
        parts.append(f"{s}: offset {float(np.mean(y - x)):+.3f} nats, slope {b:.3g} {_ci(lo, hi)} ({part.agrees})")
    if not parts:
        f.reason = "no transfer set was evaluated on >= 3 runs of the size sweep"
        return f
    f.measured = "; ".join(parts)
    f.basis = basis
    f.agrees = NO if NO in verdicts else YES if all(v == YES for v in verdicts) else INCONCLUSIVE
    f.reason = {YES: "every set's slope interval lies inside [0.8, 1.25]",
                NO: "on at least one set the slope interval lies outside [0.8, 1.25]",
                INCONCLUSIVE: "at least one set's slope interval reaches across [0.8, 1.25]: too wide to tell"}[
        f.agrees]
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
    curves = [sd.curve(r) for r in byn["run_id"]]
    ns = byn["N"].to_numpy(float)
    lo_t, hi_t = byn["loss_best"].max(), float(np.median([c["test_loss"].iloc[0] for c in curves]))
    targets = np.linspace(lo_t, lo_t + 0.6 * (hi_t - lo_t), 6)
    need = np.array([[tokens_to_reach(c, t) for t in targets] for c in curves])  # (runs, targets)

    def frac(idx):
        wins = total = 0
        for a in idx:
            for b in idx:
                if ns[b] > ns[a]:
                    ok = np.isfinite(need[a]) & np.isfinite(need[b])
                    total += int(ok.sum())
                    wins += int((need[b][ok] <= need[a][ok]).sum())
        return wins / total if total else None

    fr = frac(np.arange(len(byn)))
    if fr is None:
        f.reason = "no loss is reached by two model sizes"
        return f
    lo, hi = _boot(frac, byn["run_id"].to_numpy())
    f.measured = (f"in {100 * fr:.0f}% {_ci(100 * lo, 100 * hi)}% of (smaller, larger model, target loss) "
                  f"comparisons the larger model needed fewer or equal tokens ({len(ns)} sizes, 6 targets)")
    return compare_band(f, "the fraction of comparisons the larger model wins", lo, hi, (0.8, 1.0),
                        "the paper: larger models need fewer tokens at every loss (Fig. 2); 'yes' when the "
                        "interval of the fraction lies above 0.8 (this project's choice), 'no' below")


# ------------------------------------------------------------------------------------------------ 7 compute-efficient


def check_compute_efficient(sd: StudyData, fits) -> Finding:
    gap_paper = KAPLAN2020["alpha_N"] / KAPLAN2020["alpha_S"]
    f = Finding(7, "Compute-efficient training: N_opt grows as a power of C, and those runs stop well before "
                   "convergence", f"N_opt ~ C_min^{KAPLAN2020['p_N']} (Table 6); compute-efficient runs stop "
                                  f"~{100 * gap_paper:.0f}% above the converged loss (alpha_N/alpha_S, section 6)")
    nf: LawFit = fits.get("N_opt(C)")
    ns: LawFit = fits.get("L(N,S)")
    if nf is None or nf.law is None:
        f.reason = (nf.note if nf else "") or "no compute frontier"
        return f
    if ns is None or ns.law is None or not ns.law.converged:
        f.reason = "needs a converged L(N, S) fit: its S -> inf term is the converged loss of each size"
        return f
    pf, law = nf.law, ns.law
    fr = nf.data.reset_index(drop=True)
    l_inf = (law.params["N_c"] / fr["N"].to_numpy(float)) ** law.params["alpha_N"]
    gap = fr["L"].to_numpy(float) / l_inf - 1
    med = float(np.median(gap))
    glo, ghi = _boot(lambda idx: float(np.median(gap[idx])), fr["run_id"].to_numpy())
    ex = fits.get("N_opt(C) exact")
    exact = (f"; with exact FLOP: N_opt ~ C^{ex.law.exponent:.3g} {_ci(*ex.law.exponent_ci)}"
             if ex is not None and ex.law is not None else "")
    f.measured = (f"C by 6*N*tokens: N_opt ~ C^{pf.exponent:.3g} {_ci(*pf.exponent_ci)} over "
                  f"{fr['N'].nunique()} sizes inside the trained range{exact}; frontier points lie "
                  f"{100 * med:.1f}% {_ci(100 * glo, 100 * ghi)}% (median) above L(N, S -> inf) of their size")
    part = compare_exponent(Finding(0, "", ""), "the N_opt(C) exponent", pf.exponent, *pf.exponent_ci,
                            KAPLAN2020["p_N"])
    stops = compare_band(Finding(0, "", ""), "the median gap above L(N, S -> inf)", glo, ghi, (0.02, np.inf),
                         "")
    f.basis = (part.basis + f"; and the gap's interval above {100 * SEED_NOISE:.0f}% (the paper's seed noise, "
               "section 4.2) for 'well before convergence'; C by Kaplan's 6*N*tokens")
    if NO in (part.agrees, stops.agrees):
        f.agrees = NO
    elif part.agrees == YES and stops.agrees == YES:
        f.agrees = YES
    else:
        f.agrees = INCONCLUSIVE
    f.reason = f"exponent: {part.reason}; gap: {stops.reason}"
    return f


# ------------------------------------------------------------------------------------------------ 8 B_crit


def check_bcrit(sd: StudyData, fits) -> Finding:
    f = Finding(8, "B_crit is a power of the loss",
                f"B_crit(L) = B*/L^(1/alpha_B), alpha_B = {KAPLAN2020['alpha_B']}, B* = 2e8 tokens (Fig. 10)")
    lf: LawFit = fits.get("B_crit(L)")
    if lf is None or lf.law is None:
        f.reason = (lf.note if lf else "") or "needs a batch-size sweep or runs that measure the noise scale"
        return f
    law = lf.law
    a, (lo, hi) = law.params["alpha_B"], law.ci["alpha_B"]
    if "B_noise" in lf.data:
        ratio = (lf.data["B_crit"] / lf.data["B_noise"]).to_numpy(float)
        source = (f"from a batch-size sweep at {len(lf.data)} target losses (B_crit / noise scale "
                  f"{np.nanmin(ratio):.2g} to {np.nanmax(ratio):.2g})")
    else:
        source = f"from the gradient noise scale at {len(lf.data)} points of {lf.data['group'].nunique()} runs"
    f.measured = (f"alpha_B = {a:.3g} {_ci(lo, hi)}, B* = {law.params['B_star']:.3g} tokens, {source}; "
                  f"intervals from {law.n_resamples_ok}/{law.n_resamples} run resamples")
    if not law.converged:
        f.agrees, f.reason = INCONCLUSIVE, f"the B_crit(L) fit did not converge ({law.message})"
        return f
    return compare_exponent(f, "alpha_B", a, lo, hi, KAPLAN2020["alpha_B"])


# ------------------------------------------------------------------------------------------------ 9-11 headline laws


def _headline(number: int, key: str, name: str, statement: str, paper_text: str):
    def check(sd: StudyData, fits) -> Finding:
        f = Finding(number, statement, paper_text)
        lf: LawFit = fits.get(key)
        if lf is None or lf.law is None:
            f.reason = (lf.note if lf else "") or f"no {key} fit"
            return f
        if not lf.law.converged:
            f.agrees, f.reason = INCONCLUSIVE, f"the {key} fit did not converge ({lf.law.message})"
            return f
        v = float(lf.law.params[name])
        lo, hi = lf.law.ci.get(name, (np.nan, np.nan))
        f.measured = f"{name} = {v:.3g} {_ci(lo, hi)} ({lf.text()}); {lf.note}"
        return compare_exponent(f, name, v, lo, hi, PAPER[key][name])

    check.__name__ = f"check_{key}"
    return check


check_ln = _headline(9, "L(N)", "alpha_N", "Loss is a power law in model size N (converged, ample data)",
                     f"L(N) = (N_c/N)^alpha_N, alpha_N = {KAPLAN2020['alpha_N']} (eq. 1.1, Fig. 1 right)")
check_ld = _headline(10, "L(D)", "alpha_D", "Loss is a power law in dataset size D (large model, early-stopped)",
                     f"L(D) = (D_c/D)^alpha_D, alpha_D = {KAPLAN2020['alpha_D']} (eq. 1.2, Fig. 1 middle)")
check_lc = _headline(11, "L(C_min)", "alpha_C_min", "Loss on the compute-efficient frontier is a power law in "
                     "compute (C by Kaplan's 6*N*tokens)", f"L(C_min) = (C_c/C_min)^alpha_C_min, alpha_C_min = "
                     f"{KAPLAN2020['alpha_C_min']} (eq. 1.3, Fig. 1 left)")

CHECKS = [check_shape, check_embedding, check_overfitting, check_learning_curves, check_transfer,
          check_sample_efficiency, check_compute_efficient, check_bcrit, check_ln, check_ld, check_lc]


def check_findings(sd: StudyData, fits: dict | None = None) -> list[Finding]:
    """Every finding, in the paper's order, then the headline power laws."""
    fits = fit_study(sd) if fits is None else fits
    return [check(sd, fits) for check in CHECKS]


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([x.to_dict() for x in findings])


__all__ = ["Finding", "check_findings", "findings_frame", "VERDICTS", "YES", "NO", "INCONCLUSIVE", "NOT_MEASURED"]
