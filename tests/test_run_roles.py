"""Run roles: written by the study spec into the store (many-to-many), read back; bad roles refused."""

import pytest

from scalinglab.errors import ConfigError, StoreError
from scalinglab.store import RunStore
from scalinglab.sweep.spec import _roles


def test_roles_roundtrip_many_to_many(tmp_path):
    st = RunStore(tmp_path / "s.sqlite")
    st.add_run("r1", {"a": 1})
    st.add_roles("r1", ["sizes"], "spec-a")
    st.add_roles("r1", ["shape"], "spec-b")  # a run shared by two specs has both roles
    st.add_roles("r1", ["sizes"], "spec-a")  # registering again changes nothing
    got = st.roles()
    assert sorted(got["role"]) == ["shape", "sizes"] and set(got["study"]) == {"spec-a", "spec-b"}
    with pytest.raises(StoreError, match="unknown run role 'size'"):
        st.add_roles("r1", ["size"])
    st.close()


def test_spec_roles_declared_or_implied_by_axes():
    assert _roles(["batch", "lr"], ["batch_size", "lr_scale"], "x") == ["batch", "lr"]
    assert _roles("shape", [], "x") == ["shape"]
    assert _roles(None, ["model"], "x") == ["sizes"]
    assert _roles(None, ["model", "d_unique"], "x") == ["subsets"]
    with pytest.raises(ConfigError, match="unknown role 'sizes2'"):
        _roles(["sizes2"], [], "spec.toml")
