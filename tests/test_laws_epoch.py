"""Reproduce Besiroglu et al. 2024's refit of Chinchilla's Figure 4 points (Epoch AI's extraction)."""

from pathlib import Path

import pytest

from scalinglab.laws import fit_law
from scalinglab.published import EPOCH2024, EPOCH2024_CI95, EPOCH2024_SE

POINTS = Path(__file__).resolve().parent / "data" / "chinchilla_points_epoch2024.csv"  # source: tests/data/README.md


@pytest.fixture(scope="module")
def law():
    return fit_law(POINTS, form="chinchilla", n="Model Size", c="Training FLOP", loss="loss",
                   drop_highest_loss=5, n_resamples=400, seed=1)


def test_uses_240_points_with_d_from_c(law):
    assert law.n_points == 240
    assert law.columns["D"] == "Training FLOP/(6*Model Size)"
    assert law.converged, law.message


@pytest.mark.parametrize("p", ["E", "A", "B", "alpha", "beta"])
def test_estimate_within_one_epoch_standard_error(law, p):
    assert abs(law.params[p] - EPOCH2024[p]) <= EPOCH2024_SE[p]


@pytest.mark.parametrize("p", ["E", "A", "B", "alpha", "beta"])
def test_interval_overlaps_epochs(law, p):
    lo, hi = law.ci[p]
    elo, ehi = EPOCH2024_CI95[p]
    assert lo < law.params[p] < hi
    assert lo <= ehi and elo <= hi


@pytest.mark.parametrize("p", ["E", "A", "B", "alpha", "beta"])
def test_interval_matches_epochs_in_width_and_place(law, p):
    """Two-sided: the same points and the same kind of bootstrap give an interval as wide as Epoch's (measured
    0.80-0.99x of its width, standard errors 0.76-1.01x of Epoch's), each end within a quarter of Epoch's
    width of Epoch's end. An interval twice as wide, or half as wide, fails."""
    lo, hi = law.ci[p]
    elo, ehi = EPOCH2024_CI95[p]
    assert 0.7 <= (hi - lo) / (ehi - elo) <= 1.3, (p, (lo, hi), (elo, ehi))
    assert abs(lo - elo) <= 0.25 * (ehi - elo) and abs(hi - ehi) <= 0.25 * (ehi - elo), (p, (lo, hi), (elo, ehi))
    assert 0.7 <= law.se[p] / EPOCH2024_SE[p] <= 1.3, (p, law.se[p], EPOCH2024_SE[p])
