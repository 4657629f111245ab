"""prepare_dataset: corpus -> de-duplicated documents -> train/test split -> tokenizer -> token shards.

The document-level split is decided by each document's content hash, so it does not depend on the order the
documents were read in, and a document can never be in both splits. The training stream is the train documents
in a seeded shuffled order; a data subset of D tokens is its first D tokens, so subsets nest (Kaplan's L(D)).
Transfer sets are other distributions, with any document that also occurs in the training corpus removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from scalinglab.data import corpora
from scalinglab.data.cache import cache_root, text_hash
from scalinglab.data.corpora import CorpusDocs
from scalinglab.data.shards import write_dataset
from scalinglab.data.tokenizer import get_tokenizer, parse_spec
from scalinglab.data.userdata import fingerprint, load_user_data
from scalinglab.errors import DataError

PREPARE_VERSION = 1
TEST_FRACTION = 0.02


class _Progress:
    """A rich progress bar when asked for, silence otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None

    @contextlib.contextmanager
    def session(self) -> Iterator["_Progress"]:
        if not self.enabled:
            yield self
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=False) as bar:
            self._bar = bar
            yield self
        self._bar = None

    @contextlib.contextmanager
    def step(self, description: str, total: int = 1) -> Iterator:
        if self._bar is None:
            yield lambda n=1: None
            return
        task = self._bar.add_task(description, total=total)
        yield lambda n=1: self._bar.advance(task, n)
        self._bar.update(task, completed=total)


def _load(spec: str | os.PathLike, cache: Path, text_field: str) -> CorpusDocs:
    if isinstance(spec, str) and corpora.is_named(spec):
        return corpora.load_corpus(spec, cache)
    if isinstance(spec, str) and os.sep not in spec and not Path(spec).exists():
        raise DataError(f"unknown corpus {spec!r} and no such path; use one of "
                        f"{', '.join(corpora.corpus_names())} or a path to your data")
    return load_user_data(spec, text_field)


def _unique(docs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Documents de-duplicated by content hash, and their hashes, in hash order (independent of read order)."""
    by_hash: dict[str, str] = {}
    for d in docs:
        by_hash.setdefault(text_hash(d), d)
    hashes = sorted(by_hash)
    return [by_hash[h] for h in hashes], hashes


def _cap(docs: list[str], hashes: list[str], max_bytes: int | None) -> tuple[list[str], list[str]]:
    """The first documents (in hash order, a stable pseudo-random sample) up to max_bytes of UTF-8 text."""
    if max_bytes is None:
        return docs, hashes
    out, size = 0, 0
    while out < len(docs) and size < max_bytes:
        size += len(docs[out].encode("utf-8"))
        out += 1
    if out == 1 and size > max_bytes:  # one big document: keep its beginning
        return [docs[0].encode("utf-8")[:max_bytes].decode("utf-8", "ignore")], hashes[:1]
    return docs[:out], hashes[:out]


def _split(hashes: Sequence[str], test_fraction: float) -> np.ndarray:
    """True for test documents: the hash, read as a number in [0, 1), falls below test_fraction. (Its last
    digits, because a max_bytes cap takes documents in order of the leading digits.)"""
    u = np.array([int(h[-13:], 16) / 16**13 for h in hashes])
    is_test = u < test_fraction
    if len(hashes) >= 2 and not is_test.any():
        is_test[int(np.argmin(u))] = True
    if len(hashes) >= 2 and is_test.all():
        is_test[int(np.argmax(u))] = False
    return is_test


def _inputs(corpus, tokenizer, transfer, max_bytes, seed, test_fraction, text_field) -> dict:
    def ident(spec):
        if isinstance(spec, str) and corpora.is_named(spec):
            return {"corpus": spec}
        return {"user": fingerprint(spec)}

    return {"prepare_version": PREPARE_VERSION, "corpus": ident(corpus), "tokenizer": tokenizer,
            "transfer": [ident(t) for t in transfer], "max_bytes": max_bytes, "seed": seed,
            "test_fraction": test_fraction, "text_field": text_field}


def _transfer_name(spec, docs: CorpusDocs, taken: set[str]) -> str:
    name = spec if isinstance(spec, str) and corpora.is_named(spec) else Path(spec).stem or "user"
    base, i = name, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def prepare_dataset(
    corpus: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    tokenizer: str = "bpe-4096",
    transfer: Sequence[str | os.PathLike] | None = None,
    max_bytes: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = False,
    test_fraction: float = TEST_FRACTION,
    text_field: str = "text",
) -> Path:
    """Prepare token shards for `corpus` (a name like "default" or "stdlib", or a path to the user's data) in
    `out_dir` and return it. `transfer` None means the default transfer sets for the default corpus and none
    otherwise. `max_bytes` caps the text used per corpus. A repeated call with the same inputs returns at once."""
    out = Path(out_dir)
    parse_spec(tokenizer)  # fail fast on a bad spec
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction {test_fraction} must be between 0 and 1 (e.g. 0.02)")
    if max_bytes is not None and max_bytes < 1:
        raise DataError(f"max_bytes {max_bytes} must be positive")
    if transfer is None:
        transfer = corpora.DEFAULT_TRANSFER if corpus == "default" else []
    transfer = list(transfer)
    cache = cache_root(cache_dir)
    inputs = _inputs(corpus, tokenizer, transfer, max_bytes, seed, test_fraction, text_field)
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads((out / "meta.json").read_text())["inputs"] == inputs:
            return out

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    bar = _Progress(progress)
    with bar.session():
        names = [corpus, *transfer]
        loaded: list[CorpusDocs] = []
        with bar.step("acquire + clean corpora", len(names)) as advance:
            for spec in names:
                loaded.append(_load(spec, cache, text_field))
                advance()
        timings["acquire_s"] = time.perf_counter() - t0

        main = loaded[0]
        docs, hashes = _cap(*_unique(main.docs), max_bytes)
        if len(docs) < 2:
            raise DataError(f"{corpus}: only {len(docs)} distinct document(s); a train/test split needs at least 2 "
                            "(add documents or raise --max-bytes)")
        is_test = _split(hashes, test_fraction)
        rng = np.random.default_rng(seed)
        train_docs = [docs[i] for i in rng.permutation(np.flatnonzero(~is_test))]
        test_docs = [docs[i] for i in rng.permutation(np.flatnonzero(is_test))]
        seen = set(hashes)

        transfer_docs: dict[str, list[str]] = {}
        sources = [dict(s, role="train") for s in main.sources]
        for spec, part in zip(transfer, loaded[1:]):
            tdocs, thashes = _unique(part.docs)
            keep = [i for i, h in enumerate(thashes) if h not in seen]
            tdocs, thashes = _cap([tdocs[i] for i in keep], [thashes[i] for i in keep], max_bytes)
            if not tdocs:
                raise DataError(f"transfer set {spec}: no documents left that are not in the training corpus")
            name = _transfer_name(spec, part, set(transfer_docs))
            transfer_docs[name] = [tdocs[i] for i in rng.permutation(len(tdocs))]
            sources += [dict(s, role=f"transfer:{name}") for s in part.sources]

        t1 = time.perf_counter()
        with bar.step(f"tokenizer {tokenizer}") as advance:
            tok = get_tokenizer(tokenizer, cache, train_docs)
            advance()
        timings["tokenizer_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        all_sets = {"train": train_docs, "test": test_docs, **transfer_docs}
        total_docs = sum(len(v) for v in all_sets.values())
        streams = {}
        with bar.step("tokenise", total_docs) as advance:
            for name, ds in all_sets.items():
                streams[name] = tok.encode_documents(ds, on_progress=advance)
        timings["tokenise_s"] = time.perf_counter() - t2

        with bar.step("write shards") as advance:
            write_dataset(
                out,
                train=streams.pop("train"),
                test=streams.pop("test"),
                transfer=streams,
                vocab_size=tok.vocab_size,
                tokenizer=tok.describe(),
                n_docs={k: len(v) for k, v in all_sets.items()},
                sources=sources,
                tokenizer_json=tok.to_json(),
                extra_meta={
                    "inputs": inputs,
                    "corpus": main.name if not corpora.is_named(str(corpus)) else str(corpus),
                    "n_bytes": {k: sum(len(d.encode("utf-8")) for d in v) for k, v in all_sets.items()},
                    "split": {"by": "sha256 of document text", "test_fraction": test_fraction, "seed": seed},
                    "timings": {**timings, "total_s": time.perf_counter() - t0},
                },
            )
            advance()
    return out
