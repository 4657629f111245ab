"""Do the laws hold across model families? L(N) and N_opt(C) fitted on each family of one store, and the
difference of their exponents with an interval.

A store may hold the same size sweep trained as Kaplan's GPT-2-style decoder and as a Llama-style one (the
`families` preset: `family` is an axis of its spec). Each family's runs are analysed as a study of their own
(`StudyData` restricted to that family, laws from `fit_study`), so each exponent is fitted exactly as the report
fits it, with its bootstrap interval over whole runs.

The difference alpha_N(llama) - alpha_N(gpt2) (or between any two families, the second named minus the first):
- paired, when both families have the same number of sizes and every bootstrap resample of both fits converged:
  the size slots (the i-th smallest N of each family) are resampled together, one multinomial draw of slots for
  both families (the same seed and slot order make `fit_law`'s resample k draw the same slots in each), so noise
  shared by a size's two runs (same data, same seed, same budget) cancels in the difference;
- joint otherwise: the two families' resamples are independent (disjoint runs), the difference's distribution is
  that of draw k of one minus draw k of the other, with the draws of the second family shuffled.
Either way the interval is the 2.5-97.5 percentile of the resampled differences. N_opt(C)'s exponents come from
`frontier_laws`, whose fits keep no resamples: their difference's interval is the normal approximation from the
two bootstrap standard errors (independent runs), and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.analysis.study_data import StudyData, family_of, study_snapshot

__all__ = ["FamilyComparison", "FamilyLaws", "compare_families", "compare_store"]


@dataclass
class FamilyLaws:
    family: str
    n_runs: int
    sizes: list[float]  # the N of each size (the best run at each N of the size sweep)
    alpha_n: tuple[float, float, float] | None  # (estimate, 95% low, 95% high) of L(N)'s alpha_N
    n_opt: tuple[float, float, float] | None  # N_opt(C)'s exponent, 6ND convention
    notes: list[str] = field(default_factory=list)
    n_opt_se: float = float("nan")
    alpha_samples: np.ndarray | None = field(default=None, repr=False)
    alpha_complete: bool = False  # every bootstrap resample converged (draw k is resample k)

    def to_dict(self) -> dict:
        return {"family": self.family, "n_runs": self.n_runs, "sizes": self.sizes,
                "alpha_N": _triple(self.alpha_n), "N_opt_exponent": _triple(self.n_opt), "notes": self.notes}


@dataclass
class Difference:
    what: str  # "alpha_N" or "N_opt exponent"
    estimate: float
    low: float
    high: float
    method: str  # "paired bootstrap", "joint bootstrap", "normal approximation"

    @property
    def excludes_zero(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > 0 or self.high < 0))

    def to_dict(self) -> dict:
        return {"what": self.what, "estimate": _num(self.estimate), "ci": [_num(self.low), _num(self.high)],
                "method": self.method, "excludes_zero": self.excludes_zero}


@dataclass
class FamilyComparison:
    families: dict[str, FamilyLaws]
    differences: list[Difference]  # second family minus first, in `order`
    order: tuple[str, str] | None

    def to_dict(self) -> dict:
        return {"families": {k: v.to_dict() for k, v in self.families.items()},
                "order": list(self.order) if self.order else None,
                "differences": [d.to_dict() for d in self.differences]}

    def summary(self) -> str:
        lines = []
        for f in self.families.values():
            lines.append(f"{f.family}: {f.n_runs} runs, {len(f.sizes)} sizes (N {_range(f.sizes)})")
            lines.append(f"  alpha_N        {_fmt(f.alpha_n)}")
            lines.append(f"  N_opt exponent {_fmt(f.n_opt)}")
            lines.extend(f"  note: {n}" for n in f.notes)
        if self.order:
            a, b = self.order
            for d in self.differences:
                verdict = ("the interval excludes 0: the families differ" if d.excludes_zero
                           else "no verdict" if not np.isfinite([d.low, d.high]).all()
                           else "the interval includes 0: no difference shown")
                lines.append(f"{d.what}({b}) - {d.what}({a}) = {d.estimate:+.4f}  95% [{_n4(d.low)}, {_n4(d.high)}]"
                             f"  ({d.method}; {verdict})")
        else:
            lines.append("one family in this store: nothing to compare (train the sweep with family = "
                         "[\"gpt2\", \"llama\"], the `families` preset)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ analysis


def _family_frames(runs: pd.DataFrame, curves: pd.DataFrame, roles: pd.DataFrame, family: str, name: str):
    fam = runs[[family_of(c) == family for c in runs["config"]]]
    ids = set(fam["run_id"])
    return StudyData.from_frames(fam, curves[curves["run_id"].isin(ids)], roles[roles["run_id"].isin(ids)],
                                 name=f"{name} [{family}]")


def compare_families(runs: pd.DataFrame, curves: pd.DataFrame, roles: pd.DataFrame, *, n_resamples: int = 300,
                     seed: int = 0, name: str = "study", frontier: bool = True) -> FamilyComparison:
    """Fit L(N) and N_opt(C) on each family's runs (frames as `RunStore.snapshot` gives them) and compare the
    exponents of the first two families (gpt2 first when present). frontier=False skips N_opt(C) (its
    bootstrap redraws the frontier's envelope per resample: seconds per family)."""
    present = sorted({family_of(c) for c in runs["config"]}, key=lambda f: (f != "gpt2", f))
    fams: dict[str, FamilyLaws] = {}
    for fam in present:
        sd = _family_frames(runs, curves, roles, fam, name)
        byn = sd.main_by_n()
        fl = FamilyLaws(fam, int(len(sd.runs)), [float(n) for n in byn.get("N", [])], None, None)
        if len(byn) >= 3:
            fl.alpha_n, fl.alpha_samples, fl.alpha_complete, note = _alpha_n(byn, n_resamples, seed)
            if note:
                fl.notes.append(note)
        else:
            fl.notes.append(f"L(N) not fitted: {len(byn)} sizes, need at least 3")
        nopt, why = _n_opt(sd, n_resamples, seed) if frontier else (None, "not asked for")
        if nopt is None:
            fl.notes.append(f"N_opt(C): {why or 'not fitted'}")
        else:
            fl.n_opt, fl.n_opt_se = nopt
        fams[fam] = fl
    diffs: list[Difference] = []
    order = tuple(present[:2]) if len(present) >= 2 else None
    if order:
        a, b = fams[order[0]], fams[order[1]]
        if a.alpha_n and b.alpha_n:
            diffs.append(_alpha_difference(a, b, seed))
        if a.n_opt and b.n_opt:
            est = b.n_opt[0] - a.n_opt[0]
            ses = np.array([a.n_opt_se, b.n_opt_se], float)
            if np.isfinite(ses).all() and (ses > 0).all() and np.isfinite([*a.n_opt, *b.n_opt]).all():
                half = 1.959964 * float(np.hypot(*ses))
                diffs.append(Difference("N_opt exponent", est, est - half, est + half, "normal approximation"))
            else:  # a family's frontier gave no bootstrap interval (too few runs on it): no interval, no verdict
                diffs.append(Difference("N_opt exponent", est, float("nan"), float("nan"),
                                        "no interval: a family's N_opt has no bootstrap interval"))
    return FamilyComparison(fams, diffs, order)


def compare_store(path: str | Path, **kw) -> FamilyComparison:
    """`compare_families` on a run store."""
    path = Path(path)
    snap = study_snapshot(path)
    return compare_families(snap["runs"], snap["curves"], snap["roles"], name=path.stem, **kw)


def _alpha_n(byn: pd.DataFrame, n_resamples: int, seed: int):
    """alpha_N of L(N) with its bootstrap interval; groups coded by size slot (sorted by N) so that two families'
    fits with one seed draw the same slots in resample k."""
    import warnings

    from scalinglab.laws import fit_law

    byn = byn.sort_values("N").reset_index(drop=True)
    df = pd.DataFrame({"N": byn["N"].astype(float), "loss": byn["loss_best"].astype(float),
                       "group": [f"slot{i:03d}" for i in range(len(byn))]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        law = fit_law(df, "kaplan_n", n_resamples=n_resamples, seed=seed)
    note = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    if not law.converged:
        return None, None, False, f"L(N) did not converge ({law.message})"
    i = law.form.param_names.index("alpha_N")
    lo, hi = law.ci["alpha_N"]
    samples = law.samples[:, i] if law.samples is not None and len(law.samples) else None
    complete = law.n_resamples_ok == law.n_resamples > 0
    return (float(law.params["alpha_N"]), float(lo), float(hi)), samples, complete, note


def _n_opt(sd: StudyData, n_resamples: int, seed: int):
    from scalinglab.analysis.study_laws import fit_study, frontier_laws

    # approach 3 where the family's learning curves give a converged L(N, S) (the study's primary N_opt(C)), else
    # the envelope
    ns = fit_study(sd, n_resamples=n_resamples, only=["L(N,S)"]).get("L(N,S)")
    _, nf = frontier_laws(sd, "6ND", None, n_resamples, seed, ns=ns.law if ns is not None and ns.ok else None)
    if nf.law is None or not nf.law.converged:
        return None, nf.note
    lo, hi = nf.law.ci["exponent"]
    return ((float(nf.law.params["exponent"]), float(lo), float(hi)), float(nf.law.se.get("exponent", np.nan))), ""


def _alpha_difference(a: FamilyLaws, b: FamilyLaws, seed: int) -> Difference:
    est = b.alpha_n[0] - a.alpha_n[0]
    sa, sb = a.alpha_samples, b.alpha_samples
    if sa is None or sb is None or len(sa) < 2 or len(sb) < 2:
        return Difference("alpha_N", est, float("nan"), float("nan"), "no bootstrap resamples")
    if len(a.sizes) == len(b.sizes) and a.alpha_complete and b.alpha_complete and len(sa) == len(sb):
        d, method = sb - sa, "paired bootstrap over size slots"
    else:
        k = min(len(sa), len(sb))
        rng = np.random.default_rng(seed)
        d, method = sb[rng.permutation(len(sb))[:k]] - sa[:k], "joint bootstrap (independent resamples)"
    lo, hi = np.percentile(d, [2.5, 97.5])
    return Difference("alpha_N", est, float(lo), float(hi), method)


# ------------------------------------------------------------------------------------------------ text


def _triple(t):
    return None if t is None else {"estimate": _num(t[0]), "ci": [_num(t[1]), _num(t[2])]}


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)


def _n4(x) -> str:
    return f"{x:.4f}" if np.isfinite(x) else "-"


def _fmt(t) -> str:
    return "-" if t is None else f"{t[0]:.4f}  95% [{_n4(t[1])}, {_n4(t[2])}]"


def _range(ns) -> str:
    return "-" if not ns else f"{min(ns):.3g} to {max(ns):.3g}"


def write_comparison(cmp: FamilyComparison, out: str | Path) -> list[Path]:
    """families.json and families.txt in the folder `out` (files this function writes, nothing else)."""
    from scalinglab import outdir

    out = Path(out)
    j, t = out / "families.json", out / "families.txt"
    outdir.write_text(j, json.dumps(cmp.to_dict(), indent=1))  # listed in the folder's manifest, written beside
    outdir.write_text(t, cmp.summary() + "\n")
    return [j, t]
