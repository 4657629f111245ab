"""Every input the tool cannot honour gets one line: a model too large for the machine's memory (before anything is
allocated), budgets a dry run sees rounded, a column named twice, an approach-2 window or a bootstrap count below 1,
a plan outside the law's range (a warning with the factor, in the table and the JSON), `data prepare --quiet`; and
Ctrl-C leaves a run 'interrupted', not 'running', and the rerun resumes it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import run_cli
from test_frontier import grid



def one_line(r, code: int = 2) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code and "Traceback" not in r.stderr, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1, lines
    return lines[0]


def test_memory_estimate_counts_what_training_holds():
    """Parameters, gradients and two AdamW moments are 4 values of 4 bytes per parameter; the activations grow
    with the micro-batch, and the estimate of a real tiny model stays far below a gigabyte."""
    from scalinglab.accounting import ModelShape, train_memory

    s = ModelShape(n_layer=2, d_model=64, n_head=4, n_ctx=64, vocab_size=1024)
    one, two = train_memory(s, 8), train_memory(s, 16)
    assert one["parameters"] == one["gradients"] == one["optimizer"] / 2
    assert two["activations"] == 2 * one["activations"] and two["parameters"] == one["parameters"]
    assert one["total"] == sum(v for k, v in one.items() if k != "total") < 1e9


def test_a_model_too_large_for_the_machine_is_one_line_before_allocation(byte_dataset, tmp_path):
    """`train --d-model 1e9` was a 29-line traceback from a 4 TB allocation; now one line, exit 2, and the store
    records no run."""
    store = tmp_path / "s.sqlite"
    line = one_line(run_cli("train", "--store", str(store), "--data", str(byte_dataset), "--d-model", "1e9",
                            "--n-head", "1", "--no-progress"))
    assert "needs about" in line and "more than the" in line and "smaller model" in line
    # a small model with an absurd batch: the activations are what does not fit, and the line says so
    line = one_line(run_cli("train", "--store", str(store), "--data", str(byte_dataset), "--d-model", "32",
                            "--n-head", "2", "--n-ctx", "256", "--batch-size", "1000000", "--no-progress"))
    assert "micro_batch_size" in line
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_dry_run_prints_memory_and_warns_of_rounded_budgets_and_runs_that_cannot_fit(byte_dataset, tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(f"""[study]
name = "big"
data = "{byte_dataset}"
store = "big.sqlite"
[base]
n_ctx = 64
tokens = 16_384
batch_size = 4096
warmup_steps = 10
[[axes]]
model = [
  {{ n_layer = 1, d_model = 16, n_head = 2 }},
  {{ n_layer = 100, d_model = 3_000_000, n_head = 4 }},
]
""")
    r = run_cli("study", "run", str(spec), "--dry-run", "--no-probe", env={"COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    assert "memory" in r.stdout and " TB !" in r.stdout  # the column, and the run that cannot fit marked
    warnings = [ln for ln in r.stdout.splitlines() if ln.startswith("warning:")]
    assert sum("below one batch (262,144 tokens): it trains one step, D=262,144" in w for w in warnings) == 2
    assert sum("fewer than its 10 warm-up steps" in w for w in warnings) == 2
    assert sum("cannot run here" in w for w in warnings) == 1
    # running it for real stops before anything is trained: one line, exit 2
    line = one_line(run_cli("study", "run", str(spec), "--no-progress", "--no-probe"))
    assert "n_layer100" in line and "needs about" in line


def test_a_column_named_twice_is_refused(tmp_path):
    df = grid(seed=0)
    path = tmp_path / "dup.csv"
    cols = list(df.columns) + ["loss"]
    pd.concat([df, df["loss"] + 0.5], axis=1).to_csv(path, index=False, header=cols)
    line = one_line(run_cli("fit", str(path), "--n", "N", "--loss", "loss"))
    assert "'loss' appears twice" in line
    assert "appears twice" in one_line(run_cli("frontier", str(path), "--n", "N", "--c", "C", "--loss", "loss"))


def test_window_and_bootstrap_below_one_are_refused(tmp_path):
    path = tmp_path / "runs.csv"
    grid(seed=0).to_csv(path, index=False)
    for w in ("0", "-1"):
        assert "window" in one_line(run_cli("frontier", str(path), "--n", "N", "--c", "C", "--loss", "loss",
                                            "--window", w))
    ok = run_cli("frontier", str(path), "--n", "N", "--c", "C", "--loss", "loss", "--window", "1",
                 "--bootstrap", "50")
    assert ok.returncode == 0, ok.stderr
    for argv in (["fit", str(path), "--n", "N", "--loss", "loss"],
                 ["frontier", str(path), "--n", "N", "--c", "C", "--loss", "loss"],
                 ["report", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "rep")],
                 ["reproduce", "--out", str(tmp_path / "repro")]):
        for k in ("0", "-5"):
            line = one_line(run_cli(*argv, "--bootstrap", k))  # --bootstrap: the older name of --n-resamples
            assert "--n-resamples" in line or "--bootstrap" in line, argv
    assert not (tmp_path / "rep").exists() and not (tmp_path / "repro").exists()  # refused before any work


def test_plan_outside_the_laws_range_warns_with_the_factor(capsys):
    r = run_cli("plan", "--compute", "1", "--json")
    assert r.returncode == 0, r.stderr
    ex = json.loads(r.stdout)["extrapolation"]
    assert ex["outside"] and ex["compute_range"] == [6e18, 3e21] and ex["factor"] == pytest.approx(6e18)
    assert "extrapolates" in ex["warning"]
    table = run_cli("plan", "--compute", "1", env={"COLUMNS": "200"})
    assert "OUTSIDE: 6e18x below" in table.stdout and "warning: C = 1 FLOP is outside" in table.stdout
    inside = json.loads(run_cli("plan", "--compute", "1e20", "--json").stdout)["extrapolation"]
    assert not inside["outside"] and inside["factor"] == 1.0
    above = json.loads(run_cli("plan", "--compute", "5.76e23", "--json").stdout)["extrapolation"]
    assert above["outside"] and above["factor"] == pytest.approx(5.76e23 / 3e21)


def test_data_prepare_quiet_is_quiet(tmp_path):
    from test_faults_outputs import corpus, prepare_args

    src = corpus(tmp_path)
    r = run_cli(*prepare_args(src, tmp_path / "ds"))  # prepare_args passes --quiet
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [r.stdout.strip()] and r.stdout.startswith("prepared ")
    assert r.stderr == ""
    loud = run_cli(*[a for a in prepare_args(src, tmp_path / "ds2") if a != "--quiet"])
    assert loud.returncode == 0 and "sources" in loud.stdout  # the tables, without --quiet


@pytest.mark.slow(seconds=40)
def test_ctrl_c_marks_the_run_interrupted_and_the_rerun_resumes_it(byte_dataset, tmp_path):
    """SIGINT to the whole process group (as a terminal's Ctrl-C) while `train` runs: exit 130, the store says
    'interrupted' with the step, not 'running'; the same command again resumes it (attempt 2) to the end."""
    store = tmp_path / "s.sqlite"
    args = ["train", "--store", str(store), "--data", str(byte_dataset), "--n-layer", "1", "--d-model", "16",
            "--n-head", "2", "--n-ctx", "32", "--tokens", "200000", "--batch-size", "8", "--n-evals", "4",
            "--eval-tokens", "1024", "--checkpoint-every-s", "0.2", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "scalinglab.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list((tmp_path / "s.sqlite.ckpt").glob("*/checkpoint.pt")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    with sqlite3.connect(store) as c:
        status, error, attempts = c.execute("SELECT status, error, attempts FROM runs").fetchone()
    assert status == "interrupted" and "Ctrl-C" in error and attempts == 1
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT status, attempts FROM runs").fetchone() == ("done", 2)
