import shutil

import pytest

from scalinglab.config import RunConfig
from scalinglab.errors import ConfigError


def test_run_id_is_stable_and_follows_the_dataset_content(byte_dataset, tmp_path):
    a = RunConfig(data=str(byte_dataset), n_layer=2)
    # where and how fast a run executes does not change what it computes: same id
    assert a.run_id() == RunConfig(data=str(byte_dataset), n_layer=2, threads=2, name="x", device="cpu").run_id()
    assert a.run_id() != RunConfig(data=str(byte_dataset), n_layer=3).run_id()
    moved = tmp_path / "moved"
    shutil.copytree(byte_dataset, moved)
    assert RunConfig(data=str(moved), n_layer=2).run_id() == a.run_id()


def test_integral_floats_accepted_and_bad_values_rejected():
    assert RunConfig(tokens=2e6).tokens == 2_000_000
    with pytest.raises(ConfigError, match="micro_batch_size"):
        RunConfig(batch_size=8, micro_batch_size=3)
    with pytest.raises(ConfigError, match="optimizer"):
        RunConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig.from_dict({"n_layers": 2})


def test_family_is_a_run_field_and_gpt2_keeps_the_ids_runs_had_before_it():
    # ids computed on the commit before `family` existed: a gpt2 run (the default) keeps them
    assert RunConfig().run_id() == "f4015384b04902ff"
    assert RunConfig(n_layer=3, d_model=48, n_head=4, tokens=10**6, name="x").run_id() == "f6e5b2f2370bbb45"
    assert RunConfig(family="gpt2").model_id() == "b6f2a0bd319e0936"
    llama = RunConfig(family="llama")
    assert llama.run_id() != RunConfig().run_id() and llama.shape(100).family == "llama"
    assert llama.shape(100).d_ff == round(8 * llama.d_model / 3)
    with pytest.raises(ConfigError, match="family must be one of gpt2, llama"):
        RunConfig(family="mamba")
    with pytest.raises(ConfigError, match="even head size"):
        RunConfig(family="llama", d_model=60, n_head=4)
