"""`scalinglab batch STORE`: the critical batch size of every batch-size sweep in a store (Kaplan section 5)."""

from __future__ import annotations

import json

from rich.table import Table

from scalinglab.commands._common import add_n_resamples, fmt_num, out, positive_int


def register(sub) -> None:
    p = sub.add_parser("batch", help="critical batch size from a batch-size sweep, against the noise scale")
    p.add_argument("store", help="run store of a study with >= 3 batch sizes at one model shape")
    p.add_argument("--targets", type=positive_int, default=5, help="number of target losses (default 5)")
    add_n_resamples(p, 500, "bootstrap resamples for B_crit(L) (default 500)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of tables")
    p.set_defaults(func=run)


def run(args) -> int:
    from scalinglab.analysis.critical_batch import analyze_store, to_json
    from scalinglab.errors import FitError

    results = analyze_store(args.store, n_targets=args.targets, n_resamples=args.n_resamples)
    if not results:
        raise FitError(f"{args.store}: no model shape has finished runs at >= 3 batch sizes")
    if args.json:
        print(json.dumps(to_json(results), indent=2))
        return 0
    for r in results:
        t = Table(title=f"N = {r.N:,}  shape {r.shape}  B = {r.batch_sizes} tokens")
        for col in ("target loss", "S_min", "E_min", "B_crit", "95% CI", "B_noise", "B_crit/B_noise", "runs"):
            t.add_column(col, justify="right")
        for _, row in r.table.iterrows():
            t.add_row(f"{row.target:.3f}", fmt_num(row.S_min), fmt_num(row.E_min), fmt_num(row.B_crit),
                      f"[{fmt_num(row.B_crit_low)}, {fmt_num(row.B_crit_high)}]", fmt_num(row.B_noise),
                      fmt_num(row.ratio_bcrit_to_noise), str(int(row.n_runs)))  # fmt: skip
        out.print(t)
        if r.law is not None:
            p, ci = r.law.params, r.law.ci
            out.print(f"  {r.law.form.text(p)}   alpha_B = {p['alpha_B']:.3f} "
                      f"[{ci['alpha_B'][0]:.3f}, {ci['alpha_B'][1]:.3f}]  B* = {p['B_star']:.3g} "
                      f"(Kaplan: alpha_B = 0.21, B* = 2e8)  converged={r.law.converged}")  # fmt: skip
        else:
            out.print("  fewer than 3 targets with >= 3 batch sizes: no B_crit(L) fit")
    return 0
