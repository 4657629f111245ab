"""Backtests: holdout expressions, the new law forms, `--form auto` (chosen without the holdout), calibrated
prediction intervals, and the `backtest` command on CSV files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli import main
from scalinglab.errors import FitError
from scalinglab.laws import fit_law
from scalinglab.laws.backtest import backtest, parse_holdout, select_law, size_codes
from scalinglab.laws.forms import DataConstrained, get_form
from scalinglab.published import EPOCH2024, MUENNIGHOFF2023

# a chinchilla law with Epoch's constants: the truth of the synthetic studies below
TRUTH = dict(EPOCH2024)


def chinchilla_loss(N, D, p=TRUTH):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def synth(seed, sigma=0.01, sizes=5, ratios=(5, 10, 20, 40), truth=TRUTH):
    """Runs at `sizes` model sizes x tokens-per-parameter `ratios`, log-normal noise of scale sigma."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(2e7, 2e9, sizes), len(ratios))
    D = N * np.tile(ratios, sizes)
    L = chinchilla_loss(N, D, truth) * np.exp(sigma * rng.standard_normal(len(N)))
    return pd.DataFrame({"N": N, "D": D, "loss": L})


# ------------------------------------------------------------------------------------------------ holdout


def test_holdout_expressions_select_the_right_rows():
    cols = {"N": np.array([1e8, 5e8, 1e9, 7e9]), "D": np.array([1e9, 1e10, 2e10, 1e11]),
            "Model Size": np.array([1.0, 2.0, 3.0, 4.0])}
    assert parse_holdout("N > 5e8", cols).tolist() == [False, False, True, True]
    assert parse_holdout("N >= 5e8 and D < 1e11", cols).tolist() == [False, True, True, False]
    assert parse_holdout("(N < 2e8 or D >= 1e11) & N != 1e8", cols).tolist() == [False, False, False, True]
    assert parse_holdout("5e8 < N", cols).tolist() == [False, False, True, True]
    assert parse_holdout("`Model Size` >= 3", cols).tolist() == [False, False, True, True]
    assert parse_holdout("largest", cols).tolist() == [False, False, False, True]
    assert parse_holdout("largest 2", cols).tolist() == [False, False, True, True]


def test_sizes_that_differ_by_extraction_noise_are_one_size():
    codes = size_codes([1e8, 1.0000004e8, 4e8, 4.01e8, 1e9])
    assert codes.tolist() == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("expr", ["N >> 5", "N > ", "import os", "__import__('os').system('true')", "N > 5e8 and",
                                  "(N > 5", "largest two", "largest 0", "Q > 1", "N > 1 2", ""])
def test_bad_holdout_expressions_raise_one_error(expr):
    cols = {"N": np.array([1e8, 1e9]), "D": np.array([1e9, 1e10])}
    with pytest.raises(FitError) as e:
        parse_holdout(expr, cols)
    assert "\n" not in str(e.value)


def test_cli_bad_holdout_and_too_few_points_exit_2(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    synth(0).to_csv(path, index=False)
    for expr in ("N >> 5e8", "N > 1e5", "N > 3e7", "N < 0"):
        assert main(["backtest", str(path), "--holdout", expr, "--form", "chinchilla", "--bootstrap", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("scalinglab: error: holdout"), err
    # 'N > 3e7' leaves one size (4 rows): too few for a 5-parameter law; the message says to hold out less
    main(["backtest", str(path), "--holdout", "N > 3e7", "--form", "chinchilla", "--bootstrap", "1"])
    assert "hold out less" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ forms


def test_tied_form_keeps_alpha_equal_beta_and_recovers_a_tied_truth():
    truth = dict(TRUTH, alpha=0.35, beta=0.35)
    df = synth(1, sigma=0.002, sizes=6, truth=truth)
    law = fit_law(df, "chinchilla_tied", n_resamples=0, grid="quick")
    assert law.converged and law.params["alpha"] == law.params["beta"]
    assert abs(law.params["alpha"] - 0.35) < 0.03
    assert abs(law.params["E"] - truth["E"]) < 0.1
    # the over-training form is the same law in Gadre et al.'s variables: same predictions at its optimum
    ot = fit_law(df, "overtrain", n_resamples=0, grid="quick")
    assert ot.converged and abs(2 * ot.params["eta"] - law.params["alpha"]) < 1e-3
    X = {"N": np.array([1e10]), "D": np.array([2e11])}
    cp = get_form("chinchilla").predict(ot.form.chinchilla_params(ot.params), X)
    assert np.allclose(ot.predict(**X), cp, rtol=1e-9)
    assert np.allclose(ot.predict(**X), law.predict(**X), rtol=2e-3)


def test_fixed_e_stays_fixed_and_round_trips():
    df = synth(2)
    law = fit_law(df, "chinchilla", fix_e=1.5, n_resamples=20, grid="quick")
    assert law.params["E"] == pytest.approx(1.5)
    assert np.allclose(law.samples[:, 0], 1.5)
    back = type(law).from_dict(json.loads(json.dumps(law.to_dict())))
    assert back.form.fix_e == 1.5 and np.allclose(back.predict(N=1e9, D=2e10), law.predict(N=1e9, D=2e10))
    with pytest.raises(FitError):
        get_form("kaplan_nd", fix_e=1.5)


def test_data_constrained_form_discounts_repeated_tokens():
    D, U = np.array([1e9, 4e9, 1e11]), np.array([1e9, 1e9, 1e9])
    eff = DataConstrained.effective_tokens(D, U)
    assert eff[0] == 1e9  # seen once: every token counts
    assert 1e9 < eff[1] < 4e9  # repeated 4 times: worth less than 4 fresh passes
    assert eff[2] < 1e9 * (1 + MUENNIGHOFF2023["R_star_D"])  # never more than U (1 + R*)
    # runs that repeat a 2e8-token subset: the data-constrained form fits them, Chinchilla's cannot
    rng = np.random.default_rng(3)
    N = np.repeat(np.geomspace(2e7, 1e9, 5), 4)
    U = np.full(N.size, 2e8)
    D = N * np.tile([5, 10, 20, 40], 5)
    L = chinchilla_loss(N, DataConstrained.effective_tokens(D, U)) * np.exp(0.003 * rng.standard_normal(N.size))
    df = pd.DataFrame({"N": N, "D": D, "U": U, "loss": L})
    dc = fit_law(df, "data_constrained", n_resamples=0, grid="quick")
    ch = fit_law(df, "chinchilla", n_resamples=0, grid="quick")
    assert dc.converged and dc.rmse_log < 0.006 < ch.rmse_log


# ------------------------------------------------------------------------------------------------ auto


def test_auto_chooses_without_reading_the_holdout(tmp_path):
    df = synth(4, sizes=6)
    a = backtest(df, "largest", "auto", n_resamples=30)
    changed = df.copy()
    held = changed["N"] == changed["N"].max()
    changed.loc[held, "loss"] *= np.random.default_rng(0).uniform(0.5, 1.5, held.sum())
    b = backtest(changed, "largest", "auto", n_resamples=30)
    sa, sb = a.selections[None], b.selections[None]
    assert sa.chosen == sb.chosen and sa.scores == sb.scores
    assert np.allclose(a.points["predicted"], b.points["predicted"])
    assert not np.allclose(a.points["actual"], b.points["actual"])  # the holdout did change
    assert a.mean_rel_error != b.mean_rel_error


def test_auto_picks_the_form_the_data_follow():
    # must pass: Kaplan's eq. 1.5 generates the runs, so its form extrapolates best
    N = np.repeat(np.geomspace(1e7, 3e9, 7), 4)
    D = N * np.tile([2, 8, 32, 128], 7)
    rng = np.random.default_rng(5)
    kap = get_form("kaplan_nd").predict({"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103},
                                        {"N": N, "D": D})
    frame = pd.DataFrame({"N": N, "D": D, "L": kap * np.exp(0.002 * rng.standard_normal(N.size)),
                          "group": np.arange(N.size)})
    assert select_law(frame).chosen.form == "kaplan_nd"
    # must fail to pick it: the runs follow Chinchilla's law with a large irreducible loss
    ch = chinchilla_loss(N, D) * np.exp(0.002 * rng.standard_normal(N.size))
    frame2 = frame.assign(L=ch)
    sel = select_law(frame2)
    assert sel.chosen.form != "kaplan_nd"
    assert min(v for k, v in sel.scores.items() if k.startswith("kaplan_nd")) > sel.scores[sel.chosen.label]


def test_auto_with_too_few_sizes_says_so():
    with pytest.raises(FitError, match="at least 4 model sizes"):
        backtest(synth(6, sizes=4), "largest", "auto", n_resamples=0)


# ------------------------------------------------------------------------------------------------ intervals


@pytest.mark.slow(seconds=65)  # 50 backtests
def test_prediction_intervals_cover_95_percent_on_synthetic_data():
    """Known noise (1% log-normal), 5 sizes x 4 ratios, the largest size held out, over 50 seeds."""
    inside = []
    for seed in range(50):
        r = backtest(synth(100 + seed), "largest", "chinchilla", n_resamples=40, seed=seed, max_iter=150)
        inside.append(r.coverage95)
    cover = float(np.mean(inside))
    assert 0.90 <= cover <= 0.99, cover


@pytest.mark.slow(seconds=80)  # 50 backtests
def test_intervals_with_the_nested_error_term_stay_calibrated():
    """Seven sizes: the fitting data hold enough sizes for nested backtests, so the intervals carry their
    out-of-sample error term; on data that follow the law with known noise (1%) they must not turn into
    over-wide intervals (coverage <= 99%) nor too narrow ones (>= 90%), over 50 seeds."""
    inside = []
    for seed in range(50):
        r = backtest(synth(300 + seed, sizes=7), "largest", "chinchilla", n_resamples=40, seed=seed, max_iter=150)
        inside.append(r.coverage95)
    cover = float(np.mean(inside))
    assert 0.90 <= cover <= 0.99, cover


def test_without_bootstrap_there_is_no_interval_and_no_coverage():
    r = backtest(synth(7), "largest", "chinchilla", n_resamples=0)
    assert np.isnan(r.coverage95) and r.points["low"].isna().all()
    assert r.mean_rel_error < 0.05


# ------------------------------------------------------------------------------------------------ command


def test_cli_json_has_the_promised_keys_and_groups_pool(tmp_path, capsys):
    a, b = synth(8), synth(9, truth=dict(TRUTH, E=2.2))
    both = pd.concat([a.assign(dataset="a"), b.assign(dataset="b")], ignore_index=True)
    path = tmp_path / "two.csv"
    both.rename(columns={"N": "params", "D": "tokens_seen"}).to_csv(path, index=False)
    rc = main(["backtest", str(path), "--n", "params", "--d", "tokens_seen", "--loss", "loss", "--holdout",
               "params > 1e9", "--form", "chinchilla", "--group", "dataset", "--bootstrap", "30", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("form", "points", "mean_rel_error", "max_rel_error", "coverage95"):
        assert key in d
    assert d["form"] == "chinchilla" and len(d["points"]) == 8
    for p in d["points"]:
        assert set(p) >= {"n", "d", "actual", "predicted", "low", "high", "rel_error"}
        assert p["low"] <= p["predicted"] <= p["high"]
    rel = [p["rel_error"] for p in d["points"]]
    assert d["mean_rel_error"] == pytest.approx(np.mean(rel)) and d["max_rel_error"] == pytest.approx(max(rel))
    assert {p["group"] for p in d["points"]} == {"a", "b"}
    # each dataset got its own law: the second one's E is near its own truth
    assert abs(d["laws"]["b"]["params"]["E"] - 2.2) < abs(d["laws"]["a"]["params"]["E"] - 2.2)


def test_cli_table_on_chinchilla_points(capsys):
    from conftest import TEST_DATA

    path = TEST_DATA / "chinchilla_points_epoch2024.csv"  # vendored: source in tests/data/README.md
    rc = main(["backtest", str(path), "--n", "Model Size", "--c", "Training FLOP", "--loss", "loss", "--holdout",
               "N >= 2e9", "--form", "chinchilla", "--bootstrap", "50"])
    out = capsys.readouterr().out
    assert rc == 0 and "mean relative error" in out and "coverage" in out


def test_a_holdout_in_d_backtests_along_d():
    from scalinglab.laws.backtest import holdout_axis, nested_folds

    assert holdout_axis("D >= 1e10") == "D" and holdout_axis("N > 1e8 and D > 1e9") == "N"
    assert holdout_axis("largest") == "N"
    frame = synth(10, sizes=5, ratios=(2, 5, 10, 20, 40, 80)).rename(columns={"loss": "L"})
    frame["group"] = np.arange(len(frame))
    for train, test in nested_folds(frame, axis="D"):
        assert frame["D"][test].min() > frame["D"][train].max()  # each fold extrapolates in D
    r = backtest(synth(10, sizes=5, ratios=(2, 5, 10, 20, 40, 80)), "D > 5e10", "auto", n_resamples=20)
    assert r.n_points == int((synth(10, sizes=5, ratios=(2, 5, 10, 20, 40, 80))["D"] > 5e10).sum())
    assert r.selections[None].n_folds >= 2


def test_shared_e_fits_groups_jointly(tmp_path, capsys):
    # two datasets with one irreducible loss and different reducible terms
    web = synth(11, sigma=0.003)
    code = synth(12, sigma=0.003, truth=dict(TRUTH, A=300.0, alpha=0.3, B=4000.0, beta=0.4))
    both = pd.concat([web.assign(ds="web"), code.assign(ds="code")], ignore_index=True)
    law = fit_law(both, "chinchilla_shared_e", by="ds", n_resamples=20)
    assert law.converged and law.form.groups == ["web", "code"]
    assert abs(law.params["E"] - TRUTH["E"]) < 0.15
    assert abs(law.params["alpha[code]"] - 0.3) < abs(law.params["alpha[web]"] - 0.3)  # each group its own
    back = type(law).from_dict(json.loads(json.dumps(law.to_dict())))
    assert np.allclose(back.predict(N=1e9, D=2e10, G=1), law.predict(N=1e9, D=2e10, G=1))
    path = tmp_path / "two.csv"
    both.to_csv(path, index=False)
    rc = main(["backtest", str(path), "--holdout", "largest", "--form", "chinchilla_shared_e", "--group", "ds",
               "--bootstrap", "20", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(d["points"]) == 8 and {p["group"] for p in d["points"]} == {"web", "code"}
    assert list(d["laws"]) == ["all"] and "E" in d["laws"]["all"]["params"]
    # without groups there is nothing to share: one line, exit 2
    assert main(["backtest", str(path), "--holdout", "largest", "--form", "chinchilla_shared_e"]) == 2
    assert "--by" in capsys.readouterr().err


def test_nested_error_model_recovers_known_growth_despite_outliers():
    """Out-of-sample log errors with variance v0 + k2 t^2 (v0 = 0.008^2, k2 = 0.01^2), 5% of them gross outliers
    (30x): the robust bins recover both terms; errors without growth give no slope, errors of pure growth no
    intercept."""
    from scalinglab.laws.backtest import nested_error_model

    rng = np.random.default_rng(0)
    t = rng.uniform(0.05, 1.3, 600)
    v0, k2 = 0.008 ** 2, 0.01 ** 2
    r = np.sqrt(v0 + k2 * t ** 2) * rng.standard_normal(t.size)
    r[rng.choice(t.size, 30, replace=False)] *= 30
    a, b = nested_error_model(r, t, sigma=0.004)
    assert a == pytest.approx(v0, rel=0.35) and b == pytest.approx(k2, rel=0.35)
    flat = 0.008 * rng.standard_normal(t.size)
    a, b = nested_error_model(flat, t, sigma=0.004)
    assert a == pytest.approx(v0, rel=0.35) and b < 0.2 * k2
    grow = 0.01 * t * rng.standard_normal(t.size)
    a, b = nested_error_model(grow, t, sigma=0.004)
    assert a < 0.2 * v0 and b == pytest.approx(k2, rel=0.35)
