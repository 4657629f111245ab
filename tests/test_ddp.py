"""One run across two CPU processes (torchrun, DDP over gloo) follows the one-process run of the same config."""

from __future__ import annotations


import numpy as np
import pytest

from scalinglab.sweep import load_study, run_study
from conftest import sequential_copy
from test_study import results, write_spec


def test_ddp_two_processes_match_one_process(byte_dataset, tmp_path):
    spec = write_spec(tmp_path, byte_dataset, name="ddp", axes="[[axes]]\nd_model = [32]\n")
    study = load_study(spec)
    one = sequential_copy(study, tmp_path / "one.sqlite")
    assert one.done == 1
    two = run_study(study, nproc_per_node=2, progress=False)  # torchrun --nproc_per_node 2, gloo
    assert two.done == 1 and two.ok, two.failures
    [(rid, want)] = results(tmp_path / "one.sqlite").items()
    got = results(study.store_path)[rid]
    # the global batch of 8 is split 4 + 4 and the gradients all-reduced: the same step up to float rounding
    assert [s for s, _ in got["curve"]] == [s for s, _ in want["curve"]]
    for (_, a), (_, b) in zip(got["curve"], want["curve"]):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    assert got["test"] == pytest.approx(want["test"], rel=1e-5)


def test_ddp_worker_refuses_to_run_outside_torchrun(byte_dataset, tmp_path):
    import subprocess
    import sys

    spec = write_spec(tmp_path, byte_dataset, name="ddp2", axes="[[axes]]\nd_model = [16]\n")
    r = subprocess.run([sys.executable, "-m", "scalinglab.sweep.ddp_worker", str(spec)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "torchrun" in r.stderr


def test_ddp_noise_scale_matches_one_process(byte_dataset, tmp_path):
    """The gradient noise scale under DDP. With micro-batches of 2 sequences, one process accumulates 4 of them
    and two ranks 2 each: rank 0's first micro-batch is the one process's first (the same B_small examples), and
    after the all-reduce the gradient is the mean over the whole global batch of 8 (B_big), as in one process.
    So |G|^2, tr(Sigma) and B_simple agree up to float rounding. (Before B_big counted the world size, two ranks
    took B_big as 4 sequences: tr(Sigma) came out 1.5x too high.)"""
    axes = "[[axes]]\nd_model = [32]\nnoise_scale = [true]\nmicro_batch_size = [2]\n"
    spec = write_spec(tmp_path, byte_dataset, name="ddpgns", axes=axes)
    study = load_study(spec)
    one = sequential_copy(study, tmp_path / "one.sqlite")
    assert one.done == 1
    two = run_study(study, nproc_per_node=2, progress=False)
    assert two.done == 1 and two.ok, two.failures
    from scalinglab.store import RunStore

    with RunStore(tmp_path / "one.sqlite", readonly=True) as s:
        a = s.curves().dropna(subset=["b_simple"]).set_index("step")
    with RunStore(study.store_path, readonly=True) as s:
        b = s.curves().dropna(subset=["b_simple"]).set_index("step")
    assert len(a) >= 10 and list(a.index) == list(b.index)
    for col in ("gns_trace", "gns_g2", "b_simple"):
        late = a.index[len(a) // 2 :]  # once the moving averages hold many steps
        np.testing.assert_allclose(b.loc[late, col], a.loc[late, col], rtol=1e-3)
