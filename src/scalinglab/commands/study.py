"""`scalinglab study`: run a declared sweep (resumable, local processes / Ray / torchrun) and show where it stands.

    scalinglab study run SPEC [--dry-run] [--workers W] [--threads-per-worker T] [--ray auto|ADDRESS]
                              [--nproc-per-node K] [--sequential] [--retry-failed] [--max-attempts K]
                              [--group] [--store PATH] [--tracker tensorboard|mlflow|wandb] [--tracker-dir DIR]
    scalinglab study status SPEC [--store PATH]
    scalinglab study families STORE [--bootstrap K] [--json] [--no-frontier]
"""

from __future__ import annotations

from scalinglab.commands._common import add_n_resamples, add_tracker_args, check_tracker_args, console, fmt_num, \
    out, positive_int, print_table
from scalinglab.published import PF_DAY
from scalinglab.store import RunStore


def register(sub) -> None:
    p = sub.add_parser("study", help="run a study (a sweep declared in TOML) or show its status")
    ss = p.add_subparsers(dest="study_command", metavar="ACTION")
    ss.required = True

    rp = ss.add_parser("run", help="run every run of the study that is not done (safe to kill and restart)")
    rp.add_argument("spec", help="study spec (TOML)")
    rp.add_argument("--store", default=None, help="run store (default: the spec's, or <spec dir>/<name>.sqlite)")
    rp.add_argument("--dry-run", action="store_true", help="print the plan (runs, N, D, B, C, est. time) and exit")
    rp.add_argument("--workers", type=positive_int, default=None, help="runs at once (default: as many as fit the cores)")
    rp.add_argument("--threads-per-worker", type=positive_int, default=None,
                    help="torch threads per run (default: by model size, 1 for tiny models)")
    how = rp.add_mutually_exclusive_group()
    how.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                     help="run on Ray: 'auto' joins a running cluster or starts a local one; or a cluster address")
    how.add_argument("--sequential", action="store_true", help="one run after another in this process")
    how.add_argument("--nproc-per-node", type=positive_int, default=None, metavar="K",
                     help="train each run across K processes (torchrun, DDP: gloo on CPU, nccl on CUDA)")
    rp.add_argument("--retry-failed", action="store_true", help="also re-run runs that failed")
    rp.add_argument("--max-attempts", type=positive_int, default=3, metavar="K",
                    help="Ray: resubmit a run whose worker process died, up to K attempts in all (default 3)")
    rp.add_argument("--group", action="store_true",
                    help="train small runs of one shape together as one batched model (measured no faster on 2 "
                         "cores: benchmarks/grouped.py)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar (a line per finished run stays)")
    rp.add_argument("--no-probe", action="store_true", help="skip the throughput probe (no time estimate)")
    add_tracker_args(rp)
    rp.set_defaults(func=cmd_run)

    sp = ss.add_parser("status", help="runs by status, FLOP done of planned, one line per run")
    sp.add_argument("spec", help="study spec (TOML)")
    sp.add_argument("--store", default=None)
    sp.set_defaults(func=cmd_status)

    fp = ss.add_parser("families", help="compare the laws of the model families in one store (alpha_N, N_opt)",
                       description="Fit L(N) and N_opt(C) on each model family's runs of a store (gpt2, llama) and "
                                   "print each exponent with its 95%% bootstrap interval and the interval of their "
                                   "difference (the `families` preset trains such a store).")
    fp.add_argument("store", help="run store (.sqlite) holding the runs of more than one family")
    add_n_resamples(fp, 300, "bootstrap resamples (default 300)")
    fp.add_argument("--no-frontier", action="store_true", help="skip N_opt(C) (its bootstrap takes seconds)")
    fp.add_argument("--json", action="store_true", help="print JSON instead of text")
    fp.set_defaults(func=cmd_families)


def cmd_run(args) -> int:
    from scalinglab.sweep import load_study, plan_study, run_study

    check_tracker_args(args)
    study = load_study(args.spec, store=args.store, progress=not args.no_progress)
    study.tracker, study.tracker_dir = args.tracker, args.tracker_dir
    for kept, dropped in study.merged:
        console.print(f"note: {dropped} is the same model and budget as {kept}: trained once")
    if args.dry_run:
        store = RunStore(study.store_path, readonly=True) if study.store_path.exists() else None
        plan = plan_study(study, store=store, workers=args.workers, threads_per_worker=args.threads_per_worker,
                          retry_failed=args.retry_failed, probe=not args.no_probe, nproc_per_node=args.nproc_per_node,
                          log=lambda msg: console.print(msg, highlight=False))
        _print_plan(plan)
        return 0
    executor = "ray" if args.ray else "sequential" if args.sequential else "local"
    summary = run_study(study, executor=executor, workers=args.workers, threads_per_worker=args.threads_per_worker,
                        ray_address=args.ray, retry_failed=args.retry_failed,
                        progress="lines" if args.no_progress else True, nproc_per_node=args.nproc_per_node,
                        probe=False if args.no_probe else None, max_attempts=args.max_attempts,
                        group=args.group)
    if summary.failed:
        console.print(f"{summary.failed} run(s) failed (see `scalinglab study status {args.spec}`); "
                      "re-run with --retry-failed", highlight=False)
        return 1
    return 0


def _full(col: str) -> dict:
    """Run ids in full whatever the terminal's width: the names and errors wrap instead (piped: see print_table)."""
    return {"no_wrap": True, "min_width": 16} if col == "run_id" else {"overflow": "fold"}


def _print_plan(plan) -> None:
    from rich.table import Table

    from scalinglab.sweep.runner import _fmt_s

    t = Table(title=f"study {plan.study.name}: plan ({len(plan.todo)} of {len(plan.runs)} runs to run)")
    from scalinglab.accounting import fmt_bytes

    for col in ("run", "run_id", "status", "N", "D", "B", "C", "threads", "memory", "est. time"):
        t.add_column(col, justify="left" if col in ("run", "run_id", "status") else "right", **_full(col))
    too_large = {r.run_id for r in plan.too_large()}
    for r in plan.runs:
        i = r.info
        mem = fmt_bytes(r.memory) + (" !" if r.run_id in too_large else "")
        t.add_row(r.config.name, r.run_id, r.status, fmt_num(i["N"]), fmt_num(i["D"]), fmt_num(i["B"]),
                  f"{i['C']:.3g}", str(r.threads), mem, _fmt_s(r.est_s) if r.est_s is not None else "-")
    print_table(t)
    for r in plan.runs:
        if r.run_id in too_large:
            out.print(f"warning: {plan.memory_error(r)}; it cannot run here", markup=False, highlight=False,
                      soft_wrap=True)
        for note in r.notes:
            out.print(f"warning: run {r.config.name or r.run_id}: {note}", markup=False, highlight=False,
                      soft_wrap=True)
    c_todo = sum(r.info["C"] for r in plan.todo)
    out.print(
        f"total C = {plan.flop_planned:.3g} FLOP (6ND; {plan.flop_planned / PF_DAY:.3g} PF-days), "
        f"{c_todo:.3g} to run; estimated wall time {_fmt_s(plan.est_wall_s)} on {plan.cores} cores; "
        f"store {plan.study.store_path}",
        highlight=False,
    )


def cmd_status(args) -> int:
    from rich.table import Table

    from scalinglab.sweep import load_study
    from scalinglab.sweep.runner import STATUSES_ORDER, study_status

    study = load_study(args.spec, store=args.store, prepare=False)
    if not study.store_path.exists():
        out.print(f"study {study.name}: {len(study.runs)} runs, none started yet (no store at {study.store_path})")
        return 0
    with RunStore(study.store_path, readonly=True) as store:
        rows = study_status(study, store)
    t = Table(title=f"study {study.name}: {len(rows)} runs ({study.store_path})")
    for col in ("status", "runs", "C (FLOP)"):
        t.add_column(col, justify="left" if col == "status" else "right")
    c_all = sum(r["C"] or 0 for r in rows)
    for s in STATUSES_ORDER:
        sel = [r for r in rows if r["status"] == s]
        if sel:
            t.add_row(s, str(len(sel)), f"{sum(r['C'] or 0 for r in sel):.3g}")
    out.print(t)
    c_done = sum(r["C"] or 0 for r in rows if r["status"] in ("done", "diverged"))
    out.print(f"FLOP done {c_done:.3g} of {c_all:.3g} planned ({100 * c_done / max(c_all, 1e-30):.0f}%)",
              highlight=False)
    rt = Table()
    for col in ("run", "run_id", "status", "N", "D", "C", "attempts", "test loss", "wall s", "error"):
        rt.add_column(col, justify="left" if col in ("run", "run_id", "status", "error") else "right", **_full(col))
    for r in rows:
        rt.add_row(r["name"], r["run_id"], r["status"], fmt_num(r["N"]), fmt_num(r["D"]),
                   fmt_num(r["C"]), fmt_num(r["attempts"]), fmt_num(r["final_test_loss"]),
                   fmt_num(r["wall_time_s"]), (r["error"] or "")[:80])
    print_table(rt)
    return 0


def cmd_families(args) -> int:
    import json

    from scalinglab.analysis.families import compare_store

    cmp = compare_store(args.store, n_resamples=args.n_resamples, frontier=not args.no_frontier)
    if args.json:
        print(json.dumps(cmp.to_dict()))
    else:
        out.print(cmp.summary(), highlight=False, soft_wrap=True)
    return 0
