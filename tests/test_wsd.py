"""Warm-up-stable-decay schedules and cooldown branches: the schedule, the run ids, bad configs, and a branch's
curve against a run trained alone to its budget."""

import contextlib
import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import ConfigError
from scalinglab.store import RunStore
from scalinglab.training.config import RunConfig
from scalinglab.training.schedule import cosine_lr, decay_start, wsd_lr
from scalinglab.training.trainer import train_run

B = 8 * 32  # tokens per step of the tiny runs below


def test_wsd_schedule_shapes():
    peak, warm, total = 1.0, 10, 100
    for shape, mid in (("1-sqrt", 1 - math.sqrt(0.5)), ("linear", 0.5), ("cosine", 0.5)):
        lrs = [wsd_lr(s, peak, warm, total, 0.2, shape) for s in range(total)]
        assert lrs[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])  # linear warm-up
        assert lrs[warm:80] == [peak] * 70  # stable: the last 20% decay
        assert all(a > b for a, b in zip(lrs[79:], lrs[80:]))  # 20 updates below the peak, falling
        assert lrs[89] == pytest.approx(mid) and lrs[-1] == 0.0
    assert wsd_lr(99, 2.0, warm, total, 0.2, "linear", min_frac=0.1) == pytest.approx(0.2)
    assert decay_start(100, 0.2) == 80 and decay_start(7, 0.2) == 6  # at least one update decays
    cfg = RunConfig(data="x", schedule="wsd", tokens=100 * B, batch_size=8, n_ctx=32, warmup_steps=10,
                    decay_shape="linear")
    assert cfg.lr_schedule(1.0) == pytest.approx([wsd_lr(s, 1.0, 10, 100, 0.2, "linear") for s in range(100)])
    cos = RunConfig(data="x", tokens=100 * B, batch_size=8, n_ctx=32, warmup_steps=10)
    assert cos.lr_schedule(1.0) == pytest.approx([cosine_lr(s, 1.0, 10, 100) for s in range(100)])


def test_run_ids_of_existing_runs_are_unchanged_and_branches_are_the_runs_alone():
    # computed by the code before schedules existed: a cosine run keeps its id
    assert RunConfig(data="nowhere", n_layer=2, d_model=64, tokens=1_000_000, precision="fp32").run_id() == \
        "311476989346a092"
    base = dict(data="nowhere", batch_size=8, n_ctx=32, precision="fp32")
    assert RunConfig(schedule="wsd", tokens=100 * B, **base).run_id() != RunConfig(tokens=100 * B, **base).run_id()
    trunk = RunConfig(schedule="wsd", tokens=400 * B, cooldowns=[0.25, 200 * B, 1.0], warmup_steps=10, **base)
    assert trunk.steps == 320  # the stable phase ends at the last decay start
    assert trunk.lr_schedule(1.0)[10:] == [1.0] * 310  # and holds the peak
    got = [(c.tokens, step) for c, step in trunk.branches()]
    assert got == [(100 * B, 80), (200 * B, 160), (400 * B, 320)]
    for c, _ in trunk.branches():  # each branch is the run trained alone to its budget with this schedule
        alone = RunConfig(schedule="wsd", tokens=c.tokens, warmup_steps=10, **base)
        assert c.run_id() == alone.run_id() and c.cooldowns is None
    # a trunk without a stated warm-up writes its own (5% of the stable phase) into every branch
    auto = RunConfig(schedule="wsd", tokens=400 * B, cooldowns=[0.5, 1.0], **base)
    assert auto.warmup == 16 and {c.warmup for c, _ in auto.branches()} == {16}


@pytest.mark.parametrize("fields, message", [
    (dict(schedule="linear"), "schedule must be one of"),
    (dict(schedule="wsd", decay_shape="sqrt"), "decay_shape must be one of"),
    (dict(schedule="wsd", decay_fraction=0.0), "decay_fraction must be in"),
    (dict(cooldowns=[0.5]), "cooldowns need schedule"),
    (dict(schedule="wsd", cooldowns=[]), "non-empty list"),
    (dict(schedule="wsd", cooldowns=[2.0 * 100 * B]), "above tokens"),
    (dict(schedule="wsd", cooldowns=[0.001]), "below one batch"),
    (dict(schedule="wsd", warmup_steps=90), "before its warm-up"),
    (dict(schedule="wsd", schedule_tokens=1000), "does not apply"),
])
def test_bad_schedules_are_one_config_error(fields, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(data="x", tokens=100 * B, batch_size=8, n_ctx=32, **fields)


def tiny(dataset, **fields) -> RunConfig:
    return RunConfig(data=str(dataset), n_layer=1, d_model=32, n_head=2, n_ctx=32, batch_size=8, lr=3e-3,
                     threads=1, n_evals=8, eval_tokens=4096, warmup_steps=10, precision="fp32", schedule="wsd",
                     **fields)


def curve_of(store, run_id):
    c = store.curves([run_id])
    cols = [k for k in ("step", "tokens", "lr", "train_loss", "test_loss", "test_loss_se", "loss_validation",
                        "loss_validation_se") if k in c.columns]
    return c[cols].reset_index(drop=True)


def family_store(dataset, path: Path):
    trunk = tiny(dataset, tokens=200 * B, cooldowns=[0.5, 1.0])
    store = RunStore(path)
    result = train_run(trunk, store=store, checkpoint_dir=Path(str(path) + ".ckpt") / trunk.run_id())
    return trunk, store, result


@pytest.mark.slow(seconds=15)
def test_a_cooldown_branch_equals_the_run_trained_alone(byte_dataset, tmp_path):
    trunk, store, result = family_store(byte_dataset, tmp_path / "family.sqlite")
    assert result.status == "done" and [b.status for b in result.branches] == ["done", "done"]
    runs = store.runs().set_index("run_id")
    assert runs.loc[trunk.run_id(), "S"] == 160 and pd.isna(runs.loc[trunk.run_id(), "parent_run_id"])
    stable = store.curves([trunk.run_id()])
    assert (stable.query("step > 10")["lr"] == 3e-3).all()  # the stable phase holds the peak: it never decays

    alone_cfg = tiny(byte_dataset, tokens=100 * B)  # written out by hand: the run trained alone to 100 steps
    alone_store = RunStore(tmp_path / "alone.sqlite")
    alone = train_run(alone_cfg, store=alone_store)
    rid = alone_cfg.run_id()
    assert rid in runs.index  # the branch is that run (its id)
    assert runs.loc[rid, "parent_run_id"] == trunk.run_id() and runs.loc[rid, "branch_step"] == 80
    branch_curve, alone_curve = curve_of(store, rid), curve_of(alone_store, rid)
    assert len(branch_curve) == len(alone_curve) > 10
    assert branch_curve["lr"].iloc[-1] == 0.0 and branch_curve["step"].iloc[-1] == 100
    np.testing.assert_allclose(branch_curve.to_numpy(float), alone_curve.to_numpy(float), rtol=1e-6, atol=0,
                               equal_nan=True)
    assert runs.loc[rid, "final_test_loss"] == pytest.approx(alone.final_test_loss, rel=1e-6)
    evals_b = store.evals([rid]).drop(columns="run_id").reset_index(drop=True)
    evals_a = alone_store.evals([rid]).drop(columns="run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(evals_b, evals_a, rtol=1e-6)  # every set (transfer too) at every step


KILL_SCRIPT = """
import sys
from pathlib import Path
from scalinglab.store import RunStore
from scalinglab.training.config import RunConfig
from scalinglab.training.trainer import train_run
cfg = RunConfig.from_dict(__import__("json").loads(sys.argv[1]))
path = Path(sys.argv[2])
train_run(cfg, store=RunStore(path), checkpoint_dir=Path(str(path) + ".ckpt") / cfg.run_id())
"""


@pytest.mark.slow(seconds=20)
@pytest.mark.parametrize("when", ["stable phase past a branch step", "last branch"])
def test_a_killed_family_resumes_and_completes_each_run_once(byte_dataset, tmp_path, when):
    ref_trunk, ref_store, _ = family_store(byte_dataset, tmp_path / "ref.sqlite")
    trunk = dataclasses.replace(ref_trunk, checkpoint_every_s=0.0)  # a checkpoint after every step (not in the id)
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, json.dumps(trunk.to_dict()), str(path)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = trunk.branches()[-1][0].run_id()
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            time.sleep(0.02)
            if proc.poll() is not None or not path.exists():
                continue
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as c:
                    status = dict(c.execute("SELECT run_id, status FROM runs").fetchall())
                    top = c.execute("SELECT MAX(step) FROM points WHERE run_id = ?", (trunk.run_id(),)).fetchone()[0]
            except sqlite3.Error:
                continue
            if (when == "last branch" and status.get(last) == "running") or \
                    (when != "last branch" and status.get(trunk.run_id()) == "running" and (top or 0) > 100):
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the family finished before it could be killed"
    store = RunStore(path)
    result = train_run(trunk, store=store, checkpoint_dir=Path(str(path) + ".ckpt") / trunk.run_id())
    runs = store.runs().set_index("run_id")
    ids = [trunk.run_id()] + [b.run_id() for b, _ in trunk.branches()]
    assert set(runs.index) == set(ids) and (runs["status"] == "done").all()
    if when == "last branch":  # the stable phase and the first branch were not trained again
        assert result.branches and [b.run_id for b in result.branches] == [last]
        assert runs.loc[ids[0], "attempts"] == 1 and runs.loc[ids[1], "attempts"] == 1
    for rid in ids:  # every curve as if never killed
        np.testing.assert_allclose(curve_of(store, rid).to_numpy(float), curve_of(ref_store, rid).to_numpy(float),
                                   rtol=1e-6, atol=0, equal_nan=True)


WSD_SPEC = """
[study]
name = "wsd"
data = "{data}"
roles = ["sizes"]

[base]
n_layer = 1
n_head = 2
n_ctx = 32
batch_size = 8
tokens = 38400          # 150 steps of 8 x 32 tokens
threads = 1
precision = "fp32"
eval_tokens = 2048
n_evals = 4
lr = 3e-3
warmup_steps = 10
schedule = "wsd"
cooldowns = [0.5, 1.0]  # one stable phase per size, cooldowns to 75 and 150 steps
checkpoint_every_s = 0.1

[[axes]]
d_model = [16, 32]
"""


def wsd_study(tmp_path, data, name):
    from scalinglab.sweep import load_study

    d = tmp_path / name
    d.mkdir()
    spec = d / "wsd.toml"
    spec.write_text(WSD_SPEC.format(data=data))
    return load_study(spec)


def study_curves(store_path):
    with RunStore(store_path, readonly=True) as st:
        runs = st.runs().set_index("run_id")
        return runs, {rid: curve_of(st, rid) for rid in runs.index}


@pytest.mark.slow(seconds=30)
def test_a_study_with_cooldowns_killed_mid_branch_completes_each_run_once(byte_dataset, tmp_path):
    from scalinglab.sweep import run_study

    ref = wsd_study(tmp_path, byte_dataset, "ref")
    summary = run_study(ref, executor="sequential", progress=False, group=True)  # stable phases never grouped
    assert summary.ok and summary.done == 6 and summary.pending == 0
    runs, curves = study_curves(ref.store_path)
    trunks = ref.run_ids()
    assert len(runs) == 6 and runs["parent_run_id"].isin(trunks).sum() == 4
    with RunStore(ref.store_path, readonly=True) as st:
        # the branches carry the study's roles; a stable phase (its end undecayed) none: no analysis reads its final
        assert set(st.roles().query("role == 'sizes'")["run_id"]) == set(runs.index) - set(trunks)

    with pytest.raises(ConfigError, match="local or sequential executor"):  # Ray's driver would record no branch
        run_study(ref, executor="ray", progress=False)

    killed = wsd_study(tmp_path, byte_dataset, "killed")
    branches = [b.run_id() for c in killed.runs for b, _ in c.branches()]
    proc = subprocess.Popen([sys.executable, "-m", "scalinglab.cli", "study", "run", str(killed.spec_path),
                             "--sequential", "--no-progress", "--no-probe"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
            try:
                with sqlite3.connect(f"file:{killed.store_path}?mode=ro", uri=True, timeout=1) as c:
                    status = dict(c.execute("SELECT run_id, status FROM runs").fetchall())
            except sqlite3.Error:
                continue
            # the first size's stable phase done and one of its cooldowns under way
            if status.get(trunks[0]) == "done" and any(status.get(b) == "running" for b in branches[:2]):
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the study finished before it could be killed"
    again = run_study(killed, executor="sequential", progress=False)
    assert again.ok and again.done == 6 and again.pending == 0
    got_runs, got = study_curves(killed.store_path)
    assert (got_runs["status"] == "done").all() and got_runs.loc[trunks[0], "attempts"] == 1
    for rid, c in curves.items():  # every curve as if never killed
        np.testing.assert_allclose(got[rid].to_numpy(float), c.to_numpy(float), rtol=1e-6, atol=0, equal_nan=True)
