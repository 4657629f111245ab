"""A user's own data (text directory, JSONL, Parquet, HF datasets) and the one-line errors for bad input."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalinglab.cli import main
from scalinglab.data import TokenDataset, prepare_dataset
from scalinglab.data.userdata import load_user_data


def _real_docs(n: int = 12) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p.read_text(encoding="utf-8")[:6000] for p in sorted(root.glob("*.py"))[:n]]


def _cli_error(capsys, *args: str) -> str:
    code = main(["data", "prepare", *args, "--quiet", "--tokenizer", "bpe-300"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_text_directory_jsonl_and_parquet_give_the_same_documents(tmp_path):
    docs = _real_docs()
    d = tmp_path / "texts"
    (d / "sub").mkdir(parents=True)
    for i, doc in enumerate(docs):
        (d / ("sub" if i % 2 else "") / f"doc{i:02d}.txt").write_text(doc)
    (d / ".hidden").write_bytes(b"\x00\x01 ignored")
    jl = tmp_path / "docs.jsonl"
    jl.write_text("".join(json.dumps({"id": i, "body": doc}) + "\n" for i, doc in enumerate(docs)))
    pqf = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": docs, "n": list(range(len(docs)))}), pqf)

    want = sorted(doc.strip() for doc in docs)
    assert sorted(load_user_data(d).docs) == want
    assert sorted(load_user_data(jl, "body").docs) == want
    assert sorted(load_user_data(pqf, "body").docs) == want


def test_prepare_from_jsonl_via_cli(tmp_path, capsys):
    jl = tmp_path / "docs.jsonl"
    jl.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in _real_docs(20)))
    out = tmp_path / "ds"
    code = main(["data", "prepare", "--corpus", str(jl), "--out", str(out), "--tokenizer", "bpe-300",
                 "--quiet", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    ds = TokenDataset(out)
    # 20 short documents (none long enough to be chunked), each in one of train, validation, test
    assert sum(ds.meta["splits"][k]["n_docs"] for k in ("train", "validation", "test")) == 20
    assert ds.meta["splits"]["validation"]["n_docs"] >= 1 and ds.meta["splits"]["test"]["n_docs"] >= 1
    assert ds.meta["sources"][0]["format"] == "jsonl" and ds.meta["transfer"] == {}
    assert main(["data", "info", str(out)]) == 0
    assert "train" in capsys.readouterr().out


def test_missing_path(tmp_path, capsys):
    err = _cli_error(capsys, "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert "no such file or directory" in err


def test_unknown_corpus_name(tmp_path, capsys):
    err = _cli_error(capsys, "--corpus", "webtext9", "--out", str(tmp_path / "o"))
    assert "unknown corpus 'webtext9'" in err and "stdlib" in err


def test_empty_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _cli_error(capsys, "--corpus", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert "empty directory" in err


def test_binary_file(tmp_path, capsys):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a.txt").write_text(_real_docs(1)[0])
    (d / "model.bin").write_bytes(bytes(range(256)) * 8)
    err = _cli_error(capsys, "--corpus", str(d), "--out", str(tmp_path / "o"))
    assert "model.bin" in err and "binary" in err


def test_jsonl_without_the_field(tmp_path, capsys):
    jl = tmp_path / "docs.jsonl"
    jl.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text field"}) + "\n")
    err = _cli_error(capsys, "--corpus", str(jl), "--out", str(tmp_path / "o"))
    assert "docs.jsonl:2" in err and "no field 'text'" in err and "--text-field" in err


def test_parquet_without_the_column(tmp_path, capsys):
    pqf = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), pqf)
    err = _cli_error(capsys, "--corpus", str(pqf), "--out", str(tmp_path / "o"))
    assert "no column 'text'" in err


def test_bad_tokenizer_spec(tmp_path, capsys):
    code = main(["data", "prepare", "--corpus", "stdlib", "--out", str(tmp_path / "o"), "--tokenizer", "wordpiece"])
    assert code == 2 and "unknown tokenizer 'wordpiece'" in capsys.readouterr().err


def test_huggingface_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the `datasets` package is not installed")
    docs = _real_docs(10)
    path = tmp_path / "hf"
    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(path))
    out = prepare_dataset(path, tmp_path / "ds", tokenizer="bpe-300", cache_dir=tmp_path / "cache")
    ds = TokenDataset(out)
    assert sum(ds.meta["splits"][k]["n_docs"] for k in ("train", "validation", "test")) == 10
    assert ds.meta["sources"][0]["format"] == "huggingface-datasets"
