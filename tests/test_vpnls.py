"""Variable projection (laws/vpnls.py): exact recovery of known laws, the same optimum as the grid of L-BFGS starts
on noisy data and on Epoch's Chinchilla points, the bootstrap from each resample's own start, and the options."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls

from scalinglab.errors import FitError
from scalinglab.laws import fit_law, get_form
from scalinglab.laws.fit import bootstrap
from scalinglab.laws.inputs import prepare
from scalinglab.laws.optimize import Objective
from scalinglab.laws.vpnls import Profile, vpnls

POINTS = Path(__file__).resolve().parent / "data" / "chinchilla_points_epoch2024.csv"  # source: tests/data/README.md
TRUTH = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022's fit
NAMES = ("E", "A", "B", "alpha", "beta")


def ladder(truth, sigma=0.0, seed=0, tied=False, unique=None):
    """10 model sizes x 8 tokens-per-parameter ratios, losses of `truth` with log-normal noise sigma."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e7, 3e9, 10), 8)
    D = N * np.tile(np.geomspace(2, 300, 8), 10)
    beta = truth["alpha"] if tied else truth["beta"]
    Deff = D if unique is None else get_form("data_constrained").effective_tokens(D, unique)
    L = truth["E"] + truth["A"] / N ** truth["alpha"] + truth["B"] / Deff ** beta
    df = pd.DataFrame({"N": N, "D": D, "loss": L * np.exp(sigma * rng.standard_normal(N.size))})
    if unique is not None:
        df["U"] = unique
    return df


def natural(form, params):
    """A fitted law's parameters as Chinchilla's five (overtrain's a, b, eta converted)."""
    if form.name == "overtrain":
        params = form.chinchilla_params(params)
    return np.array([params[k] for k in NAMES])


VARIANTS = [("chinchilla", None, False), ("chinchilla_tied", None, True), ("chinchilla", 1.69, False),
            ("chinchilla_tied", 1.69, True), ("overtrain", None, True), ("data_constrained", None, False)]


@pytest.mark.parametrize("name,fix_e,tied", VARIANTS)
def test_noise_free_recovery_is_exact(name, fix_e, tied):
    """The least-squares profile alone, and the Huber-log fit started from it, recover the law to 1e-6."""
    unique = 4e10 if name == "data_constrained" else None  # the largest runs repeat their data
    df = ladder(TRUTH, tied=tied, unique=unique)
    form = get_form(name, fix_e=fix_e)
    X = {v: df[v].to_numpy(float) for v in form.inputs}
    want = np.array([TRUTH[k] for k in NAMES])
    if tied:
        want[4] = want[3]
    theta, rss, _ = vpnls(form, X, df["loss"].to_numpy())
    np.testing.assert_allclose(theta, want, rtol=1e-6)
    assert rss < 1e-20
    law = fit_law(df, name, fix_e=fix_e, n="N", d="D", loss="loss", u="U" if unique else None, n_resamples=0,
                  method="vpnls")
    assert law.converged and law.diagnostics["method"] == "vpnls"
    np.testing.assert_allclose(natural(form, law.params), want, rtol=1e-6)


def test_batched_profile_is_scipys_nnls():
    """The grid's closed-form active-set solve equals scipy's NNLS at every grid point, including points where a
    coefficient is held at 0 (a law with no irreducible loss: E's column is often dropped)."""
    df = ladder({**TRUTH, "E": 0.0}, sigma=0.02, seed=3)
    for form in (get_form("chinchilla"), get_form("chinchilla_tied")):
        prof = Profile(form, {"N": df["N"].to_numpy(), "D": df["D"].to_numpy()}, df["loss"].to_numpy())
        g = prof.exponent_grid(9)
        rss, coef = prof.grid_profile(g, g)
        zeros = 0
        for i, a in enumerate(g):
            for j, b in enumerate(g):
                if form.tied and j:
                    continue
                b = a if form.tied else b
                M = prof.design(a, b) * np.sqrt(prof.w)[:, None]
                c, r = nnls(M, prof.target * np.sqrt(prof.w))
                got = rss[0, i] if form.tied else rss[0, i, j]
                assert got == pytest.approx(r ** 2, rel=1e-6, abs=1e-14)
                cg = coef[0, i] if form.tied else coef[0, i, j]
                np.testing.assert_allclose(cg, c, rtol=1e-5, atol=1e-9 * np.abs(c).max())
                zeros += int(np.any(c == 0))
        assert zeros > 0  # the constraint was active somewhere: the check covered the non-negative part


def test_weights_zero_is_dropping_the_points():
    df = ladder(TRUTH, sigma=0.01, seed=4)
    bad = np.zeros(len(df), bool)
    bad[[5, 17, 40]] = True
    df.loc[bad, "loss"] *= 1.3  # three gross outliers
    form = get_form("chinchilla")
    X = {v: df[v].to_numpy() for v in ("N", "D")}
    y = df["loss"].to_numpy()
    kept, _, _ = vpnls(form, {k: v[~bad] for k, v in X.items()}, y[~bad])
    weighted, _, _ = vpnls(form, X, y, weights=(~bad).astype(float))
    unweighted, _, _ = vpnls(form, X, y)
    np.testing.assert_allclose(weighted, kept, rtol=1e-6)
    assert np.max(np.abs(unweighted / kept - 1)) > 1e-3  # the outliers do move an unweighted fit


@pytest.mark.parametrize("name,fix_e", [("chinchilla", None), ("chinchilla_tied", None), ("chinchilla", 1.6),
                                        ("overtrain", None)])
def test_noisy_data_same_optimum_as_lbfgs(name, fix_e):
    """Both paths minimise the same Huber-log objective; from their different starts they reach the same optimum
    (objective values within 1e-9 relative, the same parameters)."""
    df = ladder(TRUTH, sigma=0.02, seed=7)
    kw = dict(fix_e=fix_e, n="N", d="D", loss="loss", n_resamples=0)
    a = fit_law(df, name, method="lbfgs", **kw)
    b = fit_law(df, name, method="vpnls", **kw)
    assert a.converged and b.converged
    assert b.objective <= a.objective * (1 + 1e-9)
    assert a.objective <= b.objective * (1 + 1e-9)
    form = get_form(name, fix_e=fix_e)
    np.testing.assert_allclose(natural(form, b.params), natural(form, a.params), rtol=1e-4)


def test_epoch_points_same_optimum_as_the_grid():
    """Epoch's 240 points (Besiroglu et al. 2024's setup): the VPNLS-started fit reaches the objective of the full
    4,500-start grid, or a lower one, and the same parameters."""
    kw = dict(form="chinchilla", n="Model Size", c="Training FLOP", loss="loss", drop_highest_loss=5,
              n_resamples=0)
    a = fit_law(POINTS, method="lbfgs", **kw)
    b = fit_law(POINTS, method="vpnls", **kw)
    assert a.converged and b.converged
    assert b.objective <= a.objective * (1 + 1e-9)
    for p in NAMES:
        assert b.params[p] == pytest.approx(a.params[p], rel=1e-5)
    assert b.diagnostics["n_starts"] <= 3  # a handful of starts, not a grid


def test_bootstrap_resamples_from_their_own_start_never_end_worse():
    """The vpnls path refits each resample from its own least-squares optimum as well as from the full-data
    optimum (the lbfgs path's start), keeping the better: no resample ends worse, and on this ladder some end
    better (the full-data optimum's basin is not every resample's best). The same resamples (same seed)."""
    df = ladder(TRUTH, sigma=0.02, seed=11)
    form = get_form("chinchilla")
    prep = prepare(df, form.inputs, "L", {"L": "loss", "N": "N", "D": "D"}, form.n_params)
    obj = Objective(form, prep.X, np.log(prep.y), 1e-3)
    law = fit_law(df, "chinchilla", n="N", d="D", loss="loss", n_resamples=0, method="vpnls")
    z = form.to_internal(form.theta(law.params)[None, :])
    kw = dict(seed=5)
    _, f_old, c_old = bootstrap(obj, z, prep.groups, prep.weights, 300, **kw)
    _, f_new, c_new = bootstrap(obj, z, prep.groups, prep.weights, 300, start_fn=Profile(form, prep.X, prep.y),
                                **kw)
    assert c_old.all() and c_new.all()
    rel = (f_new - f_old) / f_old
    assert np.all(rel <= 1e-9)
    assert np.sum(rel < -1e-6) >= 1
    a = fit_law(df, "chinchilla", n="N", d="D", loss="loss", n_resamples=300, seed=5, method="lbfgs")
    b = fit_law(df, "chinchilla", n="N", d="D", loss="loss", n_resamples=300, seed=5, method="vpnls")
    assert a.n_resamples_ok == b.n_resamples_ok == 300
    for p in NAMES:  # a few resamples move, the intervals hardly
        assert b.ci[p] == pytest.approx(a.ci[p], rel=0.05)


def test_other_forms_keep_the_grid_and_bad_method_is_refused():
    df = ladder(TRUTH, sigma=0.01, seed=2)
    law = fit_law(df, "kaplan_n", n="N", loss="loss", n_resamples=0, method="vpnls")
    assert law.converged and law.diagnostics["method"] == "lbfgs"
    with pytest.raises(FitError, match="unknown fit method 'newton'"):
        fit_law(df, "chinchilla", n="N", d="D", loss="loss", n_resamples=0, method="newton")


def test_cli_method_option(tmp_path):
    path = tmp_path / "points.csv"
    ladder(TRUTH, sigma=0.01, seed=9).to_csv(path, index=False)
    run = [sys.executable, "-m", "scalinglab.cli", "fit", str(path), "--form", "chinchilla", "--bootstrap", "50",
           "--json"]
    out = subprocess.run(run + ["--method", "vpnls"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["diagnostics"]["method"] == "vpnls" and d["converged"]
    bad = subprocess.run(run + ["--method", "newton"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "invalid choice" in bad.stderr


def random_ladder(draw: int):
    """The draw-th of a sequence of random Chinchilla ladders (4-8 sizes x 6 ratios, random law and noise):
    the search that found the case below."""
    rng = np.random.default_rng(1)
    for _ in range(draw + 1):
        E, A, B = rng.uniform(0.5, 3), np.exp(rng.uniform(2, 12)), np.exp(rng.uniform(2, 12))
        alpha, beta = rng.uniform(0.1, 1.2), rng.uniform(0.1, 1.2)
        k = rng.integers(4, 9)
        N = np.repeat(np.geomspace(1e7, 10 ** rng.uniform(8, 10), k), 6)
        D = N * np.tile(np.geomspace(1, 10 ** rng.uniform(1.5, 3), 6), k)
        sigma = rng.choice([0.0, 0.005, 0.02, 0.05])
        L = (E + A / N ** alpha + B / D ** beta) * np.exp(sigma * rng.standard_normal(N.size))
    return pd.DataFrame({"N": N, "D": D, "loss": L})


def test_coarse_grid_lands_in_a_worse_optimum_vpnls_does_not():
    """A noisy 8-size ladder (5% noise) on which L-BFGS from the coarse grid (72 starts, what backtests use)
    stops in a local optimum 14% above the best, which the VPNLS start reaches (so does the full 4,500-start
    grid, not run here: it is slow). On Epoch's points and on moderately noisy ladders the two agree."""
    df = random_ladder(18)
    kw = dict(n="N", d="D", loss="loss", n_resamples=0)
    quick = fit_law(df, "chinchilla", grid="quick", **kw)
    vp = fit_law(df, "chinchilla", method="vpnls", **kw)
    assert vp.objective < 0.95 * quick.objective
    # these data are degenerate: the better optimum puts E at its bound (~1e-7), which the identifiability check
    # reports (converged False, with the reason) rather than hiding
    assert vp.params["E"] < 1e-3 and not vp.converged and "not identifiable" in vp.message, vp.message
