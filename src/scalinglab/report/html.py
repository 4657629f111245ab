"""The report: one self-contained HTML page plus the PNG files. Its figures are interactive (Plotly, plotly.js
embedded once, scalinglab.report.interactive) where plotly is installed, and always also the static PNGs,
embedded as base64; the page says when the interactive ones are missing. Nothing on the page loads a file or
the network.

`render_report(analysis, out_dir)` renders a StudyAnalysis (scalinglab.analysis): OUT/report.html,
OUT/findings.json and OUT/figN.png, with the "predicted before seen" section (OUT/fig_backtest.png). `write_report(store, out_dir)` analyses a store first (laws cached in
OUT/fits.json by the points they saw). Nothing here fits or decides: it only renders.
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalinglab import outdir
from scalinglab.analysis.backtest import PredictedBeforeSeen
from scalinglab.analysis.study_data import StudyData
from scalinglab.analysis.study_laws import COMPUTE_TEXT, PAPER, LawFit
from scalinglab.report.backtest import backtest_section
from scalinglab.report.figures import FigureResult, make_figures

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .yes{background:#dff5df} .inconclusive{background:#fff4d6} .no{background:#fadede}
.nm{color:#888} img{max-width:100%;border:1px solid #eee} figure{margin:1.5em 0} .note{color:#777}
.scroll{overflow-x:auto;max-width:100%} .scroll table{margin:0}
figure.plotly{border:1px solid #eee;padding:4px} figcaption{font-size:14px;color:#444}
@media (max-width:700px){body{margin:1em auto;padding:0 .5em} td,th{padding:3px 4px;font-size:12px;min-width:6em}}
"""


@dataclass
class Report:
    path: Path
    figures: list[FigureResult]
    fits: dict[str, LawFit]
    findings: list
    analysis: object = None


def _esc(x) -> str:
    return html.escape(str(x))


def _num(x) -> str:
    if x is None:
        return "-"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return _esc(x)
    if not np.isfinite(x):
        return "-"
    return f"{x:.4g}"


def _laws_table(fits: dict[str, LawFit]) -> str:
    rows = ["<tr><th>law</th><th>fitted</th><th>parameter</th><th>this study</th><th>95% interval</th>"
            "<th>Kaplan et al. 2020</th><th>compute</th><th>bootstrap</th><th>note and fit warnings</th></tr>"]
    for key, lf in fits.items():
        paper = PAPER.get(key, {})
        compute = _esc(lf.compute or "")
        if lf.law is None:
            rows.append(f"<tr><td>{_esc(key)}</td><td colspan=5 class=nm>-</td><td>{compute}</td><td></td>"
                        f"<td>{_esc(lf.note)}</td></tr>")
            continue
        params = lf.law.params
        law = lf.law
        boot = f"{getattr(law, 'n_resamples_ok', 0)}/{getattr(law, 'n_resamples', 0)} resamples usable"
        warn = "".join(f"<br><b>warning:</b> {_esc(w)}" for w in lf.warnings)
        if not law.converged:
            warn += f"<br><b>did not converge:</b> {_esc(law.message)}"
        first = True
        for name, val in params.items():
            lo, hi = law.ci.get(name, (np.nan, np.nan))
            n = len(params)
            head = (f"<td rowspan={n}>{_esc(key)}</td><td rowspan={n}>{_esc(lf.text())}</td>") if first else ""
            tail = (f"<td rowspan={n}>{compute}</td><td rowspan={n}>{_esc(boot)}</td>"
                    f"<td rowspan={n}>{_esc(lf.note)}{warn}</td>") if first else ""
            rows.append(f"<tr>{head}<td>{_esc(name)}</td><td>{_num(val)}</td><td>[{_num(lo)}, {_num(hi)}]</td>"
                        f"<td>{_num(paper.get(name))}</td>{tail}</tr>")
            first = False
    return "<div class=scroll><table>" + "".join(rows) + "</table></div>"


def _findings_table(findings) -> str:
    rows = ["<tr><th>#</th><th>finding</th><th>the paper</th><th>this study</th><th>agrees</th><th>why</th>"
            "<th>band (its source) and premise</th><th>against the paper's law on this design</th>"
            "<th>with exact FLOP</th></tr>"]
    for f in findings:
        cls = {"yes": "yes", "inconclusive": "inconclusive", "no": "no", "premise not met": "inconclusive"}.get(
            f.agrees, "nm")
        band = (f"[{_num(f.band[0])}, {_num(f.band[1])}] ({f.band_source})" if f.band else "-")
        prem = (f"; premise: {f.premise} ({'met' if f.premise_met else 'not met'})" if f.premise else "")
        design = (f"{_num(f.paper_at_design)}: {f.agrees_at_design}" if f.paper_at_design is not None else "-")
        rows.append(f"<tr><td>{f.number}</td><td>{_esc(f.finding)}</td><td>{_esc(f.paper)}</td>"
                    f"<td>{_esc(f.measured or '-')}</td><td class={cls}>{_esc(f.agrees)}</td>"
                    f"<td>{_esc(f.reason)}</td><td>{_esc(band + prem)}</td><td>{_esc(design)}</td>"
                    f"<td>{_esc(f.agrees_exact or '-')}</td></tr>")
    return "<div class=scroll><table>" + "".join(rows) + "</table></div>"


def verdict_counts(findings) -> str:
    """'1 yes, 5 no, 3 inconclusive, 2 premise not met' in the order of the verdicts."""
    from scalinglab.analysis.findings import VERDICTS

    n = {v: sum(f.agrees == v for f in findings) for v in VERDICTS}
    return ", ".join(f"{k} {v}" for v, k in n.items() if k)


# the headline numbers at the top of the page: (law, parameter, what it is)
HEADLINE = (("L(N)", "alpha_N", "alpha_N, loss against parameters"), ("L(D)", "alpha_D", "alpha_D, loss against data"),
            ("L(C_min)", "alpha_C_min", "alpha_C_min, loss against compute (6ND)"),
            ("N_opt(C)", "exponent", "a in N_opt ~ C^a (6ND)"))


def _glance(fits: dict, findings: list, pbs: PredictedBeforeSeen | None) -> str:
    """The page's summary: the verdict count, the headline exponents with their intervals beside the paper's, and
    the predicted-before-seen errors."""
    items = [f"<li><b>{_esc(verdict_counts(findings))}</b> of {len(findings)} findings "
             f"(<a href='#findings'>the findings</a>)</li>"]
    for key, name, label in HEADLINE:
        lf = fits.get(key)
        if lf is None or lf.law is None or name not in lf.law.params:
            continue
        lo, hi = lf.law.ci.get(name, (np.nan, np.nan))
        paper = PAPER.get(key, {}).get(name)
        items.append(f"<li>{_esc(label)}: <b>{_num(lf.law.params[name])}</b> (95% [{_num(lo)}, {_num(hi)}]); "
                     f"Kaplan et al. 2020: {_num(paper)}</li>")
    for label, r in (pbs.results.items() if pbs is not None else ()):
        items.append(f"<li>predicted before seen, {_esc(label)} held out: mean error <b>{100 * r.mean_rel_error:.2f}%"
                     f"</b> over {r.n_points} run{'s' if r.n_points != 1 else ''} "
                     f"(<a href='#predicted'>the section</a>)</li>")
    return "<h2>At a glance</h2><ul>" + "".join(items) + "</ul>"


def _runs_table(sd: StudyData) -> str:
    cols = ["name", "status", "N", "n_params_total", "n_layer", "d_model", "n_head", "B", "S", "D", "d_unique",
            "C", "precision", "final_test_loss", "wall_time_s", "attempts"]
    df = sd.all_runs
    cols = [c for c in cols if c in df.columns]
    rows = ["<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>"]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"<td>{_esc(v) if c in ('name', 'status', 'precision') else _num(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<div class=scroll><table>" + "".join(rows) + "</table></div>"


def _figure(fr: FigureResult) -> str:
    if fr.path is None:
        return f"<p class=note><b>{_esc(fr.title)}</b>: {_esc(fr.note)}</p>"
    data = base64.b64encode(Path(fr.path).read_bytes()).decode()
    return (f"<figure id={fr.key}><img alt='{_esc(fr.title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_esc(fr.title)}</figcaption></figure>")


def _figures_section(sd: StudyData, fits: dict, figures: list[FigureResult]) -> str:
    """The interactive figures (where plotly is installed), then the static ones (all of them, PNG)."""
    from scalinglab.report import interactive

    static = "".join(_figure(f) for f in figures)
    if not interactive.available():
        return f"<h2>Figures</h2>{interactive.interactive_section(sd, fits)}{static}"
    return (f"<h2>Figures</h2>{interactive.interactive_section(sd, fits)}"
            f"<h2>Static figures</h2><p class=note>Every figure as a PNG (also written beside this page), the "
            f"analogues of the paper's Figs. 1-11 this study's runs allow.</p>{static}")


def render_html(sd: StudyData, fits: dict, findings: list, figures: list[FigureResult], predicted: str = "",
                pbs: PredictedBeforeSeen | None = None) -> str:
    n_done = len(sd.runs)
    stop = {"validation": "the step of lowest validation loss (a split disjoint from test)",
            "test": "the step of lowest test loss (this store has no validation split: optimistic)",
            "final": "the end of the run"}
    chosen = "; ".join(stop.get(w, w) for w in sd.best_by.split(" and "))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scalinglab report: {_esc(sd.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_CSS}</style></head><body>
<h1>Scaling laws of {_esc(sd.name)}</h1>
<p>{n_done} finished runs of {len(sd.all_runs)} in the store; generated {time.strftime('%Y-%m-%d %H:%M')} by
scalinglab, reproducing Kaplan et al. 2020, "Scaling Laws for Neural Language Models". Loss: nats per token on
the test split; an early-stopped loss is the test loss at {_esc(chosen)}. N: non-embedding parameters.
Compute C is fitted under two conventions, each law's row saying which: {_esc(COMPUTE_TEXT["6ND"])} ("6ND",
Kaplan's, used by findings 7 and 11) and {_esc(COMPUTE_TEXT["exact"])} ("exact").</p>
{_glance(fits, findings, pbs)}
<h2 id=findings>Findings</h2>
<p>Verdicts: <b>yes</b> (the 95% interval lies inside the finding's tolerance band around the paper's value),
<b>no</b> (it lies wholly outside the band), <b>inconclusive</b> (it reaches across an edge of the band: too wide to
tell), <b>premise not met</b> (this design cannot test the claim as the paper states it; the reason says what it
would need), <b>not measured</b> (the runs are missing). Each band states its source. For findings 9-11 the
measurement is also compared with the paper's own law evaluated on this study's design.</p>{_findings_table(findings)}
<h2>Fitted laws</h2>{_laws_table(fits)}
{predicted}
{_figures_section(sd, fits, figures)}
<h2>Runs</h2>{_runs_table(sd)}
</body></html>
"""


# The files a report directory may hold, by name: an older scalinglab's (no manifest) are adopted by these names
# once its page is recognised (report_files).
REPORT_NAMES = {"report.html", "findings.json", "fits.json", "backtest.json", "fig_backtest.png", "reconcile.html",
                "reconcile.json", "exponent_path.png", "isoflop_curves.png", "report.html.tmp", "reconcile.html.tmp",
                "fits.json.tmp", "backtest.json.tmp"}
_PAGE_HEADS = {"report.html": ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                               "<title>scalinglab report:"),
               "reconcile.html": "<!doctype html><html><head><meta charset=\"utf-8\"><title>reconcile:"}


def _ours_json(path: Path) -> bool:
    """A fits.json or backtest.json cache as scalinglab writes it (each entry keyed by the points it saw)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if path.name == "backtest.json":
        return isinstance(data, dict) and {"fingerprint", "result"} <= set(data)
    return isinstance(data, dict) and bool(data) and all(isinstance(v, dict) and "fingerprint" in v
                                                         for v in data.values())


def report_files(path: Path) -> set[str]:
    """The files of a report directory an older scalinglab wrote (it had no manifest): recognised by its page's
    head (or, for a report killed before its page, its fits cache), then every report file name beside it."""
    anchored = False
    for name, head in _PAGE_HEADS.items():
        try:
            with open(path / name, encoding="utf-8", errors="replace") as f:
                anchored = anchored or f.read(len(head)) == head
        except OSError:
            pass
    anchored = anchored or any(_ours_json(path / n) for n in ("fits.json", "backtest.json"))
    if not anchored:
        return set()
    names = REPORT_NAMES | {f"fig{i}.png" for i in range(1, 12)}
    return {p.name for p in path.iterdir() if p.name in names and p.is_file()}


def render_report(analysis, out_dir: str | Path, *, force: bool = False) -> Report:
    """Render a StudyAnalysis into OUT_DIR: report.html, findings.json and the figures. A directory holding
    files scalinglab did not write is refused (scalinglab.outdir), or with `force` left beside the report."""
    out = outdir.claim(out_dir, "report", legacy=report_files, force=force)
    sd, fits, findings = analysis.data, analysis.laws, analysis.findings
    figures = make_figures(sd, fits, out)
    pbs = getattr(analysis, "predicted", None)
    if pbs is None:
        pbs = PredictedBeforeSeen(notes=["not run for this analysis (scalinglab.analysis.analyze runs it)"])
    page = render_html(sd, fits, findings, figures, backtest_section(pbs, out), pbs)
    outdir.write_text(out / "report.html", page)
    outdir.write_text(out / "findings.json", json.dumps([f.to_dict() for f in findings], indent=1))
    return Report(out / "report.html", figures, fits, findings, analysis)


def write_report(store: str | Path, out_dir: str | Path, *, n_resamples: int = 300, name: str | None = None,
                 force: bool = False) -> Report:
    """Analyse a run store (scalinglab.analysis.analyze, laws cached in OUT/fits.json) and render it. OUT is
    checked first: one holding files scalinglab did not write is refused before any work (unless `force`)."""
    from scalinglab.analysis import analyze

    out = outdir.claim(out_dir, "report", legacy=report_files, force=force)
    outdir.check_names(out, ["report.html", "findings.json", "fits.json", "backtest.json"])
    return render_report(analyze(store, n_resamples=n_resamples, cache=out / "fits.json", name=name), out,
                         force=force)
