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

from scalinglab.analysis.backtest import PredictedBeforeSeen  # noqa: E402

FIGURE_NAME = "fig_backtest.png"


def backtest_figure(pbs: PredictedBeforeSeen) -> plt.Figure | None:
    """Predicted against measured loss of every held-out run, one panel per backtest; None without results."""
    res = pbs.results
    if not res:
        return None
    fig, axes = plt.subplots(1, len(res), figsize=(5.2 * len(res), 4.4), squeeze=False)
    for ax, (label, r) in zip(axes[0], res.items()):
        p = r.points
        lo = (p["predicted"] - p["low"]).clip(lower=0).to_numpy()
        hi = (p["high"] - p["predicted"]).clip(lower=0).to_numpy()
        yerr = None if not np.all(np.isfinite(np.r_[lo, hi])) else np.vstack([lo, hi])
        ax.errorbar(p["actual"], p["predicted"], yerr=yerr, fmt="o", ms=5, capsize=3, color="C0",
                    label="held-out run (95% prediction interval)")
        vals = np.r_[p["actual"], p["low"], p["high"]]
        vals = vals[np.isfinite(vals)]
        a, b = vals.min(), vals.max()
        pad = 0.05 * (b - a if b > a else a)
        ax.plot([a - pad, b + pad], [a - pad, b + pad], color="0.5", lw=1, ls="--", label="predicted = measured")
        ax.set_xlabel("measured loss (nats/token)")
        ax.set_ylabel("predicted loss, fitted without these runs")
        ax.set_title(f"{label} held out: mean error {100 * r.mean_rel_error:.2g}%, "
                     f"coverage {100 * r.coverage95:.0f}%", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _esc(x) -> str:
    return html.escape(str(x))


def backtest_section(pbs: PredictedBeforeSeen, out_dir: str | Path | None = None) -> str:
    """The section's HTML (figure embedded as base64 PNG; also written to OUT/fig_backtest.png with out_dir)."""
    parts = ["<h2>Predicted before seen</h2>",
             "<p>The study's L(N, D) fitted without its largest runs, then asked for them: the error a user of "
             "these laws should expect when predicting a run larger than any trained.</p>"]
    fig = backtest_figure(pbs)
    if fig is not None:
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            fig.savefig(Path(out_dir) / FIGURE_NAME, dpi=110)
        plt.close(fig)
        parts.append(f'<figure><img alt="predicted against measured loss" '
                     f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"></figure>')
    rows = ["<tr><th>held out</th><th>law</th><th>fitted on</th><th>runs predicted</th><th>mean error</th>"
            "<th>max error</th><th>inside 95% interval</th></tr>"]
    for label, r in pbs.results.items():
        lo, hi = r.ci["mean_rel_error"]
        ci = f" (95% CI {100 * lo:.2g} - {100 * hi:.2g}%)" if np.isfinite(lo) else ""
        sel = "; ".join(s.text() for s in r.selections.values())
        chosen = f"<br><small>{_esc(sel)}</small>" if sel else ""
        rows.append(f"<tr><td>{_esc(label)}</td><td>{_esc(r.form)}{chosen}</td>"
                    f"<td>{r.n_fit_points} runs</td><td>{r.n_points}</td>"
                    f"<td>{100 * r.mean_rel_error:.2f}%{_esc(ci)}</td><td>{100 * r.max_rel_error:.2f}%</td>"
                    f"<td>{100 * r.coverage95:.0f}%</td></tr>")
    if len(rows) > 1:
        parts.append("<table>" + "".join(rows) + "</table>")
        for label, r in pbs.results.items():
            pts = ["<tr><th>N</th><th>D</th><th>measured</th><th>predicted</th><th>95% interval</th>"
                   "<th>error</th></tr>"]
            for p in r.points.itertuples(index=False):
                pts.append(f"<tr><td>{p.n:.4g}</td><td>{p.d:.4g}</td><td>{p.actual:.4f}</td><td>{p.predicted:.4f}"
                           f"</td><td>{p.low:.4f} - {p.high:.4f}</td><td>{100 * p.rel_error:.2f}%</td></tr>")
            parts.append(f"<details><summary>{_esc(label)}: the held-out runs</summary><table>{''.join(pts)}"
                         "</table></details>")
    for note in pbs.notes:
        parts.append(f'<p class="note">{_esc(note)}</p>')
    if not pbs.results and not pbs.notes:
        parts.append('<p class="note">not measured</p>')
    return "\n".join(parts)
