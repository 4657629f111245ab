"""The report's "predicted before seen" section: one figure (predicted against measured loss of the held-out
runs, with 95% prediction intervals) and the HTML that shows it with the errors. Rendering only: the numbers
come from scalinglab.analysis.backtest."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scalinglab import outdir  # noqa: E402
from scalinglab.analysis.backtest import PredictedBeforeSeen  # noqa: E402
from scalinglab.report.figures import legend_below  # noqa: E402

FIGURE_NAME = "fig_backtest.png"


def backtest_figure(pbs: PredictedBeforeSeen) -> plt.Figure | None:
    """Predicted against measured loss of every held-out run, one panel per backtest; None without results."""
    res = pbs.results
    if not res:
        return None
    fig, axes = plt.subplots(1, len(res), figsize=(5.4 * len(res), 5.6), squeeze=False, layout="constrained")
    for ax, (label, r) in zip(axes[0], res.items()):
        p = r.points
        lo = (p["predicted"] - p["low"]).clip(lower=0).to_numpy()
        hi = (p["high"] - p["predicted"]).clip(lower=0).to_numpy()
        yerr = None if not np.all(np.isfinite(np.r_[lo, hi])) else np.vstack([lo, hi])
        ax.errorbar(p["actual"], p["predicted"], yerr=yerr, fmt="o", ms=5, capsize=3, color="C0",
                    label="held-out run (95% prediction interval)")
        # the axes span the points and the intervals, but not an interval many times wider than the points'
        # spread: that one runs off the panel (its numbers are in the table) rather than flattening the rest
        core = np.r_[p["actual"], p["predicted"]]
        core = core[np.isfinite(core)]
        a, b = core.min(), core.max()
        span = max(b - a, 0.02 * b)
        ends = np.r_[p["low"], p["high"]]
        ends = ends[np.isfinite(ends) & (ends > a - 2 * span) & (ends < b + 2 * span)]
        a, b = min(a, ends.min(initial=a)), max(b, ends.max(initial=b))
        pad = 0.08 * (b - a) + 0.25 * span  # a lone point sits inside the panel, never on its edge
        lim = (a - pad, b + pad)
        ax.plot(lim, lim, color="0.5", lw=1, ls="--", label="predicted = measured")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel("measured loss (nats/token)")
        ax.set_ylabel("predicted loss, fitted without these runs")
        inside = _inside(r)
        ax.set_title(f"{label} held out: mean error {100 * r.mean_rel_error:.2f}%, "
                     f"{inside} inside the interval", fontsize=10)
        legend_below(ax, fontsize=8)
    return fig


def _inside(r) -> str:
    """'k of n' runs inside their 95% interval ('-' without intervals)."""
    p = r.points
    if not np.isfinite(r.coverage95):
        return "-"
    k = int(((p["actual"] >= p["low"]) & (p["actual"] <= p["high"])).sum())
    return f"{k} of {len(p)}"


def _esc(x) -> str:
    return html.escape(str(x))


def backtest_section(pbs: PredictedBeforeSeen, out_dir: str | Path | None = None) -> str:
    """The section's HTML (figure embedded as base64 PNG; also written to OUT/fig_backtest.png with out_dir)."""
    parts = ["<h2 id=predicted>Predicted before seen</h2>",
             "<p>The study's L(N, D) fitted without its largest runs, then asked for them: the error a user of "
             "these laws should expect when predicting a run larger than any trained. <i>largest N</i> holds out "
             "the runs of the largest model, <i>largest D</i> those with the most tokens; the intervals are 95% "
             "prediction intervals for a new run (the law's bootstrap plus the run-to-run scatter).</p>"]
    fig = backtest_figure(pbs)
    if fig is not None:
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        if out_dir is not None:
            with outdir.replacing(Path(out_dir) / FIGURE_NAME) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        parts.append(f'<figure><img alt="predicted against measured loss" '
                     f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"></figure>')
    rows = ["<tr><th>held out</th><th>law</th><th>fitted on</th><th>runs predicted</th><th>mean error</th>"
            "<th>max error</th><th>inside 95% interval</th></tr>"]
    for label, r in pbs.results.items():
        lo, hi = r.ci["mean_rel_error"]
        ci = f" (95% CI {100 * lo:.2g} - {100 * hi:.2g}%)" if np.isfinite(lo) else ""
        sel = pbs.choices.get(label) or "; ".join(s.text() for s in r.selections.values())
        chosen = f"<br><small>{_esc(sel)}</small>" if sel else ""
        rows.append(f"<tr><td>{_esc(label)}</td><td>{_esc(r.form)}{chosen}</td>"
                    f"<td>{r.n_fit_points} runs</td><td>{r.n_points}</td>"
                    f"<td>{100 * r.mean_rel_error:.2f}%{_esc(ci)}</td><td>{100 * r.max_rel_error:.2f}%</td>"
                    f"<td>{_inside(r)}" + (f" ({100 * r.coverage95:.0f}%)" if np.isfinite(r.coverage95) else "")
                    + "</td></tr>")
    if len(rows) > 1:
        parts.append("<div class=scroll><table>" + "".join(rows) + "</table></div>")
        for label, r in pbs.results.items():
            pts = ["<tr><th>N</th><th>D</th><th>measured</th><th>predicted</th><th>95% interval</th>"
                   "<th>error</th></tr>"]
            for p in r.points.itertuples(index=False):
                pts.append(f"<tr><td>{p.n:.4g}</td><td>{p.d:.4g}</td><td>{p.actual:.4f}</td><td>{p.predicted:.4f}"
                           f"</td><td>{p.low:.4f} - {p.high:.4f}</td><td>{100 * p.rel_error:.2f}%</td></tr>")
            parts.append(f"<details><summary>{_esc(label)}: the held-out runs</summary><div class=scroll><table>"
                         f"{''.join(pts)}</table></div></details>")
    for note in pbs.notes:
        parts.append(f'<p class="note">{_esc(note)}</p>')
    if not pbs.results and not pbs.notes:
        parts.append('<p class="note">not measured</p>')
    return "\n".join(parts)
