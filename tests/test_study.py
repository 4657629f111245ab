"""Studies: spec expansion and validation, local vs sequential executors, SIGKILL of the driver, the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import group_alive, run_cli
from scalinglab.accounting import n_params
from scalinglab.errors import ConfigError, StoreError
from scalinglab.store import RunStore
from scalinglab.sweep import load_study, run_study, study_from_dict

BASE = """
[base]
n_layer = 1
n_ctx = 32
batch_size = 8
tokens = 38400          # 150 steps of 8 x 32 tokens
n_head = 2
threads = 1             # one thread: results are bit-identical whatever process runs them
precision = "fp32"      # and whatever CPU: compared across code paths at float32 tolerance
eval_tokens = 2048
n_evals = 3
lr = 3e-3
checkpoint_every_s = 0.2
"""


def write_spec(dirpath: Path, data: Path, name: str = "tiny", axes: str | None = None, extra: str = "") -> Path:
    axes = axes if axes is not None else "[[axes]]\nd_model = [16, 32]\n[[axes]]\nseed = [0, 1, 2]\n"
    spec = dirpath / f"{name}.toml"
    spec.write_text(f'[study]\nname = "{name}"\ndata = "{data}"\n{extra}\n{BASE}\n{axes}')
    return spec


def results(store_path: Path) -> dict:
    """run_id -> (status, final test loss, final train loss, attempts, test-loss curve)."""
    with RunStore(store_path, readonly=True) as store:
        runs = store.runs()
        evals = store.evals()
    out = {}
    for r in runs.to_dict("records"):
        ev = evals[(evals.run_id == r["run_id"]) & (evals.eval_set == "test")].sort_values("step")
        out[r["run_id"]] = dict(status=r["status"], test=r["final_test_loss"], train=r["final_train_loss"],
                                attempts=r["attempts"], curve=list(zip(ev.step, ev.loss)))
    return out


@pytest.fixture(scope="module")
def reference(byte_dataset, tmp_path_factory):
    """The study run one run after another in this process, each run alone: the results every executor must
    reproduce."""
    d = tmp_path_factory.mktemp("ref")
    study = load_study(write_spec(d, byte_dataset))
    summary = run_study(study, executor="sequential", progress=False, group=False)
    assert summary.done == 6 and summary.ran == 6 and summary.ok
    return study, results(study.store_path)


# ------------------------------------------------------------------------------------------------ spec


def _raw(data, axes, base=None):
    return {"study": {"name": "t", "data": str(data)}, "base": {"n_ctx": 32, **(base or {})}, "axes": axes}


def test_expansion_product_zip_and_labels(byte_dataset, tmp_path):
    s = study_from_dict(_raw(byte_dataset, [{"mode": "zip", "tokens": [4096, 8192], "batch_size": [4, 8]},
                                            {"seed": [0, 1, 2]}]), base_dir=tmp_path)
    assert len(s.runs) == 6
    pairs = {(r.tokens, r.batch_size) for r in s.runs}
    assert pairs == {(4096, 4), (8192, 8)}  # zipped, not crossed
    assert s.runs[0].extra == {"tokens": 4096, "batch_size": 4, "seed": 0}
    assert len({r.run_id() for r in s.runs}) == 6 and len({r.name for r in s.runs}) == 6
    assert s.store_path == (tmp_path / "t.sqlite").resolve()


def test_shapes_at_fixed_n_follow_depth_rule(byte_dataset, tmp_path):
    # Kaplan sec. 3.1: vary the aspect ratio at (about) fixed N
    s = study_from_dict(_raw(byte_dataset, [{"n_params": [2e5], "aspect_ratio": [8, 32, 128], "d_ff_ratio": [4]}]),
                        base_dir=tmp_path)
    shapes = [r.shape(256) for r in s.runs]
    ratios = [sh.d_model / sh.n_layer for sh in shapes]
    assert ratios == sorted(ratios) and ratios[-1] / ratios[0] > 4
    for sh in shapes:
        assert abs(n_params(sh) / 2e5 - 1) < 0.35, sh
        assert sh.d_ff == 4 * sh.d_model
    # a fixed depth instead of an aspect ratio; and explicit shapes
    s2 = study_from_dict(_raw(byte_dataset, {"n_params": [1e4, 1e5], "depth": {"n_layer": 2}}), base_dir=tmp_path)
    assert [r.n_layer for r in s2.runs] == [2, 2] and s2.runs[0].d_model < s2.runs[1].d_model
    s3 = study_from_dict(_raw(byte_dataset, {"model": [{"n_layer": 1, "d_model": 16, "n_head": 2},
                                                       {"n_layer": 2, "d_model": 32, "n_head": 4}]}),
                         base_dir=tmp_path)
    assert [(r.n_layer, r.d_model, r.n_head) for r in s3.runs] == [(1, 16, 2), (2, 32, 4)]


@pytest.mark.parametrize(
    "raw_axes, base, message",
    [
        ({"sed": [0, 1]}, None, "unknown axis 'sed'"),
        ({"seed": 3}, None, "must be a non-empty list"),
        ({"lr": ["fast"]}, None, "axis lr value 'fast' is not float"),
        ({"mode": "zip", "seed": [0, 1], "tokens": [4096]}, None, "needs lists of one length"),
        ({"n_params": [1e5]}, None, "needs a depth rule"),
        ({"n_head": [3]}, {"d_model": 16}, "n_head=3 does not divide d_attn=16"),
        ({"d_unique": [10**9]}, None, "larger"),
    ],
)
def test_bad_specs_give_one_clear_line(byte_dataset, tmp_path, raw_axes, base, message):
    with pytest.raises(ConfigError) as err:
        study_from_dict(_raw(byte_dataset, raw_axes, base), base_dir=tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ executors


def test_local_workers_match_sequential(reference, tmp_path):
    study, ref = reference
    local = dataclasses.replace(study, store_path=tmp_path / "local.sqlite")
    summary = run_study(local, executor="local", workers=2, progress=False, group=False)
    assert summary.done == 6 and summary.ran == 6 and summary.ok
    got = results(local.store_path)
    assert set(got) == set(ref)
    for rid, r in ref.items():
        # one thread per run: the same arithmetic in any process, so bit-identical losses
        assert got[rid]["test"] == r["test"] and got[rid]["train"] == r["train"], rid
        assert got[rid]["curve"] == r["curve"] and got[rid]["attempts"] == 1
    again = run_study(local, executor="local", workers=2, progress=False, group=False)  # nothing left to do
    assert again.ran == 0 and again.already_done == 6


def test_grouping_local_executor_groups_same_shape_runs_and_each_matches_its_lone_run(reference, tmp_path):
    """Asked to group, the local executor trains the study's small runs of one shape (3 seeds at each of 2
    widths) as batched groups: the store says so run by run, and each run's curve is its lone run's to float
    rounding."""
    study, ref = reference
    local = dataclasses.replace(study, store_path=tmp_path / "grouped.sqlite")
    summary = run_study(local, executor="local", workers=2, progress=False, group=True)
    assert summary.done == 6 and summary.ran == 6 and summary.ok
    with RunStore(local.store_path, readonly=True) as s:
        devices = s.runs().set_index("run_id")["device"].to_dict()
    assert set(devices.values()) == {"cpu (group of 3)"}, devices  # 2 groups of 3: one per worker
    got = results(local.store_path)
    assert set(got) == set(ref)
    for rid, r in ref.items():
        assert got[rid]["status"] == "done" and got[rid]["attempts"] == 1
        assert abs(got[rid]["test"] - r["test"]) < 1e-4 and abs(got[rid]["train"] - r["train"]) < 1e-4, rid
        assert [st for st, _ in got[rid]["curve"]] == [st for st, _ in r["curve"]]
        assert max(abs(a[1] - b[1]) for a, b in zip(got[rid]["curve"], r["curve"])) < 1e-4, rid


def test_a_task_carries_its_config_with_its_threads_and_crosses_a_json_boundary_whole(byte_dataset, tmp_path):
    from scalinglab.sweep.worker import RunTask

    study = load_study(write_spec(tmp_path, byte_dataset))
    run = study.runs[0]
    given = run.threads
    task = RunTask.for_run(run, (given or 1) + 2, study)
    assert task.threads == task.config.threads == (given or 1) + 2 and run.threads == given  # the study's: untouched
    assert task.run_id == run.run_id() == task.config.run_id()
    back = RunTask.from_json(json.loads(json.dumps(task.to_json())))  # torchrun's task file
    assert back == task and back.config is not task.config


def test_tasks_group_by_shape_and_size_and_split_across_workers(byte_dataset, tmp_path):
    from scalinglab.sweep.executor import GROUP_MAX_RUNS, group_tasks
    from scalinglab.sweep.worker import RunTask

    axes = "[[axes]]\nd_model = [16, 32]\n[[axes]]\nseed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
    study = load_study(write_spec(tmp_path, byte_dataset, axes=axes))
    tasks = [RunTask.for_run(r, 1, study) for r in study.runs]
    vocab = 256

    def sizes(units):
        return sorted(len(u) for u in units)

    # one worker: each width's 10 runs in groups of at most GROUP_MAX_RUNS, no group mixes the widths
    units = group_tasks(tasks, workers=1, vocab_size=vocab)
    assert GROUP_MAX_RUNS == 8 and sizes(units) == [5, 5, 5, 5]
    for u in units:
        assert len({t.config.d_model for t in u}) == 1
    # two workers: still two groups per width (each worker gets one)
    assert sizes(group_tasks(tasks, workers=2, vocab_size=vocab)) == [5, 5, 5, 5]
    # four workers: four groups per width, two or three runs each
    assert sizes(group_tasks(tasks, workers=4, vocab_size=vocab)) == [2, 2, 2, 2, 3, 3, 3, 3]
    # steps too large to gain from batching, or no vocabulary known: every run alone
    big = [RunTask.for_run(r.replace(batch_size=4096), 1, study) for r in study.runs]
    assert sizes(group_tasks(big, workers=1, vocab_size=vocab)) == [1] * 20
    assert sizes(group_tasks(tasks, workers=1)) == [1] * 20


def test_driver_sigkill_then_restart_completes_every_run_once(reference, tmp_path):
    study, ref = reference
    spec = study.spec_path
    store = tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-m", "scalinglab.cli", "study", "run", str(spec), "--store", str(store), "--workers", "2",
           "--no-progress", "--no-probe"]  # fmt: skip
    rng = random.Random(20240521)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:  # wait until some run is training
            if store.exists():
                try:
                    with RunStore(store, readonly=True) as s:
                        if (s.runs()["status"] == "running").any():
                            break
                except StoreError:  # caught while the driver creates the file
                    pass
            time.sleep(0.05)
        time.sleep(rng.uniform(0.1, 0.9))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, as a crash or `kill -9` would
            kills += 1
        proc.wait()
        for _ in range(100):  # the whole process group is gone: no orphan worker finishes a run later
            if not group_alive(proc.pid):
                break
            time.sleep(0.05)
        assert not group_alive(proc.pid)
    assert kills >= 2, "the study finished before it could be killed; make its runs longer"
    mid = results(store)
    assert any(r["status"] == "running" for r in mid.values()) or any(r["attempts"] > 1 for r in mid.values())

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = results(store)
    assert set(got) == set(ref)
    for rid, r in ref.items():
        assert got[rid]["status"] == "done"
        assert got[rid]["test"] == r["test"] and got[rid]["curve"] == r["curve"], rid  # resumed exactly
    attempts = [r["attempts"] for r in got.values()]
    assert all(a >= 1 for a in attempts)
    assert sum(attempts) > len(attempts)  # some runs were interrupted and resumed
    assert sum(attempts) <= len(attempts) + 2 * kills  # each kill interrupts at most its 2 running runs
    with RunStore(store, readonly=True) as s:
        pts = s.curves()
    assert not pts.duplicated(["run_id", "step"]).any()
    assert not any((tmp_path / "killed.sqlite.ckpt").glob("*/checkpoint.pt"))  # finished runs leave none


def test_failed_runs_are_recorded_and_retried_on_request(byte_dataset, tmp_path):
    spec = write_spec(tmp_path, byte_dataset, name="bad",
                      axes='[[axes]]\nd_model = [16]\neval_sets = [["test"], ["missing"]]\n')
    study = load_study(spec)
    s1 = run_study(study, executor="sequential", progress=False)
    assert (s1.done, s1.failed) == (1, 1) and not s1.ok
    [(rid, name, error)] = s1.failures
    assert "no split 'missing'" in error
    with RunStore(study.store_path, readonly=True) as st:
        assert st.run(rid)["status"] == "failed" and "missing" in st.run(rid)["error"]
    assert run_study(study, executor="sequential", progress=False).ran == 0
    assert run_study(study, executor="sequential", progress=False, retry_failed=True).ran == 1


# ------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    "extra, axes, needle",
    [
        ("colour = 1", None, "unknown key 'colour'"),
        ("", "[[axes]]\nd_model = [16]\nn_head = [3]\n", "does not divide"),
        ("", "[[axes]]\nd_unique = [100000000]\n", "training split"),
    ],
)
def test_cli_bad_spec_exits_2_with_one_line(byte_dataset, tmp_path, extra, axes, needle):
    spec = write_spec(tmp_path, byte_dataset, extra=extra, axes=axes)
    r = run_cli("study", "run", str(spec), "--dry-run")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scalinglab: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_dry_run_and_status(reference, tmp_path):
    study, ref = reference
    spec = study.spec_path
    dry = run_cli("study", "run", str(spec), "--store", str(tmp_path / "plan.sqlite"), "--dry-run",
                  env={"COLUMNS": "200"})
    assert dry.returncode == 0, dry.stderr
    assert "6 of 6 runs to run" in dry.stdout and "estimated wall time" in dry.stdout
    assert not (tmp_path / "plan.sqlite").exists()  # a dry run writes nothing
    st = run_cli("study", "status", str(spec), env={"COLUMNS": "200"})
    assert st.returncode == 0, st.stderr
    assert "FLOP done" in st.stdout and "(100%)" in st.stdout and st.stdout.count("tiny/d_model=") == 6


@pytest.mark.parametrize("preset", ["ci", "smoke", "cpu", "gpu", "families"])
def test_every_shipped_preset_is_a_valid_study_with_one_store_and_one_dataset(preset):
    """The preset files are what `scalinglab reproduce` runs: each must parse and expand (without its data), and
    the files of a preset must share one store and one [data] table (reproduce refuses two stores)."""
    from scalinglab.reproduce import preset_files
    from scalinglab.sweep.spec import load_study

    studies = [load_study(f, prepare=False) for f in preset_files(preset)]
    assert studies and all(s.runs for s in studies)
    assert len({s.store_path for s in studies}) == 1
    assert len({s.data_dir for s in studies}) == 1
    ids = [rid for s in studies for rid in s.run_ids()]
    assert len(ids) == len(set(ids)), "two runs of a preset are the same run"


def test_run_config_values_are_type_checked_in_one_place(byte_dataset, tmp_path):
    """RunConfig, a spec's [base] and its axes share one check (config.field_value): TOML's 2e6 is an int, a
    non-integral float or a bool is not, and a wrong type is one line naming the field."""
    import numpy as np

    from scalinglab.training.config import RunConfig

    cfg = RunConfig(data=tmp_path, tokens=2e6, batch_size=np.int64(8), lr=1)
    assert (cfg.tokens, cfg.batch_size, cfg.data) == (2_000_000, 8, str(tmp_path))
    assert type(cfg.tokens) is int and type(cfg.batch_size) is int
    for bad, needle in [(dict(tokens=2.5e3 + 0.5), "tokens value 2500.5 is not int"),
                        (dict(n_layer=True), "n_layer value True is not int"),
                        (dict(lr="fast"), "lr value 'fast' is not float"),
                        (dict(noise_scale=1), "noise_scale value 1 is not bool")]:
        with pytest.raises(ConfigError, match=needle):
            RunConfig(**bad)
    with pytest.raises(ConfigError, match=r"\[base\]: n_ctx value 32.5 is not int"):
        study_from_dict(_raw(byte_dataset, {"seed": [0]}, base={"n_ctx": 32.5}), base_dir=tmp_path)
    s = study_from_dict(_raw(byte_dataset, {"tokens": [4096.0]}), base_dir=tmp_path)
    assert type(s.runs[0].tokens) is int
