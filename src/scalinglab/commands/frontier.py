"""`scalinglab frontier FILE --n COL (--c COL | --d COL) --loss COL`: compute-optimal exponents N_opt ~ C^a and
D_opt ~ C^b from any table of runs (CSV, Parquet or run store), by one of Chinchilla's three approaches."""

from __future__ import annotations

import json
import math
import sys
import warnings

from scalinglab.commands._common import add_alias, add_n_resamples, positive_int
from scalinglab.errors import DataError, ScalingLabError


def register(subparsers):
    p = subparsers.add_parser("frontier", help="compute-optimal exponents N_opt(C), D_opt(C) from a table of runs",
                              description=__doc__)
    p.add_argument("file", help="CSV, Parquet or run store (SQLite) file: one row per run (or per evaluation)")
    p.add_argument("--n", required=True, help="column of N (model size)")
    p.add_argument("--c", help="column of C (training FLOP, in your convention)")
    p.add_argument("--d", help="column of D (training tokens); without --c, C = 6 N D; with --c, the FLOP per "
                               "token C/D is read off the data (approach 3)")
    p.add_argument("--loss", required=True, help="column of the loss")
    p.add_argument("--budget", help="column naming each run's compute budget (default: C clustered within "
                                    "0.05 decades)")
    p.add_argument("--approach", type=int, choices=(1, 2, 3), default=2,
                   help="1: envelope, 2: IsoFLOP minima (default), 3: fitted L(N, D) surface")
    p.add_argument("--by", metavar="COL", help="column splitting the runs into separate analyses (one result each)")
    add_alias(p, "--group", "by", metavar="COL")
    p.add_argument("--run", help="column of the run id, for approach 1 on learning curves (default: each row "
                                 "is its own run)")
    p.add_argument("--window", type=positive_int, default=2, help="approach 2: sizes on each side of a budget's lowest "
                                                         "loss in its parabola (default 2)")
    add_n_resamples(p, None, "bootstrap resamples (default 1000; approach 3, which refits the surface each time: 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object: group -> result")
    p.set_defaults(func=run)


def analyze(df, *, n, c=None, d=None, loss, budget=None, approach=2, run=None, window=2, n_resamples=None,
            seed=0):
    """One ComputeOptimal for the rows of `df` (the CLI's work, callable from Python)."""
    from scalinglab.laws.frontier import envelope, isoflop_minima, surface_optimum

    if n_resamples is None:
        n_resamples = 200 if approach == 3 else 1000
    if approach == 2:
        return isoflop_minima(df, n=n, c=c, d=d, loss=loss, budget=budget, window=window,
                              n_resamples=n_resamples, seed=seed)
    if approach == 1:
        frame = df.copy()
        flop = c
        if flop is None:
            frame["__C"] = 6.0 * frame[n].astype(float) * frame[d].astype(float)
            flop = "__C"
        if run is None:
            frame["__run"] = range(len(frame))
            run = "__run"
        return envelope(frame, run=run, flop=flop, loss=loss, n=n, d=d, n_resamples=n_resamples, seed=seed)
    return surface_optimum(df, n=n, d=d, c=c, loss=loss, run=run, n_resamples=n_resamples, seed=seed)


def run(args) -> int:
    from scalinglab.laws.inputs import read_table

    if args.c is None and args.d is None:
        raise DataError("frontier: give the compute (--c COL) or the tokens (--d COL) of each run")
    df = read_table(args.file)
    for flag, col in (("--n", args.n), ("--c", args.c), ("--d", args.d), ("--loss", args.loss),
                      ("--budget", args.budget), ("--by", args.by), ("--run", args.run)):
        if col is not None and col not in df.columns:
            raise DataError(f"{args.file}: no column {col!r} for {flag}; columns are: {', '.join(map(str, df.columns))}")
    groups = [("all", df)] if args.by is None else [(str(k), g) for k, g in df.groupby(args.by, sort=True)]
    results, failed = {}, 0
    for name, part in groups:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = analyze(part.reset_index(drop=True), n=args.n, c=args.c, d=args.d, loss=args.loss,
                              budget=args.budget, approach=args.approach, run=args.run, window=args.window,
                              n_resamples=args.n_resamples, seed=args.seed)
        except ScalingLabError as exc:
            if len(groups) == 1:
                raise
            results[name] = {"error": str(exc)}
            failed += 1
            continue
        results[name] = res
    if args.json:
        print(json.dumps({k: v if isinstance(v, dict) else v.to_dict() for k, v in results.items()}))
    else:
        _print(results, args.approach)
    if failed:
        print(f"scalinglab: {failed} of {len(groups)} group(s) could not be analysed (see above)", file=sys.stderr)
        return 1
    return 0


def _fmt(x):
    from scalinglab.laws.forms import fmt_number

    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt_number(x)


def _print(results, approach):
    from rich.console import Console
    from rich.table import Table

    from scalinglab.laws.frontier import APPROACH_NAMES

    t = Table(title=f"compute-optimal allocation, approach {approach} ({APPROACH_NAMES[approach]})")
    for col in ("group", "N_opt ~ C^a", "a 95%", "D_opt ~ C^b", "b 95%", "budgets used", "left out"):
        t.add_column(col, justify="left" if col == "group" else "right")
    notes = []
    for name, r in results.items():
        if isinstance(r, dict):
            t.add_row(name, "error", "", "", "", "", "")
            notes.append(f"{name}: {r['error']}")
            continue
        (lo, hi), (dlo, dhi) = r.n_exponent_ci, r.d_exponent_ci
        t.add_row(name, _fmt(r.n_exponent), f"[{_fmt(lo)}, {_fmt(hi)}]", _fmt(r.d_exponent),
                  f"[{_fmt(dlo)}, {_fmt(dhi)}]", str(len(r.budgets_used)) if r.approach != 3 else "-",
                  str(len(r.budgets_unbracketed)) if r.approach != 3 else "-")
        notes.append(f"{name}: {r.message}")
    con = Console()
    con.print(t)
    for line in notes:
        con.print(f"  {line}", highlight=False)
