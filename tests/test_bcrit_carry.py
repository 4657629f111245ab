"""B_crit(L)'s uncertainty carried into L(N, S_min) (issue 24): the surface is refitted at the critical-batch law's
bootstrap draws, so a batch sweep that pins B_crit down leaves alpha_S's interval as the run bootstrap made it,
and one that cannot widens it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scalinglab.analysis.study_laws import fit_study
from synthetic_study import run, study

SIZES = [(1, 16), (1, 32), (2, 32), (2, 64), (4, 64)]
B = 4096  # tokens per step of the size sweep


def batch_runs(noise: float, rng) -> list:
    """A batch-size sweep of one size from Kaplan's model, S = S_min (1 + B_crit(L)/B), B_crit = 2.4e8/L^(1/0.15)
    (about 5,000 tokens at L = 5), each run's curve shifted by e^(noise z)."""
    grid = np.linspace(4.0001, 7.0, 6000)
    s_min = 40 / (grid - 4.0) ** (1 / 0.6)
    steps = np.geomspace(20, 4000, 30)
    out = []
    for b in [512, 1024, 2048, 4096, 8192, 16384]:
        s_at = s_min * (1 + 2.4e8 / grid ** (1 / 0.15) / b)
        curve = np.interp(np.log(steps), np.log(s_at[::-1]), grid[::-1]) * np.exp(noise * rng.standard_normal())
        table = dict(zip(steps, curve))
        out.append(run(f"b{b}", N=98_304, roles="batch", n_layer=2, d_model=64, B=b, steps=steps,
                       loss=lambda s, t=table: t[s], b_simple=float("nan")))
    return out


def size_runs(rng) -> list:
    steps = np.round(np.geomspace(30, 730, 16))
    out = []
    for i, (nl, dm) in enumerate(SIZES):
        n = 12 * nl * dm ** 2
        curve = ((6.5e16 / n) ** 0.051 + (182 / steps) ** 0.59) * np.exp(0.01 * rng.standard_normal())
        table = dict(zip(steps, curve))
        out.append(run(f"s{i}", N=n, roles="sizes", n_layer=nl, d_model=dm, B=B, D=B * steps[-1], steps=steps,
                       loss=lambda s, t=table: t[s]))
    return out


def carried(noise: float):
    rng = np.random.default_rng(3)
    fits = fit_study(study(size_runs(rng) + batch_runs(noise, rng)), n_resamples=60, only=["L(N,S)"])
    lf = fits["L(N,S)"]
    note = next(n for n in lf.note.split("; ") if n.startswith("B_crit(L)'s uncertainty carried in"))
    m = re.search(r"alpha_S \[([-\d.e+]+), ([-\d.e+]+)\] -> \[([-\d.e+]+), ([-\d.e+]+)\]", note)
    lo0, hi0, lo1, hi1 = map(float, m.groups())
    assert lf.law.ci["alpha_S"] == pytest.approx((lo1, hi1), rel=6e-3)  # the note rounds to 3 digits
    return (hi1 - lo1) / (hi0 - lo0)


@pytest.mark.slow(seconds=60)
def test_a_sweep_that_pins_bcrit_down_leaves_alpha_s_as_it_was_and_a_noisy_one_widens_it():
    clean, noisy = carried(0.0), carried(0.01)
    assert clean < 1.15, clean
    assert noisy > 1.3, noisy
