"""`scalinglab report STORE_OR_STUDY --out DIR`: the HTML report, its figures and the findings table."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from rich.console import Console

from scalinglab.commands._common import add_n_resamples, console, out

wide = Console(width=max(out.width, 150))  # the findings table reads badly folded to 80 columns


def register(sub) -> None:
    p = sub.add_parser("report", help="fit the laws, check the findings, write figures and an HTML report")
    p.add_argument("source", help="a run store (.sqlite) or a study spec (.toml) whose store to report on")
    p.add_argument("--out", required=True, help="output directory (report.html, figN.png, fits.json)")
    add_n_resamples(p, 300, "bootstrap resamples per fitted law (default 300)")
    p.add_argument("--force", action="store_true",
                   help="write into an --out that holds other files: replace only scalinglab's own files there and "
                        "leave the rest (without it such a directory is refused)")
    p.set_defaults(func=cmd_report)


def store_of(source: str) -> Path:
    """The run store a report reads: the path itself, or the store a study spec names."""
    path = Path(source)
    if path.suffix == ".toml":
        from scalinglab.sweep import load_study

        return load_study(path, prepare=False).store_path
    return path


def print_findings(findings) -> None:
    t = Table(title="Kaplan et al. 2020, finding by finding", show_lines=True)
    for col in ("#", "finding", "paper", "this study", "agrees", "why"):
        t.add_column(col, overflow="fold")
    colour = {"yes": "green", "inconclusive": "yellow", "no": "red", "premise not met": "magenta"}
    for f in findings:
        c = colour.get(f.agrees, "dim")
        t.add_row(str(f.number), f.finding, f.paper, f.measured or "-", f"[{c}]{f.agrees}[/{c}]", f.reason)
    wide.print(t)


def print_laws(fits) -> None:
    for key, lf in fits.items():
        if lf.law is None:
            out.print(f"{key}: {lf.note}", markup=False)
            continue
        text = lf.law.summary()
        if lf.steps == "S":
            text = text.replace("S_min", "S")
        out.print(f"{key}" + (f" (C by {lf.compute})" if lf.compute else "") + f": {lf.note}", markup=False)
        out.print(text, markup=False)
        for w in lf.warnings:
            out.print(f"  warning: {w}", markup=False)


def cmd_report(args) -> int:
    from scalinglab.report.html import write_report

    rep = write_report(store_of(args.source), args.out, n_resamples=args.n_resamples, force=args.force)
    print_laws(rep.fits)
    print_findings(rep.findings)
    skipped = [f for f in rep.figures if f.path is None]
    for f in skipped:
        console.print(f"[dim]{f.title}: {f.note}[/dim]")
    console.print(f"wrote {rep.path} and {len(rep.figures) - len(skipped)} figures")
    return 0
