"""The llama model family (RMSNorm, SwiGLU, rotary positions, no biases) trains through the same trainer, store and
grouped path as Kaplan's gpt2 family: a tiny llama run's loss falls, and a group of llama runs gives each run the
curve it gets alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalinglab.accounting import ModelShape
from scalinglab.training.config import RunConfig
from scalinglab.training.grouped import group_key, train_grouped
from scalinglab.training.model import Transformer, apply_rotary, rotary_tables
from scalinglab.store import RunStore
from scalinglab.training.trainer import train_run

STEPS = 40
TOL = 1e-4


def _config(data, **kw) -> RunConfig:
    base = dict(data=str(data), family="llama", n_layer=2, d_model=32, n_head=2, n_ctx=32, batch_size=8,
                tokens=STEPS * 8 * 32, lr=3e-3, threads=1, n_evals=4, eval_tokens=2048, train_log_every=5)
    return RunConfig(**{**base, **kw})


def test_rotary_positions_are_relative_and_make_order_matter():
    # <R_m q, R_n k> depends on m - n only
    torch.manual_seed(0)
    q, k = torch.randn(16), torch.randn(16)
    cos, sin = rotary_tables(64, 16)
    dots = [float(apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n])) for m, n in
            ((5, 2), (40, 37), (63, 60))]
    assert max(dots) - min(dots) < 1e-4 and abs(dots[0] - float(q @ k)) > 1e-3  # and differs from no rotation
    # a llama model has no position parameters, yet the order of a prefix changes the last position's state
    # (causal attention without positions sees the prefix as a set: the two states would be equal)
    model = Transformer(ModelShape(2, 32, 2, 16, 50, family="llama"))
    h1 = model.hidden(torch.tensor([[3, 9, 4, 7]]))[0, -1]
    h2 = model.hidden(torch.tensor([[9, 3, 4, 7]]))[0, -1]
    assert (h1 - h2).abs().max() > 1e-4
    # causal: a change at the last position leaves the earlier positions' states as they were
    idx = torch.randint(0, 50, (1, 16))
    idx2 = idx.clone()
    idx2[0, -1] = (idx[0, -1] + 1) % 50
    h1, h2 = model.hidden(idx), model.hidden(idx2)
    torch.testing.assert_close(h1[0, :-1], h2[0, :-1])
    assert (h1[0, -1] - h2[0, -1]).abs().max() > 1e-4


def test_tiny_llama_run_trains_and_is_stored(byte_dataset, tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    res = train_run(_config(byte_dataset), store=store)
    assert res.status == "done"
    test = [e["loss"] for e in res.evals if e["eval_set"] == "test"]
    assert test[-1] < test[0] - 0.5  # from ~ln 256 = 5.5 towards byte-level text entropy
    assert res.final_test_loss < 4.0
    row = store.run(res.run_id)
    shape = _config(byte_dataset).shape(256)
    model = Transformer(shape)
    assert row["N"] == sum(p.numel() for p in model.non_embedding_parameters())
    assert row["d_ff"] == shape.d_ff == 85


@pytest.fixture(scope="module")
def alone(byte_dataset):
    return [train_run(c) for c in _group(byte_dataset)]


def _group(data) -> list[RunConfig]:
    return [_config(data, seed=0), _config(data, seed=1, lr=1e-3), _config(data, seed=2, tokens=(STEPS // 2) * 8 * 32)]


def test_grouped_llama_runs_match_their_lone_runs(byte_dataset, alone):
    configs = _group(byte_dataset)
    assert group_key(configs[0]) is not None and group_key(configs[0]) != group_key(_config(byte_dataset,
                                                                                            family="gpt2"))
    grouped = train_grouped(configs)
    for g, a in zip(grouped, alone):
        assert g.status == a.status == "done"
        np.testing.assert_allclose([p["train_loss"] for p in g.points], [p["train_loss"] for p in a.points],
                                   rtol=0, atol=TOL)
        np.testing.assert_allclose([e["loss"] for e in g.evals], [e["loss"] for e in a.evals], rtol=0, atol=TOL)
    finals = sorted(a.final_test_loss for a in alone)
    assert min(np.diff(finals)) > 10 * TOL  # the runs differ: a mix-up inside the group could not pass


def test_vmap_form_of_the_grouped_step_matches_for_llama(byte_dataset, alone):
    grouped = train_grouped(_group(byte_dataset), how="vmap")
    for g, a in zip(grouped, alone):
        np.testing.assert_allclose([e["loss"] for e in g.evals], [e["loss"] for e in a.evals], rtol=0, atol=TOL)


def test_a_study_spec_sizes_each_family_by_its_own_shape_rule(byte_dataset):
    """family is an axis like any run field; with an n_params axis each family's shape is found by its own count
    (llama: SwiGLU at 8/3 d_model, no biases), so both families hit the target N."""
    from scalinglab import accounting as acc
    from scalinglab.sweep.spec import study_from_dict

    study = study_from_dict({"study": {"name": "fam", "data": str(byte_dataset)},
                             "base": {"n_ctx": 32, "tokens": 8 * 32 * 10, "batch_size": 8},
                             "axes": [{"family": ["gpt2", "llama"]},
                                      {"n_params": [2e4, 1e5], "depth": {"n_layer": 2}}]})
    assert [r.family for r in study.runs] == ["gpt2", "gpt2", "llama", "llama"]
    for r in study.runs:
        shape = r.shape(256)
        n = acc.n_params(shape)
        assert abs(np.log(n / r.extra["n_params"])) < np.log(1.3), (r.name, n)
        assert shape.d_ff == (4 * shape.d_model if r.family == "gpt2" else round(8 * shape.d_model / 3))
