"""The Python API: `import scalinglab` is light and lists its verbs, each name is the object it says, a missing
piece fails only when used, `scalinglab --help` speaks to a user, and the example scripts in docs/examples run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, TEST_DATA, run_cli

API = ["prepare_data", "RunConfig", "train", "load_study", "run_study", "RunStore", "fit_law", "backtest",
       "analyze", "plan"]
EXAMPLES = REPO / "docs" / "examples"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def python(code: str, *args, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, code, *args] if code.endswith(".py") else
                          [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV, cwd=cwd or REPO)


def test_import_is_light_and_lists_the_api():
    res = python("import sys, scalinglab as sl; print(sorted(sl.__all__)); print(sorted(dir(sl))); "
                 "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('scalinglab.')))")
    assert res.returncode == 0, res.stderr
    all_, dir_, loaded = res.stdout.splitlines()
    assert eval(all_) == sorted(API)
    assert set(API) <= set(eval(dir_)) and "importlib" not in eval(dir_)
    assert eval(loaded) == []  # neither torch nor any part of the package is imported until used


def test_command_line_parser_imports_neither_torch_scipy_nor_pandas():
    """`scalinglab --help` (and every command's parser) starts without the heavy libraries: a command imports
    them when it runs (before, laws/__init__ pulled SciPy and pandas into every command: 1.7 s)."""
    res = python("import sys; from scalinglab.cli import build_parser; build_parser(); "
                 "print(sorted(m for m in ('torch', 'scipy', 'pandas', 'matplotlib') if m in sys.modules))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    res = python("import sys; from scalinglab.laws import fit_law, backtest; import scalinglab.laws.backtest; "
                 "from scalinglab.laws import backtest as b; print(b is backtest, callable(b), 'scipy' in sys.modules)")
    assert res.stdout.split() == ["True", "True", "True"], res.stderr  # the names still resolve, to functions


def test_help_lists_every_api_name():
    res = python("import scalinglab; help(scalinglab)")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    description = text.split("\nDESCRIPTION\n")[1].split("\nPACKAGE CONTENTS\n")[0]
    for name in API:
        assert re.search(rf"^ +{name}\(", description, re.M), name  # the docstring's table
    functions = text.split("\nFUNCTIONS\n")[1].split("\nDATA\n")[0]
    for name in ("fit_law", "load_study", "plan", "prepare_data", "run_study", "train"):
        # pydoc found the real function behind the lazy name ("plan = plan_compute(...)" for an alias)
        assert re.search(rf"^    {name}( = \w+)?\(", functions, re.M), name


def test_each_name_is_the_object_it_names_even_after_its_module_is_imported():
    import scalinglab as sl
    import scalinglab.planner  # noqa: F401  (the modules are named apart from the API functions)
    import scalinglab.training.trainer  # noqa: F401
    from scalinglab.training.config import RunConfig
    from scalinglab.laws.fit import fit_law
    from scalinglab.planner import plan_compute
    from scalinglab.store import RunStore
    from scalinglab.sweep import load_study, run_study
    from scalinglab.training.trainer import train_run

    assert sl.train is train_run and sl.plan is plan_compute
    assert sl.RunConfig is RunConfig and sl.RunStore is RunStore and sl.fit_law is fit_law
    assert sl.load_study is load_study and sl.run_study is run_study
    assert sys.modules["scalinglab.training.trainer"].train_run is train_run  # the module itself is untouched


def test_a_missing_piece_fails_only_when_used(monkeypatch):
    import scalinglab as sl

    monkeypatch.setitem(sl._API, "later", ("scalinglab.not_written_yet", "later"))
    with pytest.raises(AttributeError, match="scalinglab.later is not available.*not_written_yet is missing"):
        sl.later
    monkeypatch.setitem(sl._API, "later", ("scalinglab.published", "NOT_THERE"))
    with pytest.raises(AttributeError, match="scalinglab.published has no NOT_THERE"):
        sl.later
    with pytest.raises(AttributeError):
        sl.no_such_name
    assert sl.fit_law  # the rest still resolves


def test_cli_help_is_for_users():
    res = run_cli("--help", env={"COLUMNS": "120"})
    assert res.returncode == 0
    assert res.stdout.splitlines()[2].startswith("Measure, fit and use the scaling laws of language models")
    assert "scalinglab reproduce" in res.stdout and "exits with code 2" in res.stdout
    assert "subcommand lives in" not in res.stdout and "register(" not in res.stdout


@pytest.fixture(scope="module")
def fitted_law_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "law.json"
    res = python(str(EXAMPLES / "fit_csv.py"), str(TEST_DATA / "chinchilla_points_epoch2024.csv"), "--n",
                 "Model Size", "--c", "Training FLOP", "--loss", "loss", "--drop-highest-loss", "5", "--resamples",
                 "60", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out, res.stdout


def test_example_fit_csv(fitted_law_file):
    from scalinglab.laws.fit import FittedLaw
    from scalinglab.published import EPOCH2024, EPOCH2024_SE

    out, text = fitted_law_file
    assert "L(N, D) = 1.8" in text and "converged: True" in text and "predicted loss at N = 7e+10" in text
    law = FittedLaw.from_dict(json.loads(out.read_text()))
    assert law.n_points == 240 and len(law.samples) >= 50
    for p in EPOCH2024:  # Epoch's refit of the same points, within one of their standard errors
        assert abs(law.params[p] - EPOCH2024[p]) <= EPOCH2024_SE[p], p


def test_example_plan_from_law(fitted_law_file):
    out, _ = fitted_law_file
    own = python(str(EXAMPLES / "plan_from_law.py"), "5.76e23", "--law", str(out))
    assert own.returncode == 0, own.stderr
    assert "fitted: L(N, D)" in own.stdout and "train about" in own.stdout and "(95% " in own.stdout
    published = python(str(EXAMPLES / "plan_from_law.py"), "5.76e23")
    assert published.returncode == 0, published.stderr
    assert "(95% " not in published.stdout.splitlines()[-1]  # published constants carry no intervals
    assert own.stdout.splitlines()[-1] != published.stdout.splitlines()[-1]


def test_example_train_tiny_run(tmp_path):
    res = python(str(EXAMPLES / "train_tiny_run.py"), str(tmp_path / "out"), timeout=600)
    assert res.returncode == 0, res.stderr
    assert ": done, final test loss" in res.stdout
    from scalinglab.store import RunStore

    store = RunStore(tmp_path / "out" / "runs.sqlite", readonly=True)
    try:
        runs = store.runs()
        assert len(runs) == 1 and runs["status"].iloc[0] == "done"
        ev = store.evals().sort_values("step")
        assert len(ev) >= 3 and ev["loss"].iloc[-1] < ev["loss"].iloc[0] - 0.5  # it learned
    finally:
        store.close()


def test_readme_layout_matches_the_tree():
    """Every public module and package under src/scalinglab is in the README's layout block, and every entry of
    the block exists."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Where things are\n```\n")[1].split("```")[0]
    listed, parent = set(), None
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m or m.group(2) == "src/scalinglab/":
            continue
        indent, name = len(m.group(1)), m.group(2).rstrip("/")
        if indent == 0:
            parent = None
            assert (REPO / name).exists(), name
        elif indent == 2:
            parent = name
            listed.add(name)
        else:
            assert (REPO / "src" / "scalinglab" / parent / name).exists(), f"{parent}/{name}"
    pkg = REPO / "src" / "scalinglab"
    tree = {p.stem for p in pkg.glob("*.py") if not p.name.startswith("_")}
    tree |= {p.name for p in pkg.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    tree |= {"__init__"}
    listed = {n.removesuffix(".py") for n in listed}
    assert listed == tree, f"in the tree, not the README: {tree - listed}; in the README, not the tree: {listed - tree}"


def test_fits_and_derived_results_speak_one_protocol():
    import numpy as np
    import pandas as pd

    from scalinglab.laws.batch import fit_tradeoff
    from scalinglab.laws.fit import FittedLaw, fit_law
    from scalinglab.laws.result import Result, power_law_fit
    from scalinglab.planner import plan_compute

    rng = np.random.default_rng(0)
    N = np.geomspace(1e6, 1e9, 12)
    law = fit_law(pd.DataFrame({"N": N, "loss": (8.8e13 / N) ** 0.076 * np.exp(0.01 * rng.standard_normal(12))}),
                  form="kaplan_n", n_resamples=50)
    B = np.geomspace(2**14, 2**22, 5)
    S = 3000 * (1 + 5e5 / B)
    results = [law, plan_compute("1e21"), fit_tradeoff(S, S * B, 3.0), power_law_fit(N, N ** 0.5 * 3)]
    keys = {"kind", "params", "ci", "se", "converged", "message", "n_points", "n_resamples", "n_resamples_ok"}
    for r in results:
        assert isinstance(r, Result), type(r)
        d = json.loads(json.dumps(r.to_dict()))
        assert keys <= set(d) and d["kind"] == type(r).__name__
        back = type(r).from_dict(d)
        assert back.params == pytest.approx(r.params) and back.converged == r.converged
        assert callable(r.predict) and isinstance(r.summary(), str)
    # a law file written before the protocol (intervals under "ci95" only) still reads with its intervals
    old = law.to_dict()
    old.pop("ci")
    assert FittedLaw.from_dict(old).ci["alpha_N"] == pytest.approx(law.ci["alpha_N"])
