"""`scalinglab curves STORE`: the schedule-aware learning-curve law (Tissue et al. 2024) fitted on whole curves, and
its backtest on the cooldown branches of warm-up-stable-decay runs: fit on the stable phase and the shorter
cooldowns, predict the longest cooldown's final loss, compare with the measured one."""

from __future__ import annotations

import json

from scalinglab.commands._common import nonnegative_int, out


def register(sub) -> None:
    p = sub.add_parser("curves", help="the learning-curve law on whole curves; backtest of the longest cooldown")
    p.add_argument("store", help="run store holding warm-up-stable-decay runs with cooldowns (RunConfig.cooldowns)")
    p.add_argument("--loss", default="test_loss",
                   help="the curve fitted: test_loss (default), loss_validation, or train_loss")
    p.add_argument("--bootstrap", type=nonnegative_int, default=1000, metavar="K",
                   help="bootstrap resamples of whole runs (default 1000)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    from scalinglab.analysis.curves import backtest_cooldowns
    from scalinglab.errors import FitError
    from scalinglab.store import RunStore

    with RunStore(args.store, readonly=True) as store:
        results = backtest_cooldowns(store, loss=args.loss, n_resamples=args.bootstrap)
    if not results:
        raise FitError(f"{args.store}: no stable phase with at least two finished cooldown branches (a run with "
                       "schedule = \"wsd\" and cooldowns = [...])")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for r in results:
        out.print(f"fitted on the stable phase and the shorter cooldowns: {r.law.n_points} points of "
                  f"{r.law.loss_column} in {r.law.n_runs} runs")
        out.print(f"  {r.law}")
        out.print(r.law.summary().split("\n", 1)[1])
        out.print(f"  {r}  {'inside' if r.covered else 'OUTSIDE'} its 95% interval")
    return 0
