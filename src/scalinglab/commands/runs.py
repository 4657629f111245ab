"""`scalinglab runs`: list, show and export the runs of a store."""

from __future__ import annotations

import json

from rich.table import Table

from scalinglab.commands._common import add_store_arg, fmt_num, out, print_table
from scalinglab.store import RunStore


def register(sub) -> None:
    p = sub.add_parser("runs", help="list, show or export the runs in a store")
    rs = p.add_subparsers(dest="runs_command", metavar="ACTION")
    rs.required = True
    lp = rs.add_parser("list", help="one line per run")
    add_store_arg(lp)
    lp.add_argument("--status", default=None, choices=("planned", "running", "done", "failed", "diverged"),
                    help="only the runs with this status")
    lp.add_argument("--json", action="store_true",
                    help="print the runs as JSON (one object per run: every column, config and final metrics)")
    lp.set_defaults(func=cmd_list)
    sp = rs.add_parser("show", help="one run: config, counts, final metrics, curve")
    sp.add_argument("run_id", help="run id (a unique prefix is enough) or run name")
    add_store_arg(sp)
    sp.set_defaults(func=cmd_show)
    ep = rs.add_parser("export", help="write runs and curves to CSV or Parquet")
    add_store_arg(ep)
    ep.add_argument("--out", required=True, help="output path stem, e.g. out/study (writes out/study_runs.csv ...)")
    ep.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ep.set_defaults(func=cmd_export)


def cmd_list(args) -> int:
    from scalinglab.analysis.study_data import family_of

    df = RunStore(args.store, readonly=True).runs(status=args.status)
    if args.json:
        print(json.dumps([_record(r) for r in df.to_dict("records")]))
        return 0
    t = Table(title=f"{len(df)} runs in {args.store}")
    for col in ("run_id", "name", "status", "family", "N", "D", "B", "C", "final_test_loss", "wall_time_s"):
        # the full id whatever the terminal's width: the name wraps instead
        t.add_column(col, justify="right" if col not in ("run_id", "name", "status", "family") else "left",
                     no_wrap=col != "name", min_width=16 if col == "run_id" else None, overflow="fold")
    for _, r in df.iterrows():
        t.add_row(r.run_id, str(r["name"] or ""), r.status, family_of(r["config"]), *(fmt_num(r[c]) for c in
                  ("N", "D", "B", "C", "final_test_loss", "wall_time_s")))  # fmt: skip
    print_table(t)
    return 0


def _record(row: dict) -> dict:
    """A runs-table row as JSON values: config and final metrics parsed, NaN as null."""
    import math

    rec = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if k in ("config", "final_metrics") and isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        rec[k] = v
    return rec


def cmd_show(args) -> int:
    store = RunStore(args.store, readonly=True)
    run = store.run(args.run_id)
    t = Table(title=f"run {run['run_id']}", show_header=False)
    for k, v in run.items():
        if k in ("config", "final_metrics"):
            continue
        t.add_row(k, fmt_num(v) if isinstance(v, (int, float)) else str(v))
    out.print(t)
    out.print("config:", json.loads(run["config"]))
    curve = store.curves([run["run_id"]])
    cols = [c for c in ("step", "tokens", "lr", "train_loss", "test_loss", "b_simple") if c in curve]
    out.print(curve[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def cmd_export(args) -> int:
    import sys

    store = RunStore(args.store, salvage=True)  # a damaged store: what can still be read is exported
    for p in store.export(args.out, args.format):
        out.print(f"wrote {p}")
    if store.damaged:
        print(f"scalinglab: warning: {args.store} is damaged ({store.damaged}); exported the rows that could still "
              "be read, which may not be all of them", file=sys.stderr)
    return 0
