"""Live tracking (tracking.py): `train --tracker tensorboard|mlflow` and `study run --tracker` write each run's
curve at its evaluation steps, its config and its final metrics, read back here with each tool's own reader
(TensorBoard's EventAccumulator, MLflow's client on its local store). Each test skips only where its extra is not
installed; a missing extra is one line and exit code 2."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from conftest import run_cli

from scalinglab.store import RunStore

RUN = ["--n-layer", "1", "--d-model", "16", "--n-head", "2", "--n-ctx", "32", "--batch-size", "8",
       "--tokens", str(40 * 8 * 32), "--n-evals", "4", "--eval-tokens", "2048", "--threads", "1", "--lr", "3e-3",
       "--no-progress"]  # fmt: skip


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def _stored(store):
    with RunStore(store, readonly=True) as st:
        run = st.runs().iloc[0]
        ev = st.evals()
        cur = st.curves()
    return run, ev, cur


@pytest.mark.slow(seconds=25)
@pytest.mark.skipif(not _has("tensorboard"), reason="the tensorboard extra is not installed")
def test_train_writes_tensorboard_event_files_read_back_by_tensorboard(byte_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = tmp_path / "runs.sqlite"
    res = run_cli("train", "--data", str(byte_dataset), "--store", str(store), "--family", "llama", *RUN,
                  "--tracker", "tensorboard")
    assert res.returncode == 0, res.stderr
    run, ev, _ = _stored(store)
    logdir = tmp_path / "runs.sqlite.tracking" / "tensorboard" / run["run_id"]
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    # the test curve, at the store's evaluation steps with the store's values
    test = ev[ev["eval_set"] == "test"].sort_values("step")
    got = acc.Scalars("eval/test/loss")
    assert [e.step for e in got] == test["step"].tolist()
    assert [e.value for e in got] == pytest.approx(test["loss"].tolist(), rel=1e-6)
    assert {"train/loss", "train/lr", "train/flop", "final/final_test_loss", "final/N"} <= set(tags)
    assert acc.Scalars("final/N")[0].value == run["N"]
    assert acc.Scalars("final/final_test_loss")[0].value == pytest.approx(run["final_test_loss"], rel=1e-6)
    text = json.dumps([t.tensor_proto.string_val[0].decode() for t in acc.Tensors("config/text_summary")])
    assert "llama" in text  # the config went with the run


@pytest.mark.slow(seconds=45)
@pytest.mark.skipif(not _has("mlflow"), reason="the mlflow extra is not installed")
def test_study_run_writes_an_mlflow_file_store_read_back_by_its_client(byte_dataset, tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(f"""[study]
name = "tiny"
data = "{byte_dataset}"
store = "tiny.sqlite"
[base]
n_layer = 1
n_head = 2
n_ctx = 32
batch_size = 8
tokens = {30 * 8 * 32}
n_evals = 3
eval_tokens = 2048
lr = 3e-3
[[axes]]
d_model = [16, 24]
""")
    res = run_cli("study", "run", str(spec), "--workers", "2", "--no-progress", "--no-probe", "--tracker", "mlflow",
                  "--tracker-dir", str(tmp_path / "ml"))
    assert res.returncode == 0, res.stderr
    from mlflow.tracking import MlflowClient

    env = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=(tmp_path / "ml").resolve().as_uri())
        exp = client.get_experiment_by_name("tiny")
        runs = client.search_runs([exp.experiment_id])
        with RunStore(tmp_path / "tiny.sqlite", readonly=True) as st:
            stored = st.runs().set_index("run_id")
            ev = st.evals()
        assert len(runs) == 2 == len(stored)
        for r in runs:
            rid = r.data.tags["scalinglab.run_id"]
            assert r.info.status == "FINISHED" and r.data.tags["scalinglab.status"] == "done"
            assert int(r.data.params["d_model"]) == json.loads(stored.loc[rid, "config"])["d_model"]
            assert int(r.data.params["info.N"]) == stored.loc[rid, "N"]
            hist = client.get_metric_history(r.info.run_id, "eval/test/loss")
            test = ev[(ev["run_id"] == rid) & (ev["eval_set"] == "test")].sort_values("step")
            assert sorted(m.step for m in hist) == test["step"].tolist()  # each evaluation step, once
            assert [m.value for m in sorted(hist, key=lambda m: m.step)] == pytest.approx(test["loss"].tolist())
            assert r.data.metrics["final/final_test_loss"] == pytest.approx(stored.loc[rid, "final_test_loss"])
    finally:
        if env is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def test_a_missing_tracker_extra_is_one_line_and_exit_code_2(byte_dataset, tmp_path):
    # a copy of the interpreter's path without the tracker's package: `wandb` is the extra not installed here;
    # where it is, hide it by a module that fails to import
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "wandb.py").write_text("raise ImportError('hidden for this test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    store = tmp_path / "r.sqlite"
    res = run_cli("train", "--data", str(byte_dataset), "--store", str(store), *RUN, "--tracker", "wandb", env=env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "scalinglab: error: --tracker wandb needs the wandb package: pip install 'scalinglab[wandb]'"]
    assert not store.exists()  # nothing trained, nothing written
