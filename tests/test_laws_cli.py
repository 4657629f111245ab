"""The fit command and fit_law on bad input: one line, exit 2; non-convergence is reported, never hidden."""

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli import main
from scalinglab.errors import DataError, FitError
from scalinglab.laws import FittedLaw, FitWarning, fit_law


def chinchilla_csv(tmp_path, n=30, seed=0, **edits):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
    loss = (1.8 + 480 / N ** 0.35 + 2000 / D ** 0.37) * np.exp(0.01 * rng.standard_normal(n))
    df = pd.DataFrame({"params": N, "tokens": D, "loss": loss, "run": np.arange(n)})
    for col, (row, value) in edits.items():
        df.loc[row, col] = value
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    return path


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_fit_json_has_the_promised_keys(tmp_path, capsys):
    path = chinchilla_csv(tmp_path)
    rc, out, err = run_cli(capsys, "fit", str(path), "--form", "chinchilla", "--n", "params", "--d", "tokens",
                           "--loss", "loss", "--run", "run", "--n-resamples", "50", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert {"form", "params", "ci95", "n_points", "converged"} <= set(d)
    assert d["form"] == "chinchilla" and d["n_points"] == 30 and d["converged"] is True
    assert set(d["params"]) == {"E", "A", "B", "alpha", "beta"}
    for name, (lo, hi) in d["ci95"].items():
        assert lo <= d["params"][name] <= hi
    law = FittedLaw.from_dict(d)  # the JSON round-trips into a usable law
    assert law.predict(N=1e9, D=1e11)[0] == pytest.approx(1.8 + 480 / 1e9 ** 0.35 + 2000 / 1e11 ** 0.37, rel=0.03)


def test_fit_table_prints_formula(tmp_path, capsys):
    path = chinchilla_csv(tmp_path)
    rc, out, _ = run_cli(capsys, "fit", str(path), "--n", "params", "--d", "tokens", "--bootstrap", "20")
    assert rc == 0
    assert "alpha" in out and "95% low" in out
    assert re.search(r"L\(N, D\) = [0-9.]+ \+ [0-9.]+/N\^0\.3", out)


@pytest.mark.parametrize("edits, argv, words", [
    ({}, ["--n", "nope"], "no column 'nope'"),
    ({"loss": (3, np.nan)}, [], "missing or non-numeric"),
    ({"params": (2, -5.0)}, [], "non-positive"),
    ({"tokens": (4, 0.0)}, [], "non-positive"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, edits, argv, words):
    path = chinchilla_csv(tmp_path, **edits)
    args = ["fit", str(path), "--n", "params", "--d", "tokens", "--bootstrap", "1"]
    rc, out, err = run_cli(capsys, *(args + argv))
    assert rc == 2
    assert words in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_too_few_points(tmp_path, capsys):
    path = chinchilla_csv(tmp_path, n=5)
    rc, _, err = run_cli(capsys, "fit", str(path), "--n", "params", "--d", "tokens")
    assert rc == 2 and "5 usable points" in err and "5 parameters" in err


def test_missing_file_and_garbage_file(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "fit", str(tmp_path / "absent.csv"))
    assert rc == 2 and "no such file" in err
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    rc, _, err = run_cli(capsys, "fit", str(bad))
    assert rc == 2 and "cannot be read" in err


def test_non_converged_fit_says_so(tmp_path, capsys):
    path = chinchilla_csv(tmp_path)
    with pytest.warns(FitWarning, match="did not converge"):
        law = fit_law(path, n="params", d="tokens", max_iter=2, n_resamples=10)
    assert law.converged is False
    assert "did NOT converge" in law.summary()
    assert law.n_resamples == 0  # no intervals pretending to be good
    with pytest.raises(FitError, match="did not converge"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_law(path, n="params", d="tokens", max_iter=2, n_resamples=0, strict=True)
    rc, out, err = run_cli(capsys, "fit", str(path), "--n", "params", "--d", "tokens", "--max-iter", "2",
                           "--json")
    assert rc == 1
    assert json.loads(out)["converged"] is False and "did not converge" in err


def test_python_api_errors_are_scalinglab_errors():
    with pytest.raises(DataError):
        fit_law(pd.DataFrame({"N": [1e6, 2e6], "loss": [3.0, 2.9]}), form="chinchilla")
    with pytest.raises(FitError, match="unknown law form"):
        fit_law(pd.DataFrame({"N": [1.0]}), form="nonsense")


def test_forms_print_like_the_paper():
    from scalinglab.laws import get_form

    assert get_form("kaplan_n").text({"N_c": 8.8e13, "alpha_N": 0.076}) == "L(N) = (8.8e13 / N)^0.076"
    assert get_form("kaplan_ns").text() == "L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S"
    assert get_form("bcrit").text({"B_star": 2e8, "alpha_B": 0.21}) == "B_crit(L) = 2e8/L^(1/0.21)"
    assert r"\frac{A}{N^{\alpha}}" in get_form("chinchilla").latex()
    assert get_form("kaplan_cmin").text() == "L(C_min) = (C_c^min/C_min)^alpha_C_min"


# ------------------------------------------------------------------------------------------------ form options


def two_dataset_csv(tmp_path, n=24):
    """Runs on two datasets with one irreducible loss (1.8), each with its own reducible terms; half the runs of
    the second dataset repeat a 3e9-token subset (column `unique`; the others saw each token once)."""
    rng = np.random.default_rng(7)
    rows = []
    for ds, (A, a) in (("web", (480.0, 0.35)), ("code", (300.0, 0.3))):
        N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
        D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
        loss = (1.8 + A / N ** a + 2000 / D ** 0.37) * np.exp(0.005 * rng.standard_normal(n))
        rows.append(pd.DataFrame({"params": N, "tokens": D, "loss": loss, "dataset": ds, "unique": D}))
    return pd.concat(rows, ignore_index=True)


def test_fit_takes_what_the_chinchilla_forms_need(tmp_path, capsys):
    df = two_dataset_csv(tmp_path)
    path = tmp_path / "two.csv"
    df.to_csv(path, index=False)
    base = ["fit", str(path), "--n", "params", "--d", "tokens", "--loss", "loss", "--bootstrap", "10", "--json"]
    # E fixed: stays at the value given, in the estimate and in every bootstrap draw
    rc, out, err = run_cli(capsys, *base, "--form", "chinchilla_tied", "--fix-e", "1.75")
    d = json.loads(out)
    assert rc == 0, err
    assert d["params"]["E"] == pytest.approx(1.75) and d["form_options"] == {"fix_e": 1.75}
    assert d["params"]["alpha"] == d["params"]["beta"]
    # the groups of the shared-E form
    rc, out, err = run_cli(capsys, *base, "--form", "chinchilla_shared_e", "--by", "dataset")
    d = json.loads(out)
    assert rc == 0, err
    assert d["form_options"] == {"groups": ["web", "code"]} and abs(d["params"]["E"] - 1.8) < 0.2
    # the unique-tokens column of the data-constrained form (here with E fixed too: the options combine); a
    # table without a column of a default name needs it, and says so
    df.loc[::2, "unique"] = df.loc[::2, "tokens"] / 8
    df.to_csv(path, index=False)
    rc, out, err = run_cli(capsys, *base, "--form", "data_constrained", "--u", "unique", "--fix-e", "1.8")
    d = json.loads(out)
    assert rc == 0, err
    assert d["form"] == "data_constrained" and d["columns"]["U"] == "unique" and d["params"]["E"] == 1.8
    rc, _, err = run_cli(capsys, *base, "--form", "data_constrained")
    assert rc == 2 and "name it with --u COL" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["fit", "backtest"])
@pytest.mark.parametrize("argv, words", [
    (["--form", "chinchilla", "--fix-e", "abc"], "not a number"),
    (["--form", "chinchilla", "--fix-e", "-1"], "positive number"),
    (["--form", "chinchilla", "--fix-e", "nan"], "positive number"),
    (["--form", "kaplan_nd", "--fix-e", "1.7"], "has no such E"),
    (["--form", "chinchilla", "--u", "unique"], "does not use it"),
    (["--form", "data_constrained", "--u", "nope"], "no column 'nope'"),
    (["--form", "chinchilla_shared_e"], "name their column"),
    (["--form", "chinchilla_shared_e", "--by", "nope"], "no column 'nope'"),
])
def test_bad_form_options_are_one_line_exit_2(tmp_path, capsys, command, argv, words):
    path = tmp_path / "two.csv"
    two_dataset_csv(tmp_path).to_csv(path, index=False)
    extra = ["--holdout", "N > 5e9"] if command == "backtest" else []
    rc, out, err = run_cli(capsys, command, str(path), "--n", "params", "--d", "tokens", "--loss", "loss",
                           "--bootstrap", "1", *extra, *argv)
    assert rc == 2, (out, err)
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_fit_by_is_for_the_shared_e_form_only(tmp_path, capsys):
    path = tmp_path / "two.csv"
    two_dataset_csv(tmp_path).to_csv(path, index=False)
    rc, _, err = run_cli(capsys, "fit", str(path), "--n", "params", "--d", "tokens", "--by", "dataset")
    assert rc == 2 and "--run" in err and len(err.strip().splitlines()) == 1


def test_the_form_registry_is_what_the_command_offers_and_explains(capsys):
    from scalinglab.laws.forms import FIX_E_FORMS, FORM_NAMES, FORMS, form_help, get_form

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for name in FORMS:  # every registered form is listed with its title and formula, as the registry writes it
        assert f"  {name:<20} {form_help(name)}" in text, name
        assert get_form(name).name == name
    with pytest.raises(SystemExit) as exc:
        main(["fit", "runs.csv", "--form", "not_a_form"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and all(f"'{name}'" in err for name in FORM_NAMES)
    assert FIX_E_FORMS == ("chinchilla", "chinchilla_tied", "data_constrained")
    with pytest.raises(FitError, match="applies to chinchilla, chinchilla_tied and data_constrained, not 'kaplan_nd'"):
        get_form("kaplan_nd", fix_e=1.7)


def test_older_option_names_still_work_and_are_not_listed(tmp_path, capsys):
    path = chinchilla_csv(tmp_path)
    cols = ("fit", str(path), "--n", "params", "--d", "tokens", "--loss", "loss", "--json")
    rc, new, _ = run_cli(capsys, *cols, "--run", "run", "--n-resamples", "20", "--huber-delta", "0.01")
    rc_old, old, _ = run_cli(capsys, *cols, "--group", "run", "--bootstrap", "20", "--delta", "0.01")
    assert rc == rc_old == 0 and json.loads(new) == json.loads(old) and json.loads(new)["huber_delta"] == 0.01
    assert json.loads(new)["n_groups"] == 30  # the run column was read (rows of one run are resampled together)
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "--n-resamples" in text and "--run" in text and "--huber-delta" in text
    assert "--bootstrap" not in text and "--group" not in text and "--delta " not in text
    law = fit_law(path, n="params", d="tokens", loss="loss", group="run", delta=0.01, n_resamples=20)
    assert law.to_dict() == json.loads(new)  # the API takes the older keywords too, as the same fit
    with pytest.raises(TypeError, match="twice"):
        fit_law(path, n="params", group="run", run="run")
