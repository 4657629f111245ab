"""`scalinglab plan --compute 5.76e23 --law chinchilla2022`: the compute-optimal N, D, batch, steps and loss."""

from __future__ import annotations

import json
from pathlib import Path

from scalinglab.laws.forms import fmt_number
from scalinglab.published import PF_DAY


def register(subparsers):
    p = subparsers.add_parser("plan", help="compute-optimal model size, tokens, batch and expected loss",
                              description=__doc__)
    p.add_argument("--compute", required=True, help="budget in FLOP, or with a unit: 3e3PF-days")
    p.add_argument("--law", default="chinchilla2022", choices=["chinchilla2022", "epoch2024", "kaplan2020"],
                   help="published constants to plan with (default chinchilla2022)")
    p.add_argument("--fit-json", help="a fitted chinchilla law: the output of `scalinglab fit --json`")
    p.add_argument("--store", help="a run store: fit the chinchilla law to its finished runs and plan with it")
    p.add_argument("--bcrit-json", help="a fitted B_crit(L) law (`scalinglab fit --form bcrit --json`)")
    p.add_argument("--size-factor", type=float, nargs="*", default=[0.5, 0.75, 1.5, 2.0],
                   help="model sizes, as multiples of the optimum, whose extra compute to report")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _read_law(path):
    from scalinglab.errors import DataError
    from scalinglab.laws.fit import FittedLaw

    try:
        return FittedLaw.from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read a fitted law ({exc}); write one with `scalinglab fit ... --json`")


def run(args) -> int:
    from scalinglab.plan import plan_compute

    law = args.law
    if args.fit_json:
        law = _read_law(args.fit_json)
    elif args.store:
        from scalinglab.laws import fit_law

        law = fit_law(args.store, form="chinchilla", n_resamples=400, strict=True)
    bcrit = _read_law(args.bcrit_json) if args.bcrit_json else None
    plan = plan_compute(args.compute, law, bcrit_law=bcrit, size_factors=tuple(args.size_factor))
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
    for name, label in (("N_opt", "N_opt (parameters)"), ("D_opt", "D_opt (tokens)"),
                        ("B_crit", "B_crit (tokens/step)"), ("steps", "steps"), ("loss", "expected loss (nats)")):
        lo, hi = plan.intervals.get(name, (None, None))
        t.add_row(label, fmt_number(getattr(plan, name)), fmt_number(lo) if lo else "-",
                  fmt_number(hi) if hi else "-")
    con.print(t)
    o = plan.overfitting
    con.print(f"  overfitting: D >= {fmt_number(o['k'])} N^{fmt_number(o['exponent'])} = {fmt_number(o['D_needed'])} "
              f"tokens -> {'ok' if o['D_ok'] else 'TOO FEW TOKENS'} ({o['law']})", highlight=False)
    con.print(f"  early-stopping step (Kaplan eq. 5.7): {fmt_number(plan.early_stopping_step)}", highlight=False)
    for x, r in plan.size_penalty.items():
        con.print(f"  a model {x:g}x the optimal size needs {fmt_number(r)}x the compute for the same loss",
                  highlight=False)
    for note in plan.notes:
        con.print(f"  note: {note}", highlight=False)
    return 0
