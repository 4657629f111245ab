"""The reconcile report: the compute-optimal exponent by setting beside Porian et al.'s, its path (a) -> (e)
with intervals, the IsoFLOP curves of each setting, the tuning rule, and which corrections move the exponent.
Renders `scalinglab.analysis.reconcile.ReconcileAnalysis` into one self-contained page (figures embedded as
base64 PNG, also written beside it); it fits nothing, and only reads off the tuning sweep which chosen settings
sit at an edge of their grid."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from scalinglab.analysis.reconcile import (
    ALL_SETTINGS,
    EQUIVALENCE,
    SETTINGS,
    ReconcileAnalysis,
    analyze,
)
from scalinglab.laws.forms import fmt_number
from scalinglab.report.figures import legend_below, tidy_ticks

MARK = {1: ("s", "approach 1 (envelope)"), 2: ("o", "approach 2 (IsoFLOP minima)"),
        3: ("^", "approach 3 (fitted surface)")}


@dataclass
class ReconcileReport:
    path: Path
    analysis: ReconcileAnalysis
    figures: list


def fig_path(an: ReconcileAnalysis):
    fig, ax = plt.subplots(figsize=(7.5, 5.4), layout="constrained")
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
    legend_below(ax, fontsize=8, ncol=2)
    return fig


def fig_isoflop(an: ReconcileAnalysis):
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(3.2 * len(SETTINGS), 4.2), sharey=True,
                             layout="constrained")
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
    handles, labels = {}, []
    for ax in axes:  # one legend for the row, below it: no panel's curves under it
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles),
                   fontsize=8, frameon=False)
    fig.suptitle("IsoFLOP curves per setting (x: each budget's minimum, 95% interval)", fontsize=10)
    return fig


TUNED = (("lr_scale", "learning rate (scale)"), ("batch_size", "batch size"), ("beta2", "AdamW beta2"))


def grid_edges(rule) -> list[dict]:
    """Each size's chosen learning rate, batch size and beta2 that sit at the lowest or highest value its sweep
    tried (candidates and baseline; a setting tried at one value only is not a grid): the optimum may lie
    beyond the grid. One dict per (size, setting): N, setting, label, value, edge ("lowest"/"highest"), grid."""
    out = []
    if rule is None or not len(rule):
        return out
    for _, g in rule.groupby(["n_layer", "d_model", "n_head"], sort=False):
        chosen = g[g["chosen"].astype(bool)]
        if chosen.empty:
            continue
        c = chosen.iloc[0]
        for col, label in TUNED:
            vals = sorted({float(v) for v in g[col] if v is not None and np.isfinite(float(v))})
            if len(vals) < 2 or c[col] is None or not np.isfinite(float(c[col])):
                continue
            v = float(c[col])
            edge = "lowest" if np.isclose(v, vals[0]) else "highest" if np.isclose(v, vals[-1]) else None
            if edge:
                out.append({"N": float(c["N"]), "setting": col, "label": label, "value": v, "edge": edge,
                            "grid": vals})
    return out


def _edges_html(rule) -> str:
    edges = grid_edges(rule)
    n_sizes = int(rule[rule["chosen"].astype(bool)]["N"].nunique()) if len(rule) else 0
    if not edges:
        return ("<p>Every chosen learning rate, batch size and beta2 lies inside its grid (none at an edge).</p>"
                if n_sizes else "")
    items = {}
    for e in edges:
        items.setdefault((e["label"], e["edge"], e["value"], tuple(e["grid"])), []).append(e["N"])
    lis = "".join(f"<li><b>{html.escape(label)}</b>: the chosen {fmt_number(v)} is the {edge} value of the grid "
                  f"[{', '.join(fmt_number(x) for x in grid)}] at {len(ns)} of {n_sizes} sizes"
                  + (" (a grid of two values has no inside)" if len(grid) == 2 else "") + "</li>"
                  for (label, edge, v, grid), ns in items.items())
    return (f"<div class=flag><p><b>At the edge of the grid:</b> setting (e)'s tuned values include choices at "
            f"the end of what the sweep tried, so the best setting may lie beyond it and (e)'s exponent may "
            f"still move with a wider grid.</p><ul>{lis}</ul></div>")


def _ci(r, name="n_exponent"):
    if r is None:
        return "-"
    lo, hi = r.ci[name]
    return f"{fmt_number(r.params[name])} [{fmt_number(lo)}, {fmt_number(hi)}]"


def render_html(an: ReconcileAnalysis, figures: list, name: str) -> str:
    e = html.escape
    rows = []
    for s in ALL_SETTINGS:
        r = an.settings.get(s)
        if r is None:
            continue
        iso = r.approaches.get(2)
        used = f"{len(iso.budgets_used)} / {len(iso.budgets_unbracketed)}" if iso else "-"
        tpp = r.tokens_per_param
        tpp_s = (f"{tpp[0]:.3g} ({tpp[1]:.3g} - {tpp[2]:.3g})" if np.isfinite(tpp[0]) else "-")
        rows.append(f"<tr><td>({s})</td><td>{e(r.title)}</td><td>{_ci(r.approaches.get(1))}</td>"
                    f"<td><b>{_ci(iso)}</b></td><td>{_ci(r.approaches.get(3))}</td>"
                    f"<td>{_ci(iso, 'd_exponent')}</td><td>{fmt_number(r.n_total_exponent)}</td><td>{tpp_s}</td>"
                    f"<td>{used}</td><td>{r.porian}</td></tr>")
    errs = [f"<li>({s}) approach {k}: {e(v)}</li>" for s in ALL_SETTINGS if s in an.settings
            for k, v in an.settings[s].errors.items()]
    steps = "".join(f"<tr><td>({st.frm}) &rarr; ({st.to})</td><td class='{st.verdict.replace(' ', '-')}'>"
                    f"{st.verdict}</td><td>{e(st.text)}</td></tr>" for st in an.steps)
    rule = an.rule
    if len(rule):
        cols = ["N", "lr_scale", "beta2", "batch_size", "loss", "baseline", "chosen"]
        at_edge = {(e_["N"], e_["setting"]) for e_ in grid_edges(rule)}

        def cell(row, c):
            v = row[c]
            text = (fmt_number(float(v)) if isinstance(v, (int, float, np.number))
                    and not isinstance(v, (bool, np.bool_)) else e(str(v)))
            edge = bool(row["chosen"]) and (float(row["N"]), c) in at_edge
            return (f"<td class=edge title='at an edge of its grid'>{text} &#9888;</td>" if edge
                    else f"<td>{text}</td>")

        tune = "<div class=scroll><table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(
            "<tr>" + "".join(cell(row, c) for c in cols) + "</tr>" for _, row in rule.iterrows()) + "</table></div>"
    else:
        tune = "<p>no tuning sweep in this store: setting (e) not measured</p>"
    figs = "".join(f"<figure><img src='data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode()}' "
                   f"alt='{e(t)}'><figcaption>{e(t)} ({e(Path(p).name)})</figcaption></figure>" for t, p in figures)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>reconcile: {e(name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}}table{{border-collapse:collapse}}.yes{{color:#070}}
.no{{color:#a00}}.inconclusive{{color:#a60}}img{{max-width:100%}}.scroll{{overflow-x:auto;max-width:100%}}
.edge{{background:#fff0c2}}.flag{{background:#fff7e0;border-left:4px solid #e0a000;padding:.2em 1em}}
@media (max-width:700px){{body{{margin:1em auto;padding:0 .5em}}td,th{{padding:2px 4px;font-size:12px;min-width:6em}}}}
</style></head><body>
<h1>Kaplan against Chinchilla on one model family ({e(name)})</h1>
<p>Compute-optimal exponent a in N_opt &prop; C<sup>a</sup> under five settings that add one correction at a time
(Porian et al. 2024 re-measured the same path on RefinedWeb at far larger scale). Budgets (FLOP):
{", ".join(fmt_number(b) for b in an.budgets)}. N is non-embedding parameters throughout; "N total" is approach 2's
exponent with parameters counted with embeddings. C is 6ND in (a) and the exact count (attention and unembedding)
from (b) on. Intervals are 95% bootstrap intervals; a correction "moves" the exponent only when the interval of the
change excludes 0, and "does not" only when it lies within &plusmn;{EQUIVALENCE} (this project's choice: the smallest
step of Porian et al.'s path, rounded).</p>
<h2>Exponent by setting</h2>
<div class=scroll><table><tr><th>setting</th><th>what changes</th><th>a, approach 1</th><th>a, approach 2</th>
<th>a, approach 3</th>
<th>b (D_opt), approach 2</th><th>a, N total</th><th>D_opt/N_opt median (range)</th><th>budgets used / left out</th>
<th>Porian et al. a</th></tr>{"".join(rows)}</table></div>
{_edges_html(rule)}
{"<p>Not measured:</p><ul>" + "".join(errs) + "</ul>" if errs else ""}
<h2>Findings: which corrections move the exponent at this scale</h2>
<table><tr><th>step</th><th>verdict</th><th>measured</th></tr>{steps}</table>
{figs}
<h2>Tuning rule of setting (e)</h2>
<p>Per size, the candidates of the sweep at one budget and the (d) run there (baseline); the lowest final
validation loss (column "loss") is chosen and used for that size at every budget. &#9888; marks a chosen
value at the lowest or highest value its grid tried.</p>{tune}
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
        tidy_ticks(fig)
        with outdir.replacing(out / fname) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        figures.append((title, out / fname))
    outdir.write_text(out / "reconcile.json", json.dumps(an.to_dict(), indent=1, default=float))
    outdir.write_text(out / "reconcile.html", render_html(an, figures, name))
    return ReconcileReport(path=out / "reconcile.html", analysis=an, figures=figures)
