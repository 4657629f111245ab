"""torchrun on scalinglab.sweep.ddp_worker is a study driver like `scalinglab study run`: it holds the study's
store lock, so the two never drive one store at once (either way round)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_study import write_spec

from scalinglab.errors import StoreError
from scalinglab.store import RunStore
from scalinglab.sweep import load_study, run_study
from scalinglab.sweep.runner import study_lock


def _torchrun(spec, *extra) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "scalinglab.sweep.ddp_worker", str(spec), *extra]


def test_ddp_worker_refuses_a_store_another_driver_holds(byte_dataset, tmp_path):
    spec = write_spec(tmp_path, byte_dataset, name="ddplock", axes="[[axes]]\nd_model = [16]\n")
    study = load_study(spec)
    with study_lock(study.store_path):  # this test process is the driver now
        r = subprocess.run(_torchrun(spec), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    mine = [ln for ln in r.stderr.splitlines() if ln.startswith("scalinglab: error:")]
    assert len(mine) == 1 and "another scalinglab driver" in mine[0] and f"pid {os.getpid()}" in mine[0], r.stderr
    if study.store_path.exists():
        with RunStore(study.store_path, readonly=True) as s:
            assert not (s.runs()["status"] == "done").any()  # it trained nothing


def test_study_run_refuses_a_store_torchrun_drives(byte_dataset, tmp_path):
    spec = write_spec(tmp_path, byte_dataset, name="ddplock2",
                      axes="[[axes]]\nd_model = [16]\ntokens = [1024000]\n")  # 4000 steps: still running below
    study = load_study(spec)
    proc = subprocess.Popen(_torchrun(spec), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        running = False
        while time.time() < deadline and proc.poll() is None and not running:
            if study.store_path.exists():
                try:
                    with RunStore(study.store_path, readonly=True) as s:
                        running = (s.runs()["status"] == "running").any()
                except StoreError:
                    pass
            time.sleep(0.1)
        assert running, "torchrun did not start training"
        with pytest.raises(StoreError, match="another scalinglab driver"):
            run_study(study, executor="sequential", progress=False)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
