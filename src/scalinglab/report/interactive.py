"""Interactive figures of the report (Plotly), with Kaplan et al. 2020's own laws drawn beside the study's.

Rendering only, like scalinglab.report.figures: the points and laws come from a StudyData and its LawFits.
Every point and curve tells on hover its run's id, N, D (tokens) and loss. The page stays self-contained:
plotly.js is embedded once, in the first figure, and the others use it (no network). Plotly is a dependency;
where it is missing, `interactive_section` says so and the page keeps its PNGs.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from scalinglab.analysis.study_data import StudyData
from scalinglab.analysis.study_laws import PAPER, LawFit, compute_frontier, critical_batch_law
from scalinglab.published import PF_DAY
from scalinglab.report.figures import plain_number

# the form each of the paper's laws is written in (scalinglab.laws.forms), evaluated with PAPER's constants
PAPER_FORMS = {"L(N)": "kaplan_n", "L(D)": "kaplan_d", "L(C_min)": "kaplan_cmin", "L(N,D)": "kaplan_nd",
               "B_crit(L)": "bcrit"}
PAPER_NAME = "Kaplan et al. 2020"
PAPER_STYLE = {"color": "rgba(110,110,110,0.9)", "dash": "dot", "width": 2}
_HOVER = ("run %{customdata[0]}<br>N = %{customdata[1]:,.0f}<br>D = %{customdata[2]:,.0f} tokens"
          "<br>loss = %{customdata[3]:.4f}<extra></extra>")
_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png"}}


def available() -> bool:
    """Whether plotly is installed."""
    try:
        import plotly.graph_objects  # noqa: F401
    except ImportError:
        return False
    return True


def paper_law(key: str, **X) -> np.ndarray | None:
    """The paper's own law `key` (PAPER's constants, C in FLOP) evaluated at X; None for a law it did not give."""
    from scalinglab.laws.forms import get_form

    if key not in PAPER_FORMS:
        return None
    return get_form(PAPER_FORMS[key]).predict(PAPER[key], {k: np.asarray(v, float) for k, v in X.items()})


def _xs(values, pad=1.5, n=80):
    v = np.asarray(values, float)
    return np.geomspace(v.min() / pad, v.max() * pad, n)


def _viridis(frac: float) -> str:
    from plotly.colors import sample_colorscale

    return sample_colorscale("Viridis", [float(np.clip(frac, 0, 1))])[0]


def _lognorm(values):
    v = np.log(np.asarray(values, float))
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    return lambda x: 0.5 if hi <= lo else (np.log(float(x)) - lo) / (hi - lo)


def _point_runs(sd: StudyData, data: pd.DataFrame) -> pd.DataFrame:
    """customdata rows (run id, N, D, loss) for a law's points: the run by its id (the data's run_id or group
    column), else the run of that N whose best loss is nearest."""
    runs = sd.all_runs.set_index("run_id")
    rows = []
    for _, p in data.iterrows():
        rid = p.get("run_id", p.get("group"))
        if rid not in runs.index:
            cand = sd.runs[np.isclose(sd.runs["N"].astype(float), float(p["N"]))] if "N" in p else sd.runs.iloc[:0]
            rid = (cand.iloc[int(np.argmin(np.abs(cand["loss_best"].astype(float) - float(p["loss"]))))]["run_id"]
                   if len(cand) else "-")
        r = runs.loc[rid] if rid in runs.index else {}
        rows.append((str(rid), float(p.get("N", r.get("N", np.nan))), float(p.get("D", r.get("D", np.nan))),
                     float(p["loss"])))
    return pd.DataFrame(rows, columns=["run_id", "N", "D", "loss"])


def _layout(fig, title: str, xtitle: str, ytitle: str, xlog=True, ylog=True, height=480):
    axis = dict(showexponent="all", exponentformat="e", showgrid=True, gridcolor="#eee", zeroline=False,
                linecolor="#999", mirror=True, ticks="outside")
    fig.update_layout(title=dict(text=title, font=dict(size=14)), template="plotly_white", height=height,
                      margin=dict(l=60, r=20, t=50, b=50), hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0, font=dict(size=11)))
    fig.update_xaxes(title=xtitle, type="log" if xlog else "linear", **axis, **(_log_ticks(fig, "x") if xlog else {}))
    fig.update_yaxes(title=ytitle, type="log" if ylog else "linear", **axis, **(_log_ticks(fig, "y") if ylog else {}))
    return fig


def _log_ticks(fig, var: str) -> dict:
    """Plain ticks on a log axis, by the decades its data spans: under one, plotly's own evenly spaced numbers
    (5, 5.5, 6); one to three, the decades with 2x and 5x; wider, the decades alone."""
    vals = np.concatenate([np.asarray(getattr(t, var), float) for t in fig.data if getattr(t, var) is not None]
                          or [np.array([1.0])])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    decades = np.log10(vals.max() / vals.min()) if len(vals) else 0
    if decades < 1:
        return {}
    subs = (1, 2, 5) if decades < 3 else (1,)
    lo, hi = np.floor(np.log10(vals.min())) - 1, np.ceil(np.log10(vals.max())) + 1
    ticks = [m * 10.0 ** k for k in np.arange(lo, hi + 1) for m in subs]
    return {"tickmode": "array", "tickvals": ticks, "ticktext": [plain_number(t) for t in ticks]}


def _law_trace(go, xs, ys, name, x_scale=1.0, paper=False, color="black", group=None, show=True):
    line = dict(PAPER_STYLE) if paper else dict(color=color, dash="dash", width=2)
    return go.Scatter(x=np.asarray(xs) / x_scale, y=ys, mode="lines", name=name, line=line, hoverinfo="name+x+y",
                      legendgroup=group, showlegend=show)


def _curves(go, fig, sd: StudyData, ids, x: str, x_scale=1.0):
    """Each run's learning curve, coloured by N, with its id, N, tokens so far and loss on hover."""
    c = sd.curves[sd.curves["run_id"].isin(ids)]
    norm = _lognorm(sd.runs["N"])
    names = sd.all_runs.set_index("run_id")["name"]
    for rid, g in c.groupby("run_id", sort=False):
        N = float(g["N"].iloc[0])
        cd = np.column_stack([np.full(len(g), rid, object), np.full(len(g), N), g["tokens"].to_numpy(float),
                              g["test_loss"].to_numpy(float)])
        fig.add_trace(go.Scatter(x=g[x].to_numpy(float) / x_scale, y=g["test_loss"], mode="lines",
                                 name=f"{names.get(rid, rid)} (N={N:.3g})", customdata=cd, hovertemplate=_HOVER,
                                 line=dict(color=_viridis(norm(N)), width=1.3), legendgroup="runs",
                                 showlegend=False))


def fig_compute(go, sd: StudyData, fits: dict):
    """Fig. 1 left: learning curves against compute, the frontier, the fitted L(C_min) and the paper's."""
    if sd.curves.empty:
        return None
    fig = go.Figure()
    _curves(go, fig, sd, set(sd.sizes["run_id"]), "flop", PF_DAY)
    bcrit = critical_batch_law(fits)
    span = []
    for compute, key, col in (("6ND", "L(C_min)", "#ff7f0e"), ("exact", "L(C_min) exact", "#d62728")):
        fr = compute_frontier(sd, bcrit=bcrit, compute=compute)
        if not len(fr):
            continue
        span.extend(fr["C"])
        fig.add_trace(go.Scatter(x=fr["C"] / PF_DAY, y=fr["loss"], mode="lines", name=f"frontier, C by {compute}",
                                 line=dict(color=col, width=5), opacity=0.45, hoverinfo="name+x+y"))
        lf = fits.get(key)
        if lf is not None and lf.law is not None:
            xs = _xs(fr["C"], 1.3)
            fig.add_trace(_law_trace(go, xs, lf.law.predict(C=xs), f"this study ({compute}): "
                                     + lf.law.text().replace("C_min", "C"), PF_DAY, color=col))
    if span:
        xs = _xs(span, 1.3)
        fig.add_trace(_law_trace(go, xs, paper_law("L(C_min)", C=xs), f"{PAPER_NAME}: L(C_min) = "
                                 f"({PAPER['L(C_min)']['C_c_min'] / PF_DAY:.2g} PF-days / C)^"
                                 f"{PAPER['L(C_min)']['alpha_C_min']:g} (6ND)", PF_DAY, paper=True))
    return _layout(fig, "Loss against compute: each run's curve, the frontier and L(C_min)",
                   "compute C (PF-days; curves at 6ND)", "test loss (nats/token)")


def fig_single(go, sd: StudyData, fits: dict, key: str, var: str, title: str, xtitle: str):
    """L(N) or L(D): the study's points with their runs on hover, its fitted law and the paper's."""
    lf: LawFit | None = fits.get(key)
    if lf is None or not len(lf.data):
        return None
    pts = _point_runs(sd, lf.data)
    norm = _lognorm(pts["N"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lf.data[var], y=lf.data["loss"], mode="markers", name="runs fitted",
                             customdata=pts.to_numpy(object), hovertemplate=_HOVER,
                             marker=dict(size=10, color=[_viridis(norm(n)) for n in pts["N"]],
                                         line=dict(width=1, color="#333"))))
    xs = _xs(lf.data[var])
    if lf.law is not None:
        fig.add_trace(_law_trace(go, xs, lf.law.predict(**{var: xs}), f"this study: {lf.text()}"))
    p = PAPER[key]
    fig.add_trace(_law_trace(go, xs, paper_law(key, **{var: xs}), f"{PAPER_NAME}: {key} = "
                             f"({p[var + '_c']:.2g} / {var})^{p['alpha_' + var]:g}", paper=True))
    return _layout(fig, title, xtitle, "test loss (nats/token)")


def fig_tokens(go, sd: StudyData, fits: dict):
    """Fig. 2: learning curves against tokens processed, one per run."""
    if sd.curves.empty or sd.sizes.empty:
        return None
    fig = go.Figure()
    _curves(go, fig, sd, set(sd.sizes["run_id"]), "tokens")
    n = len(fig.data)
    # a curve browser: every run, or one run alone (its name and N), from a menu above the plot
    buttons = [dict(label="all runs", method="restyle", args=[{"visible": [True] * n}])]
    buttons += [dict(label=tr.name, method="restyle", args=[{"visible": [j == i for j in range(n)]}])
                for i, tr in enumerate(fig.data)]
    fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", showactive=True, x=0, xanchor="left",
                                        y=1.01, yanchor="bottom", font=dict(size=11))])
    fig = _layout(fig, "Learning curves by model size", "tokens processed", "test loss (nats/token)")
    fig.update_layout(margin=dict(t=95), title=dict(y=0.97, yanchor="top"))  # the menu under the title, left
    return fig


def fig_nd(go, sd: StudyData, fits: dict):
    """Fig. 4: loss against N at each data size, the study's L(N, D) and the paper's eq. 1.5 at the same D."""
    lf = fits.get("L(N,D)")
    if lf is None or not len(lf.data) or sd.subsets.empty:
        return None
    d = lf.data
    pts = _point_runs(sd, d)
    fig = go.Figure()
    Ds = sorted(d["D"].unique())
    from plotly.colors import sample_colorscale

    cols = sample_colorscale("Plasma", list(np.linspace(0, 0.85, max(2, len(Ds)))))
    for i, D in enumerate(Ds):
        m = (d["D"] == D).to_numpy()
        fig.add_trace(go.Scatter(x=d["N"][m], y=d["loss"][m], mode="markers", name=f"D = {D:.2g}",
                                 customdata=pts[m].to_numpy(object), hovertemplate=_HOVER, legendgroup=f"D{i}",
                                 marker=dict(size=9, color=cols[i])))
        xs = _xs(d["N"][m], 1.2, 40)
        if lf.law is not None:
            fig.add_trace(_law_trace(go, xs, lf.law.predict(N=xs, D=np.full_like(xs, D)), f"this study, D = {D:.2g}",
                                     color=cols[i], group=f"D{i}", show=False))
        fig.add_trace(_law_trace(go, xs, paper_law("L(N,D)", N=xs, D=np.full_like(xs, D)),
                                 f"{PAPER_NAME} eq. 1.5, D = {D:.2g}", paper=True, group=f"D{i}", show=i == 0))
    title = "L(N, D): " + (lf.law.text() if lf.law is not None else "not fitted")
    return _layout(fig, title, "parameters N (non-embedding)", "early-stopped test loss (nats/token)")


def fig_bcrit(go, sd: StudyData, fits: dict):
    """Fig. 10: the critical batch against loss, the study's B_crit(L) and the paper's eq. 5.3."""
    lf = fits.get("B_crit(L)")
    if lf is None or not len(lf.data):
        return None
    d = lf.data
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=d["L"], y=d["B_crit"], mode="markers", name="B_crit measured",
                             marker=dict(size=8), hovertemplate="loss %{x:.4f}<br>B_crit %{y:,.0f} tokens"
                                                                "<extra></extra>"))
    xs = np.geomspace(d["L"].min() * 0.97, d["L"].max() * 1.03, 50)
    if lf.law is not None:
        fig.add_trace(_law_trace(go, xs, lf.law.predict(L=xs), f"this study: {lf.text()}"))
    fig.add_trace(_law_trace(go, xs, paper_law("B_crit(L)", L=xs), f"{PAPER_NAME} eq. 5.3", paper=True))
    fig = _layout(fig, "Critical batch size against loss", "test loss (nats/token)", "B_crit (tokens)")
    fig.update_xaxes(autorange="reversed")
    return fig


def interactive_figures(sd: StudyData, fits: dict) -> list[tuple[str, str, object]]:
    """(key, caption, plotly Figure) for every interactive figure the study's runs allow."""
    import plotly.graph_objects as go

    made = [("ifig1", "Figure 1 (left): loss against compute, with Kaplan et al. 2020's L(C_min)",
             fig_compute(go, sd, fits)),
            ("ifig1n", "Figure 1 (right): L(N), the study's fit and the paper's",
             fig_single(go, sd, fits, "L(N)", "N", "L(N): best run at each size", "parameters N (non-embedding)")),
            ("ifig1d", "Figure 1 (middle): L(D), the study's fit and the paper's",
             fig_single(go, sd, fits, "L(D)", "D", "L(D): early-stopped, largest model", "dataset size D (tokens)")),
            ("ifig2", "Figure 2: learning curves by model size", fig_tokens(go, sd, fits)),
            ("ifig4", "Figure 4: L(N, D), the study's fit and the paper's eq. 1.5", fig_nd(go, sd, fits)),
            ("ifig10", "Figure 10: critical batch size, the study's fit and the paper's eq. 5.3",
             fig_bcrit(go, sd, fits))]
    return [(k, t, f) for k, t, f in made if f is not None]


def interactive_section(sd: StudyData, fits: dict) -> str:
    """The HTML of the interactive figures, plotly.js embedded once (in the first); without plotly, a note."""
    if not available():
        return ("<p class=note><b>Interactive figures:</b> not drawn, plotly is not installed "
                "(<code>pip install plotly</code>); the static figures below show the same "
                "data.</p>")
    figs = interactive_figures(sd, fits)
    if not figs:
        return "<p class=note>No interactive figure: the store has no learning curves or fitted laws.</p>"
    parts = [f"<p>Hover a point or curve for its run's id, N, D and loss; click a legend entry to hide it, "
             f"double-click to show it alone; Figure 2's menu shows one run's curve at a time. Dotted grey: "
             f"{PAPER_NAME}'s own law with the paper's constants "
             f"(WebText2, its tokenizer: compare slopes, not levels).</p>"]
    for i, (key, title, fig) in enumerate(figs):
        div = fig.to_html(full_html=False, include_plotlyjs=(i == 0), include_mathjax=False, div_id=key,
                          config=_CONFIG)
        parts.append(f"<figure class=plotly>{div}<figcaption>{html.escape(title)}</figcaption></figure>")
    return "\n".join(parts)
