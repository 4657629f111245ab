"""Batch-size laws: the S/E trade-off recovers known S_min and E_min; B_crit(L) recovers B* and alpha_B."""

import numpy as np
import pandas as pd
import pytest

from scalinglab.laws.batch import correct_to_critical_batch, fit_batch_sweep, fit_tradeoff, steps_to_targets

B_STAR, ALPHA_B = 2e8, 0.21


def sweep(batches=(2**13, 2**14, 2**15, 2**16, 2**17, 2**18)):
    """Learning curves built so that a run at batch B reaches loss L after S = S_min(L)(1 + B_crit(L)/B) steps,
    with S_min(L) = (2.1e3 / (L - 1.5))^(1/0.76) ... i.e. the trade-off of Kaplan eq. 5.1 holds exactly."""
    levels = np.linspace(6.0, 3.2, 400)
    rows = []
    for B in batches:
        smin = (2.1e3 ** 0.76 / (levels - 1.5)) ** (1 / 0.76)
        bcrit = B_STAR / levels ** (1 / ALPHA_B)
        S = smin * (1 + bcrit / B)
        for s, L in zip(S, levels):
            rows.append({"run_id": f"B{B}", "B": float(B), "step": s, "tokens": s * B, "loss": L, "flop": 6e6 * s * B})
    return pd.DataFrame(rows)


def test_steps_to_targets_interpolates():
    pts = steps_to_targets(sweep(), [4.0, 5.0])
    assert len(pts) == 12
    one = pts[(pts["run"] == "B8192") & (pts["target"] == 4.0)].iloc[0]
    expect = (2.1e3 ** 0.76 / 2.5) ** (1 / 0.76) * (1 + B_STAR / 4.0 ** (1 / ALPHA_B) / 8192)
    assert one["S"] == pytest.approx(expect, rel=2e-3)
    assert one["E"] == pytest.approx(expect * 8192, rel=2e-3)


def test_tradeoff_recovers_smin_emin():
    S_min, B_crit = 3000.0, 5e5
    B = np.array([2**14, 2**16, 2**18, 2**20, 2**22], float)
    S = S_min * (1 + B_crit / B)
    t = fit_tradeoff(S, S * B, target=3.0)
    assert t.S_min == pytest.approx(S_min, rel=1e-6)
    assert t.E_min == pytest.approx(S_min * B_crit, rel=1e-6)
    assert t.B_crit == pytest.approx(B_crit, rel=1e-6)
    with pytest.raises(Exception, match="need at least 3"):
        fit_tradeoff(S[:2], (S * B)[:2])


def test_sweep_recovers_bcrit_law_and_corrections():
    targets = [3.4, 3.8, 4.2, 4.6, 5.0]
    study = fit_batch_sweep(sweep(), targets, n_resamples=100)
    tr = study.tradeoffs
    assert len(tr) == 5
    expect = B_STAR / tr["target"] ** (1 / ALPHA_B)
    np.testing.assert_allclose(tr["B_crit"], expect, rtol=0.02)
    assert np.all(np.diff(tr.sort_values("target")["B_crit"].to_numpy()) < 0)  # B_crit rises as the loss falls
    law = study.bcrit_law
    assert law.converged
    assert law.params["alpha_B"] == pytest.approx(ALPHA_B, rel=0.02)
    assert law.params["B_star"] == pytest.approx(B_STAR, rel=0.1)
    corrected = correct_to_critical_batch(sweep(), law)
    assert {"S_min", "C_min", "step", "flop"} <= set(corrected.columns)  # uncorrected columns stay
    # at the critical batch S = 2 S_min and C = 2 C_min
    assert np.all(corrected["S_min"] < corrected["step"]) and np.all(corrected["C_min"] < corrected["flop"])
    # corrected steps to a target no longer depend on the batch: all runs need S_min(L)
    L = 4.0
    smin = (2.1e3 ** 0.76 / (L - 1.5)) ** (1 / 0.76)
    at = corrected[np.isclose(corrected["loss"], corrected["loss"].iloc[(corrected["loss"] - L).abs().argmin()])]
    np.testing.assert_allclose(at["S_min"], smin, rtol=0.05)


def test_tradeoff_reports_least_squares_verdict_and_speaks_the_protocol():
    S_min, B_crit = 3000.0, 5e5
    B = np.array([2**14, 2**16, 2**18, 2**20, 2**22], float)
    S = S_min * (1 + B_crit / B) * np.exp(0.02 * np.random.default_rng(0).standard_normal(5))
    t = fit_tradeoff(S, S * B, target=3.0)
    assert t.converged and t.n_points == 5 and t.n_resamples == 0
    lo, hi = t.ci["B_crit"]
    assert lo < t.B_crit < hi and t.se["B_crit"] > 0
    assert t.predict([t.B_crit])[0] == pytest.approx(2 * t.S_min)  # at the critical batch, twice the minimal steps
    back = type(t).from_dict(t.to_dict())
    assert back.params == pytest.approx(t.params) and back.converged
    # stopped before it converged: said, not passed off as a measurement
    stopped = fit_tradeoff(S, S * B, target=3.0, max_nfev=2)
    assert not stopped.converged and "did not converge" in stopped.message
    assert "did NOT converge" in stopped.summary()


def test_batch_study_speaks_the_protocol():
    study = fit_batch_sweep(sweep(), [3.4, 3.8, 4.2, 4.6, 5.0], n_resamples=50)
    assert study.converged and study.n_points == 5 and "5 target losses" in study.message
    assert set(study.params) == {"B_star", "alpha_B"}
    lo, hi = study.ci["alpha_B"]
    assert lo < study.params["alpha_B"] < hi
    assert study.predict([4.0])[0] == pytest.approx(B_STAR / 4.0 ** (1 / ALPHA_B), rel=0.05)
    back = type(study).from_dict(study.to_dict())
    assert back.params == pytest.approx(study.params) and len(back.tradeoffs) == 5
    # two targets reached by every run are too few for a law: not converged, and predict says why
    few = fit_batch_sweep(sweep(), [4.2, 4.6], n_resamples=0)
    assert not few.converged and "no B_crit(L) law" in few.message
    with pytest.raises(Exception, match="no B_crit"):
        few.predict(4.0)
