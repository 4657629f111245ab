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
