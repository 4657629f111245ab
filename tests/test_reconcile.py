"""The reconcile study (issue 14): its plan expands into valid studies that bracket every budget, and its analysis,
end to end on a synthetic store from a known Chinchilla surface, finds the corrections that move the exponent
(and says "no" where a setting changes nothing)."""

import json

import numpy as np
import pytest

from scalinglab.analysis import reconcile as rc
from scalinglab.laws.forms import get_form
from scalinglab.report import reconcile as rc_report
from scalinglab.store import RunStore
from scalinglab.sweep import reconcile_plan as rp
from scalinglab.training.config import RunConfig
from scalinglab.training.trainer import lr_at

P = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}
A_TRUE = P["beta"] / (P["alpha"] + P["beta"])
K = 2e5  # the exact count adds 6 K FLOP per token to every model (weighs more on small ones)
BUDGETS = list(np.geomspace(1e13, 1e16, 5))
LADDER = [1e4 * 2 ** (k / 2) for k in range(27)]  # 1e4 .. 8e7, sqrt(2) apart


def surface(N, D, beta=P["beta"]):
    """The loss surface; setting (e)'s tuning uses data better (a larger beta, B scaled to agree at D = 1e5, so
    every tuned run is better than its baseline): a = beta/(alpha + beta) grows."""
    return P["E"] + P["A"] / N ** P["alpha"] + P["B"] * 1e5 ** (beta - P["beta"]) / D ** beta


TUNED_BETA = 0.45


def _add(st, study, rid, N, D_total, loss, cfg, curve=None):
    shape = {"n_layer": 1, "d_model": int(LADDER.index(N)) + 1, "n_head": 1}
    st.add_run(rid, {**cfg, **shape}, name=rid, study=study)
    summary = {"N": N, "n_params_total": N + 2048 * 64, "D": D_total, "C": 6 * N * D_total,
               "C_exact": 6 * (N + K) * D_total, "final_test_loss": loss, **shape}
    points, evals = [], []
    for step, (t, y) in enumerate(curve or []):
        points.append({"step": step + 1, "tokens": t, "flop": 6 * N * t, "flop_exact": 6 * (N + K) * t})
        evals.append({"step": step + 1, "eval_set": "test", "loss": y})
    st.finish_run(rid, "done", summary, points=points, evals=evals)


def synthetic_store(path, rng):
    """Long runs (settings a-c), an IsoFLOP grid in exact FLOP (d), a tuning sweep and the tuned grid (e), from
    one surface with 0.1% noise, except the tuned runs: a surface with a larger beta."""
    noise = lambda: np.exp(0.001 * rng.standard_normal())
    st = RunStore(path)
    for study in ("reconcile-kaplan", "reconcile-warmup"):
        for N in LADDER:
            top = BUDGETS[-1] / (6 * N)
            t = np.geomspace(1e4, top, 40)
            curve = [(float(x), float(surface(N, x) * noise())) for x in t]
            _add(st, study, f"{study}-{N:g}", N, top, curve[-1][1], {"lr_scale": 1.0}, curve)

    def grid(study, beta=P["beta"], cfg=None, skip_budget=None):
        for b in BUDGETS:
            for N in LADDER:
                D = b / (6 * (N + K))
                if not 0.3 <= D / N <= 3000 or b == skip_budget:
                    continue
                _add(st, study, f"{study}-{N:g}-{b:.3g}", N, D, float(surface(N, D, beta) * noise()),
                     cfg or {"lr_scale": 1.0, "beta2": 0.95, "batch_size": 32})

    grid("reconcile-cosine")
    # at the sweep's budget a tuned run is the sweep's own run (one config, one id): the store holds it once,
    # under the sweep
    grid("reconcile-tuned", TUNED_BETA, {"lr_scale": 2.0, "beta2": 0.99, "batch_size": 16}, skip_budget=BUDGETS[2])
    cos = st.runs()
    cos = cos[cos["study"] == "reconcile-cosine"]
    for _, r in cos[np.isclose(cos["C_exact"], BUDGETS[2], rtol=1e-6)].iterrows():
        N, D = float(r["N"]), float(r["D"])
        for lr, b2, bs in ((2.0, 0.99, 16), (0.5, 0.95, 32)):
            loss = surface(N, D, TUNED_BETA) if lr == 2.0 else surface(N, D) * 1.01
            _add(st, "reconcile-tune", f"tune-{N:g}-{lr}", N, D, float(loss),
                 {"lr_scale": lr, "beta2": b2, "batch_size": bs})
    st.close()


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    path = tmp_path_factory.mktemp("reconcile") / "study.sqlite"
    synthetic_store(path, np.random.default_rng(0))
    from scalinglab.report.reconcile import write_reconcile_report

    rep = write_reconcile_report(path, path.parent / "report", n_resamples=150, budgets=BUDGETS,
                                 surface_grid=get_form("chinchilla").start_grid()[::45])
    return rep


def test_each_setting_recovers_the_surface_it_was_drawn_from(analysis):
    an = analysis.analysis
    a = an.settings["a"].primary
    assert a.n_exponent_ci[0] <= A_TRUE <= a.n_exponent_ci[1]  # 6ND: the closed form's exponent
    assert len(a.budgets_used) >= 4
    for s in "bcd":  # C = 6 (N + K) D: lower (see test_frontier for the algebra)
        assert an.settings[s].primary.n_exponent_ci[1] < A_TRUE
    # the same runs read through approaches 1 and 3 agree in direction
    assert an.settings["a"].approaches[3].n_exponent > an.settings["b"].approaches[3].n_exponent
    assert 1 in an.settings["a"].approaches
    lo, med, hi = an.settings["a"].tokens_per_param[1], an.settings["a"].tokens_per_param[0], \
        an.settings["a"].tokens_per_param[2]
    assert lo <= med <= hi and med > 0


def test_steps_say_which_corrections_move_the_exponent(analysis):
    steps = {(s.frm, s.to): s for s in analysis.analysis.steps}
    ab = steps[("a", "b")]
    assert ab.verdict == "yes" and ab.change < 0  # re-counting FLOPs moves it down
    bc = steps[("b", "c")]  # (c)'s runs are drawn from the same surface: no move may be claimed
    assert bc.verdict != "yes" and abs(bc.change) < 0.01
    de = steps[("d", "e")]
    assert de.verdict == "yes" and de.change > 0  # a larger beta moves it up


def test_tuning_rule_and_report(analysis):
    rule = analysis.analysis.rule
    chosen = rule[rule["chosen"]]
    pts = analysis.analysis.settings
    at = [np.isclose(pts[s].points["budget"], BUDGETS[2]).sum() for s in "de"]
    assert at[0] == at[1] > 0  # (e) reads the sweep's chosen runs at its budget
    assert len(chosen) == rule["N"].nunique() and (chosen["lr_scale"] == 2.0).all() and not chosen["baseline"].any()
    assert rule["baseline"].sum() == len(chosen)  # each size's (d) run at the tuning budget is its baseline
    html = analysis.path.read_text()
    for needle in ("Exponent by setting", "Porian", "0.835", "0.497", "Findings", "exponent_path.png",
                   "isoflop_curves.png", "Tuning rule"):
        assert needle in html
    for _, p in analysis.figures:
        assert p.stat().st_size > 10_000
    # self-contained: every image inline, no file or address linked; no internal tracker numbers in the text
    refs = _refs(html)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert len(refs) == len(analysis.figures)
    assert "issue" not in html.lower()
    # the sweep tried lr_scale 0.5, 1 (the baseline) and 2, beta2 0.95 and 0.99, batch 16 and 32; every size
    # chose 2.0 / 0.99 / 16: each at the top (or bottom) of its grid, flagged
    edges = rc_report.grid_edges(rule)
    assert {(e["setting"], e["edge"], e["value"]) for e in edges} == {
        ("lr_scale", "highest", 2.0), ("beta2", "highest", 0.99), ("batch_size", "lowest", 16.0)}
    assert len(edges) == 3 * len(chosen)
    assert "At the edge of the grid" in html and html.count("class=edge") == 3 * len(chosen)
    assert f"the chosen 2 is the highest value of the grid [0.5, 1, 2] at {len(chosen)} of {len(chosen)} sizes" in html
    d = json.loads((analysis.path.parent / "reconcile.json").read_text())
    assert set(d["settings"]) == set("abcdet") and d["settings"]["a"]["approaches"]["2"]["approach"] == 2
    assert all(v["primary"] == 2 for v in d["settings"].values())
    assert "(b) with N counted with embeddings" in html


def test_settings_on_the_same_runs_are_compared_paired(analysis):
    """(a) and (b) re-analyse the same runs, as do (b) and (t): their steps come from one bootstrap over the runs
    that draws the same runs for both settings, so the interval of the change is far narrower than
    pairing the two settings' own draws at random (what an independent comparison does), and still holds the
    change the noise-free surface gives."""
    an = analysis.analysis
    steps = {(s.frm, s.to): s for s in an.steps}
    ab, bt = steps[("a", "b")], steps[("b", "t")]
    assert "paired bootstrap" in ab.text and "paired bootstrap" in bt.text
    rnd = rc.compare(an.settings["a"].primary, an.settings["b"].primary, "a", "b")
    assert "paired at random" in rnd.text
    assert (ab.ci[1] - ab.ci[0]) < 0.5 * (rnd.ci[1] - rnd.ci[0])
    assert ab.ci[0] <= ab.change <= ab.ci[1]
    # counting N with its embeddings (a fixed 131,072 more parameters per model here) moves N_opt's exponent down:
    # d log(N + c) / d log N = N / (N + c) < 1, most at the small end (Pearce and Song 2024)
    t = an.settings["t"]
    assert bt.verdict == "yes" and bt.change < 0 and t.primary.n_exponent < an.settings["b"].primary.n_exponent


def _refs(page: str) -> list[str]:
    """Every src and href attribute value of the page's elements but links within the page (#name); scripts'
    text is not parsed as tags."""
    from html.parser import HTMLParser

    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(v for k, v in attrs if k in ("src", "href") and v is not None and not v.startswith("#"))

    P().feed(page)
    return found


def test_a_choice_inside_its_grid_is_not_flagged(analysis):
    """The same sweep with each size's middle learning rate chosen (and beta2 and batch tried at three values,
    the middle chosen): nothing at an edge, nothing flagged; the edge is read per size, from its own grid."""
    import dataclasses

    rule = analysis.analysis.rule.copy()
    rule["chosen"] = False
    for _, g in rule.groupby(["n_layer", "d_model", "n_head"]):
        mid = g.index[np.isclose(g["lr_scale"], 1.0)][0]
        rule.loc[mid, "chosen"] = True
        rule.loc[mid, ["beta2", "batch_size"]] = [0.97, 24]
    assert rc_report.grid_edges(rule) == []
    page = rc_report.render_html(dataclasses.replace(analysis.analysis, rule=rule), analysis.figures, "t")
    assert "At the edge of the grid" not in page and "class=edge" not in page
    assert "none at an edge" in page
    # one size choosing the lowest LR it tried is flagged, at that size only
    first = rule.groupby(["n_layer", "d_model", "n_head"]).ngroup() == 0
    low = rule.index[first & np.isclose(rule["lr_scale"], 0.5)][0]
    rule.loc[first, "chosen"] = False
    rule.loc[low, "chosen"] = True
    edges = rc_report.grid_edges(rule)
    assert [(e["setting"], e["edge"], e["value"]) for e in edges][:1] == [("lr_scale", "lowest", 0.5)]
    assert {e["N"] for e in edges} == {float(rule.loc[low, "N"])}


def test_compare_verdicts_on_known_draws():
    from scalinglab.laws.frontier import ComputeOptimal

    def res(a, sd, n=400, seed=0):
        draws = np.zeros((n, 4))
        draws[:, 1] = a + sd * np.random.default_rng(seed).standard_normal(n)
        return ComputeOptimal(params={"n_exponent": a, "n_coef": 1, "d_exponent": 1 - a, "d_coef": 1},
                              ci={}, se={}, converged=True, message="", n_points=5, draws=draws)

    assert rc.compare(res(0.8, 0.01), res(0.6, 0.01, seed=1), "a", "b").verdict == "yes"
    assert rc.compare(res(0.60, 0.005), res(0.605, 0.005, seed=1), "a", "b").verdict == "no"
    v = rc.compare(res(0.60, 0.1), res(0.65, 0.1, seed=1), "a", "b")
    assert v.verdict == "inconclusive" and "cannot tell" in v.text
    assert rc.compare(None, res(0.6, 0.1), "a", "b").verdict == "not measured"


@pytest.mark.parametrize("preset", ["reconcile", "reconcile_gpu"])
def test_shipped_plans_expand_into_valid_studies_that_bracket_every_budget(preset, tmp_path):
    from importlib import resources

    from scalinglab.sweep.spec import load_study

    plan_path = resources.files("scalinglab.studies").joinpath(preset, "plan.toml")
    plan = rp.ReconcilePlan.load(plan_path)
    vocab = int(plan.data["tokenizer"].split("-")[1])
    assert len(plan.budgets) >= 4 and np.log10(plan.budgets[-1] / plan.budgets[0]) >= 1.5
    specs = rp.plan_specs(plan, vocab)
    ids = []
    for name, spec in specs:
        path = rp.write_spec(spec, tmp_path / name)
        study = load_study(path, prepare=False)
        assert study.runs and study.store_path == (tmp_path / "study.sqlite").resolve()
        ids += study.run_ids()
    assert len(ids) == len(set(ids))
    # every budget gets >= 5 sizes in the grid of (d)
    for b in plan.budgets:
        assert sum(plan.grid_tokens(s, vocab, b) is not None for s in plan.sizes) >= 5
    # the long runs: one fixed horizon and warm-up in (a, b); a warm-up of N tokens in (c)
    kaplan = load_study(tmp_path / "1_kaplan.toml", prepare=False)
    assert len({r.schedule_tokens for r in kaplan.runs}) == 1 and len({r.warmup_tokens for r in kaplan.runs}) == 1
    assert max(r.tokens for r in kaplan.runs) <= kaplan.runs[0].schedule_tokens
    grid = load_study(tmp_path / "3_cosine.toml", prepare=False)  # short runs: the warm-up is capped
    assert all(r.warmup_tokens <= r.tokens // 4 for r in grid.runs) and all(r.schedule_tokens is None for r in grid.runs)


def test_a_bad_plan_is_one_clear_error(tmp_path):
    from scalinglab.errors import ConfigError

    p = tmp_path / "plan.toml"
    p.write_text('[data]\ncorpus = "default"\n[plan]\nbudgets = [1e12, 1e11]\nsizes = []\nwarmpu = 3\n')
    with pytest.raises(ConfigError, match="unknown key"):
        rp.ReconcilePlan.load(p)
    p.write_text('[data]\ncorpus = "default"\n[plan]\nbudgets = [1e12, 1e11]\nsizes = []\n')
    with pytest.raises(ConfigError, match="at least 5 sizes"):
        rp.ReconcilePlan.load(p)


def test_warmup_tokens_and_a_fixed_cosine_horizon():
    cfg = RunConfig(n_ctx=64, batch_size=32, tokens=64 * 32 * 100, warmup_tokens=64 * 32 * 10 + 1,
                    schedule_tokens=64 * 32 * 400)
    assert cfg.warmup == 11 and cfg.schedule_steps == 400 and cfg.steps == 100
    # a run that stops at a quarter of the horizon is still near its peak LR (Kaplan's fixed schedule)
    assert lr_at(99, 1.0, cfg.warmup, cfg.schedule_steps) > 0.8
    assert lr_at(99, 1.0, cfg.warmup, cfg.steps) < 0.01  # matched: decayed to ~0
    # configs without the new fields keep the ids they had before them (values from the code before)
    assert RunConfig().run_id() == "f4015384b04902ff"
    assert RunConfig(n_layer=3, d_model=96, n_head=4, tokens=4_000_000, lr_scale=2.0).run_id() == "e608547fdd5957e5"
    assert RunConfig(warmup_tokens=1000).run_id() != RunConfig().run_id()


def test_a_real_run_follows_the_fixed_horizon(byte_dataset, tmp_path):
    """The trainer reads warmup_tokens and schedule_tokens: a run a quarter of the horizon long ends near its
    peak LR (Kaplan's schedule), the same run with its cosine matched ends near zero."""
    from scalinglab.training.trainer import train_run

    lrs = {}
    for horizon in (None, 4 * 40 * 8 * 32):
        cfg = RunConfig(data=str(byte_dataset), n_layer=1, d_model=16, n_head=2, n_ctx=32, batch_size=8,
                        tokens=40 * 8 * 32, lr=2e-3, threads=1, n_evals=3, train_log_every=1,
                        warmup_tokens=5 * 8 * 32, schedule_tokens=horizon)
        store = RunStore(tmp_path / f"h{horizon}.sqlite")
        assert train_run(cfg, store=store).status == "done"
        pts = store.curves().dropna(subset=["lr"]).sort_values("step")
        lrs[horizon] = pts["lr"].to_numpy()
        assert pts["lr"].iloc[4] == pytest.approx(2e-3, rel=1e-6)  # warm-up of 5 steps, from tokens
    assert lrs[None][-1] < 0.05 * 2e-3
    assert lrs[4 * 40 * 8 * 32][-1] > 0.8 * 2e-3


def test_tuning_rule_chooses_by_validation_loss_never_test():
    """Two candidates and the (d) baseline at one size: validation and test disagree on the best. The rule must
    follow validation; without a validation loss (a dataset without the split) it falls back to test."""
    import pandas as pd

    def run(study, rid, lr, test, val):
        metrics = json.dumps({"eval_losses": {"test": test, **({"validation": val} if val is not None else {})}})
        return {"study": study, "status": "done", "run_id": rid, "n_layer": 2, "d_model": 32, "n_head": 2,
                "N": 24_576, "D": 1e6, "final_test_loss": test, "final_metrics": metrics,
                "config": json.dumps({"lr_scale": lr, "beta2": 0.95, "batch_size": 16})}

    rows = [run(rp.STUDY["cosine"], "base", 1.0, test=4.00, val=4.10),
            run(rp.STUDY["tune"], "hi", 2.0, test=3.90, val=4.20),   # best on test, worst on validation
            run(rp.STUDY["tune"], "lo", 0.5, test=4.05, val=4.00)]   # best on validation
    rule = rp.tuning_rule(pd.DataFrame(rows))
    assert rule.loc[rule["chosen"], "run_id"].tolist() == ["lo"]
    no_val = [run(r["study"], r["run_id"], json.loads(r["config"])["lr_scale"], r["final_test_loss"], None)
              for r in rows]
    rule = rp.tuning_rule(pd.DataFrame(no_val))
    assert rule.loc[rule["chosen"], "run_id"].tolist() == ["hi"]


def test_runs_outside_the_current_specs_are_left_out(tmp_path):
    """An edited plan leaves its earlier runs in the store: the preset passes its current specs' run ids and
    the analysis reads only those (here: every run but the long ones of settings (a)-(c))."""
    path = tmp_path / "study.sqlite"
    synthetic_store(path, np.random.default_rng(1))
    with RunStore(path, readonly=True) as st:
        runs = st.runs()
    keep = set(runs.loc[~runs["study"].isin([rp.STUDY["kaplan"], rp.STUDY["warmup"]]), "run_id"])
    grid = get_form("chinchilla").start_grid()[::400]
    an = rc.analyze(path, BUDGETS, n_resamples=10, surface_grid=grid, run_ids=keep)
    assert all(len(an.settings[s].points) == 0 for s in "abc")
    assert set(an.settings["d"].points["run_id"]) <= keep and len(an.settings["d"].points) > 0
    full = rc.analyze(path, BUDGETS, n_resamples=10, surface_grid=grid)
    assert all(len(full.settings[s].points) > 0 for s in "abc")
