"""Fits that cannot identify their parameters say so: converged False, the reason in the message, no bootstrap
intervals. Each broken case must read not converged with its reason, and well-posed fits (the synthetic recovery
designs, the Epoch Chinchilla points) must still read converged. Bad counts on the command line: one line, exit 2."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli import main
from scalinglab.errors import FitError
from scalinglab.laws import fit_law, get_form
from scalinglab.laws.fit import MIN_CURVATURE, r2_text
from scalinglab.laws.forms import FIX_E_FORMS, FORM_NAMES, SHARED_FORMS

from test_laws_recovery import TRUTH, make

EPOCH = "tests/data/chinchilla_points_epoch2024.csv"
CHIN = get_form("chinchilla")


def fit(data, form="chinchilla", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_law(data, form=form, **kw)


def chinchilla_grid(Ns, Ds, noise=0.01, seed=0, truth=None):
    N, D = np.meshgrid(Ns, Ds, indexing="ij")
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    loss = CHIN.predict(truth or TRUTH["chinchilla"], {"N": df["N"].to_numpy(), "D": df["D"].to_numpy()})
    df["loss"] = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(len(df)))
    return df


def assert_not_identified(law, *words):
    assert not law.converged
    assert law.message.startswith("not identifiable: "), law.message
    for w in words:
        assert w in law.message, law.message
    assert law.n_resamples == 0 and law.n_resamples_ok == 0  # no bootstrap ran, so no interval reads as valid
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in law.ci.values())
    assert law.diagnostics["identifiable"] is False


# ------------------------------------------------------------------------------------------------ must pass


@pytest.mark.parametrize("form", list(TRUTH))
@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_recovery_designs_still_converge(form, noise):
    law = fit(make(form, noise=noise, seed=1), form, n_resamples=20)
    assert law.converged, law.message
    assert law.diagnostics["identifiable"] is True
    assert law.diagnostics["curvature"] > 100 * MIN_CURVATURE  # well clear of the threshold, not just above it
    assert law.n_resamples_ok > 0


@pytest.mark.parametrize("form, kw", [("chinchilla", {}), ("chinchilla", {"drop_highest_loss": 5}),
                                      ("chinchilla_tied", {}), ("chinchilla", {"fix_e": 1.5})])
def test_epoch_points_still_converge(form, kw):
    law = fit(EPOCH, form, n="Model Size", c="Training FLOP", loss="loss", n_resamples=0, **kw)
    assert law.converged, law.message
    assert law.diagnostics["curvature"] > 100 * MIN_CURVATURE


@pytest.mark.parametrize("form, kw", [("chinchilla_tied", {}), ("overtrain", {}), ("chinchilla", {"fix_e": 1.0})])
def test_restricted_chinchilla_forms_still_converge(form, kw):
    law = fit(make("chinchilla", noise=0.02, seed=0), form, n_resamples=0, **kw)
    assert law.converged, law.message


def test_single_variable_laws_still_converge():
    N = np.geomspace(1e7, 1e10, 8)
    assert fit(pd.DataFrame({"N": N, "loss": (8.8e13 / N) ** 0.076}), "kaplan_n", n_resamples=0).converged
    law = fit(pd.DataFrame({"N": N, "loss": 1.5 + (8.8e13 / N) ** 0.076}), "kaplan_n", irreducible=True,
              n_resamples=0)
    assert law.converged, law.message


# ------------------------------------------------------------------------------------------------ must fail


def test_two_distinct_n_under_chinchilla():
    df = chinchilla_grid([1e7, 1e9], np.geomspace(1e9, 1e12, 8))
    law = fit(df, n_resamples=50)
    assert_not_identified(law, "only 2 distinct N", "at least 3")
    assert law.diagnostics["curvature"] < MIN_CURVATURE  # the curvature test sees it too: exactly singular
    # the same data with E fixed needs only 2 distinct N (the 8 distinct D pin the level): identified
    assert fit(df, fix_e=1.8, n_resamples=0).converged


def test_too_few_distinct_d_and_the_additive_bound():
    df = chinchilla_grid(np.geomspace(1e7, 1e10, 8), [1e10, 1e11])
    assert_not_identified(fit(df, n_resamples=0), "only 2 distinct D")
    N, S = np.meshgrid([1e6, 1e8], [100.0, 1e4], indexing="ij")
    ns = pd.DataFrame({"N": np.repeat(N.ravel(), 2), "S": np.repeat(S.ravel(), 2)})
    ns["loss"] = get_form("kaplan_ns").predict(TRUTH["kaplan_ns"], {"N": ns["N"].to_numpy(), "S": ns["S"].to_numpy()})
    ns["loss"] *= np.exp(0.01 * np.random.default_rng(0).standard_normal(len(ns)))
    assert_not_identified(fit(ns, "kaplan_ns", n_resamples=0), "pin at most 3", "the form has 4")


def test_power_law_with_irreducible_term_needs_three_sizes():
    df = pd.DataFrame({"N": [1e7, 1e7, 1e9, 1e9], "loss": [3.0, 3.03, 2.5, 2.52]})
    assert_not_identified(fit(df, "kaplan_n", irreducible=True, n_resamples=0), "only 2 distinct N")
    assert fit(df, "kaplan_n", n_resamples=0).converged  # the pure power law needs only 2


def test_constant_loss():
    df = chinchilla_grid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8)).assign(loss=3.0)
    law = fit(df, n_resamples=50)
    assert_not_identified(law, "the response is constant")
    assert "n/a" in law.summary() and "nan" not in law.summary().split("R^2(log)")[1].split(";")[0]


def test_a_term_at_its_bound():
    df = chinchilla_grid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8), noise=0.0)
    df["loss"] = 1.8 + 480 / df["N"] ** 0.35  # nothing depends on D: B/D^beta leaves the law
    assert_not_identified(fit(df, n_resamples=0), "a term left the law", "B/D^beta")
    N = np.geomspace(1e7, 1e10, 8)  # a pure power law fitted with an irreducible term: L_inf runs to 0
    law = fit(pd.DataFrame({"N": N, "loss": (8.8e13 / N) ** 0.076}), "kaplan_n", irreducible=True, n_resamples=0)
    assert_not_identified(law, "L_inf is at most")


def test_singular_curvature_of_a_confounded_design():
    N = np.geomspace(1e7, 1e10, 12)  # every run at D = 20 N: the two power laws in one variable
    df = pd.DataFrame({"N": N, "D": 20 * N})
    df["loss"] = CHIN.predict(TRUTH["chinchilla"], {"N": N, "D": 20 * N})
    law = fit(df, n_resamples=0)
    assert_not_identified(law, "the curvature is singular")
    assert law.diagnostics["curvature"] < MIN_CURVATURE


def test_parameters_beyond_a_float():
    N = np.geomspace(1e7, 1e10, 8)  # N_c = 8.8e13 * 1e295 exceeds the largest float
    law = fit(pd.DataFrame({"N": N * 1e295, "loss": (8.8e13 / N) ** 0.076}), "kaplan_n", n_resamples=0)
    assert_not_identified(law, "ran off to the limits of a float", "N_c")


def test_fixed_e_at_or_above_the_lowest_loss_is_an_error():
    df = chinchilla_grid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8))
    low = float(df["loss"].min())
    for e in (100.0, low):
        with pytest.raises(FitError, match="not below every observed loss"):
            fit(df, fix_e=e, n_resamples=0)
    assert fit(df, fix_e=0.99 * low, n_resamples=0).params["E"] == pytest.approx(0.99 * low)


def test_shared_e_counts_each_group():
    a = chinchilla_grid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6)).assign(ds="a")
    b = chinchilla_grid([1e8], np.geomspace(1e9, 1e12, 6), seed=1).assign(ds="b")
    law = fit(pd.concat([a, b], ignore_index=True), "chinchilla_shared_e", by="ds", n_resamples=0)
    assert_not_identified(law, "only 1 distinct N in group b")


def test_data_constrained_counts_effective_tokens():
    df = chinchilla_grid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6))
    df["U"] = df["D"]  # no repetition: D' = D, 6 distinct
    assert fit(df, "data_constrained", n_resamples=0).converged
    df["U"] = 1e6  # every run repeats the same 1e6 tokens far past R*: D' saturates near U (1 + R*)
    assert_not_identified(fit(df, "data_constrained", n_resamples=0), "only 1 distinct D'")


# ------------------------------------------------------------------------------------------------ rescaling


def test_extreme_scale_fits_as_the_physical_scale():
    df = chinchilla_grid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8))
    base = fit(df, n_resamples=60)
    big = fit(df.assign(N=df["N"] * 1e290), n_resamples=60)
    assert base.converged and big.converged, big.message
    assert "N by 1e" in big.message and big.diagnostics["rescaled_log"]["N"] > 0
    for p in ("E", "B", "alpha", "beta"):
        assert big.params[p] == pytest.approx(base.params[p], rel=1e-4), p
    assert math.log(big.params["A"]) == pytest.approx(math.log(base.params["A"]) + base.params["alpha"] * 290
                                                      * math.log(10.0), rel=1e-6)
    # the interval of alpha is the physical one, not the collapsed one of an ill-conditioned optimiser
    wb, wbig = base.interval_width("alpha"), big.interval_width("alpha")
    assert wbig == pytest.approx(wb, rel=0.2)
    assert np.allclose(big.predict(N=1e298, D=1e11), base.predict(N=1e8, D=1e11), rtol=1e-5)
    assert "rescaled_log" not in base.diagnostics  # data at physical scales is fitted as before


def _inputs(form, n=24, seed=0):
    rng = np.random.default_rng(seed)
    X = {"N": np.geomspace(1e6, 1e9, n), "D": rng.permutation(np.geomspace(1e8, 1e11, n)),
         "S": np.geomspace(10, 1e4, n), "C": np.geomspace(1e15, 1e20, n), "L": np.linspace(2, 5, n),
         "U": np.geomspace(1e7, 1e10, n), "G": np.arange(n) % 2}
    return {k: X[k] for k in form.inputs}


@pytest.mark.parametrize("name", FORM_NAMES)
def test_rescale_maps_a_law_fitted_to_scaled_inputs_back(name):
    for kw in ([{}, {"irreducible": True}] if name in ("kaplan_n", "kaplan_d", "kaplan_c", "kaplan_cmin") else
               [{}, {"fix_e": 1.5}] if name in FIX_E_FORMS else [{}]):
        form = get_form(name, groups=["a", "b"], **kw) if name in SHARED_FORMS else get_form(name, **kw)
        X = _inputs(form)
        log_s = {"N": 3.1, "D": -2.2, "S": 1.7, "C": 4.0, "L": 0.5, "U": -2.2}  # U shares D's factor
        log_s = {k: v for k, v in log_s.items() if k in form.inputs}
        Z = form.start_grid(X, np.log(np.full(len(X["N" if "N" in X else next(iter(X))]), 3.0)))
        Z = Z[:: max(1, len(Z) // 11)]
        scaled = {k: v / math.exp(log_s[k]) if k in log_s else v for k, v in X.items()}
        assert np.allclose(form.log_predict(Z, scaled), form.log_predict(form.rescale(Z, log_s), X),
                           rtol=0, atol=1e-9), (name, kw)


# ------------------------------------------------------------------------------------------------ printing, CLI


def test_r2_text_says_what_nan_and_negative_mean():
    assert "n/a" in r2_text(float("nan"))
    assert "worse than a constant" in r2_text(-852.0)
    assert r2_text(0.99791) == "0.9979"


def test_cli_reports_the_reason_and_exits_1(tmp_path, capsys):
    path = tmp_path / "two_n.csv"
    chinchilla_grid([1e7, 1e9], np.geomspace(1e9, 1e12, 8)).to_csv(path, index=False)
    rc = main(["fit", str(path), "--bootstrap", "20"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "DID NOT CONVERGE" in out and "only 2 distinct N" in err


def test_cli_fixed_e_above_the_losses_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    chinchilla_grid(np.geomspace(1e7, 1e10, 4), np.geomspace(1e9, 1e12, 4)).to_csv(path, index=False)
    rc = main(["fit", str(path), "--fix-e", "100"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not below every observed loss" in err


@pytest.mark.parametrize("argv, flag", [
    (["fit", "x.csv", "--bootstrap", "-5"], "--bootstrap"),
    (["fit", "x.csv", "--max-iter", "0"], "--max-iter"),
    (["fit", "x.csv", "--jobs", "0"], "--jobs"),
    (["fit", "x.csv", "--drop-highest-loss", "-1"], "--drop-highest-loss"),
    (["fit", "x.csv", "--bootstrap", "many"], "--bootstrap"),
    (["backtest", "x.csv", "--bootstrap", "-1"], "--bootstrap"),
    (["backtest", "x.csv", "--jobs", "0"], "--jobs"),
    (["frontier", "x.csv", "--n", "N", "--loss", "L", "--bootstrap", "-1"], "--bootstrap"),
    (["frontier", "x.csv", "--n", "N", "--loss", "L", "--window", "0"], "--window"),
    (["batch", "--targets", "0"], "--targets"),
    (["batch", "--bootstrap", "-2"], "--bootstrap"),
    (["report", "--bootstrap", "-1"], "--bootstrap"),
    (["reproduce", "--workers", "0"], "--workers"),
    (["study", "run", "x.toml", "--workers", "0"], "--workers"),
    (["study", "run", "x.toml", "--max-attempts", "0"], "--max-attempts"),
    (["data", "info", "x", "--n-ctx", "0"], "--n-ctx"),
])
def test_bad_counts_are_one_line_exit_2(capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "whole number" in lines[0], err
