"""The schedule-aware learning-curve law (Tissue et al. 2024): its areas, recovery of known parameters, intervals
that cover under noise, the backtest, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import DataError, FitError
from scalinglab.laws.curve import (CurveBacktest, CurveLaw, backtest_curve_law, fit_curve_law, schedule_areas,
                                   schedule_from_points)

TRUTH = dict(L0=2.0, A=0.9, alpha=0.45, C=0.5)


def wsd(T, decay_start=None, peak=1e-3, warm=20, frac=0.2):
    """A warm-up, stable, 1-sqrt decay schedule of T updates (decay over the last `frac`, or from decay_start)."""
    lr = np.full(T, peak)
    lr[:warm] = peak * np.arange(1, warm + 1) / warm
    d0 = int(round(T * (1 - frac))) if decay_start is None else decay_start
    n = T - d0
    if n > 0:
        lr[d0:] = peak * (1 - np.sqrt(np.arange(1, n + 1) / n))
    return lr


def true_loss(lr, p=TRUTH):
    """The law written out from its definition, step by step (not through the module)."""
    s1, m, s2, out = 0.0, 0.0, 0.0, []
    peak_at = int(np.argmax(lr))
    for i, eta in enumerate(lr):
        s1 += eta
        m = 0.999 * m + (lr[i - 1] - eta if i > peak_at else 0.0)
        s2 += m
        out.append(p["L0"] + p["A"] * s1 ** -p["alpha"] - p["C"] * s2)
    return np.array(out)


def logged_steps(T, every=10):
    """The steps the trainer logs at: every `every` steps and at its log-spaced evaluations."""
    evals = np.unique(np.round(np.geomspace(1, T, 16)).astype(int))
    return np.unique(np.concatenate([np.arange(every, T + 1, every), evals, [T]]))


def curve_frame(schedules, noise=0.0, run_sd=0.0, seed=0, steps_fn=logged_steps):
    rng = np.random.default_rng(seed)
    rows = []
    for run, lr in schedules.items():
        L = true_loss(lr) + (rng.normal(0, run_sd) if run_sd else 0.0)
        s = steps_fn(len(lr))
        y = L[s - 1] + (rng.normal(0, noise, len(s)) if noise else 0.0)
        rows.append(pd.DataFrame(dict(run_id=run, step=s, lr=lr[s - 1], loss_validation=y)))
    return pd.concat(rows, ignore_index=True)


# A stable phase of 1600 updates and cooldowns branched from it (as the WSD runs of a study give them)
SCHEDULES = {"stable": wsd(1600, decay_start=1600), "cool400": wsd(500, decay_start=400),
             "cool800": wsd(1000, decay_start=800), "cool1600": wsd(2000, decay_start=1600)}


def test_areas_follow_the_definition():
    lr = np.r_[np.linspace(0.1, 1.0, 10), np.ones(20), np.full(30, 0.4)]  # warm-up, constant, one step drop
    S1, S2 = schedule_areas(lr)
    assert S1[-1] == pytest.approx(lr.sum())
    assert np.all(S2[:30] == 0)  # warm-up and a constant LR anneal nothing
    # after one drop of 0.6 at update 31, m_i = 0.6 * 0.999^(i-31): S2 is a geometric sum
    n = np.arange(1, 31)
    assert S2[30:] == pytest.approx(0.6 * (1 - 0.999 ** n) / (1 - 0.999), rel=1e-12)
    # no memory (decay 0): m_i is the drop of update i alone, and S2 is how far the LR has fallen from its peak
    assert schedule_areas(lr, decay=0.0)[1][-1] == pytest.approx(0.6)


def test_recovers_parameters_noise_free():
    law = fit_curve_law(curve_frame(SCHEDULES), schedules=SCHEDULES, n_resamples=0)
    assert isinstance(law, CurveLaw) and law.converged and law.n_runs == 4
    for k, v in TRUTH.items():
        assert law.params[k] == pytest.approx(v, rel=1e-6), k
    lr = wsd(4000, decay_start=3200)  # a longer run it never saw
    assert law.predict_final(lr) == pytest.approx(true_loss(lr)[-1], rel=1e-9)


def test_schedule_read_from_the_recorded_lr():
    """The LR recorded at the trainer's logged steps (linear between them) is enough: close to the exact fit."""
    frame = curve_frame(SCHEDULES)
    rebuilt = schedule_from_points(frame.query("run_id == 'cool800'")["step"], frame.query("run_id == 'cool800'")["lr"])
    assert len(rebuilt) == 1000 and np.abs(rebuilt - SCHEDULES["cool800"]).max() < 0.1e-3
    law = fit_curve_law(frame, n_resamples=0)
    for k, v in TRUTH.items():
        assert law.params[k] == pytest.approx(v, rel=0.05), k
    lr = wsd(4000, decay_start=3200)
    assert law.predict_final(lr) == pytest.approx(true_loss(lr)[-1], rel=2e-3)


def test_averaged_train_points():
    """A train-loss point is the mean loss of the updates since the previous point (the model before each)."""
    rows = []
    for run, lr in SCHEDULES.items():
        L_before = np.r_[np.nan, true_loss(lr)[:-1]]  # the loss of update i: the model after i-1 updates
        s = logged_steps(len(lr))
        prev = np.r_[0, s[:-1]]
        y = [np.mean(L_before[a:b]) for a, b in zip(prev, s)]
        rows.append(pd.DataFrame(dict(run_id=run, step=s, lr=lr[s - 1], train_loss=y)))
    frame = pd.concat(rows)
    law = fit_curve_law(frame, loss="train_loss", schedules=SCHEDULES, n_resamples=0)
    for k, v in TRUTH.items():
        assert law.params[k] == pytest.approx(v, rel=1e-6), k
    # the same points read as evaluations at their step would not fit the law exactly
    assert fit_curve_law(frame, loss="train_loss", averaged=False, schedules=SCHEDULES, n_resamples=0).rmse > 1e-4


def test_backtest_predicts_the_held_out_cooldown():
    frame = curve_frame(SCHEDULES)
    bt = backtest_curve_law(frame, "cool1600", known_until=1600, schedules=SCHEDULES, n_resamples=0)
    assert isinstance(bt, CurveBacktest)
    assert bt.final_step == 2000 and bt.measured == pytest.approx(true_loss(SCHEDULES["cool1600"])[-1])
    assert abs(bt.rel_error) < 1e-8
    back = CurveBacktest.from_dict(json.loads(json.dumps(bt.to_dict())))
    assert back.predicted == pytest.approx(bt.predicted) and back.law.params == pytest.approx(bt.law.params)


def simulate_coverage(n_rep, n_runs=8, noise=0.004, run_sd=0.01, n_resamples=200):
    """Each replicate: n_runs independent runs (stable phases with cooldowns at several lengths) with a run offset
    and point noise; does the 95% interval of alpha, and of the law's final loss on an unseen longer schedule,
    cover the truth?"""
    target = wsd(4000, decay_start=3200)
    truth_final = true_loss(target)[-1]
    lengths = np.geomspace(400, 2000, n_runs).astype(int)
    hits = {"alpha": 0, "final": 0}
    widths = []
    for rep in range(n_rep):
        scheds = {f"r{i}": wsd(T) if i % 3 else wsd(T, decay_start=T) for i, T in enumerate(lengths)}
        law = fit_curve_law(curve_frame(scheds, noise=noise, run_sd=run_sd, seed=rep,
                                        steps_fn=lambda T: logged_steps(T, every=40)),
                            schedules=scheds, n_resamples=n_resamples, seed=rep)
        lo, hi = law.ci["alpha"]
        hits["alpha"] += lo <= TRUTH["alpha"] <= hi
        flo, fhi = law.predict_interval(target, [len(target)])
        hits["final"] += flo[0] <= truth_final <= fhi[0]
        widths.append(fhi[0] - flo[0])
    return {k: v / n_rep for k, v in hits.items()}, float(np.median(widths))


@pytest.mark.slow(seconds=40)
def test_intervals_cover_under_noise():
    cover, width = simulate_coverage(n_rep=30, n_resamples=150)
    # nominal 95%; with 8 runs a percentile bootstrap over runs is somewhat short (measured: alpha 0.90, the final
    # loss 0.87); 30 replicates carry +-0.08 of noise
    assert cover["alpha"] >= 0.75 and cover["final"] >= 0.75, cover
    assert width < 0.1  # and not trivially wide (measured median 0.052; the run offsets alone have s.d. 0.01)


def test_one_run_has_no_interval_and_bad_input_is_one_error():
    one = {"cool800": SCHEDULES["cool800"]}
    law = fit_curve_law(curve_frame(one), schedules=one, n_resamples=100)
    assert law.n_resamples_ok == 0 and "no interval" in law.message and np.isnan(law.ci["alpha"][0])
    flat = {"stable": SCHEDULES["stable"]}
    assert "C is not identified" in fit_curve_law(curve_frame(flat), schedules=flat, n_resamples=0).message
    with pytest.raises(DataError, match="missing column"):
        fit_curve_law(curve_frame(one).drop(columns="lr"))
    with pytest.raises(DataError, match="no run"):
        backtest_curve_law(curve_frame(one), "nope")
    with pytest.raises(DataError, match="learning-rate schedule"):
        schedule_areas([1e-3, float("nan")])
    with pytest.raises(FitError, match="no loss points"):
        fit_curve_law(curve_frame(one).assign(loss_validation=np.nan))


@pytest.mark.slow(seconds=40)
def test_backtest_on_a_real_store(byte_dataset, tmp_path):
    """Real tiny runs: a constant-LR run (the stable phase) and cosine runs of 300 and 500 steps; the law fitted on
    their evaluations predicts the final test loss of an 800-step cosine run it never saw."""
    from scalinglab.store import RunStore
    from scalinglab.training.config import RunConfig
    from scalinglab.training.trainer import train_run

    store = RunStore(tmp_path / "s.sqlite")
    base = dict(data=str(byte_dataset), n_layer=1, d_model=32, n_head=2, n_ctx=32, batch_size=8, lr=3e-3, threads=1,
                n_evals=12, eval_tokens=16384, warmup_steps=30)
    ids = {}
    for name, steps, kw in [("stable", 800, dict(min_lr_frac=1.0)), ("cos300", 300, {}), ("cos500", 500, {}),
                            ("cos800", 800, {})]:
        ids[name] = train_run(RunConfig(name=name, tokens=steps * 256, **base, **kw), store=store).run_id
    curves = store.curves()
    assert curves.groupby("run_id")["lr"].count().min() >= 30  # the scheduled LR is recorded at every point
    bt = backtest_curve_law(curves, ids["cos800"], loss="test_loss", n_resamples=200)
    assert bt.law.converged and bt.law.n_runs == 3 and bt.law.C > 0
    assert bt.measured == pytest.approx(store.run(ids["cos800"])["final_test_loss"])
    assert abs(bt.rel_error) < 0.02, str(bt)  # measured -0.14% on the machine this was written on
    assert bt.covered, str(bt)
    # the law without annealing (the decayed runs read as if their LR had stayed constant) misses by far more
    flat = curves.assign(lr=curves.groupby("run_id")["lr"].transform("max"))
    naive = backtest_curve_law(flat, ids["cos800"], loss="test_loss", n_resamples=0)
    assert abs(naive.rel_error) > 2 * abs(bt.rel_error), (str(naive), str(bt))


@pytest.mark.slow(seconds=25)
def test_backtest_of_the_longest_cooldown_on_a_real_wsd_store(byte_dataset, tmp_path):
    """A real warm-up-stable-decay family (stable phase to 640 updates, cooldowns to 200, 400 and 800): the law
    fitted on the stable phase and the two shorter cooldowns predicts the longest cooldown's final test loss."""
    from scalinglab.analysis.curves import backtest_cooldowns, curve_data
    from scalinglab.store import RunStore
    from scalinglab.training.config import RunConfig
    from scalinglab.training.trainer import train_run

    cfg = RunConfig(data=str(byte_dataset), n_layer=1, d_model=32, n_head=2, n_ctx=32, batch_size=8, lr=3e-3,
                    threads=1, n_evals=16, eval_tokens=16384, warmup_steps=30, precision="fp32", schedule="wsd",
                    tokens=800 * 256, cooldowns=[0.25, 0.5, 1.0])
    store = RunStore(tmp_path / "wsd.sqlite")
    train_run(cfg, store=store, checkpoint_dir=tmp_path / "ckpt" / cfg.run_id())
    curves, schedules, runs = curve_data(store)
    longest = cfg.branches()[-1][0].run_id()
    # the branch's copied stable-phase points are its parent's; its exact schedule decays to 0 over its last 160
    assert curves.query("run_id == @longest")["step"].min() > 640 and schedules[longest][-1] == 0.0
    assert schedules[longest][:640] == pytest.approx(schedules[cfg.run_id()])
    (bt,) = backtest_cooldowns(store, n_resamples=300)
    assert bt.holdout == longest and bt.law.n_runs == 3 and bt.law.converged and bt.law.C > 0
    assert bt.measured == pytest.approx(store.run(longest)["final_test_loss"])
    assert abs(bt.rel_error) < 0.03 and bt.covered, str(bt)  # measured +1.1% on the machine this was written on
    # reading the stable phase's end as the answer misses by more: the law carries the cooldown's gain
    stable_end = store.run(cfg.run_id())["final_test_loss"]
    assert abs(bt.error) < 0.75 * abs(stable_end - bt.measured), (str(bt), stable_end)
    # L at (N, D) from the curves, saying so: at the cooldowns' budgets beside their measured finals, and beyond
    from scalinglab.analysis.curves import losses_at_budgets

    at = losses_at_budgets(store, budgets=[200 * 256, 400 * 256, 800 * 256, 1600 * 256], n_resamples=100)
    assert list(at["D"]) == [200 * 256, 400 * 256, 800 * 256, 1600 * 256] and at["source"].str.contains(
        "curve law").all()
    assert (abs(at["loss"] - at["measured"]) / at["measured"]).iloc[:3].max() < 0.02, at
    assert np.isnan(at["measured"].iloc[3]) and at["loss"].iloc[3] < at["loss"].iloc[2]  # longer: lower
    # the command says the same; a store without two cooldowns is one line and exit 2
    from conftest import run_cli

    res = run_cli("curves", str(tmp_path / "wsd.sqlite"), "--json", "--bootstrap", "300")
    assert res.returncode == 0, res.stderr
    (got,) = json.loads(res.stdout)
    assert got["holdout"] == longest and got["params"]["predicted"] == pytest.approx(bt.predicted)
    for branch, _ in cfg.branches()[1:]:  # one cooldown left: nothing to backtest
        store.delete_run(branch.run_id())
    res = run_cli("curves", str(tmp_path / "wsd.sqlite"))
    assert res.returncode == 2 and "no stable phase with at least two" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
