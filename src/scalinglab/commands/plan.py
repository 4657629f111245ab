"""`scalinglab plan --compute 5.76e23 [--law chinchilla2022 | --law FILE]`: the compute-optimal model size N, tokens
D, critical batch, steps and the loss to expect for a budget. FILE is a fitted law (`scalinglab fit --json`, or a
study's report/fits.json): the plan then uses your own law, with 95% intervals from its bootstrap draws."""

from __future__ import annotations

import argparse
import json
import math

from scalinglab.laws.forms import fmt_number
from scalinglab.published import PF_DAY, PUBLISHED


def register(subparsers):
    p = subparsers.add_parser("plan", help="compute-optimal model size, tokens, batch and expected loss",
                              description=__doc__)
    p.add_argument("--compute", required=True, help="budget in FLOP, or with a unit: 3e3PF-days")
    p.add_argument("--law", default="chinchilla2022", metavar="NAME|FILE",
                   help=f"published constants ({', '.join(PUBLISHED)}; default chinchilla2022) or a fitted-law "
                        "JSON file: the output of `scalinglab fit --json`, or a study's report/fits.json")
    p.add_argument("--law-key", help="which law of a study's fits.json (default: its one law of N and D), or which "
                                     "group of a chinchilla_shared_e law")
    p.add_argument("--fit-json", help=argparse.SUPPRESS)  # the older name of --law FILE
    p.add_argument("--store", help="a run store: fit the chinchilla law to its finished runs and plan with it")
    p.add_argument("--bcrit-json", help="a fitted B_crit(L) law (`scalinglab fit --form bcrit --json`)")
    p.add_argument("--size-factor", type=float, nargs="*", default=[0.5, 0.75, 1.5, 2.0],
                   help="model sizes, as multiples of the optimum, whose extra compute to report")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from scalinglab.planner import plan_compute

    law = args.fit_json or args.law
    if args.store:
        from scalinglab.laws import fit_law

        law = fit_law(args.store, form="chinchilla", n_resamples=400, strict=True)
    plan = plan_compute(args.compute, law, law_key=args.law_key, bcrit_law=args.bcrit_json,
                        size_factors=tuple(args.size_factor))
    if args.json:
        print(json.dumps(plan.to_dict()))
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"plan for C = {fmt_number(plan.compute)} FLOP ({fmt_number(plan.compute / PF_DAY)} PF-days); "
                    f"law: {plan.law}")
    for col in ("quantity", "value", "95% low", "95% high"):
        t.add_column(col, justify="left" if col == "quantity" else "right")

    def cell(v):
        return fmt_number(v) if v is not None and math.isfinite(v) else "-"

    for name, label in (("N_opt", "N_opt (parameters)"), ("D_opt", "D_opt (tokens)"),
                        ("B_crit", "B_crit (tokens/step)"), ("steps", "steps"), ("loss", "expected loss (nats)")):
        lo, hi = plan.ci.get(name, (None, None))
        t.add_row(label, cell(plan.params[name]), cell(lo), cell(hi))
    ex = plan.extrapolation
    if ex.get("compute_range"):
        lo, hi = ex["compute_range"]
        where = (f"[bold red]OUTSIDE: {fmt_number(ex['factor'])}x {'above' if plan.compute > hi else 'below'}[/]"
                 if ex["outside"] else "inside")
        t.add_row("law's compute range (FLOP)", where, cell(lo), cell(hi))
    con.print(t)
    for line in plan.checks():
        con.print(line, highlight=False)
    return 0
