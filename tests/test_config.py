import shutil

import pytest

from scalinglab.errors import ConfigError
from scalinglab.training._runtime import auto_precision, cpu_native_bf16, native_bf16_in
from scalinglab.training.config import RunConfig


def test_run_id_is_stable_and_follows_the_dataset_content(byte_dataset, tmp_path):
    a = RunConfig(data=str(byte_dataset), n_layer=2, precision="fp32")
    # where and how fast a run executes does not change what it computes: same id (at one precision: 'auto' on a
    # GPU machine means bf16 for device 'auto' and maybe fp32 for device 'cpu', two different computations)
    assert a.run_id() == RunConfig(data=str(byte_dataset), n_layer=2, threads=2, name="x", device="cpu",
                                   precision="fp32").run_id()
    assert a.run_id() != RunConfig(data=str(byte_dataset), n_layer=3).run_id()
    moved = tmp_path / "moved"
    shutil.copytree(byte_dataset, moved)
    assert RunConfig(data=str(moved), n_layer=2, precision="fp32").run_id() == a.run_id()


def test_integral_floats_accepted_and_bad_values_rejected():
    assert RunConfig(tokens=2e6).tokens == 2_000_000
    with pytest.raises(ConfigError, match="micro_batch_size"):
        RunConfig(batch_size=8, micro_batch_size=3)
    with pytest.raises(ConfigError, match="optimizer"):
        RunConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig.from_dict({"n_layers": 2})

    with pytest.raises(ConfigError, match="precision must be 'fp32', 'bf16' or 'auto', got 'fp16'"):
        RunConfig(precision="fp16")


def test_replace_derives_a_checked_copy(byte_dataset):
    base = RunConfig(data=str(byte_dataset), n_layer=2, precision="fp32", extra={"axis": 1})
    more = base.replace(threads=3, name="b")
    assert (more.threads, more.name, base.threads, base.name) == (3, "b", None, "")
    assert more.run_id() == base.run_id()  # threads and name do not define the run
    assert base.replace(lr_scale=2.0).run_id() != base.run_id()
    more.extra["axis"] = 2
    assert base.extra == {"axis": 1}  # a copy: the derived config shares no list or dict with its source
    with pytest.raises(ConfigError, match="n_head"):
        base.replace(n_head=3)  # 3 heads do not divide d_model 64: checked as any config is
    with pytest.raises(ConfigError, match="unknown key"):
        base.replace(n_layers=3)


def test_precision_is_resolved_before_the_run_id_and_fp32_keeps_the_old_ids():
    # the id this config had before `precision` existed (every earlier run computed in float32 on the CPU)
    assert RunConfig(data="x", precision="fp32").run_id() == "e87f6413f038394b"
    bf16 = RunConfig(data="x", precision="bf16")
    assert bf16.run_id() != RunConfig(data="x", precision="fp32").run_id()  # a different computation, another run
    assert bf16.model_id() != RunConfig(data="x", precision="fp32").model_id()
    # 'auto' becomes what this machine computes, once, at construction: the id and the stored config record it
    auto = RunConfig(data="x", device="cpu", d_model=128)
    assert auto.precision == ("bf16" if cpu_native_bf16() else "fp32") == auto_precision("cpu", 128)
    # narrower models stay in float32 on a CPU, where bf16 measured slower (_runtime.CPU_BF16_MIN_D_MODEL)
    assert RunConfig(data="x", device="cpu", d_model=64).precision == "fp32"
    assert auto.run_id() == RunConfig(data="x", device="cpu", d_model=128, precision=auto.precision).run_id()
    assert RunConfig.from_dict(auto.to_dict()).precision == auto.precision
    assert RunConfig(data="x", device="cuda").precision == "bf16"  # GPUs train in bf16 autocast
    assert RunConfig(data="x", device="cuda", precision="fp32").precision == "fp32"  # unless told otherwise


def test_native_bf16_is_read_from_the_cpu_flags():
    epyc = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
    xeon_spr = "flags\t\t: fpu avx512f amx_bf16 amx_tile\n"
    old_xeon = "flags\t\t: fpu sse avx2 avx512f avx512_vnni\n"
    graviton3 = "Features\t: fp asimd sve bf16 i8mm\n"
    graviton2 = "Features\t: fp asimd atomics\n"
    for text, native in ((epyc, True), (xeon_spr, True), (old_xeon, False), (graviton3, True), (graviton2, False)):
        assert native_bf16_in(text) is native, text
    assert not native_bf16_in("model name\t: AMD EPYC avx512_bf16\n")  # only the flags lines count


def test_family_is_a_run_field_and_gpt2_keeps_the_ids_runs_had_before_it():
    # ids computed on the commit before `family` existed: a gpt2 run (the default) keeps them (at float32, what
    # every run before `precision` computed in)
    assert RunConfig(precision="fp32").run_id() == "f4015384b04902ff"
    assert RunConfig(n_layer=3, d_model=48, n_head=4, tokens=10**6, name="x", precision="fp32").run_id() == \
        "f6e5b2f2370bbb45"
    assert RunConfig(family="gpt2", precision="fp32").model_id() == "b6f2a0bd319e0936"
    llama = RunConfig(family="llama")
    assert llama.run_id() != RunConfig().run_id() and llama.shape(100).family == "llama"
    assert llama.shape(100).d_ff == round(8 * llama.d_model / 3)
    with pytest.raises(ConfigError, match="family must be one of gpt2, llama"):
        RunConfig(family="mamba")
    with pytest.raises(ConfigError, match="even head size"):
        RunConfig(family="llama", d_model=60, n_head=4)
