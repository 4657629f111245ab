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

# Kaplan et al. 2020: the constants each law is compared with (the same for either compute convention)
PAPER = {**KAPLAN2020_LAWS, "L(C_min) exact": KAPLAN2020_LAWS["L(C_min)"],
         "N_opt(C) exact": KAPLAN2020_LAWS["N_opt(C)"]}


COMPUTE = ("6ND", "exact")  # the two conventions every compute law is fitted under
COMPUTE_TEXT = {"6ND": "Kaplan's 6*N*tokens", "exact": "the exact count (attention and unembedding included)"}
_FLOP_COLUMN = {"6ND": "flop", "exact": "flop_exact"}


@dataclass
class LawFit:
    key: str  # "L(N)", ...
    title: str
    law: object | None = None  # a FittedLaw or PowerLawFit (laws.result protocol); None when not fitted
    note: str = ""  # why it was not fitted, or what data it used and how
    data: pd.DataFrame = field(default_factory=pd.DataFrame)  # the points fitted
    compute: str | None = None  # "6ND" or "exact" for laws of compute
    warnings: list[str] = field(default_factory=list)  # the fit's warnings (FitWarning), as raised
    steps: str = "S"  # "S_min" when steps were corrected to the critical batch
    envelope: "LawFit | None" = None  # N_opt(C) from the surface: approach 1's fit beside it

    @property
    def ok(self) -> bool:
        return self.law is not None and bool(getattr(self.law, "converged", False))

    def text(self) -> str:
        """The law as the paper writes it; L(N, S) says S, not S_min, unless steps were corrected."""
        if self.law is None:
            return ""
        t = self.law.text()
        return t.replace("S_min", "S") if self.steps == "S" else t

    def add_note(self, text: str) -> None:
        self.note = (self.note + "; " if self.note else "") + text


def _fit(df: pd.DataFrame, form: str, n_resamples: int, caught: list | None = None, **kw):
    """fit_law, with its warnings collected into `caught` (shown in the report) instead of printed."""
    from scalinglab.laws import fit_law

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        law = fit_law(df, form, n_resamples=n_resamples, **kw)
    if caught is not None:
        caught.extend(dict.fromkeys(str(w.message) for w in got))
    return law


# ------------------------------------------------------------------------------------------------ frontier


def frontier_curves(sd: StudyData, compute: str = "6ND", bcrit=None) -> pd.DataFrame:
    """Curve points of the size sweep past warm-up's plateau (10% of steps) with `flop` under the chosen
    convention (and corrected to C_min with `bcrit`, a B_crit(L) law)."""
    cur = sd.curves
    ids = set(sd.sizes["run_id"])
    if cur.empty or not ids:
        return pd.DataFrame(columns=["run_id", "flop", "test_loss", "N"])
    c = cur[cur["run_id"].isin(ids) & ~cur["repeats"].astype(bool)].copy()
    c["flop"] = pd.to_numeric(c[_FLOP_COLUMN[compute]], errors="coerce")
    c = c[(c["flop"] > 0) & (c["step"] >= 0.1 * c["S_total"])]
    if bcrit is not None and len(c):
        c = _to_critical_batch(c, bcrit)
    return c


def _envelope(cv: pd.DataFrame, n_grid: int = 40) -> pd.DataFrame:
    from scalinglab.laws.frontier import envelope

    fr = envelope(cv.rename(columns={"test_loss": "loss"}), n_grid=n_grid, n_resamples=0)
    return fr.table.rename(columns={"run": "run_id"})[["C", "loss", "run_id", "N", "N_opt", "bracketed"]]


def compute_frontier(sd: StudyData, n_grid: int = 40, bcrit=None, compute: str = "6ND") -> pd.DataFrame:
    """Kaplan Fig. 1 left / Chinchilla approach 1: the lower envelope of the size sweep's learning curves in
    (C, test loss), on a log grid of C (scalinglab.laws.frontier.envelope), under either compute convention.
    Each point keeps the run (and its N) that reached it. With `bcrit` (a B_crit(L) law), C is C_min."""
    cv = frontier_curves(sd, compute, bcrit)
    if cv.empty or cv["run_id"].nunique() < 2:
        return pd.DataFrame(columns=["C", "loss", "run_id", "N"])
    return _envelope(cv, n_grid)


def interior(fr: pd.DataFrame, sizes=None) -> pd.DataFrame:
    """Frontier points whose optimum is bracketed by the sizes that reach that compute (the envelope's
    `bracketed`, with N_opt interpolated between them): where the best size there is the smallest or the largest,
    the optimal size may lie beyond it, so N_opt(C) is fitted inside only."""
    if fr.empty or "bracketed" not in fr:
        return fr.iloc[0:0]
    return fr[fr["bracketed"].astype(bool)]


def surface_frontier(sd: StudyData, ns, compute: str, bcrit, c_range: tuple[float, float]):
    """N_opt(C) from the fitted L(N, S) surface (scalinglab.laws.frontier.ns_optimum) under one convention: each
    size's FLOP per token from its own curve, B the size sweep's tokens per step; None when it cannot be had."""
    from scalinglab.laws.frontier import ns_optimum

    cur = sd.curves
    c = cur[cur["run_id"].isin(set(sd.sizes["run_id"])) & ~cur["repeats"].astype(bool)]
    flop = pd.to_numeric(c[_FLOP_COLUMN[compute]], errors="coerce")
    c = c.assign(fpt=flop / c["tokens"].astype(float))
    c = c[np.isfinite(c["fpt"]) & (c["fpt"] > 0)]
    if c["N"].nunique() < 2 or not (c_range[1] > c_range[0] > 0):
        return None
    per = c.groupby("run_id").agg(N=("N", "first"), fpt=("fpt", "median"), B=("B", "first"))
    try:
        return ns_optimum(ns, per["N"].astype(float), per["fpt"], float(per["B"].median()), c_range, bcrit=bcrit)
    except (ValueError, np.linalg.LinAlgError):
        return None


def run_effects(cv: pd.DataFrame, ns=None) -> tuple[pd.Series, int, str]:
    """Each run's log offset from a smooth reference, the number of parameters that absorbed run-level variation,
    and what the reference was. Offsets are read from the fitted L(N, S) surface at the run's own curve points (the
    median) where one converged, else from the final losses; a quadratic in log N (a line under 5 sizes) is then
    taken out of them, so a surface that misfits smoothly in N is not mistaken for run-to-run noise."""
    fin = cv.loc[cv.groupby("run_id")["flop"].idxmax()].set_index("run_id")
    if ns is not None and getattr(ns, "converged", False) and "step" in cv:
        pred = ns.predict(N=cv["N"].astype(float).to_numpy(), S=cv["step"].astype(float).to_numpy())
        r = np.log(cv["test_loss"].astype(float).to_numpy()) - np.log(np.asarray(pred, float))
        e = pd.Series(r, index=cv.index).groupby(cv["run_id"]).median()
        ref = "the fitted L(N, S) surface"
    else:
        e = np.log(fin["test_loss"].astype(float))
        ref = "the final losses"
    e = e[np.isfinite(e)]
    x = np.log(fin.loc[e.index, "N"].astype(float).to_numpy())
    deg = 2 if np.unique(x).size >= 5 else 1
    if np.unique(x).size <= deg + 1:
        return pd.Series(dtype=float), 0, "nothing"
    resid = e.to_numpy() - np.polyval(np.polyfit(x, e.to_numpy(), deg), x)
    return pd.Series(resid, index=e.index), deg + 1, \
        f"{ref} less a {'quadratic' if deg == 2 else 'line'} in log N"


def frontier_laws(sd: StudyData, compute: str, bcrit, n_resamples: int, seed: int = 0,
                  ns=None) -> tuple[LawFit, LawFit]:
    """L(C_min) and N_opt(C) of the compute frontier under one convention. L(C_min)'s interval comes from a
    bootstrap of the design's run-to-run noise (bootstrap_run_effects: every size kept, each run's offset from
    the fitted surface redrawn; each resample redraws the envelope and refits the law). N_opt(C)
    comes from the fitted L(N, S) surface `ns` minimised along iso-compute lines where one converged (its
    bootstrap over runs gives the interval), else from the envelope's interior points (approach 1: the discrete
    best size, biased towards flat by the few sizes, said in the note)."""
    from scalinglab.laws.frontier import MIN_SPAN_DECADES
    from scalinglab.laws.result import bootstrap_run_effects, percentile_ci, power_law_fit

    tag = "" if compute == "6ND" else " exact"
    lkey, nkey = f"L(C_min){tag}", f"N_opt(C){tag}"
    ltitle = f"L(C): compute-efficient frontier, C by {COMPUTE_TEXT[compute]}"
    ntitle = f"N_opt(C): the model size on the frontier, C by {COMPUTE_TEXT[compute]}"
    cv = frontier_curves(sd, compute, bcrit)
    if cv.empty or cv["run_id"].nunique() < 2 or not np.isfinite(cv["flop"]).any():
        why = ("not fitted: no exact FLOP counts in this store" if compute == "exact" and len(sd.curves)
               else "not fitted: needs the learning curves of >= 2 runs of the size sweep")
        return LawFit(lkey, ltitle, note=why, compute=compute), LawFit(nkey, ntitle, note=why, compute=compute)
    fr = _envelope(cv)
    trained = np.sort(cv.groupby("run_id")["N"].first().unique().astype(float))
    df = pd.DataFrame({"C": fr["C"], "loss": fr["loss"], "group": fr["run_id"]})
    caught: list[str] = []
    lf = LawFit(lkey, ltitle, data=df, compute=compute, warnings=caught)
    if len(df) < 4:
        lf.note = f"not fitted: {len(df)} frontier points, need at least 4"
        return lf, LawFit(nkey, ntitle, note=lf.note, compute=compute)
    try:
        law = _fit(df, "kaplan_cmin", 0, caught)
    except ScalingLabError as exc:
        lf.note = f"not fitted: {exc}"
        return lf, LawFit(nkey, ntitle, note=lf.note, compute=compute)
    lf.law = law
    inner = interior(fr, trained)
    nf = LawFit(nkey, ntitle, data=inner.rename(columns={"loss": "L"}), compute=compute)
    span = float(np.log10(inner["C"].max() / inner["C"].min())) if len(inner) else 0.0
    if len(inner) >= 3 and inner["N_opt"].nunique() >= 2 and span < MIN_SPAN_DECADES:
        nf.note = (f"not fitted: the {len(inner)} frontier points whose optimum is bracketed span {span:.2f} decades "
                   f"of compute, under {MIN_SPAN_DECADES}: too short a lever for an exponent")
    elif len(inner) >= 3 and inner["N_opt"].nunique() >= 2:
        nf.law = power_law_fit(inner["C"], inner["N_opt"], n_resamples=0, name="N_opt", var="C")
        nf.note = (f"approach 1: N_opt interpolated between the sizes that reach each compute; {len(fr) - len(inner)} "
                   f"of {len(fr)} frontier points are not bracketed by them and are left out")
    else:
        nf.note = (f"not fitted: {len(inner)} frontier point(s) have their optimum bracketed by the sizes that reach "
                   f"them ({trained.size} sizes), need at least 3")
    z0 = law.form.to_internal(law.form.theta(law.params)[None, :])
    cols = ["run_id", "flop", "test_loss", "N"]
    base = cv[cols].reset_index(drop=True)

    def stat(sub):
        if sub["run_id"].nunique() < 2:
            return None
        f = _envelope(sub)
        if len(f) < 4:
            return None
        b = _fit(pd.DataFrame({"C": f["C"], "loss": f["loss"]}), "kaplan_cmin", 0, grid=z0)
        out = [b.params["C_c_min"], b.params["alpha_C_min"], np.nan, np.nan] if b.converged else [np.nan] * 4
        inn = interior(f)
        if len(inn) >= 3 and inn["N_opt"].nunique() >= 2 and inn["C"].max() / inn["C"].min() >= 10 ** MIN_SPAN_DECADES:
            p = power_law_fit(inn["C"], inn["N_opt"], n_resamples=0)
            out[2:] = [p.coef, p.exponent]
        return out

    k = min(n_resamples, 200)
    effects, absorbed, ref = run_effects(cv, ns)
    sigma, sigma_dof, _ = sd.run_noise()
    if k > 0 and len(effects) >= 3:  # the design kept, its run-to-run noise redrawn
        how = (f"a bootstrap of the design's run-to-run noise (each run's offset from {ref}, redrawn; every size "
               "kept)" + (f", pooled with {sigma_dof} seed-replicate degrees of freedom" if sigma_dof else ""))
        draws = bootstrap_run_effects(
            lambda shift: stat(base.assign(test_loss=base["test_loss"] * np.exp(base["run_id"].map(shift)))),
            effects, k, seed, absorbed=absorbed, sigma=sigma, sigma_dof=sigma_dof)
    else:
        how = "too few runs for a bootstrap"
        draws = np.empty((0, 4))
    if draws.shape[1] == 4:
        ok_l = np.isfinite(draws[:, :2]).all(axis=1)
        (cc, ca) = percentile_ci(draws[ok_l, :2]) if ok_l.any() else ((np.nan,) * 2,) * 2
        law.ci = {"C_c_min": cc, "alpha_C_min": ca}
        law.se = {"C_c_min": float(np.std(draws[ok_l, 0])) if ok_l.sum() > 1 else np.nan,
                  "alpha_C_min": float(np.std(draws[ok_l, 1])) if ok_l.sum() > 1 else np.nan}
        law.samples = draws[ok_l][:, [0, 1]]
        law.n_resamples, law.n_resamples_ok = k, int(ok_l.sum())
        if nf.law is not None:
            ok_n = np.isfinite(draws[:, 2:]).all(axis=1)
            (nc, ne) = percentile_ci(draws[ok_n, 2:]) if ok_n.any() else ((np.nan,) * 2,) * 2
            nf.law.ci = {"coef": nc, "exponent": ne}
            nf.law.se = {"coef": float(np.std(draws[ok_n, 2])) if ok_n.sum() > 1 else np.nan,
                         "exponent": float(np.std(draws[ok_n, 3])) if ok_n.sum() > 1 else np.nan}
            nf.law.n_resamples, nf.law.n_resamples_ok = k, int(ok_n.sum())
            nf.law.message = f"least squares in log-log; intervals from {how} through the envelope"
    lf.note = f"intervals from {law.n_resamples_ok}/{law.n_resamples} resamples of {how}"
    if ns is not None and getattr(ns, "converged", False):
        pts = inner if len(inner) >= 2 else fr
        sf = surface_frontier(sd, ns, compute, bcrit, (float(pts["C"].min()), float(pts["C"].max())))
        if sf is not None and np.isfinite(sf.n_exponent):
            env = (f"approach 1 (the envelope's discrete best size) gives N_opt ~ C^{nf.law.exponent:.3g} "
                   f"[{nf.law.exponent_ci[0]:.3g}, {nf.law.exponent_ci[1]:.3g}]" if nf.law is not None
                   else f"approach 1 (the envelope) was not fitted: {nf.note}")
            env_fit = nf
            nf = LawFit(nkey, ntitle, law=sf.n_opt, data=pts.rename(columns={"loss": "L"}), compute=compute)
            nf.envelope = env_fit  # approach 1 beside it (section 6's relation is tested on it)
            nf.note = (f"approach 3: the fitted L(N, S{'_min' if bcrit is not None else ''}) surface minimised along "
                       f"iso-compute lines over C = {pts['C'].min():.3g} to {pts['C'].max():.3g}, intervals from its "
                       f"{sf.n_resamples_ok}/{sf.n_resamples} bootstrap draws over runs; {env}")
    return lf, nf


# ------------------------------------------------------------------------------------------------ all laws


def _fingerprint(df: pd.DataFrame, form: str, n_resamples: int) -> str:
    blob = pd.util.hash_pandas_object(df.reset_index(drop=True), index=False).to_numpy().tobytes()
    return hashlib.sha256(blob + f"{form}/{n_resamples}".encode()).hexdigest()[:16]


def converged_sizes(sd: StudyData) -> tuple[int, int]:
    """(sizes whose validation-chosen step is before their last evaluation, sizes): a run still improving at its
    end has not converged, and its loss overstates the converged L(N)."""
    byn = sd.main_by_n()
    if byn.empty:
        return 0, 0
    last = sd.curves.groupby("run_id")["step"].max() if not sd.curves.empty else pd.Series(dtype=float)
    done = [np.isfinite(r.best_step) and r.best_step < last.get(r.run_id, np.inf) for r in byn.itertuples()]
    return int(np.sum(done)), len(byn)


LAW_KEYS = ("L(N)", "L(D)", "L(N,D)", "B_crit(L)", "L(N,S)", "L(C_min)", "N_opt(C)", "L(C_min) exact",
            "N_opt(C) exact")


def fit_study(sd: StudyData, n_resamples: int = 300, cache: str | Path | None = None,
              only=None) -> dict[str, LawFit]:
    """Every law the study's runs allow, by name. With `cache` (a JSON file), a law whose points have not
    changed since it was last fitted is read back instead of refitted, and new fits are written to it. `only`
    (law keys, LAW_KEYS) fits just those (and B_crit(L), which corrects the others, when a batch sweep exists)."""
    want = set(LAW_KEYS if only is None else only)
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
        if key not in want:
            return
        if len(df) < need:
            out[key] = LawFit(key, title, note=f"not fitted: {len(df)} {what}, need at least {need}", data=df)
            return
        fp = _fingerprint(df, form, n_resamples)
        caught: list[str] = []
        if cached.get(key, {}).get("fingerprint") == fp:
            law = FittedLaw.from_dict(cached[key]["law"])
            caught = list(cached[key].get("warnings", []))
        else:
            try:
                law = _fit(df, form, n_resamples, caught, **kw)
            except ScalingLabError as exc:
                out[key] = LawFit(key, title, note=f"not fitted: {exc}", data=df)
                return
        fresh[key] = {"fingerprint": fp, "law": law.to_dict(max_samples=400), "warnings": caught}
        note = "" if law.converged else f"the fit did not converge ({law.message})"
        out[key] = LawFit(key, title, law=law, note=note, data=df, warnings=caught)

    how = {"validation": "at its validation minimum", "test": "at its test minimum (no validation split in this "
           "store: optimistic)", "final": "at its end"}
    stop = "; ".join(how.get(w, w) for w in sd.best_by.split(" and "))

    # L(N): the early-stopped loss of the best run at each N of the size sweep
    byn = sd.main_by_n()
    df = pd.DataFrame({"N": byn.get("N", []), "loss": byn.get("loss_best", []), "group": byn.get("run_id", [])})
    attempt("L(N)", "L(N): loss against non-embedding parameters", df, "kaplan_n", 3, "model sizes")
    if "L(N)" in out and out["L(N)"].law is not None:
        k, n = converged_sizes(sd)
        out["L(N)"].add_note(f"each size's test loss {stop}; {k} of {n} sizes reached their minimum before the "
                             "end of training (the others were still improving: their L(N) is an upper bound)")
        sigma, dof, groups = sd.run_noise()
        if np.isfinite(sigma):
            out["L(N)"].add_note(f"run-to-run noise of the final loss {100 * sigma:.2f}% from {groups} seed-replicate "
                                 f"group(s) ({dof} degrees of freedom)")

    # L(D): early-stopped loss of the largest model trained on each data subset
    sub = sd.subsets
    if not sub.empty:
        big = sub[sub["N"] == sub["N"].max()]
        big = big.loc[big.groupby("d_unique")["loss_best"].idxmin()]
        df = pd.DataFrame({"D": big["d_unique"].astype(float), "loss": big["loss_best"], "group": big["run_id"]})
    else:
        df = pd.DataFrame(columns=["D", "loss", "group"])
    attempt("L(D)", "L(D): early-stopped loss against data-subset size", df, "kaplan_d", 3, "data subsets")
    if "L(D)" in out and out["L(D)"].law is not None:
        out["L(D)"].add_note(f"the largest model of the subset runs, test loss {stop}")

    # L(N, D): data-subset runs at D = D_unique, with the size sweep at D = the tokens it saw (no repetition)
    sizes = sd.sizes[~sd.sizes["repeats"]]
    rr = pd.concat([sd.subsets, sizes]).drop_duplicates("run_id") if not sd.subsets.empty else pd.DataFrame()
    if not rr.empty:
        dd = np.where(rr["repeats"], rr["d_unique"].astype(float), rr["D"].astype(float))
        df = pd.DataFrame({"N": rr["N"].astype(float), "D": dd, "loss": rr["loss_best"], "group": rr["run_id"]})
    else:
        df = pd.DataFrame(columns=["N", "D", "loss", "group"])
    attempt("L(N,D)", "L(N, D): loss against model size and data (eq. 1.5)", df, "kaplan_nd", 6,
            "runs (sizes x data subsets)")

    # B_crit(L): measured directly from a batch-size sweep where the study has one (Kaplan section 5), with the
    # noise scale read at the same losses beside it; else from the gradient noise scale alone
    noise = noise_scale_points(sd)
    sweep = batch_sweep_bcrit(sd, n_resamples) if want & {"B_crit(L)", "L(N,S)", "L(C_min)", "L(C_min) exact",
                                                         "N_opt(C)", "N_opt(C) exact"} else None
    if sweep is not None:
        data = sweep.table.rename(columns={"target": "L"})
        lrs = sweep.lr_note
        note = (f"from the batch-size sweep of N = {sweep.N:,} (B = {sweep.batch_sizes[0]} to "
                f"{sweep.batch_sizes[-1]} tokens), {len(data)} target losses; intervals from "
                f"{sweep.law.n_resamples_ok}/{sweep.law.n_resamples} bootstrap resamples of whole runs"
                + (f"; {lrs}" if lrs else ""))
        if len(noise):
            note += f"; the noise scale, read at the same losses, is in the B_noise column ({len(noise)} points)"
        out["B_crit(L)"] = LawFit("B_crit(L)", "B_crit(L): critical batch against loss", law=sweep.law, note=note,
                                  data=data, warnings=list(getattr(sweep, "warnings", [])))
    else:
        attempt("B_crit(L)", "B_crit(L): critical batch against loss", noise, "bcrit", 4, "noise-scale points",
                loss="B_crit", l="L")
        if "B_crit(L)" in out:
            out["B_crit(L)"].add_note("from the gradient noise scale (no batch-size sweep in this study)")
    # Kaplan section 5: with a measured B_crit(L), steps and compute are corrected to what each run would have
    # needed at the critical batch, S_min = S/(1 + B_crit/B) and C_min = C/(1 + B/B_crit), before L(N, S_min)
    # and L(C_min) are fitted; the uncorrected exponents stay in the notes for comparison
    bcrit = critical_batch_law(out)

    def uncorrected(df, form, exponent) -> str:
        try:
            return f"{_fit(df, form, 0).params[exponent]:.3g}"
        except ScalingLabError:
            return "not fitted"

    # L(N, S): learning curves of the size sweep after warm-up
    df = learning_curve_points(sd, bcrit=bcrit)
    title = "L(N, S_min): learning curves against steps at the critical batch (eq. 1.6)" if bcrit is not None \
        else "L(N, S): learning curves against steps S (eq. 1.6 has S_min; no batch-size sweep to correct S)"
    attempt("L(N,S)", title, df, "kaplan_ns", 8, "curve points")
    if "L(N,S)" in out:
        out["L(N,S)"].steps = "S_min" if bcrit is not None else "S"
    if "L(N,S)" in out and bcrit is not None and len(df) >= 8:
        out["L(N,S)"].add_note("S_min corrected with the sweep's B_crit(L); uncorrected alpha_S = "
                               + uncorrected(learning_curve_points(sd), "kaplan_ns", "alpha_S"))
        carried = carry_bcrit(out["L(N,S)"].law, sd, bcrit)
        if carried:
            out["L(N,S)"].add_note(carried)
    ns = out["L(N,S)"].law if "L(N,S)" in out else None
    if "L(N)" in out and out["L(N)"].law is not None and ns is not None and ns.converged:
        lo, hi = ns.ci.get("alpha_N", (np.nan, np.nan))
        out["L(N)"].add_note(f"the L(N, S -> inf) term of the learning-curve fit gives alpha_N = "
                             f"{ns.params['alpha_N']:.3g} [{lo:.3g}, {hi:.3g}]")

    # L(C_min) and N_opt(C): the compute frontier, under both conventions
    for compute in COMPUTE:
        tag = "" if compute == "6ND" else " exact"
        if not want & {f"L(C_min){tag}", f"N_opt(C){tag}"}:
            continue
        lf, nf = frontier_laws(sd, compute, bcrit, n_resamples, ns=ns)
        out[lf.key], out[nf.key] = lf, nf
        if lf.law is not None:
            if bcrit is None:
                lf.add_note("frontier at the batch sizes trained (no C_min batch correction)")
            else:
                raw = compute_frontier(sd, compute=compute)
                lf.add_note("C_min corrected with the sweep's B_crit(L); uncorrected alpha_C = " + uncorrected(
                    pd.DataFrame({"C": raw["C"], "loss": raw["loss"], "group": raw["run_id"]}), "kaplan_cmin",
                    "alpha_C_min"))

    out = {k: v for k, v in out.items() if k in want}
    if cache is not None:
        from scalinglab import outdir

        outdir.write_text(cache, json.dumps(fresh, indent=1))  # never over a file scalinglab did not write
    return out


def carry_bcrit(law, sd: StudyData, bcrit, k: int = 100, seed: int = 0) -> str:
    """Carry B_crit(L)'s uncertainty into L(N, S_min): the surface is refitted at `k` bootstrap draws of the
    B_crit(L) law (each draw recomputes every point's S_min) and each draw's shift of the parameters (in the fit's
    internal, log-scale coordinates) is added to the run bootstrap draw of the same index, so the law's samples,
    intervals and standard errors hold both sources (and frontier draws paired by index with B_crit's stay
    paired). Returns the note saying so, or '' when there is nothing to carry."""
    if law is None or not law.converged or law.samples is None or len(law.samples) < 2:
        return ""
    bs = getattr(bcrit, "samples", None)
    if bs is None or len(bs) < 20:
        return ""
    form, names, bnames = law.form, list(law.form.param_names), list(bcrit.form.param_names)
    z0 = form.to_internal(form.theta(law.params)[None, :])
    k = min(k, len(bs))
    shifts = np.full((len(bs), len(names)), np.nan)
    for j in range(k):
        pts = learning_curve_points(sd, bcrit=dict(zip(bnames, bs[j])))
        try:
            f = _fit(pts, "kaplan_ns", 0, grid=z0)
        except ScalingLabError:
            continue
        if f.converged:
            shifts[j] = form.to_internal(form.theta(f.params)[None, :])[0] - z0[0]
    ok = np.isfinite(shifts).all(axis=1)
    if ok.sum() < 20:
        return ""
    pool = shifts[ok]
    idx = np.arange(len(law.samples)) % len(bs)  # paired by index with B_crit's draws where it was fitted
    use = np.where(ok[idx], idx, -1)
    rng = np.random.default_rng(seed)
    extra = np.where((use >= 0)[:, None], shifts[np.maximum(use, 0)], pool[rng.integers(0, len(pool), len(use))])
    z = form.to_internal(law.samples) + extra
    before = {n: law.ci[n] for n in names}
    law.samples = form.to_natural(z)
    lo, hi = np.percentile(law.samples, [2.5, 97.5], axis=0)
    law.ci = {n: (float(a), float(b)) for n, a, b in zip(names, lo, hi)}
    law.se = {n: float(v) for n, v in zip(names, np.std(law.samples, axis=0))}
    widths = ", ".join(f"{n} [{before[n][0]:.3g}, {before[n][1]:.3g}] -> [{law.ci[n][0]:.3g}, {law.ci[n][1]:.3g}]"
                       for n in names if n.startswith("alpha"))
    return (f"B_crit(L)'s uncertainty carried in: the surface refitted at {int(ok.sum())} of {k} B_crit(L) bootstrap "
            f"draws, each draw's shift added to a run-bootstrap draw ({widths})")


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
    factor = fixed["C_min"] / fixed["flop"]  # 1/(1 + B/B_crit): the same for either compute convention
    out = fixed.assign(step=fixed["S_min"], flop=fixed["C_min"])
    if "flop_exact" in out:
        out["flop_exact"] = out["flop_exact"] * factor
    return out


def learning_curve_points(sd: StudyData, upto_frac: float = 1.0, bcrit=None) -> pd.DataFrame:
    """Test-loss points of the size sweep's curves past warm-up (5% of steps) and up to a fraction of S; with
    `bcrit` (a B_crit(L) law), S is S_min."""
    cur = sd.curves
    main_ids = set(sd.sizes["run_id"])
    if cur.empty or not main_ids:
        return pd.DataFrame(columns=["N", "S", "loss", "group"])
    c = cur[cur["run_id"].isin(main_ids)]
    c = c[(c["step"] > 0.05 * c["S_total"]) & (c["step"] <= upto_frac * c["S_total"] + 1e-9)]
    if bcrit is not None and len(c):
        c = _to_critical_batch(c, bcrit)
    return pd.DataFrame({"N": c["N"].astype(float), "S": c["step"].astype(float), "loss": c["test_loss"],
                         "group": c["run_id"]}).reset_index(drop=True)


def batch_sweep_bcrit(sd: StudyData, n_resamples: int):
    """The batch-size sweep (role `batch`, one learning rate per batch size: the best by validation when several
    were tried) with the most target losses (scalinglab.analysis.critical_batch), or None without one."""
    from scalinglab.analysis.critical_batch import analyze_batch_sweep

    groups = sd.batch_groups()
    if sd.curves.empty or not groups:
        return None
    chosen = pd.concat([sd.lr_choice(g) for g in groups])
    try:
        sweeps = analyze_batch_sweep(chosen, sd.curves, n_resamples=max(n_resamples, 200))
    except ScalingLabError:
        return None
    sweeps = [r for r in sweeps if r.law is not None]
    if not sweeps:
        return None
    best = max(sweeps, key=lambda r: (len(r.table), r.N))
    mine = chosen[chosen["N"] == best.N]
    if (mine["lrs_tried"].map(len) > 1).any():  # the choice, recorded where one was made
        best.lr_note = ("learning rate per batch size chosen by the lowest validation loss: " + ", ".join(
            f"B={int(b):,}: {lr:.3g} of {{{', '.join(f'{x:.3g}' for x in tried)}}}"
            for b, lr, tried in zip(mine["B"], mine["lr"].astype(float), mine["lrs_tried"])))
    return best


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
