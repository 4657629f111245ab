"""`scalinglab backtest FILE --holdout EXPR [--form F|auto]`: fit a law on the rows outside the holdout, predict
the held-out rows with 95% prediction intervals, and print the errors: how well the law predicts runs it never saw."""

from __future__ import annotations

import json

from scalinglab.commands._common import add_alias, add_n_resamples, fmt_num, positive_int
from scalinglab.commands.fit import add_law_options, forms_epilog, law_options
from scalinglab.laws.forms import FORM_NAMES

BACKTEST_FORMS = ("auto",) + tuple(f for f in FORM_NAMES if f in ("chinchilla", "chinchilla_tied",
                                                                  "chinchilla_shared_e", "overtrain",
                                                                  "data_constrained", "kaplan_nd", "kaplan_n"))


def register(subparsers):
    import argparse


    p = subparsers.add_parser("backtest", help="fit on smaller runs, predict held-out larger runs, score it",
                              description=__doc__, epilog=forms_epilog(BACKTEST_FORMS),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="CSV, Parquet or run store (SQLite) file")
    p.add_argument("--holdout", required=True, metavar="EXPR",
                   help="rows to hold out: comparisons such as \"N > 5e8\" (and/or, parentheses; a column name with "
                        "spaces in `backquotes`), or 'largest' / 'largest K' for the K largest model sizes")
    p.add_argument("--form", default="auto", choices=BACKTEST_FORMS, metavar="FORM",
                   help="law form, or auto: chosen by nested backtests inside the fitting data (default auto); the "
                        "forms are listed below")
    p.add_argument("--n", help="column of N (parameters)")
    p.add_argument("--d", help="column of D (training tokens); derived as C/(6N) when only --c is given")
    p.add_argument("--c", help="column of C (training FLOP)")
    p.add_argument("--loss", help="column of the loss")
    add_law_options(p, by_help="column of a grouping (dataset): each group is fitted and backtested separately, the "
                            "errors pooled (with chinchilla_shared_e: jointly, E shared)")
    p.add_argument("--run", help="column of the run id: the bootstrap resamples whole runs (default: each row)")
    add_alias(p, "--group", "by", metavar="COL")
    add_n_resamples(p, 1000, "bootstrap resamples (default 1000)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from scalinglab.laws.backtest import backtest

    opts = law_options(args, args.form, auto_ok=True)
    res = backtest(args.file, args.holdout, args.form, n=args.n, d=args.d, c=args.c, loss=args.loss, u=opts["u"],
                   by=opts["by"], run=args.run, n_resamples=args.n_resamples, seed=args.seed, n_jobs=args.jobs,
                   fix_e=opts["fix_e"], method=opts["method"])
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        _print(res)
    return 0 if res.converged else 1


def _print(res):
    from rich.console import Console
    from rich.table import Table


    con = Console()
    for key, sel in res.selections.items():
        con.print(("" if key is None else f"[{key}] ") + sel.text(), highlight=False)
    for key, law in res.laws.items():
        con.print(("" if key is None else f"[{key}] ") + f"fitted on {law.n_points} rows: {law.text()}",
                  highlight=False)
    grouped = bool((res.points["group"].astype(str) != "").any())
    t = Table(title=f"held out: {res.holdout} ({res.n_points} rows)")
    cols = (["group"] if grouped else []) + ["N", "D", "actual", "predicted", "95% interval", "rel. error"]
    for c in cols:
        t.add_column(c, justify="right")
    for r in res.points.itertuples(index=False):
        row = [str(r.group)] if grouped else []
        row += [fmt_num(r.n), fmt_num(r.d), f"{r.actual:.4f}", f"{r.predicted:.4f}",
                f"{r.low:.4f} - {r.high:.4f}", f"{100 * r.rel_error:.2f}%"]
        t.add_row(*row)
    con.print(t)
    lo, hi = res.ci["mean_rel_error"]
    con.print(f"  mean relative error {100 * res.mean_rel_error:.2f}% (95% CI {100 * lo:.2f} - {100 * hi:.2f}%), "
              f"max {100 * res.max_rel_error:.2f}%; coverage of the 95% intervals {100 * res.coverage95:.0f}% "
              f"({res.n_points} points)", highlight=False)
    if not res.converged:
        con.print(f"  [bold red]WARNING[/bold red]: {res.message}", highlight=False)
