"""prepare_dataset on real text that needs no download (the CPython standard library): the split is clean,
subsets nest, the BPE round-trips, and a repeated call is served from what is already there."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from scalinglab.data import TokenDataset, WindowSampler, prepare_dataset
from scalinglab.data.corpora import load_corpus
from scalinglab.data.tokenizer import EOT, get_tokenizer

MAX_BYTES = 600_000


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def stdlib_ds(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("ds") / "stdlib"
    return prepare_dataset("stdlib", out, tokenizer="bpe-512", max_bytes=MAX_BYTES, cache_dir=cache, seed=3)


def _documents(ds: TokenDataset, split: str) -> list[str]:
    """Decode a split back into its documents (the stream is documents joined by EOT)."""
    tok = Tokenizer.from_file(str(ds.path / "tokenizer.json"))
    eot = ds.meta["tokenizer"]["eot_id"]
    toks = np.asarray(ds.tokens(split))
    cuts = np.flatnonzero(toks == eot)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [tok.decode(toks[a:b].tolist(), skip_special_tokens=False) for a, b in zip(starts, cuts)]


def _h(doc: str) -> str:
    return hashlib.sha256(doc.encode()).hexdigest()


def test_no_test_document_in_train(stdlib_ds):
    ds = TokenDataset(stdlib_ds)
    train, test = _documents(ds, "train"), _documents(ds, "test")
    assert len(train) == ds.meta["splits"]["train"]["n_docs"] and len(test) == ds.meta["splits"]["test"]["n_docs"]
    assert test, "the split held out no documents"
    assert not {_h(d) for d in test} & {_h(d) for d in train}
    # the decoded streams are the documents themselves, byte for byte
    assert sum(len(d.encode()) for d in train + test) == ds.meta["n_bytes"]["train"] + ds.meta["n_bytes"]["test"]


def test_split_does_not_depend_on_seed_but_order_does(stdlib_ds, tmp_path, cache):
    other = prepare_dataset("stdlib", tmp_path / "s9", tokenizer="bpe-512", max_bytes=MAX_BYTES, cache_dir=cache,
                            seed=9)
    a, b = TokenDataset(stdlib_ds), TokenDataset(other)
    assert sorted(map(_h, _documents(a, "test"))) == sorted(map(_h, _documents(b, "test")))
    assert a.n_tokens("train") == b.n_tokens("train")
    assert not np.array_equal(a.tokens("train"), b.tokens("train"))


def test_subsets_nest(stdlib_ds):
    ds = TokenDataset(stdlib_ds)
    sizes = [1_000, 20_000, 150_000, ds.n_tokens("train")]
    subsets = [np.asarray(ds.train_subset(d)) for d in sizes]
    for small, big in zip(subsets, subsets[1:]):
        assert big.size > small.size
        np.testing.assert_array_equal(big[: small.size], small)


def test_bpe_round_trips_real_documents(cache):
    docs = load_corpus("stdlib", cache).docs[:40]
    tok = get_tokenizer("bpe-512", cache, docs)
    assert tok.vocab_size == 512 and tok.eot_id == 0
    extra = ["naïve café — Zürich ∑ 日本語 🙂\r\n\ttabs  and  spaces ", f"a literal {EOT} inside a document"]
    for doc in docs[:20] + extra:
        ids = tok.encode(doc)
        assert tok.eot_id not in ids
        assert tok.decode(ids) == doc


def test_tokenizer_is_cached_by_corpus_and_size(cache):
    docs = load_corpus("stdlib", cache).docs[:10]
    get_tokenizer("bpe-300", cache, docs)
    get_tokenizer("bpe-300", cache, docs[:5])
    get_tokenizer("bpe-301", cache, docs)
    names = sorted(p.name for p in (cache / "tokenizers").iterdir() if p.name.startswith("bpe-30"))
    assert len(names) == 3 and sum(n.startswith("bpe-300-") for n in names) == 2


def test_repeat_call_reuses_the_dataset(stdlib_ds, cache):
    meta = stdlib_ds / "meta.json"
    before = meta.stat().st_mtime_ns
    again = prepare_dataset("stdlib", stdlib_ds, tokenizer="bpe-512", max_bytes=MAX_BYTES, cache_dir=cache, seed=3)
    assert again == stdlib_ds and meta.stat().st_mtime_ns == before
    # other inputs: rebuilt
    prepare_dataset("stdlib", stdlib_ds, tokenizer="bpe-512", max_bytes=MAX_BYTES // 2, cache_dir=cache, seed=3)
    assert json.loads(meta.read_text())["inputs"]["max_bytes"] == MAX_BYTES // 2
    prepare_dataset("stdlib", stdlib_ds, tokenizer="bpe-512", max_bytes=MAX_BYTES, cache_dir=cache, seed=3)


def test_meta_records_sources_and_eval_windows_work(stdlib_ds):
    ds = TokenDataset(stdlib_ds)
    src = ds.meta["sources"][0]
    assert src["corpus"] == "stdlib" and src["role"] == "train" and len(src["text_sha256"]) == 64
    assert ds.meta["tokenizer"]["spec"] == "bpe-512" and ds.vocab_size == 512 and ds.dtype == np.uint16
    w = ds.eval_windows("train", n_ctx=64, max_tokens=2048)
    assert w.shape == (32, 65) and w.max() < 512
    assert ds.eval_windows("test", n_ctx=16, max_tokens=64).shape == (4, 17)


def test_sampler_reports_repetition(stdlib_ds):
    ds = TokenDataset(stdlib_ds)
    sub = ds.train_subset(10_000)
    s = WindowSampler(sub, n_ctx=32, batch_size=8, seed=1)
    assert not s.repeats(10_000) and s.repeats(10_001)
    assert s.epochs(25_000) == pytest.approx(2.5)


def test_transfer_sets_exclude_training_documents(tmp_path, cache):
    # the same corpus as its own transfer set: every document is in training, so nothing is left
    from scalinglab.errors import DataError

    with pytest.raises(DataError, match="not in the training corpus"):
        prepare_dataset("stdlib", tmp_path / "x", tokenizer="bpe-300", transfer=["stdlib"], max_bytes=10**9,
                        cache_dir=cache)
