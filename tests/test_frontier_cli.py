"""`scalinglab frontier`: any CSV of runs to compute-optimal exponents, per group, and one line on bad input."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_frontier import A_TRUE, K, grid

from scalinglab.cli import main


@pytest.fixture()
def runs_csv(tmp_path):
    plain = grid(seed=0).assign(setting="plain")
    recount = grid(lambda N: 6 * (N + K), seed=1).assign(setting="recount")
    path = tmp_path / "runs.csv"
    pd.concat([plain, recount]).to_csv(path, index=False)
    return path


def run_json(capsys, *argv):
    rc = main(["frontier", *map(str, argv), "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_json_per_group(runs_csv, capsys):
    rc, out = run_json(capsys, runs_csv, "--n", "N", "--c", "C", "--loss", "loss", "--group", "setting",
                       "--bootstrap", "300")
    assert rc == 0 and set(out) == {"plain", "recount"}
    p, r = out["plain"], out["recount"]
    for key in ("approach", "n_exponent", "n_exponent_ci", "d_exponent", "d_exponent_ci", "budgets_used",
                "budgets_unbracketed"):
        assert key in p
    assert p["approach"] == 2
    assert p["n_exponent_ci"][0] <= A_TRUE <= p["n_exponent_ci"][1]
    assert len(p["budgets_used"]) == 5 and p["budgets_unbracketed"] == [pytest.approx(1e17)]
    # the per-token cost that weighs more on small models lowers the exponent, beyond the intervals
    assert r["n_exponent_ci"][1] < p["n_exponent_ci"][0]


def test_tokens_column_means_six_n_d(runs_csv, capsys):
    _, by_c = run_json(capsys, runs_csv, "--n", "N", "--c", "C6", "--loss", "loss", "--bootstrap", "50",
                       "--group", "setting")
    _, by_d = run_json(capsys, runs_csv, "--n", "N", "--d", "D", "--loss", "loss", "--bootstrap", "50",
                       "--group", "setting", "--budget", "C")
    assert by_d["plain"]["n_exponent"] == pytest.approx(by_c["plain"]["n_exponent"], abs=1e-9)


def test_envelope_approach(runs_csv, capsys):
    rc, out = run_json(capsys, runs_csv, "--n", "N", "--c", "C", "--loss", "loss", "--approach", "1",
                       "--group", "setting", "--bootstrap", "100")
    assert rc == 0 and out["plain"]["approach"] == 1
    assert out["plain"]["n_exponent"] == pytest.approx(A_TRUE, abs=0.1)


def test_a_group_without_bracketed_budgets_fails_alone(tmp_path, capsys):
    good = grid().assign(setting="good")
    bad = grid(unbracketed=range(6)).assign(setting="bad")
    path = tmp_path / "runs.csv"
    pd.concat([good, bad]).to_csv(path, index=False)
    rc, out = run_json(capsys, path, "--n", "N", "--c", "C", "--loss", "loss", "--group", "setting",
                       "--bootstrap", "50")
    assert rc == 1
    assert "bracket" in out["bad"]["error"] and out["good"]["n_exponent"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--n", "size", "--c", "C", "--loss", "loss"], "no column 'size' for --n"),
    (["--n", "N", "--loss", "loss"], "give the compute"),
    (["--n", "N", "--c", "note", "--loss", "loss"], "non-numeric"),
])
def test_bad_input_is_one_line_and_exit_2(runs_csv, tmp_path, argv, message):
    df = pd.read_csv(runs_csv)
    df["note"] = np.where(np.arange(len(df)) == 3, "n/a", "1e15")
    path = tmp_path / "with_note.csv"
    df.to_csv(path, index=False)
    proc = subprocess.run([sys.executable, "-m", "scalinglab.cli", "frontier", str(path), *argv],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_file_exit_2(tmp_path, capsys):
    assert main(["frontier", str(tmp_path / "nope.csv"), "--n", "N", "--c", "C", "--loss", "loss"]) == 2
    assert "no such file" in capsys.readouterr().err
