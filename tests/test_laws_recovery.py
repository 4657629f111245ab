"""Synthetic recovery: noise-free data gives the true parameters; with 2% log-normal noise the 95% bootstrap
intervals contain the truth in at least 90% of 50 seeds."""

import warnings

import numpy as np
import pandas as pd
import pytest

from scalinglab.laws import fit_law, get_form

TRUTH = {
    "chinchilla": {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37},
    "kaplan_nd": {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103},
    "kaplan_ns": {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76},
}


def design(form):
    """Inputs spanning the range where every term of the law matters; group = run."""
    if form == "kaplan_ns":  # 32 runs (model sizes), 6 evaluations of each learning curve
        N, S = np.meshgrid(np.geomspace(1e5, 1e9, 32), np.geomspace(30, 1e5, 6), indexing="ij")
        runs = np.repeat(np.arange(32), 6)
        return pd.DataFrame({"N": N.ravel(), "S": S.ravel(), "group": runs})
    if form == "kaplan_nd":
        N, D = np.meshgrid(np.geomspace(1e5, 1e9, 8), np.geomspace(1e7, 1e11, 8), indexing="ij")
    else:
        N, D = np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8), indexing="ij")
    return pd.DataFrame({"N": N.ravel(), "D": D.ravel(), "group": np.arange(N.size)})


def make(form, noise=0.0, seed=0):
    df = design(form)
    f = get_form(form)
    loss = f.predict(TRUTH[form], {v: df[v].to_numpy() for v in f.inputs})
    rng = np.random.default_rng(seed)
    df["loss"] = loss * np.exp(noise * rng.standard_normal(len(df)))
    return df


@pytest.mark.parametrize("form", list(TRUTH))
def test_noise_free_recovers_parameters(form):
    law = fit_law(make(form), form=form, n_resamples=0)
    assert law.converged, law.message
    for p, true in TRUTH[form].items():
        assert law.params[p] == pytest.approx(true, rel=5e-3), p
    assert law.rmse_log < 1e-4


@pytest.mark.slow(seconds=75)  # 50 fits of 120 resamples
@pytest.mark.parametrize("form", list(TRUTH))
def test_bootstrap_intervals_cover_truth(form):
    f = get_form(form)
    grid = None
    if form == "chinchilla":  # a thinned published grid keeps 50 fits fast; recovery above uses the full grid
        grid = f.start_grid()[::90]
    hits = {p: 0 for p in TRUTH[form]}
    seeds = 50
    for seed in range(seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            law = fit_law(make(form, noise=0.02, seed=seed), form=form, n_resamples=120, seed=seed, grid=grid)
        assert law.converged, law.message
        for p, true in TRUTH[form].items():
            lo, hi = law.ci[p]
            hits[p] += lo <= true <= hi
    for p, h in hits.items():
        assert h / seeds >= 0.9, f"{form} {p}: truth inside the 95% interval in {h}/{seeds} seeds"
