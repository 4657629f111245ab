"""Scaling-law forms, their estimation with bootstrap intervals, frontiers and batch-size laws. No torch here:
a user can fit a CSV of their own runs with numpy, scipy and pandas alone.

    from scalinglab.laws import fit_law
    law = fit_law("runs.csv", form="chinchilla", n="params", d="tokens", loss="loss")
    law.params, law.ci, law.predict(N=1e9, D=2e10), print(law.summary())
"""

from scalinglab.laws.fit import FittedLaw, FitWarning, HoldoutResult, fit_law, validate_holdout
from scalinglab.laws.forms import FORM_NAMES, Form, get_form

__all__ = ["FittedLaw", "FitWarning", "HoldoutResult", "fit_law", "validate_holdout", "FORM_NAMES", "Form",
           "get_form"]
