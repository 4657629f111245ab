"""The package as a user gets it: a built wheel, installed (not editable) into a fresh virtual environment, runs the
main job from a directory outside the source tree; the torch lower bound fails with one line; nothing large is
committed under src/."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"


def _clean_env() -> dict:
    """The environment without anything that would make Python import the source tree instead of the wheel."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the project (the build writes build/ and *.egg-info next to its sources)."""
    tmp = tmp_path_factory.mktemp("wheel")
    proj = tmp / "project"
    proj.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, proj / name)
    def generated(folder, names):  # caches, build records and what a preset prepared next to its spec
        skip = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".sqlite", ".sqlite-wal"))}
        return skip | ({"data"} if Path(folder).parent.name == "studies" else set())

    shutil.copytree(SRC, proj / "src", ignore=generated)
    dist = tmp / "dist"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", str(dist), str(proj)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    (whl,) = dist.glob("scalinglab-*.whl")
    return whl


def test_wheel_holds_every_preset_and_no_generated_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {"scalinglab/" + p.relative_to(SRC / "scalinglab").as_posix()
               for p in (SRC / "scalinglab" / "studies").rglob("*.toml")}
    assert len(presets) >= 10  # ci, smoke, cpu, gpu and batch presets
    assert presets <= names, f"presets missing from the wheel: {sorted(presets - names)}"
    assert "scalinglab/py.typed" in names
    modules = {"scalinglab/" + p.relative_to(SRC / "scalinglab").as_posix() for p in (SRC / "scalinglab").rglob("*.py")}
    assert modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"
    assert not [n for n in names if n.endswith((".bin", ".sqlite"))]


def _dependency_dirs() -> list[str]:
    """The running environment's package directories (torch, rich, pandas and the rest): every site-packages or
    dist-packages folder on this interpreter's path. Inside a virtual environment these are the environment's own;
    a venv made with --system-site-packages would see the base interpreter's instead, where they are missing."""
    return [p for p in dict.fromkeys(sys.path)
            if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def _fresh_venv(venv: Path, wheel: Path) -> Path:
    """A new venv holding the wheel alone (no dependencies, nothing downloaded); the running environment's
    dependencies made visible afterwards by a .pth file of plain directory lines. Plain lines add each directory
    to sys.path but do not run the .pth files inside it, so an editable install of the source tree there stays
    inert. Returns the venv's python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300,
                   env=_clean_env())
    py = venv / "bin" / "python"
    install = ["install", "--no-deps", "--no-index", "-q", str(wheel)]
    # this environment's pip installs into the venv (pip >= 22.3), which then needs no pip of its own: 1 s to
    # create instead of 8-26 s with ensurepip; an older pip gets the venv its own
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), *install], capture_output=True,
                         text=True, timeout=600, env=_clean_env())
    if res.returncode != 0 and "--python" in res.stderr:
        subprocess.run([str(py), "-m", "ensurepip", "-q"], check=True, timeout=300, env=_clean_env())
        res = subprocess.run([str(py), "-m", "pip", *install], capture_output=True, text=True, timeout=600,
                             env=_clean_env())
    assert res.returncode == 0, res.stdout + res.stderr
    site_dir = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True, timeout=60, env=_clean_env()).stdout.strip()
    (Path(site_dir) / "_running_env_deps.pth").write_text("".join(d + "\n" for d in _dependency_dirs()))
    return py


def test_dependency_dirs_are_the_running_environments():
    import rich
    import torch

    dirs = [Path(d).resolve() for d in _dependency_dirs()]
    for mod in (torch, rich):  # wherever they are installed (a venv, the system, the user site), it is listed
        assert any(Path(mod.__file__).resolve().is_relative_to(d) for d in dirs), (mod.__file__, dirs)


@pytest.mark.slow(seconds=85)
def test_wheel_installed_in_a_fresh_venv_runs_the_ci_preset_to_a_report(wheel, tmp_path):
    venv = tmp_path / "venv"
    py = _fresh_venv(venv, wheel)
    work = tmp_path / "elsewhere"  # outside the source tree: the source cannot be imported by accident
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import scalinglab, sys, pathlib; print(scalinglab.__file__); "
                            "print('torch' in sys.modules); "
                            "print([p for p in sys.path if (pathlib.Path(p or '.') / 'scalinglab').is_dir()])"],
                           cwd=work, capture_output=True, text=True, timeout=120, env=_clean_env())
    assert where.returncode == 0, where.stderr
    path, torch_loaded, holders = where.stdout.splitlines()
    assert Path(path).resolve().is_relative_to(venv.resolve()), f"imported {path}, not the installed wheel"
    assert torch_loaded == "False"  # `import scalinglab` stays light
    # the wheel's copy comes first on the venv's path and the source tree is not on it at all
    holders = [Path(h).resolve() for h in ast.literal_eval(holders)]
    assert holders[0] == Path(path).resolve().parent.parent and SRC.resolve() not in holders, holders

    res = subprocess.run([str(venv / "bin" / "scalinglab"), "reproduce", "--preset", "ci", "--out", "ci-out",
                          "--quiet"], cwd=work, capture_output=True, text=True, timeout=1500, env=_clean_env())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = work / "ci-out" / "report" / "report.html"
    assert report.is_file() and "alpha_N" in report.read_text()
    assert (work / "ci-out" / "sizes.toml").is_file()  # the preset came out of the installed wheel
    assert (work / "ci-out" / "study.sqlite").is_file()


def _cli_with_torch_version(version: str | None, *args: str) -> subprocess.CompletedProcess:
    fake = "" if version is None else f"torch.__version__ = {version!r}; "
    code = f"import sys, torch; {fake}from scalinglab.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


def test_torch_older_than_the_lower_bound_is_one_line_and_exit_2(tmp_path):
    old = _cli_with_torch_version("2.4.1", "train", "--data", str(tmp_path / "none"))
    assert old.returncode == 2
    lines = old.stderr.strip().splitlines()
    assert len(lines) == 1 and "torch 2.4.1 is too old" in lines[0] and "torch>=2.5" in lines[0], old.stderr
    # the installed torch passes the check: the same command fails on its missing data instead
    now = _cli_with_torch_version(None, "train", "--data", str(tmp_path / "none"))
    assert now.returncode == 2 and "too old" not in now.stderr and "none" in now.stderr, now.stderr


def test_torch_lower_bound_matches_pyproject():
    from scalinglab._torch_check import TORCH_MIN, parse_version

    text = (REPO / "pyproject.toml").read_text()
    assert f'"torch>={TORCH_MIN[0]}.{TORCH_MIN[1]}"' in text
    assert parse_version("2.13.0+cpu") == (2, 13) and parse_version("2.5.0a0+git1") == (2, 5)
    assert parse_version("2.4.1") < TORCH_MIN <= parse_version("2.5.0")


def test_no_tracked_file_under_src_is_over_1_mb():
    if (REPO / ".git").exists():
        files = subprocess.run(["git", "ls-files", "src"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split()
        paths = [REPO / f for f in files]
    else:  # an unpacked source archive: every file is what was shipped
        paths = [p for p in SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    big = [str(p.relative_to(REPO)) for p in paths if p.is_file() and p.stat().st_size > 1_000_000]
    assert not big, f"files over 1 MB under src/: {big}"


def test_batch_preset_prepares_its_data_instead_of_shipping_it():
    """The batch-size preset once shipped 23 MB of token shards; it now carries the recipe to prepare them."""
    from scalinglab.sweep.spec import load_study

    spec = SRC / "scalinglab" / "studies" / "batch" / "batch_size.toml"
    study = load_study(spec, prepare=False)
    assert study.data_recipe and study.data_recipe["corpus"] and study.data_recipe["tokenizer"]
    assert len(study.runs) == 12
    if (REPO / ".git").exists():  # whatever a user prepared there stays out of git
        ignored = subprocess.run(["git", "check-ignore", "-q", str(study.data_dir / "train.bin")], cwd=REPO)
        assert ignored.returncode == 0
