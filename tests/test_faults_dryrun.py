"""`study run --dry-run` never trains for minutes in silence: the throughput probe is bounded (a model too large to
time is estimated from its FLOP and the measured matmul peak), says what it does, and the plan is printed. On the
gpu preset's size sweep (largest model ~85M parameters, 32k-token batches), on this machine's CPU."""

from __future__ import annotations

import re

from conftest import run_cli

from scalinglab.training.config import RunConfig
from scalinglab.reproduce import preset_files
from scalinglab.sweep import load_study, plan_study
from scalinglab.sweep.cost import Throughput, probe_throughput


def _gpu_sizes_spec(tmp_path, data) -> str:
    """The gpu preset's size sweep as it ships, pointed at a small prepared dataset (its own is ~200 MB of text)
    and on this machine's CPU."""
    [sizes] = [f for f in preset_files("gpu") if f.name.endswith("sizes.toml")]
    text = sizes.read_text()
    text = re.sub(r'(?m)^data = .*$', f'data = "{data}"', text, count=1)
    text = re.sub(r"(?ms)^\[data\]\n.*?\n\n", "", text, count=1)  # no recipe: the dataset above is ready
    text = text.replace("[base]\n", '[base]\ndevice = "cpu"\n', 1)
    spec = tmp_path / "gpu_sizes.toml"
    spec.write_text(text)
    return str(spec)


def test_gpu_preset_dry_run_probe_is_bounded_and_says_what_it_does(byte_dataset, tmp_path):
    study = load_study(_gpu_sizes_spec(tmp_path, byte_dataset))
    largest = max(study.runs, key=lambda c: c.d_model * c.n_layer)
    assert (largest.n_layer, largest.d_model, largest.batch_size * largest.n_ctx) == (12, 768, 32768)
    said: list[str] = []
    plan = plan_study(study, log=said.append)
    tp = plan.throughput
    assert isinstance(tp, Throughput) and len(tp.probes) == 2
    small, large = sorted(tp.probes, key=lambda p: p.n_params)
    # the 85M model is not trained: FLOP over the measured peak; the smallest is timed for a few steps at most
    # (or estimated too, on a CPU where even its 32k-token step is too slow for the budget)
    assert large.n_params > 80_000_000 and large.steps == 0
    assert small.steps <= 4
    assert tp.peak_flop_s and large.flop_per_s < tp.peak_flop_s
    assert all(r.est_s and r.est_s > 0 for r in plan.todo) and plan.est_wall_s > 0
    assert said[0].startswith("probing throughput") and any("estimated, not timed" in m for m in said)

    dry = run_cli("study", "run", str(study.spec_path), "--dry-run", env={"COLUMNS": "250"})
    assert dry.returncode == 0, dry.stderr
    assert "probing throughput" in dry.stderr and "matmul peak" in dry.stderr
    assert f"{len(study.runs)} of {len(study.runs)} runs to run" in dry.stdout and "estimated wall time" in dry.stdout


def test_the_budget_decides_whether_a_model_is_timed(byte_dataset, tmp_path):
    """The budget decides: a generous one times the requested steps; none at all times nothing."""
    tiny = RunConfig(data=str(byte_dataset), n_layer=1, d_model=16, n_head=2, n_ctx=32, batch_size=8, device="cpu")
    full = probe_throughput([tiny], 256, 1, steps=3, budget_s=600)
    assert [p.steps for p in full.probes] == [3]
    none = probe_throughput([tiny], 256, 1, steps=3, budget_s=0)
    assert [p.steps for p in none.probes] == [0] and none.points[0][1] > 0
