"""The study-level "predicted before seen" backtest and its report section, on a real store of tiny runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import train_store

from scalinglab.analysis.backtest import backtest_points, predicted_before_seen
from scalinglab.analysis.study_data import StudyData
from scalinglab.cli import main
from scalinglab.report.backtest import FIGURE_NAME, backtest_section


@pytest.fixture(scope="module")
def size_store(byte_dataset, tmp_path_factory):
    """Four model sizes on all the data and one on a repeated 2,000-token subset."""
    runs = [(dict(n_layer=n_layer, d_model=d_model, n_head=2), ["sizes"])
            for n_layer, d_model in [(1, 8), (1, 16), (2, 24), (2, 40)]]
    runs.append((dict(n_layer=1, d_model=16, n_head=2, d_unique=2_000), ["subsets"]))
    return train_store(tmp_path_factory.mktemp("backtest") / "s.sqlite", byte_dataset, "b", runs, n_ctx=32,
                       tokens=24_000, batch_size=8, n_evals=4, eval_tokens=2048)


def test_study_predicted_before_seen_and_its_section(size_store, tmp_path):
    sd = StudyData.from_store(size_store)
    pts = backtest_points(sd)
    assert len(pts) == 5 and pts["N"].nunique() == 4
    # the repeated run enters at its subset size, as in L(N, D)
    assert pts["D"].min() == 2_000

    pbs = predicted_before_seen(sd, n_resamples=40)
    r = pbs.by_size
    assert r is not None and r.n_points == 1  # the one run at the largest N
    biggest = sd.runs.loc[sd.runs["N"].idxmax()]
    assert r.points["n"].iloc[0] == biggest["N"]
    assert r.points["actual"].iloc[0] == pytest.approx(biggest["final_test_loss"])
    assert np.isfinite(r.points["predicted"]).all()
    assert r.mean_rel_error == pytest.approx(abs(r.points["predicted"].iloc[0] / biggest["final_test_loss"] - 1))
    # four runs are left to fit: too few for a law in N and D, and the note says which law was used instead
    assert r.form == "kaplan_n" and any("L(N) of the size sweep" in n for n in pbs.notes)
    # two values of D (the budget and the subset): no largest-D backtest, and a note says why
    assert pbs.by_data is None and any("largest D: not run" in n for n in pbs.notes)
    json.dumps(pbs.to_dict())

    html = backtest_section(pbs, tmp_path)
    assert "Predicted before seen" in html and "data:image/png;base64," in html
    assert f"{100 * r.mean_rel_error:.2f}%" in html
    assert (tmp_path / FIGURE_NAME).stat().st_size > 1000


def test_backtest_command_reads_a_store(size_store, capsys):
    rc = main(["backtest", str(size_store), "--holdout", "largest", "--form", "kaplan_n", "--bootstrap", "20",
               "--json"])
    d = json.loads(capsys.readouterr().out)
    sd = StudyData.from_store(size_store)
    assert rc == 0 and d["form"] == "kaplan_n"
    assert len(d["points"]) == 1 and d["points"][0]["n"] == sd.runs["N"].max()
    # five runs are too few for the five parameters of Chinchilla's law: one line, exit 2, the store intact
    assert main(["backtest", str(size_store), "--holdout", "largest", "--form", "chinchilla"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "need at least" in err
    assert len(StudyData.from_store(size_store).runs) == 5


def test_section_without_results_says_why(tmp_path):
    from scalinglab.analysis.backtest import PredictedBeforeSeen

    html = backtest_section(PredictedBeforeSeen(notes=["no finished runs"]), tmp_path)
    assert "no finished runs" in html and "<img" not in html
