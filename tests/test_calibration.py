"""Two-sided calibration of the 95% bootstrap intervals of L(N) on the presets' designs (5 sizes: ci and smoke;
7 sizes: cpu), on simulated studies of known truth: over many seeds the interval must cover the truth in a band
around 95% (a 90% interval labelled 95% fails, and so does one twice too wide), and its width must match the
seed-to-seed spread of the estimate.

Five hundred fit_law calls per design would take minutes (0.3-0.6 s each), so the seeds are fitted together:
`fit_law_many` is fit_law's estimator (the Huber fit from the form's start grid, the bootstrap of whole runs with
fit_law's resample counts, the percentile interval) with every seed's problem a row of the package's batched
L-BFGS. Each seed's data sit in their own columns and its rows weigh only those, so a row is exactly the problem
fit_law solves; `test_the_batched_estimator_is_fit_law` checks it gives fit_law's numbers, so a change to
fit_law's intervals fails there if it does not fail the calibration."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from scalinglab.laws import fit_law, get_form
from scalinglab.laws.optimize import Objective, lbfgs_batched

# L(N) = (N_c / N)^alpha_N at Kaplan's constants, with 1.1% log-normal noise per run (the ci preset's fit has an
# rmse of 1.1% in log loss); N the presets' non-embedding sizes (12 n_layer d_model^2)
TRUTH = {"N_c": 8.8e13, "alpha_N": 0.076}
SIGMA = 0.011
DESIGNS = {
    5: 12 * np.array([1 * 16**2, 1 * 32**2, 2 * 40**2, 2 * 64**2, 3 * 72**2], float),  # ci, smoke
    7: 12 * np.array([1 * 16**2, 1 * 32**2, 2 * 32**2, 2 * 64**2, 4 * 64**2, 3 * 96**2, 4 * 112**2], float),  # cpu
}
N_RESAMPLES = 100  # what the study analysis draws for L(N)
SEEDS = 500


def simulate(N: np.ndarray, seeds) -> np.ndarray:
    """(seeds, sizes) losses: the true law times log-normal noise, one generator per seed."""
    law = (TRUTH["N_c"] / N) ** TRUTH["alpha_N"]
    return np.stack([law * np.exp(SIGMA * np.random.default_rng(s).standard_normal(N.size)) for s in seeds])


def fit_law_many(N: np.ndarray, losses: np.ndarray, seeds, n_resamples: int = N_RESAMPLES, chunk: int = 50,
                 max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """fit_law(form="kaplan_n", n_resamples, seed) for each row of `losses`, batched: (params, ci), shapes
    (seeds, 2) and (seeds, 2, 2) ([seed, parameter, low/high]), parameters in the form's order."""
    form = get_form("kaplan_n")
    n = N.size
    params, ci = [], []
    for lo in range(0, len(seeds), chunk):
        block, ss = losses[lo:lo + chunk], list(seeds[lo:lo + chunk])
        k = len(ss)
        logy = np.log(block)
        objective = Objective(form, {"N": np.tile(N, k)}, logy.ravel(), 1e-3)
        own = np.kron(np.eye(k), np.ones((1, n)))  # row i weighs seed i's columns only
        # the point fit, from each seed's start grid (as fit_law: multistart over form.start_grid)
        grids = [form.start_grid({"N": N}, logy[i]) for i in range(k)]
        Z0 = np.vstack(grids)
        owner = np.repeat(np.arange(k), [g.shape[0] for g in grids])
        r = lbfgs_batched(objective, Z0, own[owner], max_iter=max_iter)
        f = np.where(np.isfinite(r.f), r.f, np.inf)
        best = np.array([np.flatnonzero(owner == i)[np.argmin(f[owner == i])] for i in range(k)])
        z = r.Z[best]
        # the bootstrap of whole runs, with fit_law's resample counts for its seed, from the point fit
        counts = np.vstack([np.random.default_rng(s).multinomial(n, np.full(n, 1.0 / n), size=n_resamples)
                            for s in ss]).astype(float)
        rows = np.repeat(np.arange(k), n_resamples)
        W = np.zeros((rows.size, k * n))
        for i in range(k):
            W[rows == i, i * n:(i + 1) * n] = counts[rows == i]
        b = lbfgs_batched(objective, z[rows], W, max_iter=max_iter)
        nat = form.to_natural(b.Z)
        ok = b.converged & np.all(np.isfinite(nat), axis=1)
        params.append(form.to_natural(z))
        for i in range(k):
            ci.append(np.percentile(nat[(rows == i) & ok], [2.5, 97.5], axis=0).T)
    return np.vstack(params), np.stack(ci)


@pytest.mark.parametrize("sizes", [5, 7])
def test_the_batched_estimator_is_fit_law(sizes):
    N = DESIGNS[sizes]
    seeds = [0, 1, 2]
    losses = simulate(N, seeds)
    params, ci = fit_law_many(N, losses, seeds)
    names = get_form("kaplan_n").param_names
    for i, s in enumerate(seeds):
        law = fit_law(pd.DataFrame({"N": N, "loss": losses[i]}), form="kaplan_n", n_resamples=N_RESAMPLES, seed=s)
        assert law.converged
        j = names.index("alpha_N")
        assert params[i, j] == pytest.approx(law.params["alpha_N"], rel=1e-4)
        assert tuple(ci[i, j]) == pytest.approx(law.ci["alpha_N"], rel=1e-3), (s, law.ci["alpha_N"])


@functools.lru_cache(maxsize=None)
def calibration(sizes: int) -> tuple[float, float]:
    """(coverage of alpha_N's interval over SEEDS simulated studies, its mean width / (2 x 1.96 x the
    seed-to-seed sd of the estimate)); computed once per design for the tests below."""
    N = DESIGNS[sizes]
    seeds = np.arange(SEEDS)
    params, ci = fit_law_many(N, simulate(N, seeds), seeds)
    j = get_form("kaplan_n").param_names.index("alpha_N")
    lo, hi = ci[:, j, 0], ci[:, j, 1]
    coverage = float(np.mean((lo <= TRUTH["alpha_N"]) & (TRUTH["alpha_N"] <= hi)))
    ratio = float(np.mean(hi - lo) / (2 * 1.959964 * np.std(params[:, j], ddof=1)))
    return coverage, ratio


# With 500 seeds a coverage of 0.95 reads 0.95 +- 0.0097 (one sd): the band [0.92, 0.99] holds it with a margin
# of 3.1 sd below, while a 90% interval labelled 95% (0.90 +- 0.013) passes with probability 7%. An interval
# twice too wide can still cover less than 0.99 (the 5-size one covers 0.97 when doubled: its misses are
# misplaced intervals, not narrow ones); the width check catches it.
COVERAGE_BAND = (0.92, 0.99)
WIDTH_BAND = (0.7, 1.5)


@pytest.mark.slow(seconds=15)
@pytest.mark.parametrize("sizes", [
    pytest.param(5, marks=pytest.mark.xfail(strict=True, reason=(
        "the 5-size percentile bootstrap covers alpha_N in 0.900 of 500 seeds (0.898 of 1,000): a 90% interval; "
        "estimator fix owned by issue 24"))),
    7,
])
def test_l_of_n_interval_covers_the_truth_in_a_band_around_95_percent(sizes):
    coverage, _ = calibration(sizes)  # measured: 5 sizes 0.900, 7 sizes 0.930 (1,000 seeds: 0.898, 0.925)
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], f"{sizes} sizes: coverage {coverage:.3f}"


@pytest.mark.parametrize("sizes", [5, 7])
def test_l_of_n_interval_width_matches_the_seed_to_seed_spread(sizes):
    _, ratio = calibration(sizes)  # measured: 5 sizes 1.40, 7 sizes 1.17 (1,000 seeds: 1.34, 1.18)
    assert WIDTH_BAND[0] <= ratio <= WIDTH_BAND[1], f"{sizes} sizes: width / spread {ratio:.2f}"


# ------------------------------------------------------------------------------------------------ IsoFLOP

ISO_SEEDS = 80


@functools.lru_cache(maxsize=None)
def isoflop_calibration() -> dict:
    """test_frontier's IsoFLOP grid (6 budgets, 8 lopsided sizes each, 0.3% noise; the top budget unbracketed)
    over ISO_SEEDS seeds: the exponent's coverage and width / spread, and the per-budget minima's coverage."""
    from test_frontier import A_TRUE, grid, true_opt

    from scalinglab.laws.frontier import isoflop_minima

    est, lo, hi, hits = [], [], [], []
    truth = {}
    for s in range(ISO_SEEDS):
        iso = isoflop_minima(grid(seed=s), n="N", c="C", loss="loss", n_resamples=200, seed=s)
        est.append(iso.n_exponent)
        lo.append(iso.n_exponent_ci[0])
        hi.append(iso.n_exponent_ci[1])
        ok = iso.minima[iso.minima["bracketed"]]
        for C, a, b in zip(ok["C"], ok["N_opt_low"], ok["N_opt_high"]):
            t = truth.setdefault(C, true_opt(C, lambda N: 6 * N))
            hits.append(a <= t <= b)
    est, lo, hi = map(np.asarray, (est, lo, hi))
    return {"coverage": float(np.mean((lo <= A_TRUE) & (A_TRUE <= hi))),
            "ratio": float(np.mean(hi - lo) / (2 * 1.959964 * np.std(est, ddof=1))),
            "budget_coverage": float(np.mean(hits)), "n_budget_intervals": len(hits)}


@pytest.mark.slow(seconds=12)
@pytest.mark.xfail(strict=True, reason=(
    "the IsoFLOP exponent's interval is 1.81x the seed-to-seed spread and covers in 0.99 of 80 seeds: too wide "
    "(2.5x and 1.00 when it resampled budgets; now every budget is kept and only its minimum redrawn); the "
    "per-budget minima's draws are too dispersed, issue 24"))
def test_isoflop_exponent_interval_is_calibrated():
    c = isoflop_calibration()
    assert COVERAGE_BAND[0] <= c["coverage"] <= COVERAGE_BAND[1], c
    assert WIDTH_BAND[0] <= c["ratio"] <= WIDTH_BAND[1], c


@pytest.mark.xfail(strict=True, reason=(
    "each budget's N_opt interval covers the true optimum in 0.883 of 400 (budget, seed) cases: a 90% interval; "
    "estimator fix owned by issue 24"))
def test_isoflop_budget_minima_intervals_cover_in_a_band_around_95_percent():
    c = isoflop_calibration()
    assert c["n_budget_intervals"] == 5 * ISO_SEEDS
    assert COVERAGE_BAND[0] <= c["budget_coverage"] <= COVERAGE_BAND[1], c
