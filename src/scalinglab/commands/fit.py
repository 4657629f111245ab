"""`scalinglab fit FILE --form chinchilla --n COL --d COL --loss COL`: fit a law, print it with 95% intervals."""

from __future__ import annotations

import json
import warnings

from scalinglab.laws.forms import FORM_NAMES, fmt_number


def register(subparsers):
    p = subparsers.add_parser("fit", help="fit a scaling law to a CSV, Parquet file or run store",
                              description=__doc__)
    p.add_argument("file", help="CSV, Parquet or run store (SQLite) file")
    p.add_argument("--form", default="chinchilla", choices=FORM_NAMES)
    p.add_argument("--n", help="column of N (non-embedding parameters)")
    p.add_argument("--d", help="column of D (training tokens); derived as C/(6N) when only --c is given")
    p.add_argument("--c", help="column of C (training FLOP)")
    p.add_argument("--s", help="column of S (steps)")
    p.add_argument("--l", help="column of the loss, for --form bcrit")
    p.add_argument("--loss", help="column of the response: the loss (B_crit for --form bcrit)")
    p.add_argument("--group", help="column of the run id: the bootstrap resamples whole runs")
    p.add_argument("--weights", help="column of point weights")
    p.add_argument("--irreducible", action="store_true", help="add L_inf to the single-variable Kaplan laws")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="K", help="bootstrap resamples (default 1000)")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta on log residuals (default 1e-3)")
    p.add_argument("--drop-highest-loss", type=int, default=0, metavar="K", help="drop the K highest-loss points")
    p.add_argument("--max-iter", type=int, default=500, help="L-BFGS iterations per start")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for the grid and bootstrap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from scalinglab.laws import fit_law

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the verdict is printed below, in the table or the JSON
        law = fit_law(args.file, form=args.form, n=args.n, d=args.d, c=args.c, s=args.s, l=args.l,
                      loss=args.loss, group=args.group, weights=args.weights, irreducible=args.irreducible,
                      n_resamples=args.bootstrap, delta=args.delta, seed=args.seed, max_iter=args.max_iter,
                      n_jobs=args.jobs, drop_highest_loss=args.drop_highest_loss)
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
              f"R^2(log) {law.r2_log:.4f}; bootstrap {law.n_resamples_ok}/{law.n_resamples}", highlight=False)
    verdict = "converged" if law.converged else "[bold red]DID NOT CONVERGE[/bold red]"
    con.print(f"  {verdict}: {law.message}", highlight=False)
