"""The command line reads on its own: every run-config flag of `train` has its field's own comment as help and
its default, every command and action has a description, `--form` lists the forms from the registry, tables keep
run ids whole when piped, `runs list --json`, and a plan without intervals says '-' instead of nan."""

from __future__ import annotations

import argparse
import dataclasses
import json

from conftest import run_cli, train_store

from scalinglab.cli import build_parser
from scalinglab.commands.train import _SKIP, field_docs
from scalinglab.training.config import RunConfig
from scalinglab.laws.forms import FORM_NAMES


def _subparsers(parser):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, p in a.choices.items():
                yield name, p
                yield from _subparsers(p)


def test_every_train_flag_has_its_field_comment_and_default():
    docs = field_docs()
    fields = [f for f in dataclasses.fields(RunConfig) if f.name not in _SKIP]
    missing = [f.name for f in fields if not docs.get(f.name)]
    assert not missing, f"RunConfig fields without a trailing comment: {missing}"
    train = dict(_subparsers(build_parser()))["train"]
    helps = {a.dest: a.help for a in train._actions}
    for f in fields:
        assert helps[f.name].startswith(docs[f.name].replace("%", "%%")), f.name
        assert "(default: " in helps[f.name], f.name
    assert "llama" in helps["family"] and "(default: gpt2)" in helps["family"]
    out = run_cli("train", "--help", env={"COLUMNS": "200"}).stdout
    assert "--family FAMILY" in out and "RMSNorm, SwiGLU, rotary" in out


def test_every_command_and_action_has_a_description_and_forms_are_explained():
    parser = build_parser()
    undescribed = [name for name, p in _subparsers(parser) if not (p.description or "").strip()]
    assert not undescribed, undescribed
    fit = dict(_subparsers(parser))["fit"].format_help()
    for name in FORM_NAMES:
        assert f"\n  {name} " in fit, name
    assert "L(N) = (N_c/N)^alpha_N" in fit


def test_piped_tables_keep_run_ids_whole_and_runs_list_speaks_json(byte_dataset, tmp_path):
    store = train_store(tmp_path / "s.sqlite", byte_dataset, "t",
                        [(dict(n_layer=1, d_model=16, n_head=2, family=f, name=f"a-rather-long-run-name-{f}"),
                          ["sizes"]) for f in ("gpt2", "llama")],
                        n_ctx=32, batch_size=8, tokens=10 * 8 * 32, n_evals=2, eval_tokens=1024)
    got = json.loads(run_cli("runs", "list", "--store", str(store), "--json").stdout)
    assert len(got) == 2 and {r["config"]["family"] for r in got} == {"gpt2", "llama"}
    assert all(len(r["run_id"]) == 16 and r["status"] == "done" and r["final_test_loss"] > 0 for r in got)
    text = run_cli("runs", "list", "--store", str(store), env={"COLUMNS": "80"}).stdout  # a pipe, 80 columns
    for r in got:
        line = next(ln for ln in text.splitlines() if r["run_id"] in ln)  # the whole id, on one line
        assert r["name"] in line and r["config"]["family"] in line
    assert "…" not in text


def test_a_plan_without_intervals_prints_dashes_and_predicts_a_float():
    import scalinglab as sl

    p = sl.plan(1e21)  # the published Chinchilla law: no bootstrap, no intervals
    text = p.summary()
    assert "nan" not in text and "95% -" in text
    assert isinstance(p.predict(1e21), float) and p.predict([1e21, 1e22]).shape == (2,)
