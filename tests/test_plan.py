"""The planner: published constants give the closed-form Chinchilla allocation; units; Kaplan's checks."""

import json

import pytest

from scalinglab.cli import main
from scalinglab.plan import kaplan_size_penalty, overfit_threshold, parse_compute, plan_compute


def test_plan_chinchilla2022_matches_closed_form(capsys):
    rc = main(["plan", "--compute", "5.76e23", "--law", "chinchilla2022", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    # Hoffmann et al. eq. 4: N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, G = (alpha A / (beta B))^(1/(alpha+beta))
    E, A, B, alpha, beta = 1.69, 406.4, 410.7, 0.34, 0.28
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    C = 5.76e23
    assert out["N_opt"] == pytest.approx(G * (C / 6) ** a, rel=1e-9)
    assert out["D_opt"] == pytest.approx((C / 6) ** b / G, rel=1e-9)
    assert 6 * out["N_opt"] * out["D_opt"] == pytest.approx(C, rel=1e-9)
    assert out["loss"] == pytest.approx(E + A / out["N_opt"] ** alpha + B / out["D_opt"] ** beta)
    assert out["steps"] == pytest.approx(out["D_opt"] / out["B_crit"])


def test_plan_table_and_units(capsys):
    assert main(["plan", "--compute", "3e3PF-days", "--law", "epoch2024"]) == 0
    text = capsys.readouterr().out
    assert "N_opt" in text and "expected loss" in text
    assert parse_compute("3e3PF-days") == pytest.approx(3e3 * 8.64e19)
    assert parse_compute("1e21 FLOP") == 1e21
    assert main(["plan", "--compute", "lots"]) == 2
    assert "compute 'lots'" in capsys.readouterr().err


def test_plan_with_a_fitted_law(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 40))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), 40))
    loss = (1.8 + 480 / N ** 0.35 + 2000 / D ** 0.37) * np.exp(0.01 * rng.standard_normal(40))
    pd.DataFrame({"N": N, "D": D, "loss": loss}).to_csv(tmp_path / "r.csv", index=False)
    assert main(["fit", str(tmp_path / "r.csv"), "--bootstrap", "60", "--json"]) == 0
    (tmp_path / "law.json").write_text(capsys.readouterr().out)
    assert main(["plan", "--compute", "1e22", "--fit-json", str(tmp_path / "law.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lo, hi = out["ci95"]["N_opt"]
    assert lo <= out["N_opt"] <= hi
    lo, hi = out["ci95"]["loss"]
    assert lo <= out["loss"] <= hi


def test_kaplan_checks():
    # eq. 4.4: D >= 5e3 N^0.74 from the L(N, D) constants at 2% tolerance
    k, ex = overfit_threshold(6.4e13, 1.8e13, 0.076, 0.103, 0.02)
    assert ex == pytest.approx(0.74, abs=0.005)
    assert 4e3 < k < 7e3
    # models 0.6x - 2.2x the optimal size cost about 20% more compute (Kaplan section 6.1)
    assert kaplan_size_penalty(1.0) == pytest.approx(1.0)
    assert 1.1 < kaplan_size_penalty(0.6) < 1.3 and 1.1 < kaplan_size_penalty(2.2) < 1.3
    p = plan_compute("1e21", "chinchilla2022", size_factors=(1.0, 0.5, 2.0))
    assert p.size_penalty[1.0] == pytest.approx(1.0)
    assert p.size_penalty[0.5] > 1 and p.size_penalty[2.0] > 1
    assert p.early_stopping_step > 0
