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
    assert sum(ds.meta["splits"][s]["n_docs"] for s in ("train", "validation", "test")) == 10
    assert ds.meta["sources"][0]["format"] == "huggingface-datasets"


def test_huggingface_dataset_by_name_through_load_dataset_without_network(tmp_path, monkeypatch):
    """`hf:NAME[:CONFIG]` goes through datasets.load_dataset: here a local folder of Parquet files it reads offline
    (what a dataset in the datasets cache or on the Hub is to it), every split, the text column by name."""
    datasets = pytest.importorskip("datasets", reason="the `datasets` package is not installed")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    docs = _real_docs(10)
    folder = tmp_path / "mydata"
    folder.mkdir()
    datasets.Dataset.from_dict({"body": docs[:7], "n": list(range(7))}).to_parquet(str(folder / "train.parquet"))
    datasets.Dataset.from_dict({"body": docs[7:], "n": list(range(3))}).to_parquet(str(folder / "test.parquet"))
    got = load_user_data(f"hf:{folder}", text_field="body")
    assert sorted(got.docs) == sorted(d.strip() for d in docs)
    assert got.sources[0]["format"] == "huggingface-load_dataset"
    # the saved-to-disk form after the prefix too, and the CLI's one-line errors
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(saved))
    assert sorted(load_user_data(f"hf:{saved}").docs) == sorted(got.docs)
    out = prepare_dataset(f"hf:{folder}", tmp_path / "ds", tokenizer="bpe-300", text_field="body",
                          cache_dir=tmp_path / "cache")
    assert TokenDataset(out).meta["splits"]["train"]["n_docs"] > 0


def test_huggingface_dataset_errors_are_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("datasets", reason="the `datasets` package is not installed")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    err = _cli_error(capsys, "--corpus", "hf:no-such-user/no-such-dataset-xyz", "--out", str(tmp_path / "o"))
    assert err.startswith("scalinglab: error: hf:no-such-user/no-such-dataset-xyz: datasets could not load it")
    assert not (tmp_path / "o").exists()


def test_a_hugging_face_tokenizer_from_its_file_or_directory(tmp_path, capsys):
    """Any `tokenizers` JSON file: its own end-of-sequence token is the separator where it has one, else
    <|endoftext|> is added; the prepared dataset decodes back to the text with the same tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    docs = _real_docs(12)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(docs, trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[UNK]", "[SEP]"]))
    wp = tmp_path / "wordpiece.json"
    tok.save(str(wp))
    jl = tmp_path / "docs.jsonl"
    jl.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = prepare_dataset(jl, tmp_path / "ds", tokenizer=str(wp), cache_dir=tmp_path / "cache")
    ds = TokenDataset(out)
    meta = ds.meta["tokenizer"]
    assert meta["kind"] == "file" and meta["eot"] == "[SEP]" and not meta["eot_added"]
    assert ds.vocab_size == tok.get_vocab_size() and meta["eot_id"] == tok.token_to_id("[SEP]")
    # a BPE without any end-of-sequence token, given as a transformers-style directory (tokenizer.json inside)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    d = tmp_path / "tok-dir"
    d.mkdir()
    bpe.save(str(d / "tokenizer.json"))
    out2 = prepare_dataset(jl, tmp_path / "ds2", tokenizer=str(d), cache_dir=tmp_path / "cache")
    m2 = TokenDataset(out2).meta["tokenizer"]
    assert m2["eot"] == "<|endoftext|>" and m2["eot_added"] and m2["eot_id"] == bpe.get_vocab_size()
    # a changed tokenizer file is a new input: the dataset is prepared again, not taken as current
    bpe.add_tokens(["def "])
    bpe.save(str(d / "tokenizer.json"))
    out3 = prepare_dataset(jl, tmp_path / "ds2", tokenizer=str(d), cache_dir=tmp_path / "cache")
    assert TokenDataset(out3).meta["tokenizer"]["eot_id"] == bpe.get_vocab_size()
    # a file that is not a tokenizer: one line
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code = main(["data", "prepare", "--corpus", str(jl), "--out", str(tmp_path / "o"), "--quiet",
                 "--tokenizer", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not a Hugging Face tokenizers JSON file" in err
    assert not (tmp_path / "o").exists()
