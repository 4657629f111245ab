"""The planner: the compute-optimal allocation of published and fitted laws, intervals from a fitted law's
bootstrap draws, law files (`fit --json`, a study's fits.json), units, Kaplan's checks, the result protocol."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli import main
from scalinglab.laws import fit_law
from scalinglab.laws.forms import get_form
from scalinglab.planner import Plan, kaplan_size_penalty, overfit_threshold, parse_compute, plan_compute
from scalinglab.published import CHINCHILLA2022, KAPLAN2020_LAWS

TRUE = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}


def chinchilla_runs(n=40, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
    loss = (TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]) * \
        np.exp(noise * rng.standard_normal(n))
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


@pytest.fixture(scope="module")
def law_file(tmp_path_factory):
    """`scalinglab fit --json` on synthetic Chinchilla-form runs, as a user would write it."""
    path = tmp_path_factory.mktemp("law") / "runs.csv"
    chinchilla_runs().to_csv(path, index=False)
    law = fit_law(path, n_resamples=100, seed=0)
    out = path.with_name("law.json")
    out.write_text(json.dumps(law.to_dict()))
    return out


def loss_along_budget(form, params, C, N):
    return float(form.predict(params, {"N": np.array([N]), "D": np.array([C / (6 * N)])})[0])


@pytest.mark.parametrize("law", ["chinchilla2022", "epoch2024"])
def test_published_plan_is_the_minimum_along_the_budget(law, capsys):
    rc = main(["plan", "--compute", "5.76e23", "--law", law, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["kind"] == "Plan" and out["converged"]
    p = out["params"]
    C = 5.76e23
    assert 6 * p["N_opt"] * p["D_opt"] == pytest.approx(C, rel=1e-9)
    from scalinglab.published import PUBLISHED

    params, form = PUBLISHED[law][1], get_form("chinchilla")
    best = loss_along_budget(form, params, C, p["N_opt"])
    assert best == pytest.approx(p["loss"], rel=1e-12)
    for x in (0.8, 0.95, 1.05, 1.25):  # any other split of the same compute is worse
        assert loss_along_budget(form, params, C, x * p["N_opt"]) > best
    assert p["steps"] == pytest.approx(p["D_opt"] / p["B_crit"])
    assert all(v == [None, None] for v in out["ci"].values())  # published constants: no intervals


def test_chinchilla2022_exponent_is_the_papers():
    # N_opt ~ C^a with a = beta/(alpha+beta) = 0.28/0.62 for the paper's rounded constants (their eq. 4)
    n1, n2 = plan_compute(1e21).N_opt, plan_compute(1e23).N_opt
    assert math.log(n2 / n1) / math.log(100) == pytest.approx(
        CHINCHILLA2022["beta"] / (CHINCHILLA2022["alpha"] + CHINCHILLA2022["beta"]), rel=1e-6)


def test_plan_table_and_units(capsys):
    assert main(["plan", "--compute", "3e3PF-days", "--law", "epoch2024"]) == 0
    text = capsys.readouterr().out
    assert "N_opt" in text and "expected loss" in text and "overfitting" in text
    assert parse_compute("3e3PF-days") == pytest.approx(3e3 * 8.64e19)
    assert parse_compute("1e21 FLOP") == 1e21
    assert main(["plan", "--compute", "lots"]) == 2
    assert "compute 'lots'" in capsys.readouterr().err


def test_plan_from_a_fit_json_file_propagates_intervals(law_file, capsys):
    assert main(["plan", "--compute", "1e22", "--law", str(law_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"].startswith("fitted: L(N, D)")
    assert out["n_resamples"] == 100 and out["n_resamples_ok"] >= 90
    for q in ("N_opt", "D_opt", "loss", "B_crit", "steps"):
        lo, hi = out["ci"][q]
        assert lo < out["params"][q] < hi, q
        assert out["se"][q] > 0
    # the user's law, not the published one: the plan follows the fitted exponents
    published = plan_compute("1e22", "chinchilla2022")
    assert out["params"]["N_opt"] != pytest.approx(published.N_opt, rel=0.05)
    # and the law's truth lies inside the interval of N_opt (the data were made from TRUE with 1% noise)
    truth = plan_compute("1e22", {"form": "chinchilla", "params": TRUE, "converged": True})
    lo, hi = out["ci"]["N_opt"]
    assert lo < truth.N_opt < hi
    assert all(math.isnan(v) for v in truth.ci["N_opt"])  # a law without bootstrap draws: no interval


def test_interval_narrows_with_more_data(tmp_path):
    widths = []
    for n, noise in ((20, 0.03), (200, 0.005)):
        law = fit_law(chinchilla_runs(n, seed=1, noise=noise), n_resamples=100, seed=0)
        lo, hi = plan_compute(1e22, law).ci["N_opt"]
        widths.append(math.log(hi / lo))
    assert widths[1] < widths[0] / 2


def test_plan_from_a_study_fits_json_uses_its_law_of_n_and_d(tmp_path, capsys):
    """A study's report/fits.json holds several laws; the planner takes its one law of N and D (Kaplan's eq. 1.5
    here), minimised numerically along 6 N D = C."""
    rng = np.random.default_rng(2)
    K = KAPLAN2020_LAWS["L(N,D)"]
    form = get_form("kaplan_nd")
    N = np.exp(rng.uniform(np.log(1e6), np.log(1e9), 60))
    D = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 60))
    loss = form.predict(K, {"N": N, "D": D}) * np.exp(0.005 * rng.standard_normal(60))
    nd = fit_law(pd.DataFrame({"N": N, "D": D, "loss": loss}), form="kaplan_nd", n_resamples=60)
    ln = fit_law(pd.DataFrame({"N": N, "loss": loss}), form="kaplan_n", n_resamples=0)
    fits = {"L(N)": {"fingerprint": "a", "law": ln.to_dict()}, "L(N,D)": {"fingerprint": "b", "law": nd.to_dict()}}
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits))
    assert main(["plan", "--compute", "1e20", "--law", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "Kaplan" not in out["law"] and out["law"].startswith("fitted: L(N, D) = [")
    C, p = 1e20, out["params"]
    best = loss_along_budget(form, nd.params, C, p["N_opt"])
    assert best == pytest.approx(p["loss"], rel=1e-6)
    for x in (0.9, 1.1):
        assert loss_along_budget(form, nd.params, C, x * p["N_opt"]) > best
    assert out["overfitting"]["law"] == "Kaplan eq. 4.3 with the fitted L(N, D)"
    lo, hi = out["ci"]["N_opt"]
    assert lo < p["N_opt"] < hi
    # naming a law that cannot plan, or one the file does not hold: one line, exit 2
    assert main(["plan", "--compute", "1e20", "--law", str(path), "--law-key", "L(N)"]) == 2
    assert "needs a law of model size N and tokens D" in capsys.readouterr().err
    assert main(["plan", "--compute", "1e20", "--law", str(path), "--law-key", "L(Q)"]) == 2
    assert "no law 'L(Q)'" in capsys.readouterr().err
    # a study without data subsets has no law of N and D: said, with what to do
    path.write_text(json.dumps({"L(N)": fits["L(N)"]}))
    assert main(["plan", "--compute", "1e20", "--law", str(path)]) == 2
    assert "no converged law of N and D to plan with (it holds L(N))" in capsys.readouterr().err


@pytest.mark.parametrize("content, words", [
    (None, "cannot read a fitted law"),
    ("not json", "cannot read a fitted law"),
    ('{"a": 1}', "holds no fitted law"),
    ('[1, 2]', "not a fitted law"),
    ('{"form": "chinchilla", "params": {"E": 1}}', "missing or has a bad field"),
    ('{"form": "chinchilla", "params": {"E": 1.8, "A": 480, "B": 2000, "alpha": 0.35, "beta": 0.37}, '
     '"converged": false, "message": "max iterations"}', "did not converge"),
])
def test_bad_law_file_is_one_line_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "law.json"
    if content is not None:
        path.write_text(content)
    assert main(["plan", "--compute", "1e21", "--law", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_plan_with_a_fitted_critical_batch_law(law_file, tmp_path, capsys):
    L = np.linspace(3.0, 5.0, 8)
    rng = np.random.default_rng(3)
    bc = 1e8 / L ** (1 / 0.3) * np.exp(0.02 * rng.standard_normal(8))
    bcrit = fit_law(pd.DataFrame({"L": L, "B_crit": bc}), form="bcrit", loss="B_crit", l="L", n_resamples=0)
    path = tmp_path / "bcrit.json"
    path.write_text(json.dumps(bcrit.to_dict()))
    assert main(["plan", "--compute", "1e22", "--law", str(law_file), "--bcrit-json", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"]["B_crit"] == pytest.approx(bcrit.predict(L=[out["params"]["loss"]])[0])
    assert not any("Kaplan's B*" in n for n in out["notes"])
    # a law of another kind given as the critical-batch law: one line, exit 2
    assert main(["plan", "--compute", "1e22", "--bcrit-json", str(law_file)]) == 2
    assert "must be a B_crit(L) fit" in capsys.readouterr().err


def test_plan_follows_the_result_protocol(law_file):
    p = plan_compute("1e22", str(law_file))
    assert isinstance(p, Plan)
    for attr in ("params", "ci", "se", "converged", "message", "n_points", "n_resamples", "n_resamples_ok"):
        assert hasattr(p, attr)
    assert p.n_points == 40 and p.converged
    back = Plan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back.params == pytest.approx(p.params) and back.ci["N_opt"] == pytest.approx(p.ci["N_opt"])
    assert back.size_penalty == pytest.approx(p.size_penalty)
    # predict: the loss at the optimum of other budgets; more compute, lower loss, this budget's own value
    l1, l2 = p.predict([1e22, 1e24])
    assert l1 == pytest.approx(p.loss) and l2 < l1
    assert "N_opt" in p.summary() and "early-stopping step" in p.summary()


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
    # a model far too small can never reach the optimal loss: infinite compute, said as such
    assert plan_compute("1e21", "chinchilla2022", size_factors=(1e-4,)).size_penalty[1e-4] == math.inf


def test_every_chinchilla_family_form_plans_with_intervals(tmp_path, capsys):
    """Tied exponents, a fixed E, the over-training form, the data-constrained form and one group of a shared-E
    law all plan by Chinchilla's allocation; each plan is the minimum of that law along 6 N D = C, with the
    law's bootstrap carried into N_opt, D_opt and the loss."""
    runs = chinchilla_runs(40, seed=4)
    two = pd.concat([runs.assign(ds="web"),
                     chinchilla_runs(40, seed=5).assign(ds="code", loss=lambda f: f["loss"] * 1.05)],
                    ignore_index=True)
    C = 1e22
    cases = {"chinchilla_tied": fit_law(runs, "chinchilla_tied", n_resamples=40, grid="quick"),
             "fix_e": fit_law(runs, "chinchilla", fix_e=1.8, n_resamples=40, grid="quick"),
             "overtrain": fit_law(runs, "overtrain", n_resamples=40, grid="quick"),
             "data_constrained": fit_law(runs.assign(U=runs["D"]), "data_constrained", n_resamples=40,
                                         grid="quick"),
             "chinchilla_shared_e": fit_law(two, "chinchilla_shared_e", by="ds", n_resamples=40)}
    plans = {}
    for name, law in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(law.to_dict()))
        argv = ["plan", "--compute", str(C), "--law", str(path), "--json"]
        if name == "chinchilla_shared_e":
            argv += ["--law-key", "code"]
        assert main(argv) == 0, name
        out = plans[name] = json.loads(capsys.readouterr().out)
        p = out["params"]
        assert 6 * p["N_opt"] * p["D_opt"] == pytest.approx(C, rel=1e-9)

        def loss(N, law=law):  # the law in its own form and variables
            X = {"N": np.array([N]), "D": np.array([C / (6 * N)])}
            if "U" in law.form.inputs:
                X["U"] = X["D"]
            if "G" in law.form.inputs:
                X["G"] = np.array([1.0])  # group "code"
            return float(law.form.predict(law.params, X)[0])

        assert loss(p["N_opt"]) == pytest.approx(p["loss"], rel=1e-9), name
        assert loss(0.8 * p["N_opt"]) > p["loss"] and loss(1.25 * p["N_opt"]) > p["loss"], name
        assert out["n_resamples_ok"] >= 30, name
        for q in ("N_opt", "D_opt", "loss"):
            lo, hi = out["ci"][q]
            assert lo < p[q] < hi, (name, q)
    # the over-training form is the tied law in other variables: the same plan
    assert plans["overtrain"]["params"]["N_opt"] == pytest.approx(plans["chinchilla_tied"]["params"]["N_opt"],
                                                                  rel=0.02)
    assert any("fresh tokens" in n for n in plans["data_constrained"]["notes"])
    assert any("group code" in n for n in plans["chinchilla_shared_e"]["notes"])


def test_forms_without_an_allocation_are_one_line_exit_2(tmp_path, capsys):
    runs = chinchilla_runs(30, seed=6)
    shared = fit_law(pd.concat([runs.assign(ds="a"), runs.assign(ds="b")], ignore_index=True),
                     "chinchilla_shared_e", by="ds", n_resamples=0)
    power = fit_law(runs[["N", "loss"]], "kaplan_n", n_resamples=0)
    for law, extra, words in ((power, [], "needs a law of model size N and tokens D"),
                              (shared, [], "name one with --law-key GROUP"),
                              (shared, ["--law-key", "c"], "no group 'c'")):
        path = tmp_path / "law.json"
        path.write_text(json.dumps(law.to_dict()))
        assert main(["plan", "--compute", "1e21", "--law", str(path), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
