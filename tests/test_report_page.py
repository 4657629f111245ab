"""The HTML report as a reader gets it, rendered from a real store of tiny runs: self-contained (every image inline,
plotly.js embedded once, nothing linked), each run on hover, the paper's own laws beside the study's, plain tick
labels, no empty panel, no legend over a panel, a shape figure of what was varied, the page no wider than the
window (at 1400 px and a phone's 390 px, in headless Chromium where it is installed), and without plotly the
static figures with a note."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from conftest import train_store

from scalinglab.analysis.study_data import StudyData
from scalinglab.analysis.study_laws import fit_study
from scalinglab.report.figures import fig1_overview, fig3_shape, plain_number, tidy_ticks
from scalinglab.report.html import write_report

plotly = pytest.importorskip("plotly", reason="the interactive report needs plotly (a dependency)")


@pytest.fixture(scope="module")
def store(byte_dataset, tmp_path_factory):
    shapes = [(1, 48, 4), (2, 34, 2), (3, 28, 4), (1, 16, 2)]  # the first three: N ~ 2.8e4, aspect and heads differ
    runs = [(dict(n_layer=n_layer, d_model=d_model, n_head=n_head), ["sizes"] + (["shape"] if i < 3 else []))
            for i, (n_layer, d_model, n_head) in enumerate(shapes)]
    return train_store(tmp_path_factory.mktemp("page") / "s.sqlite", byte_dataset, "t", runs, n_ctx=32,
                       tokens=30_000, batch_size=8, n_evals=6, eval_tokens=2048)


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("page-report") / "r"
    rep = write_report(store, out, n_resamples=20)
    return rep, rep.path.read_text(encoding="utf-8")


def _refs(page: str) -> list[str]:
    """Every src and href attribute of the page's elements but links within the page (#name); a script's text
    is not parsed as tags."""
    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(v for k, v in attrs if k in ("src", "href") and v is not None and not v.startswith("#"))

    P().feed(page)
    return found


def _plot_data(page: str, div_id: str) -> list[dict]:
    """The traces of the plotly figure in div `div_id`, as the page hands them to Plotly.newPlot."""
    m = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', page)
    assert m, f"no figure {div_id}"
    return json.JSONDecoder().raw_decode(page, m.end())[0]


def test_page_is_self_contained_with_plotly_embedded_once(report):
    rep, page = report
    refs = _refs(page)
    n_png = sum(f.path is not None for f in rep.figures) + 1  # and the predicted-before-seen figure
    assert len(refs) == n_png and all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert len(re.findall(r"plotly\.js v\d+\.\d+\.\d+", page)) == 1  # the library's banner: embedded once
    n_plots = page.count("Plotly.newPlot(")
    assert n_plots >= 3 and page.count("<figure class=plotly>") == n_plots
    assert "not installed" not in page
    assert "<div class=scroll><table><tr><th>name</th>" in page  # the runs table scrolls inside the page
    anchors = set(re.findall(r" id=([\w-]+)", page))
    assert {"findings", "predicted"} <= anchors and all(h[1:] in anchors for h in re.findall(r"href='(#[\w-]+)'", page))


def test_hover_names_each_run_and_the_papers_laws_stand_beside_the_fits(report, store):
    rep, page = report
    sd = rep.analysis.data
    traces = _plot_data(page, "ifig1n")
    points = [t for t in traces if t.get("mode") == "markers"][0]
    assert "run %{customdata[0]}" in points["hovertemplate"] and "N = " in points["hovertemplate"]
    assert "D = " in points["hovertemplate"] and "loss = " in points["hovertemplate"]
    got = {row[0]: row for row in points["customdata"]}
    sizes = sd.sizes.set_index("run_id")
    assert set(got) == set(sizes.index)  # each point names its run, with that run's N, D and loss
    for rid, (_, n, d, loss) in got.items():
        assert n == sizes.loc[rid, "N"] and d == sizes.loc[rid, "D"]
        assert abs(loss - sizes.loc[rid, "loss_best"]) < 1e-9
    names = [t["name"] for t in traces]
    assert any(n.startswith("this study: L(N) = ") for n in names)
    assert "Kaplan et al. 2020: L(N) = (8.8e+13 / N)^0.076" in names
    glance = page[page.index("<h2>At a glance</h2>"):page.index("<h2 id=findings>")]
    a = rep.fits["L(N)"].law
    assert f"alpha_N, loss against parameters: <b>{a.params['alpha_N']:.4g}</b>" in glance and "0.076" in glance
    curves = _plot_data(page, "ifig1")
    assert {t["customdata"][0][0] for t in curves if t.get("legendgroup") == "runs"} == set(sizes.index)
    assert any(t["name"].startswith("Kaplan et al. 2020: L(C_min)") for t in curves)
    # the curve browser: 'all runs', then one entry per run that shows that run's curve alone
    menu = json.JSONDecoder().raw_decode(page, page.index('"updatemenus":', page.index('"ifig2"')) + 14)[0]
    buttons = menu[0]["buttons"]
    n = len(_plot_data(page, "ifig2"))
    assert buttons[0]["label"] == "all runs" and len(buttons) == n + 1 == len(sizes) + 1
    for i, b in enumerate(buttons[1:]):
        assert b["args"][0]["visible"] == [j == i for j in range(n)]


def test_static_figures_plain_ticks_no_empty_panel_and_legends_outside(store):
    sd = StudyData.from_store(store)
    fits = fit_study(sd, n_resamples=10)
    assert not len(fits["L(D)"].data)  # no data-subset runs: no L(D) panel at all, not an empty one
    fig = fig1_overview(sd, fits)
    tidy_ticks(fig)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["learning curves and compute frontiers", "L(N)"]
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()
              + ax.get_xticklabels(minor=True) + ax.get_yticklabels(minor=True) if t.get_text()]
    assert len(labels) > 8
    for lab in labels:  # plain numbers: 5, 6.5, 1e-10, never 5x10^0 in mathtext
        float(lab)
    for ax in panels:
        leg = ax.get_legend()
        assert leg is not None and leg.get_window_extent().y1 <= ax.get_window_extent().y0  # below the panel
    plt.close(fig)

    shape = fig3_shape(sd, fits)  # aspect ratio and heads varied, d_ff held at 4 d_model
    xlabels = [ax.get_xlabel() for ax in shape.axes]
    assert xlabels == ["aspect ratio d_model / n_layer", "attention heads"]
    assert "held fixed: d_ff / d_model = 4" in shape._suptitle.get_text()
    plt.close(shape)


@pytest.fixture(scope="module")
def subset_store(byte_dataset, tmp_path_factory):
    """Three sizes on all the data and the largest on three nested data subsets (repeated): L(D) and L(N, D)."""
    runs = [(dict(n_layer=n_layer, d_model=d_model, n_head=2), ["sizes"])
            for n_layer, d_model in ((1, 16), (1, 32), (2, 32))]
    runs += [(dict(n_layer=2, d_model=32, n_head=2, d_unique=d), ["subsets"]) for d in (2_000, 5_000, 12_000)]
    return train_store(tmp_path_factory.mktemp("page-subsets") / "s.sqlite", byte_dataset, "t", runs, n_ctx=32,
                       tokens=24_000, batch_size=8, n_evals=6, eval_tokens=2048)


@pytest.mark.slow(seconds=40)
def test_data_panels_with_the_papers_laws(subset_store):
    from scalinglab.report.interactive import interactive_figures

    sd = StudyData.from_store(subset_store)
    fits = fit_study(sd, n_resamples=10)
    assert len(fits["L(D)"].data) == 3 and len(fits["L(N,D)"].data) == 6
    figs = {k: f for k, _, f in interactive_figures(sd, fits)}
    assert {"ifig1", "ifig1n", "ifig1d", "ifig2", "ifig4"} <= set(figs)
    subsets = sd.subsets.set_index("run_id")
    pts = [t for t in figs["ifig1d"].data if t.mode == "markers"][0]
    assert {row[0] for row in pts.customdata} == set(subsets.index)
    for rid, n, d, loss in pts.customdata:  # D: the subset's unique tokens, the x the law is fitted on
        assert n == subsets.loc[rid, "N"] and d == subsets.loc[rid, "d_unique"]
    names = [t.name for t in figs["ifig1d"].data]
    assert "Kaplan et al. 2020: L(D) = (5.4e+13 / D)^0.095" in names
    nd = figs["ifig4"].data
    marked = [t for t in nd if t.mode == "markers"]
    assert len(marked) == len(set(fits["L(N,D)"].data["D"]))  # one trace per data size
    assert sum(t.name.startswith("Kaplan et al. 2020 eq. 1.5, D = ") for t in nd) == len(marked)
    fig = fig1_overview(sd, fits)  # with subset runs the L(D) panel is drawn, between the others
    assert [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"][1:] == ["L(D)", "L(N)"]
    plt.close(fig)


def test_plain_number():
    assert [plain_number(x) for x in (5, 6.5, 0.02, 2000, 2e5, 1e-12, 1e4, 0)] == [
        "5", "6.5", "0.02", "2000", "2e5", "1e-12", "1e4", "0"]


def test_without_plotly_the_page_keeps_its_pngs_and_says_so(store, tmp_path):
    code = ("import sys; sys.modules['plotly'] = None\n"  # as if not installed: importing it fails
            "from scalinglab.report.html import write_report\n"
            f"write_report({str(store)!r}, {str(tmp_path / 'r')!r}, n_resamples=10)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "Plotly.newPlot" not in page and "plotly.js v" not in page
    assert "plotly is not installed" in page
    n_png = len(list((tmp_path / "r").glob("fig*.png")))
    refs = _refs(page)
    assert len(refs) == n_png >= 3 and all(r.startswith("data:image/png;base64,") for r in refs)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless check needs Debian's chromium at /usr/bin/chromium "
                                                   "(.ci/run installs it: apt-get install -y chromium)")
@pytest.mark.parametrize("width", [1400, 390])
def test_page_fits_the_window_and_plots_draw_in_chromium(report, tmp_path, width):
    """The page in an iframe `width` px wide (a desktop window cannot be narrower than about 500 px, so the phone's
    width is the iframe's): no element outside a scrolling box reaches past its right edge, every interactive
    figure draws and fits, every image decodes, no script error."""
    import html as _html

    rep, page = report
    errs = ("<script>window.__errs=[];window.addEventListener('error',e=>window.__errs.push(String(e.message)));"
            "</script>")
    probe = tmp_path / "probe.html"
    js = ("document.getElementById('f').addEventListener('load',()=>setTimeout(()=>{"
          "const w=document.getElementById('f').contentWindow;const d=w.document;"
          "const wide=[...d.body.querySelectorAll('*')].filter(e=>e.getBoundingClientRect().right>w.innerWidth+1"
          "&&!(e.parentElement&&e.parentElement.closest('.scroll'))&&!e.closest('svg')).map(e=>e.tagName);"
          "const p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify({sw:d.documentElement."
          "scrollWidth,w:w.innerWidth,wide:wide,plots:[...d.querySelectorAll('.js-plotly-plot')].filter(x=>"
          "x.querySelector('.main-svg')).map(x=>x.offsetWidth),imgs:[...d.images].filter(i=>i.naturalWidth>0)"
          ".length,errs:w.__errs});document.body.appendChild(p);},500));")
    inner = page.replace("<head>", "<head>" + errs, 1)
    probe.write_text("<!DOCTYPE html><html><head><meta charset=utf-8></head><body style='margin:0'><iframe id=f "
                     f"style='border:0' width={width} height=3000 srcdoc=\"{_html.escape(inner, quote=True)}\">"
                     f"</iframe><script>{js}</script></body></html>", encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             f"--window-size={width + 120},2000", "--virtual-time-budget=8000", "--dump-dom"]
    d = subprocess.run([str(CHROMIUM), *flags, probe.as_uri()], capture_output=True, text=True, timeout=180)
    start = d.stdout.find('<pre id="probe">')
    assert start >= 0, d.stderr[-2000:]
    state = json.loads(_html.unescape(d.stdout[start + len('<pre id="probe">'):d.stdout.find("</pre>", start)]))
    assert state["errs"] == [], state
    assert state["w"] == width
    assert len(state["plots"]) == page.count("Plotly.newPlot(")  # every interactive figure drew
    assert all(0 < pw <= width for pw in state["plots"]), state
    assert state["imgs"] == len(_refs(page))
    assert state["wide"] == [] and state["sw"] <= width, state  # wide tables scroll inside their box
