"""Scaling-law forms, their estimation with bootstrap intervals, frontiers and batch-size laws. No torch here:
a user can fit a CSV of their own runs with numpy, scipy and pandas alone.

    from scalinglab.laws import fit_law
    law = fit_law("runs.csv", form="chinchilla", n="params", d="tokens", loss="loss")
    law.params, law.ci, law.predict(N=1e9, D=2e10), print(law.summary())

    from scalinglab.laws import backtest
    res = backtest("runs.csv", holdout="N > 5e8", form="auto")   # fit the rest, predict the held-out runs
    res.mean_rel_error, res.coverage95, res.points
"""

from scalinglab.laws.backtest import BacktestResult, backtest
from scalinglab.laws.fit import FittedLaw, FitWarning, fit_law
from scalinglab.laws.forms import FORM_NAMES, Form, get_form

__all__ = ["FittedLaw", "FitWarning", "BacktestResult", "backtest", "fit_law", "FORM_NAMES", "Form", "get_form"]
