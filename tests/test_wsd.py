"""Warm-up-stable-decay schedules and cooldown branches: the schedule, the run ids, bad configs, and a branch's
curve against a run trained alone to its budget."""

import math

import numpy as np
import pytest

from scalinglab.training.config import RunConfig
from scalinglab.errors import ConfigError
from scalinglab.training.schedule import cosine_lr, decay_start, wsd_lr

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
