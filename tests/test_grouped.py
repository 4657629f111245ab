"""Grouped training (grouped.py): runs of one shape trained together as one batched model give each run the curve it
gets alone (float rounding apart), stored and checkpointed as its own run, and a group killed mid-way resumes to
the same curves."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.training.config import RunConfig
from scalinglab.errors import ConfigError
from scalinglab.training.grouped import group_key, train_grouped
from scalinglab.store import RunStore
from scalinglab.training.checkpoint import CHECKPOINT_NAME
from scalinglab.training.trainer import train_run

STEPS = 60
TOL = 1e-4


def _config(data, **kw) -> RunConfig:
    base = dict(data=str(data), n_layer=2, d_model=32, n_head=2, n_ctx=32, batch_size=8, tokens=STEPS * 8 * 32,
                lr=3e-3, threads=1, n_evals=4, eval_tokens=2048, train_log_every=5,
                precision="fp32")  # grouped vs lone compared at float32 tolerance on any CPU
    return RunConfig(**{**base, **kw})


def _group(data, **kw) -> list[RunConfig]:
    """Four runs of one shape that differ in seed, LR, data subset and budget (the sweeps a preset groups)."""
    return [_config(data, seed=0, **kw), _config(data, seed=1, lr=1e-3, **kw),
            _config(data, seed=2, d_unique=50_000, **kw), _config(data, seed=3, tokens=(STEPS // 2) * 8 * 32, **kw)]


@pytest.fixture(scope="module")
def alone(byte_dataset):
    return [train_run(c) for c in _group(byte_dataset)]


def _same_curve(result, ref):
    assert result.status == ref.status == "done"
    assert [p["step"] for p in result.points] == [p["step"] for p in ref.points]
    np.testing.assert_allclose([p["train_loss"] for p in result.points], [p["train_loss"] for p in ref.points],
                               rtol=0, atol=TOL)
    assert [(e["step"], e["eval_set"]) for e in result.evals] == [(e["step"], e["eval_set"]) for e in ref.evals]
    np.testing.assert_allclose([e["loss"] for e in result.evals], [e["loss"] for e in ref.evals], rtol=0, atol=TOL)
    assert abs(result.final_test_loss - ref.final_test_loss) < TOL


def test_grouped_runs_match_their_lone_runs_and_are_stored_as_their_own(byte_dataset, alone, tmp_path):
    configs = _group(byte_dataset)
    store = RunStore(tmp_path / "s.sqlite")
    grouped = train_grouped(configs, store=store)
    assert [r.run_id for r in grouped] == [c.run_id() for c in configs]
    for g, a in zip(grouped, alone):
        _same_curve(g, a)
    # the runs learn different things: a mix-up of runs inside the group could not pass the comparison above
    finals = sorted(a.final_test_loss for a in alone)
    assert min(np.diff(finals)) > 10 * TOL
    assert grouped[3].summary["S"] == STEPS // 2 and grouped[0].summary["S"] == STEPS  # each its own budget
    runs = store.runs().set_index("run_id")
    curves = store.curves()
    for g in grouped:
        assert runs.loc[g.run_id, "status"] == "done"
        assert runs.loc[g.run_id, "final_test_loss"] == pytest.approx(g.final_test_loss)
        assert curves[curves["run_id"] == g.run_id]["step"].max() == g.summary["S"]


def test_vmap_form_matches_too(byte_dataset, alone):
    grouped = train_grouped(_group(byte_dataset)[:2], how="vmap")
    for g, a in zip(grouped, alone[:2]):
        _same_curve(g, a)


class Crash(Exception):
    """Stands for the process dying at a given step (the checkpoints on disk stay as they are)."""


def test_group_killed_midway_resumes_to_the_same_curves(byte_dataset, alone, tmp_path):
    configs = _group(byte_dataset, checkpoint_every_s=0.0)
    dirs = [tmp_path / f"ckpt{i}" for i in range(len(configs))]

    def crash(info):
        if info["run_id"] == configs[0].run_id() and info["step"] == 40:
            raise Crash

    with pytest.raises(Crash):
        train_grouped(configs, checkpoint_dirs=dirs, on_progress=crash)
    # the short run had finished (its checkpoint removed), the others were checkpointed mid-way
    assert not (dirs[3] / CHECKPOINT_NAME).exists()
    assert all((d / CHECKPOINT_NAME).exists() for d in dirs[:3])
    first_step: dict[str, int] = {}
    resumed = train_grouped(configs, checkpoint_dirs=dirs,
                            on_progress=lambda info: first_step.setdefault(info["run_id"], info["step"]))
    for r, a in zip(resumed, alone):
        _same_curve(r, a)
    # the killed runs went on from their last checkpoints (step 39); the finished one, with no checkpoint left and
    # no store here, was trained again from the start
    assert [first_step[c.run_id()] for c in configs] == [40, 40, 40, 1]


def test_runs_of_other_shapes_cannot_be_grouped(byte_dataset):
    assert group_key(_config(byte_dataset)) == group_key(_config(byte_dataset, seed=5, lr=1e-2, tokens=999_999))
    assert group_key(_config(byte_dataset)) != group_key(_config(byte_dataset, d_model=64))
    assert group_key(_config(byte_dataset)) != group_key(_config(byte_dataset, precision="bf16"))  # one autocast
    assert group_key(_config(byte_dataset, noise_scale=True)) is None
    with pytest.raises(ConfigError, match="share the model shape"):
        train_grouped([_config(byte_dataset), _config(byte_dataset, n_layer=1)])


def test_bf16_group_follows_its_lone_bf16_runs(byte_dataset):
    """Under precision bf16 the batched forward runs under the lone run's autocast: each run's curve follows its
    lone bf16 run to bfloat16 rounding (0.01 nats), finer than the two seeds' difference (checked last, so a mix-up
    of the runs could not pass)."""
    configs = [_config(byte_dataset, seed=s, precision="bf16") for s in (0, 1)]
    grouped = train_grouped(configs)
    lone = [train_run(c) for c in configs]
    for g, a in zip(grouped, lone):
        assert g.summary["precision"] == "bf16" and g.status == a.status == "done"
        np.testing.assert_allclose([e["loss"] for e in g.evals], [e["loss"] for e in a.evals], rtol=0, atol=1e-2)
    assert abs(lone[0].final_test_loss - lone[1].final_test_loss) > 1e-2
