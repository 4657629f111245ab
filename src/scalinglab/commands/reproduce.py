"""`scalinglab reproduce`: data, study, fits and report for a preset, resumable at every stage."""

from __future__ import annotations

from scalinglab.commands._common import add_n_resamples, add_tracker_args, check_tracker_args, console, \
    positive_int
from scalinglab.reproduce import PRESETS, reproduce


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="reproduce Kaplan et al. 2020 at this machine's scale (resumable)")
    p.add_argument("--preset", choices=PRESETS, default="smoke",
                   help="ci (~1 min), smoke (~10 min on 2 cores, default), cpu (~1 h), gpu (one GPU, hours); "
                        "reconcile (Kaplan vs Chinchilla, ~1.5 h on 2 cores), reconcile_gpu (one GPU); families "
                        "(gpt2 and llama sizes compared, ~2 min)")
    p.add_argument("--out", default=None, help="output directory (default: reproduce-<preset>)")
    p.add_argument("--workers", type=positive_int, default=None, help="runs trained at once (default: fill the cores)")
    add_n_resamples(p, None, "bootstrap resamples per fitted law (default: the preset's)")
    p.add_argument("--group", action="store_true",
                   help="train small runs of one shape together as one batched model (measured no faster on 2 "
                        "cores: benchmarks/grouped.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, one line per finished run")
    add_tracker_args(p)
    p.add_argument("--force", action="store_true",
                   help="write into an --out that holds other files: replace only scalinglab's own files there and "
                        "leave the rest (without it such a directory is refused)")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from scalinglab.commands.report import print_findings, print_laws

    check_tracker_args(args)
    res = reproduce(args.preset, args.out, workers=args.workers, n_resamples=args.n_resamples,
                    progress="lines" if args.quiet else True, log=lambda m: console.print(m), group=args.group,
                    tracker=args.tracker, tracker_dir=args.tracker_dir, force=args.force)
    if res.reconcile is not None:  # the reconcile preset: its steps, not Kaplan's findings
        for step in res.reconcile.steps:
            console.print(f"[{step.verdict}] {step.text}", highlight=False)
    else:
        print_laws(res.fits)
        print_findings(res.findings)
    t = res.timings
    console.print(f"report: {res.report}  (data {t['data_s']:.0f} s, runs {t['runs_s']:.0f} s, "
                  f"report {t['report_s']:.0f} s, total {t['total_s']:.0f} s; {res.runs_ran} runs trained now)")
    return 0
