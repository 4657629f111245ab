"""Scaling-law forms, their estimation with bootstrap intervals, frontiers and batch-size laws. No torch here:
a user can fit a CSV of their own runs with numpy, scipy and pandas alone.

    from scalinglab.laws import fit_law
    law = fit_law("runs.csv", form="chinchilla", n="params", d="tokens", loss="loss")
    law.params, law.ci, law.predict(N=1e9, D=2e10), print(law.summary())
    fit_law("runs.csv", "chinchilla", Columns(n="params", d="tokens", loss="loss", run="run_id"),
            FitOptions(n_resamples=400, huber_delta=1e-3))      # the same, as a columns spec and options

    from scalinglab.laws import backtest
    res = backtest("runs.csv", holdout="N > 5e8", form="auto")   # fit the rest, predict the held-out runs
    res.mean_rel_error, res.coverage95, res.points

    from scalinglab.laws import fit_curve_law                   # whole curves, any LR schedule (Tissue et al. 2024)
    law = fit_curve_law(store.curves(), loss="test_loss")      # L(s) = L0 + A S1^-alpha - C S2
    law.predict_final(lr_per_update)                            # the final loss under another schedule or budget
"""


import importlib as _importlib
import sys as _sys
import types as _types

# name -> the module that defines it, imported on first use: importing a submodule (laws.forms, for the command
# line's choices) then does not import SciPy and pandas, which the fitting modules need (about 1.5 s).
_API = {
    "FittedLaw": "scalinglab.laws.fit", "FitWarning": "scalinglab.laws.fit", "fit_law": "scalinglab.laws.fit",
    "Columns": "scalinglab.laws.fit", "FitOptions": "scalinglab.laws.fit",
    "BacktestResult": "scalinglab.laws.backtest", "backtest": "scalinglab.laws.backtest",
    "CurveLaw": "scalinglab.laws.curve", "fit_curve_law": "scalinglab.laws.curve",
    "backtest_curve_law": "scalinglab.laws.curve",
    "FORM_NAMES": "scalinglab.laws.forms", "Form": "scalinglab.laws.forms", "get_form": "scalinglab.laws.forms",
}

__all__ = ["FittedLaw", "FitWarning", "BacktestResult", "backtest", "fit_law", "Columns", "FitOptions", "FORM_NAMES",
           "Form", "get_form", "CurveLaw", "fit_curve_law", "backtest_curve_law"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'scalinglab.laws' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(__all__) | {k for k in globals() if k.startswith("__")})


class _Laws(_types.ModuleType):
    def __setattr__(self, name, value):
        # importing the submodule laws.backtest binds the module to this name; the name is the function's
        if name == "backtest" and isinstance(value, _types.ModuleType):
            value = value.backtest
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Laws
