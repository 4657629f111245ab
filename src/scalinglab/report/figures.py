"""Analogues of the figures of Kaplan et al. 2020, drawn from a study's runs and fitted laws.

Each `fig_*` function returns a matplotlib Figure, or raises `Skip` with the reason when the study lacks the runs
it needs; `make_figures` writes the PNGs and collects the notes. Conventions as in the paper: log axes for N, D,
C and B, runs coloured by N on viridis, fitted laws as dashed lines with their formula in the legend. Tick
labels are plain numbers (5, 2e5), legends sit below their panel (never over a curve), and a panel without data is
left out rather than drawn empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, NullLocator  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

from scalinglab.analysis.study_laws import LawFit, compute_frontier, critical_batch_law  # noqa: E402
from scalinglab.analysis.study_data import StudyData  # noqa: E402

from scalinglab import outdir  # noqa: E402
from scalinglab.published import PF_DAY  # noqa: E402


class Skip(Exception):
    """A figure the study's runs cannot support; the message says what is missing."""


@dataclass
class FigureResult:
    key: str
    title: str
    path: Path | None
    note: str = ""


def _norm(values) -> LogNorm:
    v = np.asarray(values, float)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    return LogNorm(lo, hi if hi > lo else lo * 1.01)


def _colorbar(fig, ax, norm, label="N (non-embedding parameters)"):
    sm = plt.cm.ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(sm, ax=ax, label=label)


def _fit_panel(fits: dict, key: str, why: str, missing: bool = False, need_law: bool = False):
    """(the law fit `key`, its data, a figure, its one axis); Skip(why) when the fit or its data is missing, or its
    law with `need_law`, or `missing` says what else the figure needs is."""
    lf = fits.get(key)
    if missing or lf is None or not len(lf.data) or (need_law and lf.law is None):
        raise Skip(why)
    fig, ax = plt.subplots(figsize=(7.5, 5.6), layout="constrained")
    return lf, lf.data, fig, ax


def _law_line(ax, lf: LawFit | None, var: str, xs, **kw):
    if lf is None or lf.law is None:
        return
    y = lf.law.predict(**{var: xs})
    ax.plot(xs, y, "--", color=kw.pop("color", "k"), lw=1.4, label=lf.law.text(), **kw)


def plain_number(x: float, pos=None) -> str:
    """A tick label as a plain number: 5, 0.02, 2000; 1e5 and 2e-12 beyond 1e-3 .. 1e4 (never 5x10^0)."""
    if not np.isfinite(x) or x == 0:
        return "0" if x == 0 else ""
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.6g}"
    mant, exp = f"{x:.3g}".split("e") if "e" in f"{x:.3g}" else (f"{x:.3g}", "0")
    return f"{mant}e{int(exp)}"


_PLAIN = FuncFormatter(plain_number)


def _subset_label(x, pos=None) -> str:
    """Minor-tick labels at 2x and 5x of each decade only."""
    if x <= 0:
        return ""
    mant = x / 10 ** np.floor(np.log10(x) + 1e-9)
    return plain_number(x) if any(abs(mant - m) < 1e-6 for m in (2.0, 5.0)) else ""


def tidy_ticks(fig: plt.Figure) -> None:
    """Plain tick labels on every log axis of `fig`. Under one decade (a loss from 4.8 to 7) the ticks are evenly
    spaced plain numbers; from one to two decades the decades and their 2x and 5x are labelled; wider axes keep
    the decades only."""
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            axes = [(ax.yaxis, ax.get_yscale(), ax.get_ylim())]
        else:
            axes = [(ax.xaxis, ax.get_xscale(), ax.get_xlim()), (ax.yaxis, ax.get_yscale(), ax.get_ylim())]
        for axis, scale, lim in axes:
            lo, hi = sorted(lim)
            if scale != "log" or lo <= 0:
                continue
            decades = np.log10(hi / lo)
            if decades < 1:
                axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
                axis.set_minor_locator(NullLocator())
                axis.set_major_formatter(_PLAIN)
                axis.set_minor_formatter(NullFormatter())
            else:
                axis.set_major_formatter(_PLAIN)
                axis.set_minor_formatter(FuncFormatter(_subset_label) if decades < 2 else NullFormatter())


def legend_below(ax, **kw):
    """The panel's legend under its axes (below the tick labels and axis label), so it never covers a curve;
    constrained layout makes room for it."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    fig = ax.figure
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=kw.pop("fontsize", 7), frameon=False,
                     bbox_transform=offset_copy(ax.transAxes, fig=fig, y=-34, units="points"), **kw)


def _xs(values, pad=1.5):
    v = np.asarray(values, float)
    return np.geomspace(v.min() / pad, v.max() * pad, 100)


# ------------------------------------------------------------------------------------------------ the figures


def fig1_overview(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 1: test loss against compute (learning curves and the L(C_min) frontier), data size and N; the L(D)
    and L(N) panels only where the study has their points (no empty panel)."""
    if sd.curves.empty:
        raise Skip("no learning curves in the store")
    panels = [k for k in ("L(D)", "L(N)") if fits.get(k) is not None and len(fits[k].data)]
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(5.4 + 4.6 * len(panels), 5.6), layout="constrained",
                             squeeze=False)
    axes = list(axes[0])
    ax = axes[0]
    norm = _norm(sd.runs["N"])
    main_ids = set(sd.sizes["run_id"])
    for rid, c in sd.curves[sd.curves["run_id"].isin(main_ids)].groupby("run_id"):
        ax.plot(c["flop"] / PF_DAY, c["test_loss"], color=plt.cm.viridis(norm(c["N"].iloc[0])), lw=1, alpha=0.8)
    bcrit = critical_batch_law(fits)
    for compute, key, col in (("6ND", "L(C_min)", "tab:orange"), ("exact", "L(C_min) exact", "tab:red")):
        fr = compute_frontier(sd, bcrit=bcrit, compute=compute)
        if not len(fr):
            continue
        ax.plot(fr["C"] / PF_DAY, fr["loss"], color=col, lw=2.5, alpha=0.6,
                label=f"frontier, C by {compute}" + (" at C_min (B_crit-corrected)" if bcrit is not None else ""))
        lf = fits.get(key)
        if lf is not None and lf.law is not None:
            xs = _xs(fr["C"], 1.3)
            ax.plot(xs / PF_DAY, lf.law.predict(C=xs), "--", color=col,
                    label=f"{compute}: " + lf.law.text().replace("C_min", "C"))
    ax.set(xscale="log", yscale="log", xlabel="compute C (PF-days; curves at 6ND)", ylabel="test loss (nats/token)")
    ax.set_title("learning curves and compute frontiers", fontsize=10)
    legend_below(ax)

    for ax, key in zip(axes[1:], panels):
        lf = fits[key]
        if key == "L(D)":
            ax.plot(lf.data["D"], lf.data["loss"], "o", color="tab:blue", label="early-stopped, largest model")
            _law_line(ax, lf, "D", _xs(lf.data["D"]))
            ax.set(xscale="log", yscale="log", xlabel="dataset size D (tokens)", title="L(D)")
        else:
            ax.scatter(lf.data["N"], lf.data["loss"], c=lf.data["N"], cmap="viridis", norm=norm, zorder=3,
                       label="best run at each N")
            _law_line(ax, lf, "N", _xs(lf.data["N"]))
            ax.set(xscale="log", yscale="log", xlabel="parameters N (non-embedding)", title="L(N)")
        ax.set_ylabel("test loss (nats/token)")
        legend_below(ax)
    _colorbar(fig, axes, norm)  # one bar at the figure's right edge, for every panel coloured by N
    return fig


def fig2_sample_efficiency(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 2: learning curves coloured by N, against tokens and against compute."""
    main = sd.main
    if main["N"].nunique() < 2 or sd.curves.empty:
        raise Skip("needs the learning curves of >= 2 model sizes")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    norm = _norm(main["N"])
    for rid, c in sd.curves[sd.curves["run_id"].isin(set(main["run_id"]))].groupby("run_id"):
        col = plt.cm.viridis(norm(c["N"].iloc[0]))
        axes[0].plot(c["tokens"], c["test_loss"], color=col, lw=1.2)
        axes[1].plot(c["flop"] / PF_DAY, c["test_loss"], color=col, lw=1.2)
    axes[0].set(xscale="log", yscale="log", xlabel="tokens processed", ylabel="test loss",
                title="larger models need fewer tokens")
    axes[1].set(xscale="log", yscale="log", xlabel="compute (PF-days)", title="... and reach the frontier")
    _colorbar(fig, axes[1], norm)
    return fig


SHAPE_AXES = (("aspect_ratio", "aspect ratio d_model / n_layer", True), ("n_head", "attention heads", False),
              ("d_ff_ratio", "d_ff / d_model", False))


def fig3_shape(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 5 (and Fig. 3's message): loss increase against aspect ratio, heads and d_ff ratio at fixed N, one
    panel for each quantity the study varied (one held fixed is said in the title, not drawn as a column of
    points at one x)."""
    groups = sd.shape_groups()
    if not groups:
        raise Skip("needs >= 3 shapes at one target N (runs with the role 'shape')")
    allg = np.concatenate([g[[c for c, _, _ in SHAPE_AXES]].to_numpy(float) for g in groups])
    varied = [a for i, a in enumerate(SHAPE_AXES) if len(np.unique(np.round(allg[:, i], 6))) > 1]
    held = [f"{label} = {plain_number(allg[0, i])}" for i, (c, label, _) in enumerate(SHAPE_AXES)
            if (c, label, _) not in varied]
    if not varied:
        raise Skip("the shape runs vary none of aspect ratio, heads and d_ff ratio")
    fig, axes = plt.subplots(1, len(varied), figsize=(1 + 4.7 * len(varied), 5.2), layout="constrained",
                             squeeze=False)
    axes = list(axes[0])
    norm = _norm(np.concatenate([g["N"].to_numpy(float) for g in groups]))
    for g in groups:
        col = plt.cm.viridis(norm(g["N"].median()))
        rel = 100 * (g["loss_best"] / g["loss_best"].min() - 1)
        label = f"N ~ {g['N'].median():.2g}"
        for ax, (col_name, _, _) in zip(axes, varied):
            order = np.argsort(g[col_name].to_numpy(float))
            ax.plot(g[col_name].to_numpy(float)[order], rel.to_numpy()[order], "o-", color=col, label=label)
    for ax, (_, xl, lg) in zip(axes, varied):
        ax.set(xlabel=xl, ylabel="loss increase over the best shape (%)")
        if lg:
            ax.set_xscale("log")
        ax.axhline(0, color="grey", lw=0.5)
    legend_below(axes[0])
    fig.suptitle("shape matters little at fixed N" + (f" (held fixed: {', '.join(held)})" if held else ""),
                 fontsize=10)
    return fig


def fig4_nd(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 4 left / Fig. 9 left: loss against N for each data size, with L(N, D) (eq. 1.5)."""
    lf, d, fig, ax = _fit_panel(fits, "L(N,D)", "needs runs on data subsets at several model sizes",
                                missing=sd.subsets.empty)
    dnorm = _norm(d["D"])
    for D, g in d.groupby("D"):
        g = g.sort_values("N")
        col = plt.cm.plasma(dnorm(D) * 0.85)
        ax.plot(g["N"], g["loss"], "o", color=col, label=f"D = {D:.2g}")
        if lf.law is not None:
            xs = _xs(g["N"], 1.2)
            ax.plot(xs, lf.law.predict(N=xs, D=np.full_like(xs, D)), "--", color=col, lw=1)
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="early-stopped test loss",
           title=(lf.law.text() if lf.law is not None else "L(N, D)"))
    ax.title.set_fontsize(8)
    legend_below(ax)
    return fig


def fig6_embedding(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 6: loss against total parameters (splits by depth) and against N (collapses)."""
    m = sd.sizes
    if m["N"].nunique() < 3:
        raise Skip("needs a size sweep of >= 3 sizes")
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), layout="constrained")
    depths = sorted(m["n_layer"].unique())
    cmap = plt.cm.viridis
    for i, L in enumerate(depths):
        g = m[m["n_layer"] == L].sort_values("N")
        col = cmap(i / max(1, len(depths) - 1))
        axes[0].plot(g["n_params_total"], g["loss_best"], "o-", color=col, label=f"{L} layer{'s' if L > 1 else ''}")
        axes[1].plot(g["N"], g["loss_best"], "o-", color=col, label=f"{L} layer{'s' if L > 1 else ''}")
    axes[0].set(xscale="log", yscale="log", xlabel="parameters, embeddings included", ylabel="test loss",
                title="total parameters: split by depth")
    axes[1].set(xscale="log", yscale="log", xlabel="parameters N, embeddings excluded",
                title="non-embedding N: one trend")
    lf = fits.get("L(N)")
    if lf is not None and lf.law is not None:
        _law_line(axes[1], lf, "N", _xs(m["N"], 1.2))
    legend_below(axes[0])
    legend_below(axes[1])
    return fig


def fig8_transfer(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 8: loss on each transfer set against N, and against the test loss."""
    if not sd.transfer_sets:
        raise Skip("the dataset has no transfer sets (prepare it with transfer corpora)")
    byn = sd.main_by_n()
    if len(byn) < 2:
        raise Skip("needs >= 2 model sizes")
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), layout="constrained")
    axes[0].plot(byn["N"], byn["loss"], "o-", color="k", label="test (training distribution)")
    for i, s in enumerate(sd.transfer_sets):
        col = plt.cm.tab10(i)
        axes[0].plot(byn["N"], byn[f"loss_{s}"], "o-", color=col, label=s)
        axes[1].plot(byn["loss"], byn[f"loss_{s}"], "o", color=col, label=s)
    lo, hi = byn["loss"].min(), byn["loss"].max()
    axes[1].plot([lo, hi], [lo, hi], ":", color="grey", label="slope 1")
    axes[0].set(xscale="log", yscale="log", xlabel="parameters N", ylabel="loss", title="transfer: parallel lines")
    axes[1].set(xlabel="test loss on the training distribution", ylabel="loss on the transfer set",
                title="a roughly constant offset")
    legend_below(axes[0])
    legend_below(axes[1])
    return fig


def fig9_overfitting(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 9 right: deltaL = L(N, D)/L(N, inf) - 1 against N^(alpha_N/alpha_D)/D, with eq. 4.3."""
    lf, d, fig, ax = _fit_panel(fits, "L(N,D)", "needs an L(N, D) fit (runs on data subsets at several sizes)",
                                missing=sd.subsets.empty, need_law=True)
    p = lf.law.params
    linf = lf.law.predict(N=d["N"], D=np.full(len(d), 1e30))
    dl = d["loss"].to_numpy(float) / linf - 1
    ratio = p["alpha_N"] / p["alpha_D"]
    x = d["N"].to_numpy(float) ** ratio / d["D"].to_numpy(float)
    norm = _norm(d["N"])
    ax.scatter(x, np.maximum(dl, 1e-4), c=d["N"], cmap="viridis", norm=norm, zorder=3)
    xs = _xs(x, 2)
    model = (1 + xs * p["D_c"] / p["N_c"] ** ratio) ** p["alpha_D"] - 1
    ax.plot(xs, model, "--", color="k", label=f"eq. 4.3, alpha_N/alpha_D = {ratio:.3g}")
    ax.set(xscale="log", yscale="log", xlabel=f"N^{ratio:.3g} / D", ylabel="deltaL = L / L(N, inf) - 1",
           title="overfitting depends on N^(alpha_N/alpha_D)/D")
    legend_below(ax)
    _colorbar(fig, ax, norm)
    return fig


def fig10_bcrit(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 10: the critical batch (gradient noise scale) against loss, with B_crit(L)."""
    lf, d, fig, ax = _fit_panel(fits, "B_crit(L)", "needs runs that measured the gradient noise scale "
                                "(noise_scale = true)")
    if "B_crit_low" in d:  # measured from a batch-size sweep, with the noise scale at the same losses
        err = np.maximum(np.vstack([d["B_crit"] - d["B_crit_low"], d["B_crit_high"] - d["B_crit"]]), 0)
        ax.errorbar(d["L"], d["B_crit"], yerr=err, fmt="o", capsize=3, label="B_crit from the batch-size sweep")
        ax.plot(d["L"], d["B_noise"], "s", mfc="none", label="gradient noise scale B_simple")
    else:
        ax.plot(d["L"], d["B_crit"], "o", alpha=0.7, label="gradient noise scale B_simple")
    if lf.law is not None:
        xs = np.geomspace(d["L"].min() * 0.97, d["L"].max() * 1.03, 50)
        ax.plot(xs, lf.law.predict(L=xs), "--", color="k", label=lf.law.text())
    ax.set(xscale="log", yscale="log", xlabel="test loss", ylabel="B_crit (tokens)",
           title="critical batch rises as the loss falls")
    ax.invert_xaxis()
    legend_below(ax)
    return fig


def fig11_ns(sd: StudyData, fits: dict) -> plt.Figure:
    """Fig. 11 / Fig. 4 right: test loss against steps for each N, with L(N, S) (eq. 1.6)."""
    lf, d, fig, ax = _fit_panel(fits, "L(N,S)", "needs the learning curves of >= 2 model sizes")
    norm = _norm(d["N"])
    for rid, g in d.groupby("group"):
        col = plt.cm.viridis(norm(g["N"].iloc[0]))
        ax.plot(g["S"], g["loss"], "o", ms=3, color=col)
        if lf.law is not None:
            xs = np.geomspace(g["S"].min(), g["S"].max(), 50)
            ax.plot(xs, lf.law.predict(N=np.full_like(xs, g["N"].iloc[0]), S=xs), "-", color=col, lw=1)
    ax.set(xscale="log", yscale="log", xlabel="steps S_min (B_crit-corrected)" if lf.steps == "S_min" else "steps S",
           ylabel="test loss")
    ax.set_title(lf.text() if lf.law is not None else "L(N, S)", fontsize=8)
    _colorbar(fig, ax, norm)
    return fig


FIGURES = [
    ("fig1", "Figure 1: loss against compute, data and parameters", fig1_overview),
    ("fig2", "Figure 2: learning curves by model size", fig2_sample_efficiency),
    ("fig5", "Figures 3/5: shape at fixed N", fig3_shape),
    ("fig4", "Figure 4: L(N, D)", fig4_nd),
    ("fig6", "Figure 6: total against non-embedding parameters", fig6_embedding),
    ("fig8", "Figure 8: transfer to other distributions", fig8_transfer),
    ("fig9", "Figure 9: overfitting", fig9_overfitting),
    ("fig10", "Figure 10: critical batch size against loss", fig10_bcrit),
    ("fig11", "Figure 11: L(N, S) learning curves", fig11_ns),
]


def make_figures(sd: StudyData, fits: dict, out_dir: str | Path) -> list[FigureResult]:
    """Write every figure the runs allow as OUT/figN.png; the others come back with path None and a note."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for key, title, fn in FIGURES:
        path = out / f"{key}.png"
        try:
            fig = fn(sd, fits)
        except Skip as exc:
            outdir.remove(path)  # an older report's figure, never a file scalinglab did not write
            results.append(FigureResult(key, title, None, f"skipped: {exc}"))
            continue
        tidy_ticks(fig)
        with outdir.replacing(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        results.append(FigureResult(key, title, path))
    return results
