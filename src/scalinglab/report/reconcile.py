"""The reconcile report: the compute-optimal exponent by setting beside Porian et al.'s, its path (a) -> (e)
with intervals, the IsoFLOP curves of each setting, the tuning rule, and which corrections move the exponent.
Renders `scalinglab.analysis.reconcile.ReconcileAnalysis`; computes nothing itself."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from scalinglab.analysis.reconcile import (
    EQUIVALENCE,
    SETTINGS,
    ReconcileAnalysis,
    analyze,
)
from scalinglab.laws.forms import fmt_number

MARK = {1: ("s", "approach 1 (envelope)"), 2: ("o", "approach 2 (IsoFLOP minima)"),
        3: ("^", "approach 3 (fitted surface)")}


@dataclass
class ReconcileReport:
    path: Path
    analysis: ReconcileAnalysis
    figures: list


def fig_path(an: ReconcileAnalysis):
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = np.arange(len(SETTINGS))
    for k, off in ((1, -0.15), (2, 0.0), (3, 0.15)):
        xs, ys, lo, hi = [], [], [], []
        for i, s in enumerate(SETTINGS):
            r = an.settings[s].approaches.get(k)
            if r is None or not np.isfinite(r.n_exponent):
                continue
            a, (l, h) = r.n_exponent, r.n_exponent_ci
            xs.append(i + off), ys.append(a)
            lo.append(a - l if np.isfinite(l) else 0), hi.append(h - a if np.isfinite(h) else 0)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=MARK[k][0], capsize=3, label=MARK[k][1] + ", 95%")
    ax.plot(x, [an.settings[s].porian for s in SETTINGS], "k--", lw=1, label="Porian et al. 2024 (RefinedWeb)")
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_xticks(x, [f"({s})" for s in SETTINGS])
    ax.set(ylabel="a in N_opt ~ C^a", title="the compute-optimal exponent, one correction at a time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_isoflop(an: ReconcileAnalysis):
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(3.2 * len(SETTINGS), 3.4), sharey=True)
    cmap = plt.get_cmap("viridis")
    budgets = sorted(an.budgets)
    for ax, s in zip(axes, SETTINGS):
        res = an.settings[s]
        pts = res.points
        ax.set_title(f"({s})", fontsize=10)
        ax.set_xscale("log")
        if pts is None or pts.empty:
            ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center")
            continue
        for j, b in enumerate(budgets):
            p = pts[np.isclose(pts["budget"], b)].sort_values("N")
            if p.empty:
                continue
            col = cmap(j / max(1, len(budgets) - 1))
            ax.plot(p["N"], p["loss"], "o-", color=col, ms=3, lw=1, label=f"C={fmt_number(b)}")
        iso = res.approaches.get(2)
        if iso is not None:
            m = iso.minima[iso.minima["bracketed"]]
            ax.errorbar(m["N_opt"], m["loss_opt"], xerr=[m["N_opt"] - m["N_opt_low"].fillna(m["N_opt"]),
                        m["N_opt_high"].fillna(m["N_opt"]) - m["N_opt"]], fmt="kx", capsize=2, ms=6)
        ax.set_xlabel("N (non-embedding)")
    axes[0].set_ylabel("test loss (nats/token)")
    axes[0].legend(fontsize=6)
    fig.suptitle("IsoFLOP curves per setting (x: each budget's minimum, 95% interval)", fontsize=10)
    fig.tight_layout()
    return fig


def _ci(r, name="n_exponent"):
    if r is None:
        return "-"
    lo, hi = r.ci[name]
    return f"{fmt_number(r.params[name])} [{fmt_number(lo)}, {fmt_number(hi)}]"


def render_html(an: ReconcileAnalysis, figures: list, name: str) -> str:
    e = html.escape
    rows = []
    for s in SETTINGS:
        r = an.settings[s]
        iso = r.approaches.get(2)
        used = f"{len(iso.budgets_used)} / {len(iso.budgets_unbracketed)}" if iso else "-"
        tpp = r.tokens_per_param
        tpp_s = (f"{tpp[0]:.3g} ({tpp[1]:.3g} - {tpp[2]:.3g})" if np.isfinite(tpp[0]) else "-")
        rows.append(f"<tr><td>({s})</td><td>{e(r.title)}</td><td>{_ci(r.approaches.get(1))}</td>"
                    f"<td><b>{_ci(iso)}</b></td><td>{_ci(r.approaches.get(3))}</td>"
                    f"<td>{_ci(iso, 'd_exponent')}</td><td>{fmt_number(r.n_total_exponent)}</td><td>{tpp_s}</td>"
                    f"<td>{used}</td><td>{r.porian}</td></tr>")
    errs = [f"<li>({s}) approach {k}: {e(v)}</li>" for s in SETTINGS for k, v in an.settings[s].errors.items()]
    steps = "".join(f"<tr><td>({st.frm}) &rarr; ({st.to})</td><td class='{st.verdict.replace(' ', '-')}'>"
                    f"{st.verdict}</td><td>{e(st.text)}</td></tr>" for st in an.steps)
    rule = an.rule
    if len(rule):
        cols = ["N", "lr_scale", "beta2", "batch_size", "loss", "baseline", "chosen"]
        tune = "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{fmt_number(float(v)) if isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) else e(str(v))}</td>"
                             for v in (row[c] for c in cols)) + "</tr>" for _, row in rule.iterrows()) + "</table>"
    else:
        tune = "<p>no tuning sweep in this store: setting (e) not measured</p>"
    figs = "".join(f"<figure><img src='{e(p.name)}' alt='{e(t)}'><figcaption>{e(t)}</figcaption></figure>"
                   for t, p in figures)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>reconcile: {e(name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}td,th{{border:1px solid #ccc;padding:3px 6px;
font-size:13px}}table{{border-collapse:collapse}}.yes{{color:#070}}.no{{color:#a00}}.inconclusive{{color:#a60}}
img{{max-width:100%}}</style></head><body>
<h1>Kaplan against Chinchilla on one model family ({e(name)})</h1>
<p>Compute-optimal exponent a in N_opt &prop; C<sup>a</sup> under five settings that add one correction at a time
(issue 14; Porian et al. 2024 re-measured the same path on RefinedWeb at far larger scale). Budgets (FLOP):
{", ".join(fmt_number(b) for b in an.budgets)}. N is non-embedding parameters throughout; "N total" is approach 2's
exponent with parameters counted with embeddings. C is 6ND in (a) and the exact count (attention and unembedding)
from (b) on. Intervals are 95% bootstrap intervals; a correction "moves" the exponent only when the interval of the
change excludes 0, and "does not" only when it lies within &plusmn;{EQUIVALENCE} (this project's choice: the smallest
step of Porian et al.'s path, rounded).</p>
<h2>Exponent by setting</h2>
<table><tr><th>setting</th><th>what changes</th><th>a, approach 1</th><th>a, approach 2</th><th>a, approach 3</th>
<th>b (D_opt), approach 2</th><th>a, N total</th><th>D_opt/N_opt median (range)</th><th>budgets used / left out</th>
<th>Porian et al. a</th></tr>{"".join(rows)}</table>
{"<p>Not measured:</p><ul>" + "".join(errs) + "</ul>" if errs else ""}
<h2>Findings: which corrections move the exponent at this scale</h2>
<table><tr><th>step</th><th>verdict</th><th>measured</th></tr>{steps}</table>
{figs}
<h2>Tuning rule of setting (e)</h2>
<p>Per size, the candidates of the sweep at one budget and the (d) run there (baseline); the lowest final
validation loss (column "loss") is chosen and used for that size at every budget.</p>{tune}
</body></html>"""


def write_reconcile_report(store, out_dir, *, n_resamples: int = 400, budgets=None, name: str = "reconcile",
                           surface_grid=None, run_ids=None, force: bool = False) -> ReconcileReport:
    from scalinglab import outdir
    from scalinglab.report.html import report_files

    out = outdir.claim(out_dir, "report", legacy=report_files, force=force)
    an = analyze(store, budgets, n_resamples=n_resamples, surface_grid=surface_grid, run_ids=run_ids)
    figures = []
    for fname, title, draw in (("exponent_path.png", "the exponent from (a) to (e), 95% intervals", fig_path),
                               ("isoflop_curves.png", "IsoFLOP curves per setting", fig_isoflop)):
        fig = draw(an)
        with outdir.replacing(out / fname) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        figures.append((title, out / fname))
    outdir.write_text(out / "reconcile.json", json.dumps(an.to_dict(), indent=1, default=float))
    outdir.write_text(out / "reconcile.html", render_html(an, figures, name))
    return ReconcileReport(path=out / "reconcile.html", analysis=an, figures=figures)
