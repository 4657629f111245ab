"""The Ray executor on a local Ray instance gives the same results as the same runs one after another."""

from __future__ import annotations


import pytest

from scalinglab.sweep import load_study, run_study
from conftest import sequential_copy
from test_study import results, write_spec

ray = pytest.importorskip("ray", reason="the Ray executor needs ray (pip install 'scalinglab[ray]')")


def test_ray_matches_sequential(byte_dataset, tmp_path):
    spec = write_spec(tmp_path, byte_dataset, name="rayed", axes="[[axes]]\nd_model = [16, 32]\n")
    study = load_study(spec)
    ref = sequential_copy(study, tmp_path / "seq.sqlite")
    assert ref.done == 2
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_study(study, executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert summary.done == 2 and summary.ok
    want, got = results(tmp_path / "seq.sqlite"), results(study.store_path)
    assert set(got) == set(want)
    for rid, r in want.items():
        assert got[rid]["status"] == "done" and got[rid]["attempts"] == 1
        assert got[rid]["test"] == r["test"] and got[rid]["train"] == r["train"] and got[rid]["curve"] == r["curve"]
