"""The fitting choices (near-target weight, early trim, over-estimate penalty), the shared forms, `--form auto`'s
nested backtests at the holdout's extrapolation ratio, and simulated ladders of known truth that auto must
recover; a calibration check of the intervals on Epoch's public Chinchilla points."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli import main as cli
from scalinglab.errors import FitError
from scalinglab.laws import fit_law
from scalinglab.laws.backtest import Candidate, backtest, nested_folds, select_law, size_codes

EPOCH = Path(__file__).parent / "data" / "chinchilla_points_epoch2024.csv"
EPOCH_COLS = ["--n", "Model Size", "--c", "Training FLOP", "--loss", "loss"]


def law(N, D, E=1.8, A=400.0, B=1500.0, alpha=0.3, beta=0.3):
    return E + A / N ** alpha + B / D ** beta


def quiet_fit(*a, **k):
    k.setdefault("grid", "quick")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_law(*a, **k)


# ------------------------------------------------------------------------------------------------ fitting choices


def test_near_target_weight_follows_the_large_sizes_where_the_small_ones_bend():
    # the smallest sizes run 6% above the law (say, an embedding overhead the law omits); the largest follow it
    N = np.repeat(np.geomspace(1e7, 1e9, 9), 4)
    D = N * np.tile([5, 10, 20, 40], 9)
    bent = np.where(N < 6e7, 1.06, 1.0)
    df = pd.DataFrame({"N": N, "D": D, "loss": law(N, D) * bent})
    truth = law(4e9, 8e10)
    plain = quiet_fit(df, "chinchilla", n_resamples=0).predict(N=4e9, D=8e10)[0]
    near = quiet_fit(df, "chinchilla", n_resamples=0, near_weight=1.5, near_target=4e9).predict(N=4e9, D=8e10)[0]
    assert abs(near / truth - 1) < 0.5 * abs(plain / truth - 1)  # must pass: the weight helps here
    assert abs(plain / truth - 1) > 0.005  # must fail without it: the bend misleads the plain fit


def test_early_trim_drops_the_warmup_of_learning_curves():
    rows = []
    for run, N in enumerate(np.geomspace(2e7, 1e9, 6)):
        for ratio in (10, 40):
            Dmax = ratio * N
            for f in (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0):
                warm = 1.15 if f < 0.1 else 1.0  # the warm-up stretch sits far above the law
                rows.append({"N": N, "D": f * Dmax, "loss": law(N, f * Dmax) * warm, "run": f"{run}-{ratio}"})
    df = pd.DataFrame(rows)
    trimmed = quiet_fit(df, "chinchilla", run="run", n_resamples=0, trim_early=0.1)
    plain = quiet_fit(df, "chinchilla", run="run", n_resamples=0)
    assert trimmed.n_points == len(df) - 2 * 12  # the two points before 10% of each of the 12 runs
    assert trimmed.params["E"] == pytest.approx(1.8, rel=0.01)
    assert abs(plain.params["E"] / 1.8 - 1) > 0.03
    # one point per run: nothing to trim, the same fit
    last = df.groupby("run").tail(1)
    a = quiet_fit(last, "chinchilla", run="run", n_resamples=0)
    b = quiet_fit(last, "chinchilla", run="run", n_resamples=0, trim_early=0.5)
    assert a.params == b.params


def test_overestimate_penalty_moves_the_law_below_the_points():
    rng = np.random.default_rng(3)
    N = np.repeat(np.geomspace(1e7, 1e9, 6), 5)
    D = N * np.tile([5, 10, 20, 40, 80], 6)
    df = pd.DataFrame({"N": N, "D": D, "loss": law(N, D) * np.exp(0.01 * rng.standard_normal(N.size))})
    over = {}
    for k in (0.0, 3.0, 10.0):
        f = quiet_fit(df, "chinchilla", n_resamples=0, overestimate=k)
        over[k] = float(np.mean(f.predict(df) > df["loss"]))  # share of points the law over-predicts
        assert f.converged
    assert 0.4 <= over[0.0] <= 0.6  # symmetric: about half above, half below
    # the penalty puts the law under more and more points (on the Huber arms a 1/(2 + k) quantile)
    assert over[0.0] > over[3.0] + 0.1 and over[3.0] > over[10.0] and over[10.0] < 0.25


def test_bad_fitting_choices_are_one_line_errors(capsys):
    with pytest.raises(FitError, match="trim_early"):
        quiet_fit(str(EPOCH), "chinchilla", n="Model Size", c="Training FLOP", loss="loss", trim_early=1.0)
    with pytest.raises(FitError, match="over-estimate"):
        quiet_fit(str(EPOCH), "chinchilla", n="Model Size", c="Training FLOP", loss="loss", overestimate=-1)
    assert cli(["fit", str(EPOCH), *EPOCH_COLS, "--near-weight", "-2"]) == 2
    assert cli(["backtest", str(EPOCH), "--holdout", "N >= 2e9", *EPOCH_COLS, "--overestimate", "1"]) == 2
    err = capsys.readouterr().err
    assert "--near-weight" in err and "auto chooses" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ shared forms


def family(E=(1.7, 1.7, 1.7), exps=((0.34, 0.28), (0.24, 0.34), (0.48, 0.24)), noise=0.0, seed=0, sizes=6):
    rng = np.random.default_rng(seed)
    out = []
    for g, (e, (a, b), A, B) in enumerate(zip(E, exps, (400, 120, 2500), (1500, 4000, 600))):
        N = np.repeat(np.geomspace(2e7, 2e9, sizes), 3)
        D = N * np.tile([5, 20, 80], sizes)
        L = law(N, D, e, A, B, a, b) * np.exp(noise * rng.standard_normal(N.size))
        out.append(pd.DataFrame({"N": N, "D": D, "loss": L, "ds": f"d{g}"}))
    return pd.concat(out, ignore_index=True)


@pytest.mark.parametrize("form, E, exps, shared", [
    ("chinchilla_shared_exp", (1.6, 1.8, 2.0), ((0.3, 0.28),) * 3, ["alpha", "beta"]),
    ("chinchilla_shared_all", (1.7,) * 3, ((0.3, 0.28),) * 3, ["E", "alpha", "beta"]),
])
def test_shared_forms_recover_their_truth(form, E, exps, shared):
    f = quiet_fit(family(E, exps), form, by="ds", n_resamples=0, huber_delta=0.1)
    assert f.converged
    assert [p for p in f.params if "[" not in p] == shared  # one value of each shared parameter
    for g, e in zip(("d0", "d1", "d2"), E):
        assert f.form.group_params(f.params, g)["E"] == pytest.approx(e, rel=2e-3)
    assert f.params["alpha"] == pytest.approx(0.3, rel=2e-3)
    # on noisy runs the joint fit's bootstrap converges (its L-BFGS keeps 30 curvature pairs; with 10, none did)
    noisy = quiet_fit(family(E, exps, noise=0.005), form, by="ds", n_resamples=50, huber_delta=0.1)
    assert noisy.converged and noisy.n_resamples_ok >= 45


# ------------------------------------------------------------------------------------------------ nested folds


def test_nested_folds_extrapolate_as_far_as_the_holdout():
    N = np.repeat(np.geomspace(1e7, 1e10, 16), 2)  # sizes 1.585x apart
    step = 10 ** (3 / 15)
    frame = pd.DataFrame({"N": N, "D": 20 * N, "L": 3.0, "group": np.arange(N.size)})
    folds = nested_folds(frame, ratio=step ** 3)  # a holdout that predicts 3 sizes beyond the fitted
    assert folds.ratio == pytest.approx(step ** 3) and len(folds) == 3
    assert folds[0][1][np.argmax(N)]  # the first fold predicts the largest size of the fitting data
    for train, test in folds:
        assert N[test].max() / N[train].max() == pytest.approx(step ** 3)  # as far as the holdout
        assert N[train].max() < N[test].min() and test.sum() == 6
    # between sizes: as far as the holdout to within one size step, never further
    for train, test in nested_folds(frame, ratio=5.0):
        assert 5.0 / step < N[test].max() / N[train].max() <= 5.0 * 1.02
    # a ratio beyond what the data can nest shrinks to the most they allow with 3 sizes to fit
    wide = nested_folds(frame, ratio=1e6)
    assert wide.ratio == pytest.approx(N.max() / np.unique(N)[2])
    assert len(np.unique(size_codes(N[wide[0][0]]))) == 3 and wide[0][1][np.argmax(N)]


def test_auto_reports_what_chose_it(tmp_path, capsys):
    rc = cli(["backtest", str(EPOCH), "--holdout", "N >= 2e9", *EPOCH_COLS, "--n-resamples", "20", "--json"])
    sel = json.loads(capsys.readouterr().out)["selection"]["all"]
    assert rc == 0
    assert sel["requested_ratio"] == pytest.approx(9.02, rel=0.01)
    assert sel["ratio"] == pytest.approx(sel["requested_ratio"])
    assert sel["label"] in sel["scores"] and len(sel["fold_errors"][sel["label"]]) == sel["n_folds"] >= 2
    assert sel["scores"][sel["label"]] <= 1.1 * min(v for v in sel["scores"].values() if v is not None)
    cli(["backtest", str(EPOCH), "--holdout", "N >= 2e9", *EPOCH_COLS, "--n-resamples", "20"])
    out = capsys.readouterr().out
    assert "auto's nested backtests" in out and "extrapolation ratio of the holdout (9.02x)" in out and "per fold" in out


# ------------------------------------------------------------------------------------------------ known truth


def tied_ladder(seed, noise=0.005):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(2e7, 2e9, 7), 4)
    D = N * np.tile([5, 10, 20, 40], 7)
    return pd.DataFrame({"N": N, "D": D, "loss": law(N, D) * np.exp(noise * rng.standard_normal(N.size))})


def overtrain_grid(seed, noise=0.005):
    """Gadre et al.'s over-training design: each size at 20 to 320 tokens per parameter, one exponent (the
    over-training law is chinchilla_tied's)."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e7, 1.4e9, 6), 5)
    D = N * np.tile([20, 40, 80, 160, 320], 6)
    L = law(N, D, 1.9, 300.0, 1200.0, 0.33, 0.33) * np.exp(noise * rng.standard_normal(N.size))
    return pd.DataFrame({"N": N, "D": D, "loss": L})


@pytest.mark.slow(seconds=45)  # 2 x 5 backtests
@pytest.mark.parametrize("make", [tied_ladder, overtrain_grid])
def test_auto_recovers_a_tied_truth_and_predicts_within_the_noise(make):
    """Truth alpha = beta, 0.5% log-normal noise, the largest size held out; over 5 ladders auto must choose the
    tied form in most, and predict the held-out size about as well as the noise allows."""
    noise, chosen, errs = 0.005, [], []
    for seed in range(5):
        r = backtest(make(seed), "largest", "auto", n_resamples=0)
        chosen.append(r.selections[None].chosen.form)
        errs.append(r.mean_rel_error)
    assert chosen.count("chinchilla_tied") >= 3, chosen
    assert np.mean(errs) < 2 * noise  # the noise alone: mean |error| 0.8 x 0.5%


@pytest.mark.slow(seconds=90)  # one joint selection over 3 data sets: shared fits are the slow ones
def test_auto_recovers_a_shared_e_family_and_predicts_within_the_noise():
    df = family(noise=0.005, seed=0)
    r = backtest(df, "largest", "auto", by="ds", n_resamples=0)
    sel = r.selections[None]
    assert sel.chosen.form == "chinchilla_shared_e"  # must pass: E is one, the exponents differ by data set
    assert r.form.startswith("auto: chinchilla_shared_e") and r.n_points == 9
    assert r.mean_rel_error < 2 * 0.005
    # must fail to pick it when each data set has its own E (the two forms alone: the shared fits are slow)
    other = family(E=(1.5, 1.9, 2.3), noise=0.005, seed=0)
    frame = other[other["N"] < 1.5e9].rename(columns={"loss": "L"}).assign(group=lambda f: f.index)
    sel = select_law(frame, [Candidate("chinchilla", 0.1), Candidate("chinchilla_shared_e", 0.1)], by="ds",
                     ratio=2.5)
    assert sel.chosen.form == "chinchilla"
    assert sel.scores[Candidate("chinchilla_shared_e", 0.1).label] > 1.1 * sel.scores[sel.chosen.label]


# ------------------------------------------------------------------------------------------------ calibration


@pytest.mark.slow(seconds=25)
def test_intervals_on_epoch_points_are_calibrated(capsys):
    """Public data (Epoch's replication of Chinchilla's points): fit N < 2e9, predict the 57 points at N >= 2e9.
    The 95% intervals must cover between 80% and 99% of them, none of which the fit saw."""
    assert cli(["backtest", str(EPOCH), "--holdout", "N >= 2e9", *EPOCH_COLS, "--n-resamples", "300", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_points"] == 57
    assert 0.80 <= res["coverage95"] <= 0.99
