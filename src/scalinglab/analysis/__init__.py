"""A study's analysis: its runs by role, the laws fitted on them, the frontier, the critical batch, backtests and
the check of each finding against the paper. No rendering here (scalinglab.report renders an analysis)."""
