"""A study's "predicted before seen" check: fit on all but the largest model size (and, where the study varies
its data, all but the largest D), predict those runs, and compare with what they measured.

The runs are those of L(N, D) in study_laws: the size sweep at its tokens seen, and the data-subset runs at
their subset size D_unique with their early-stopped loss (Kaplan section 4), so the backtest asks the question
the study's own law answers.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.analysis.study_data import StudyData
from scalinglab.analysis.study_laws import _fingerprint
from scalinglab.errors import ScalingLabError
from scalinglab.laws.backtest import BacktestResult, backtest_frame, size_codes


@dataclass
class PredictedBeforeSeen:
    """The study's backtests: `by_size` holds out the largest N, `by_data` the largest D (None where not run,
    with the reason in `notes`)."""

    by_size: BacktestResult | None = None
    by_data: BacktestResult | None = None
    notes: list[str] = field(default_factory=list)
    form: str = "auto"
    choices: dict[str, str] = field(default_factory=dict)  # "largest N"/"largest D" -> what auto chose, and why

    @property
    def results(self) -> dict[str, BacktestResult]:
        return {k: v for k, v in (("largest N", self.by_size), ("largest D", self.by_data)) if v is not None}

    def to_dict(self) -> dict:
        return {"form": self.form, "notes": list(self.notes), "choices": dict(self.choices),
                "by_size": None if self.by_size is None else self.by_size.to_dict(),
                "by_data": None if self.by_data is None else self.by_data.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "PredictedBeforeSeen":
        def res(x):
            return None if x is None else BacktestResult.from_dict(x)

        return cls(by_size=res(d.get("by_size")), by_data=res(d.get("by_data")), notes=list(d.get("notes", [])),
                   form=d.get("form", "auto"), choices=dict(d.get("choices") or {}))


def backtest_points(sd: StudyData) -> pd.DataFrame:
    """N, D, L and group (run id) of the runs behind L(N, D): full-data size sweep plus data-subset runs."""
    parts = [sd.main] + ([sd.subsets] if not sd.subsets.empty else [])
    rr = pd.concat(parts) if any(len(p) for p in parts) else pd.DataFrame()
    if rr.empty:
        return pd.DataFrame(columns=["N", "D", "L", "group", "run_id"])
    rep = rr["repeats"].astype(bool).to_numpy()
    D = np.where(rep, pd.to_numeric(rr["d_unique"], errors="coerce"), rr["D"].astype(float))
    L = np.where(rep, rr["best_loss"].astype(float), rr["loss"].astype(float))
    out = pd.DataFrame({"N": rr["N"].astype(float).to_numpy(), "D": D, "L": L, "run_id": rr["run_id"].to_numpy()})
    out = out[np.isfinite(out[["N", "D", "L"]]).all(axis=1) & (out[["N", "D", "L"]] > 0).all(axis=1)]
    out = out.drop_duplicates("run_id").reset_index(drop=True)
    out["group"] = np.arange(len(out))
    return out


def _identified_form(fit: pd.DataFrame) -> str:
    """chinchilla, or chinchilla_tied where the fitting runs hold too few values of N or D to identify
    chinchilla's five parameters (the counting rule of laws.fit.design_problems)."""
    from scalinglab.laws.fit import design_problems
    from scalinglab.laws.forms import get_form

    X = {v: fit[v].to_numpy(float) for v in ("N", "D")}
    logy, w = np.log(fit["L"].to_numpy(float)), np.ones(len(fit))
    for name in ("chinchilla", "chinchilla_tied"):
        if not design_problems(get_form(name), X, logy, w):
            return name
    return "chinchilla"


def predicted_before_seen(sd: StudyData | str, form: str = "auto", *, n_resamples: int = 300, seed: int = 0,
                          n_jobs: int = 1, cache: str | Path | None = None) -> PredictedBeforeSeen:
    """Backtest the study's L(N, D) on its largest size and, where it varies D, its largest D. With form 'auto'
    and fewer than 4 model sizes to fit, the plain chinchilla form is used (auto needs sizes to backtest inside
    the fitting data) and a note says so. With `cache` (a JSON file) the result is read back while the runs
    behind it are unchanged, and written there otherwise."""
    if not isinstance(sd, StudyData):
        sd = StudyData.from_store(sd)
    pts = backtest_points(sd)
    fp = _fingerprint(pts[["N", "D", "L", "run_id"]].astype({"run_id": str}), f"backtest/{form}/{seed}",
                      n_resamples)
    if cache is not None and Path(cache).is_file():
        try:
            held = json.loads(Path(cache).read_text())
            if held.get("fingerprint") == fp:
                return PredictedBeforeSeen.from_dict(held["result"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable cache is recomputed and rewritten
    out = _predicted_before_seen(sd, pts, form, n_resamples, seed, n_jobs)
    if cache is not None:
        from scalinglab import outdir

        outdir.write_text(cache, json.dumps({"fingerprint": fp, "result": out.to_dict()}))
    return out


def _predicted_before_seen(sd: StudyData, pts: pd.DataFrame, form: str, n_resamples: int, seed: int,
                           n_jobs: int) -> PredictedBeforeSeen:
    out = PredictedBeforeSeen(form=form)
    if pts.empty:
        out.notes.append("no finished runs with N, D and a loss: nothing to backtest")
        return out
    codes = size_codes(pts["N"])
    n_sizes = int(codes.max()) + 1
    axes = [("by_size", "largest N", codes == codes.max(), n_sizes)]
    d_values = np.unique(pts["D"])
    if len(d_values) >= 3:
        axes.append(("by_data", "largest D", np.isclose(pts["D"], d_values.max()), len(d_values)))
    else:
        out.notes.append(f"largest D: not run, the study has {len(d_values)} value(s) of D (needs 3 to hold one "
                         "out)")
    main_ids = set(sd.main["run_id"]) if not sd.main.empty else set()
    for attr, label, mask, n_levels in axes:
        fit_sizes = len(np.unique(codes[~mask]))
        use, rows = form, pts
        fit = pts[~mask]
        if len(fit) < 6 or fit["D"].nunique() < 2:
            # too few runs, or one D, for a law in N and D: the size sweep's L(N) (Kaplan eq. 1.1) instead
            use = "kaplan_n"
            keep = pts["run_id"].isin(main_ids).to_numpy()
            rows, mask = pts[keep].reset_index(drop=True), mask[keep]
            out.notes.append(f"{label}: {len(fit)} runs with {fit['D'].nunique()} value(s) of D to fit, too few "
                             f"for L(N, D): L(N) of the size sweep ({len(rows)} runs) instead")
        elif form == "auto" and (fit_sizes if attr == "by_size" else fit["D"].nunique()) < 4:
            use = _identified_form(fit)
            what = "model sizes" if attr == "by_size" else "values of D"
            n_left = fit_sizes if attr == "by_size" else fit["D"].nunique()
            why = "" if use == "chinchilla" else (" (alpha = beta: chinchilla's five parameters need 3 values of N "
                                                  "and 3 of D)")
            out.notes.append(f"{label}: {n_left} {what} left to fit, too few for auto (4): {use} form{why}")
        if n_levels < 3:
            out.notes.append(f"{label}: not run, the study has {n_levels} level(s) (needs 3: two to fit, one to "
                             "predict)")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = backtest_frame(rows, mask, use, n_resamples=n_resamples, seed=seed, n_jobs=n_jobs,
                                     holdout=label, min_fit_sizes=2 if attr == "by_size" else 1,
                                     axis="N" if attr == "by_size" else "D")
        except ScalingLabError as exc:
            out.notes.append(f"{label}: not run ({exc})")
            continue
        setattr(out, attr, res)
        if res.selections:
            out.choices[label] = "; ".join(sel.text() for sel in res.selections.values())
    return out
