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
