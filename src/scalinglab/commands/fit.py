"""`scalinglab fit FILE --form chinchilla --n COL --d COL --loss COL`: fit a law, print it with 95% intervals."""

from __future__ import annotations

import json
import math
import warnings

from scalinglab.commands._common import add_alias, add_n_resamples, nonnegative_int, positive_int
from scalinglab.errors import FitError
from scalinglab.laws.forms import FIX_E_FORMS, FORM_NAMES, fmt_number, form_help

# what the chinchilla-family forms need beyond N, D and the loss (FIX_E_FORMS: the registry's, laws.forms); `fit`
# and `backtest` take them the same way
U_FORMS = ("data_constrained",)


def add_law_options(p, *, by_help: str | None = None) -> None:
    """The options of the chinchilla family's forms, for `fit` and `backtest` alike."""
    p.add_argument("--fix-e", metavar="E", help="fix the irreducible loss E (a positive number) instead of fitting "
                                                "it: forms " + ", ".join(FIX_E_FORMS))
    p.add_argument("--u", metavar="COL", help="column of the unique tokens each run saw, for data_constrained "
                                              "(default: a column U, D_unique, d_unique or unique_tokens)")
    p.add_argument("--by", dest="by", metavar="COL",
                   help=by_help or "column of the groups (datasets) chinchilla_shared_e fits jointly, E shared")
    p.add_argument("--method", choices=("lbfgs", "vpnls"), default="lbfgs",
                   help="how the fit finds its optimum: lbfgs, L-BFGS from a grid of starts; vpnls, from the "
                        "variable-projection least-squares optimum (the chinchilla family; each bootstrap "
                        "resample from its own); both minimise the same Huber loss (default lbfgs)")


def law_options(args, form: str, *, auto_ok: bool = False) -> dict:
    """fix_e, u, by and method from the parsed options, checked against the form: a value the form cannot use, or a
    bad number, raises FitError (one line, exit 2)."""
    fix_e = getattr(args, "fix_e", None)
    if fix_e is not None:
        try:
            fix_e = float(fix_e)
        except (TypeError, ValueError):
            raise FitError(f"--fix-e {args.fix_e!r}: not a number; give the irreducible loss, e.g. --fix-e 1.69")
        if not (math.isfinite(fix_e) and fix_e > 0):
            raise FitError(f"--fix-e {args.fix_e!r}: the irreducible loss must be a positive number (nats/token)")
        if form not in FIX_E_FORMS and not (auto_ok and form == "auto"):
            raise FitError(f"--fix-e fixes E of the forms {', '.join(FIX_E_FORMS)}; form {form} has no such E")
    u = getattr(args, "u", None)
    if u is not None and form not in U_FORMS and not (auto_ok and form == "auto"):
        raise FitError(f"--u names the unique-tokens column of the form data_constrained; form {form} does not "
                       "use it")
    by = getattr(args, "by", None)
    if form == "chinchilla_shared_e" and by is None:
        raise FitError("form chinchilla_shared_e fits groups (datasets) jointly with one E: name their column "
                       "with --by COL")
    return {"fix_e": fix_e, "u": u, "by": by, "method": getattr(args, "method", "lbfgs")}


def forms_epilog(names=None) -> str:
    """The law forms, one line each, from the form registry (laws.forms.FORMS): name, what it is, its formula."""
    lines = ["law forms (--form):"]
    for name in names or FORM_NAMES:
        if name == "auto":
            lines.append("  auto                 chosen by nested backtests inside the fitting data")
        else:
            lines.append(f"  {name:<20} {form_help(name)}")
    return "\n".join(lines)


def register(subparsers):
    import argparse

    p = subparsers.add_parser("fit", help="fit a scaling law to a CSV, Parquet file or run store",
                              description=__doc__, epilog=forms_epilog(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="CSV, Parquet or run store (SQLite) file")
    p.add_argument("--form", default="chinchilla", choices=FORM_NAMES, metavar="FORM",
                   help="the law to fit (default chinchilla); the forms are listed below")
    p.add_argument("--n", help="column of N (non-embedding parameters)")
    p.add_argument("--d", help="column of D (training tokens); derived as C/(6N) when only --c is given")
    p.add_argument("--c", help="column of C (training FLOP)")
    p.add_argument("--s", help="column of S (steps)")
    p.add_argument("--l", help="column of the loss, for --form bcrit")
    p.add_argument("--loss", help="column of the response: the loss (B_crit for --form bcrit)")
    p.add_argument("--run", help="column of the run id: the bootstrap resamples whole runs")
    add_alias(p, "--group", "run")
    add_law_options(p)
    p.add_argument("--weights", help="column of point weights")
    p.add_argument("--irreducible", action="store_true", help="add L_inf to the single-variable Kaplan laws")
    add_n_resamples(p, 1000, "bootstrap resamples (default 1000)")
    p.add_argument("--huber-delta", type=float, default=1e-3, metavar="DELTA",
                   help="Huber delta on log residuals (default 1e-3)")
    add_alias(p, "--delta", "huber_delta", type=float)
    p.add_argument("--drop-highest-loss", type=nonnegative_int, default=0, metavar="K", help="drop the K highest-loss points")
    p.add_argument("--max-iter", type=positive_int, default=500, help="L-BFGS iterations per start")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes for the grid and bootstrap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from scalinglab.laws import fit_law

    opts = law_options(args, args.form)
    if opts["by"] is not None and args.form != "chinchilla_shared_e":
        raise FitError(f"--by names the groups chinchilla_shared_e fits jointly; form {args.form} fits one law "
                       "(for the run id the bootstrap resamples, use --run)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the verdict is printed below, in the table or the JSON
        law = fit_law(args.file, form=args.form, n=args.n, d=args.d, c=args.c, s=args.s, l=args.l,
                      loss=args.loss, run=args.run, weights=args.weights, irreducible=args.irreducible,
                      n_resamples=args.n_resamples, huber_delta=args.huber_delta, seed=args.seed, max_iter=args.max_iter,
                      n_jobs=args.jobs, drop_highest_loss=args.drop_highest_loss, **opts)
    if args.json:
        print(json.dumps(law.to_dict()))
    else:
        _print_table(law)
    if not law.converged:
        import sys

        print(f"scalinglab: the fit did not converge ({law.message}); its numbers are not to be used",
              file=sys.stderr)
        return 1
    return 0


def _print_table(law):
    from rich.console import Console
    from scalinglab.laws.fit import r2_text
    from rich.table import Table

    con = Console()
    title = f"{law.form.title}: {law.form.text()}"
    t = Table(title=title)
    for col in ("parameter", "estimate", "95% low", "95% high", "s.e."):
        t.add_column(col, justify="right" if col != "parameter" else "left")
    for p in law.form.param_names:
        lo, hi = law.ci[p]
        t.add_row(p, fmt_number(law.params[p]), fmt_number(lo), fmt_number(hi), fmt_number(law.se[p]))
    con.print(t)
    con.print(f"  {law.text()}", highlight=False)
    con.print(f"  {law.n_points} points in {law.n_groups} groups; RMSE(log) {law.rmse_log:.4g}; "
              f"R^2(log) {r2_text(law.r2_log)}; bootstrap {law.n_resamples_ok}/{law.n_resamples}",
              highlight=False)
    verdict = "converged" if law.converged else "[bold red]DID NOT CONVERGE[/bold red]"
    con.print(f"  {verdict}: {law.message}", highlight=False)
