"""Frontiers: the lower envelope of learning curves, IsoFLOP minima, and Chinchilla's approach 3."""

import numpy as np
import pandas as pd
import pytest

from scalinglab.laws import fit_law
from scalinglab.laws.frontier import chinchilla_allocation, chinchilla_optimal, envelope, isoflop_minima
from scalinglab.published import CHINCHILLA2022

P = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}


def loss(N, D):
    return P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]


def curves():
    """Learning curves of 10 model sizes following the law: loss after D tokens = L(N, D)."""
    rows = []
    for N in np.geomspace(1e6, 1e9, 10):
        for D in np.geomspace(1e7, 1e12, 60):
            rows.append({"run_id": f"N{N:.0e}", "N": N, "flop": 6 * N * D, "loss": loss(N, D)})
    return pd.DataFrame(rows)


def test_envelope_follows_closed_form_optimum():
    al = chinchilla_allocation(P)
    a = al["a"]
    # the compute range over which the optimal size lies inside the trained sizes (1e6 - 1e9)
    c_range = tuple(6 * (n / al["G"]) ** (1 / a) for n in (2e6, 5e8))
    fr = envelope(curves(), n_resamples=50, c_range=c_range)
    assert fr.n_opt.exponent == pytest.approx(a, abs=0.06)  # step-wise: only 10 sizes on the frontier
    assert fr.n_opt.exponent_ci[0] <= fr.n_opt.exponent <= fr.n_opt.exponent_ci[1]
    assert fr.d_opt.exponent == pytest.approx(1 - fr.n_opt.exponent)
    # the envelope is the minimum: no run is below it at any grid compute
    t = fr.table
    assert t["loss"].is_monotonic_decreasing
    mid = t.iloc[len(t) // 2]
    N_best = mid["N"]
    assert loss(N_best, mid["C"] / (6 * N_best)) == pytest.approx(mid["loss"], rel=1e-3)
    for N in np.geomspace(1e6, 1e9, 10):
        D = mid["C"] / (6 * N)
        if 1e7 <= D <= 1e12:
            assert loss(N, D) >= mid["loss"] * (1 - 1e-3)


def test_isoflop_parabola_minima():
    rows = []
    for C in np.geomspace(1e18, 1e22, 5):
        G, a = chinchilla_allocation(P)["G"], chinchilla_allocation(P)["a"]
        n_opt = G * (C / 6) ** a
        for N in n_opt * np.geomspace(0.25, 4, 9):
            rows.append({"N": N, "C": C, "loss": loss(N, C / (6 * N))})
    iso = isoflop_minima(pd.DataFrame(rows), n_resamples=100)
    a = chinchilla_allocation(P)["a"]
    assert iso.n_opt.exponent == pytest.approx(a, abs=0.01)
    assert iso.minima["bracketed"].all()
    assert iso.d_opt.exponent == pytest.approx(1 - a, abs=0.01)


def test_approach3_closed_form_and_intervals():
    rng = np.random.default_rng(0)
    N, D = np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    df["loss"] = loss(df["N"], df["D"]) * np.exp(0.01 * rng.standard_normal(len(df)))
    law = fit_law(df, form="chinchilla", n_resamples=100, grid=fit_law.__globals__["get_form"]("chinchilla")
                  .start_grid()[::45])
    out = chinchilla_optimal(law, [1e21, 1e23])
    al = chinchilla_allocation(law.params)
    assert out["N_opt"].iloc[1] == pytest.approx(al["G"] * (1e23 / 6) ** al["a"])
    assert out["N_opt"].iloc[0] * out["D_opt"].iloc[0] * 6 == pytest.approx(1e21)
    assert (out["N_opt_low"] <= out["N_opt"]).all() and (out["N_opt"] <= out["N_opt_high"]).all()
    # the published constants: a = beta/(alpha+beta)
    assert chinchilla_allocation(CHINCHILLA2022)["a"] == pytest.approx(0.28 / 0.62)
