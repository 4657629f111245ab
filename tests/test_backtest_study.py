"""The study-level "predicted before seen" backtest and its report section, on a real store of tiny runs."""

from __future__ import annotations

import json
import re

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


SIZES = [(1, 8), (1, 16), (2, 16), (2, 24), (2, 40)]  # (n_layer, d_model), smallest to largest


def train_study(path, dataset, subsets=(3_000, 8_000)):
    """A study of tiny runs: five sizes on the full budget (role sizes) and the four smaller ones on two
    repeated data subsets (role subsets): five values of N and three of D, as L(N, D) needs."""
    runs = []
    for i, (n_layer, d_model) in enumerate(SIZES):
        shape = dict(n_layer=n_layer, d_model=d_model, n_head=2)
        runs.append((shape, ["sizes"]))
        if i < len(SIZES) - 1:
            runs += [(dict(shape, d_unique=u), ["subsets"]) for u in subsets]
    return train_store(path, dataset, "s", runs, n_ctx=32, tokens=24_000, batch_size=8, n_evals=4,
                       eval_tokens=2048)


@pytest.fixture(scope="module")
def study_store(byte_dataset, tmp_path_factory):
    return train_study(tmp_path_factory.mktemp("study") / "s.sqlite", byte_dataset)


@pytest.mark.slow(seconds=45)
def test_every_study_report_predicts_before_it_sees(study_store, tmp_path):
    """The report of a real store: L(N, D) fitted without the largest size, and without the largest D, asked for
    those runs; the section shows what the analysis measured, its figure, and is read back from its cache."""
    from scalinglab.analysis import analyze
    from scalinglab.report.html import write_report

    rep = write_report(study_store, tmp_path / "out", n_resamples=60)
    pbs = rep.analysis.predicted
    sd = rep.analysis.data
    page = rep.path.read_text()
    assert re.search(r"<h2[^>]*>Predicted before seen</h2>", page)  # the heading, whatever its anchor id
    assert (tmp_path / "out" / FIGURE_NAME).stat().st_size > 1000
    # largest N: the one full-budget run of the largest model, fitted by auto on the four smaller sizes
    r = pbs.by_size
    big = sd.main.loc[sd.main["N"].idxmax()]
    assert r is not None and r.n_points == 1 and r.points["n"].iloc[0] == big["N"]
    assert r.points["actual"].iloc[0] == pytest.approx(big["loss"])
    assert r.form.startswith("auto: ") and "largest N" in pbs.choices and pbs.choices["largest N"] in page
    assert r.n_fit_points == len(sd.main) - 1 + len(sd.subsets)
    # largest D: the five full-budget runs, predicted from the subset runs alone
    d = pbs.by_data
    assert d is not None and d.n_points == len(SIZES)
    assert sorted(d.points["n"]) == sorted(sd.main["N"]) and (d.points["d"] == sd.main["D"].iloc[0]).all()
    for res in (r, d):
        p = res.points
        assert np.all(np.isfinite(p[["predicted", "low", "high"]].to_numpy()))
        assert ((p["low"] <= p["predicted"]) & (p["predicted"] <= p["high"])).all()
        assert res.mean_rel_error == pytest.approx(np.mean(np.abs(p["predicted"] / p["actual"] - 1)))
        assert f"{100 * res.mean_rel_error:.2f}%" in page and f"{100 * res.max_rel_error:.2f}%" in page
        for row in p.itertuples():
            assert f"<td>{row.actual:.4f}</td><td>{row.predicted:.4f}</td>" in page
    # a second report of the same runs reads the backtests back instead of refitting them
    cached = analyze(study_store, n_resamples=60, cache=tmp_path / "out" / "fits.json").predicted
    assert cached.by_size.points["predicted"].tolist() == r.points["predicted"].tolist()
    assert cached.choices == pbs.choices
    assert (tmp_path / "out" / "backtest.json").is_file()


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
