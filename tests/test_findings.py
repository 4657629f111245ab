"""Findings checks and figures on a real store of tiny runs: shapes at one N, sizes, a data subset."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import train_store

from scalinglab.training.config import RunConfig
from scalinglab.report.figures import make_figures
from scalinglab.analysis.study_laws import compute_frontier, fit_study
from scalinglab.analysis.study_data import StudyData
from scalinglab.store import RunStore
from scalinglab.analysis.findings import NOT_MEASURED, VERDICTS, check_findings
from scalinglab.training.trainer import train_run


@pytest.fixture(scope="module")
def tiny_store(byte_dataset, tmp_path_factory):
    shapes = [(1, 48, 4), (2, 34, 2), (3, 28, 4), (1, 16, 2)]  # the first three: N ~ 2.8e4, shapes differ
    runs = [(dict(n_layer=n_layer, d_model=d_model, n_head=n_head), ["sizes"] + (["shape"] if i < 3 else []))
            for i, (n_layer, d_model, n_head) in enumerate(shapes)]
    runs.append((dict(n_layer=2, d_model=34, n_head=2, d_unique=2_000), ["subsets"]))
    return train_store(tmp_path_factory.mktemp("findings") / "s.sqlite", byte_dataset, "t", runs, n_ctx=32,
                       tokens=40_000, batch_size=8, n_evals=8, eval_tokens=4096)


def test_roles_frontier_and_findings(tiny_store, tmp_path):
    sd = StudyData.from_store(tiny_store)
    assert len(sd.runs) == 5 and len(sd.subsets) == 1 and sd.subsets["repeats"].all()
    groups = sd.shape_groups()
    assert len(groups) == 1 and len(groups[0]) == 3  # the runs the spec gave the role 'shape', no others

    fr = compute_frontier(sd)  # the size sweep's curves
    assert len(fr) > 5
    # the envelope is never above any full-data run's curve where that curve is defined
    for rid, c in sd.curves[~sd.curves["repeats"].astype(bool)].groupby("run_id"):
        c = c[c["step"] >= 0.1 * c["S_total"]]
        inside = fr[(fr["C"] >= c["flop"].min()) & (fr["C"] <= c["flop"].max())]
        interp = np.interp(np.log(inside["C"]), np.log(c["flop"]), c["test_loss"])
        assert (inside["loss"].to_numpy() <= interp + 1e-9).all()

    fits = fit_study(sd, n_resamples=30)
    findings = check_findings(sd, fits)
    by = {f.number: f for f in findings}
    assert len(findings) == 13
    assert "3 shapes" in by[1].measured
    assert "tail" in by[5].measured and "slope" in by[5].measured  # the byte dataset's transfer set
    assert by[3].agrees == NOT_MEASURED  # one subset run at one size: no L(N, D) fit, and it says so
    for f in findings:
        assert f.agrees in VERDICTS
        assert f.reason  # every verdict, and every 'not measured', says why

    figs = {f.key: f for f in make_figures(sd, fits, tmp_path)}
    assert figs["fig5"].path is not None and figs["fig5"].path.stat().st_size > 1000
    assert figs["fig1"].path is not None
    assert figs["fig10"].path is None and "noise" in figs["fig10"].note  # no noise-scale runs: skipped, noted


def test_store_without_roles_gets_one_line(byte_dataset, tmp_path):
    from scalinglab.errors import StoreError

    store = RunStore(tmp_path / "old.sqlite")
    train_run(RunConfig(data=str(byte_dataset), n_ctx=32, tokens=4_000, batch_size=8, n_evals=2, eval_tokens=1024,
                        threads=1, n_layer=1, d_model=16, n_head=2), store=store, study="t")
    store.close()
    with pytest.raises(StoreError, match="no run in this store has a role"):
        StudyData.from_store(tmp_path / "old.sqlite")
