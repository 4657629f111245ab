"""One object for a study's analysis: `analyze(store) -> StudyAnalysis`.

It holds the study's runs by role (`data`), every fitted law (`laws`), the compute frontier under both compute
conventions (`frontier`), the batch-size sweep (`batch`), the check of each finding (`findings`) and the
"predicted before seen" backtests of L(N, D) (`predicted`: fitted without the largest runs, asked for them);
scalinglab.report renders it (`render_report(analysis, out)`); the analysis never calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scalinglab.analysis.backtest import PredictedBeforeSeen, predicted_before_seen
from scalinglab.analysis.findings import Finding, check_findings
from scalinglab.analysis.study_data import StudyData
from scalinglab.analysis.study_laws import COMPUTE, LawFit, compute_frontier, critical_batch_law, fit_study


@dataclass
class StudyAnalysis:
    data: StudyData
    laws: dict[str, LawFit]
    findings: list[Finding]
    frontier: dict[str, pd.DataFrame] = field(default_factory=dict)  # "6ND" / "exact" -> C, loss, run_id, N
    n_resamples: int = 0
    predicted: PredictedBeforeSeen | None = None  # None: not run (an analysis built without it)

    @property
    def batch(self) -> LawFit | None:
        """B_crit(L) with the sweep's per-target table as its data (None without a batch sweep or noise scale)."""
        lf = self.laws.get("B_crit(L)")
        return lf if lf is not None and lf.law is not None else None

    @property
    def bcrit(self):
        """The B_crit(L) law runs are corrected with (from a batch-size sweep), or None."""
        return critical_batch_law(self.laws)

    def summary(self) -> str:
        lines = [f"{self.data.name}: {len(self.data.runs)} finished runs"]
        for key, lf in self.laws.items():
            lines.append(f"  {key}: {lf.text() if lf.law is not None else lf.note}")
        lines += [f"  finding {f.number}: {f.agrees}" for f in self.findings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"name": self.data.name, "n_runs": int(len(self.data.runs)), "n_resamples": self.n_resamples,
                "laws": {k: {"law": None if lf.law is None else lf.law.to_dict(), "note": lf.note,
                             "compute": lf.compute, "warnings": lf.warnings} for k, lf in self.laws.items()},
                "findings": [f.to_dict() for f in self.findings],
                "predicted_before_seen": None if self.predicted is None else self.predicted.to_dict()}


def analyze(store_or_data, *, n_resamples: int = 300, cache: str | Path | None = None,
            name: str | None = None) -> StudyAnalysis:
    """The analysis of a study: a run store path (or a StudyData already read)."""
    sd = store_or_data if isinstance(store_or_data, StudyData) else StudyData.from_store(store_or_data, name=name)
    laws = fit_study(sd, n_resamples=n_resamples, cache=cache)
    bcrit = critical_batch_law(laws)
    frontier = {c: compute_frontier(sd, bcrit=bcrit, compute=c) for c in COMPUTE}
    bt_cache = None if cache is None else Path(cache).with_name("backtest.json")
    return StudyAnalysis(data=sd, laws=laws, findings=check_findings(sd, laws), frontier=frontier,
                         n_resamples=n_resamples,
                         predicted=predicted_before_seen(sd, n_resamples=n_resamples, cache=bt_cache))
