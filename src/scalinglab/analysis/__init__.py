"""A study's analysis: its runs by role, the laws fitted on them, the frontier, the critical batch, backtests and
the check of each finding against the paper, in one `StudyAnalysis` (`analyze(store)`). No rendering here
(scalinglab.report renders an analysis)."""

from scalinglab.analysis.study import StudyAnalysis, analyze

__all__ = ["StudyAnalysis", "analyze"]
