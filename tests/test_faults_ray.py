"""Ray: a worker process killed in the middle of a run is retried on another worker (bounded attempts, counted in
the store), the study finishes, and no run is recorded twice. On a local Ray instance, with real training."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import sequential_copy
from test_study import results, write_spec

from scalinglab.store import RunStore
from scalinglab.sweep import load_study, run_study

ray = pytest.importorskip("ray", reason="the Ray executor needs ray (pip install 'scalinglab[ray]')")

AXES = "[[axes]]\nd_model = [16, 32]\ntokens = [102400]\n"  # 400 steps each: long enough to be killed mid-run


def _ray_task_pids() -> list[int]:
    """Ray worker processes executing one of our tasks (Ray titles them 'ray::<function>')."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_run_remote"):
                pids.append(int(d.name))
    return pids


def _kill_one_worker_mid_run(ckpt_root: Path, killed: list, stop: threading.Event) -> None:
    """Once some run has written a checkpoint (it is mid-run), SIGKILL one worker process that runs a task."""
    while not stop.is_set():
        if any(ckpt_root.glob("*/checkpoint.pt")):
            pids = _ray_task_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
        time.sleep(0.05)


def _run_on_ray_while(killer, study, max_attempts: int):
    """Run `study` on a local Ray instance while `killer(stop)` runs in a thread until the study returns."""
    stop = threading.Event()
    thread = threading.Thread(target=killer, args=(stop,))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        thread.start()
        return run_study(study, executor="ray", progress=False, max_attempts=max_attempts)
    finally:
        stop.set()
        thread.join()
        ray.shutdown()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds Ray's worker processes through /proc")
def test_ray_worker_killed_mid_run_is_retried_and_recorded_once(byte_dataset, tmp_path):
    spec = write_spec(tmp_path, byte_dataset, name="raykill", axes=AXES)
    study = load_study(spec)
    ref = sequential_copy(study, tmp_path / "seq.sqlite")
    assert ref.done == 2
    killed: list[int] = []
    summary = _run_on_ray_while(lambda stop: _kill_one_worker_mid_run(study.checkpoint_root, killed, stop), study,
                                max_attempts=3)
    assert killed, "no Ray worker was caught mid-run"
    assert summary.done == 2 and summary.ok, summary.failures
    want, got = results(tmp_path / "seq.sqlite"), results(study.store_path)
    assert set(got) == set(want)
    # one run lost its worker and ran again (resuming from its checkpoint); the other ran once
    assert sorted(r["attempts"] for r in got.values()) == [1, 2]
    for rid, r in want.items():
        assert got[rid]["status"] == "done"
        assert got[rid]["test"] == r["test"] and got[rid]["curve"] == r["curve"], rid
    with RunStore(study.store_path, readonly=True) as s:
        assert not s.curves().duplicated(["run_id", "step"]).any()
        assert len(s.runs()) == 2


def test_ray_gives_up_after_max_attempts(byte_dataset, tmp_path):
    """A run whose worker dies every time is failed after max_attempts, with the reason, and the study goes on."""
    spec = write_spec(tmp_path, byte_dataset, name="raydie", axes="[[axes]]\nd_model = [16]\n")
    study = load_study(spec)

    def kill_every_worker(stop):
        while not stop.is_set():
            for pid in _ray_task_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    summary = _run_on_ray_while(kill_every_worker, study, max_attempts=2)
    assert summary.failed == 1 and summary.done == 0
    [(rid, _, error)] = summary.failures
    assert "died in each of 2 attempts" in error
    with RunStore(study.store_path, readonly=True) as s:
        row = s.run(rid)
    assert row["status"] == "failed" and row["attempts"] == 2 and "2 attempts" in row["error"]
