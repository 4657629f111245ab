"""prepare_dataset: corpus -> de-duplicated documents -> chunks -> train/validation/test split -> tokenizer ->
token shards.

Documents longer than CHUNK_CHARS are cut into chunks (at paragraph, else line, else word boundaries) before the
split, so that one long document (a 300 KB man page) cannot be most of the test split: the held-out sets then
hold many pieces of many documents. The split is decided by each chunk's content hash, so it does not depend on
the order the documents were read in, and a chunk can never be in two splits. The training stream is the train
documents in a seeded shuffled order, each document's train chunks kept together in their order (training
windows see coherent text); a data subset of D tokens is its first D tokens, so subsets nest (Kaplan's L(D)).
Validation (early stopping, "best over the curve") and test (reported losses) are disjoint.
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
from scalinglab import outdir
from scalinglab.data.shards import dataset_files, write_dataset
from scalinglab.data.tokenizer import get_tokenizer, parse_spec, tokenizer_ident
from scalinglab.data.userdata import HF_PREFIX, fingerprint, load_user_data
from scalinglab.errors import DataError

PREPARE_VERSION = 2  # 2: documents chunked before the split; a validation split
TEST_FRACTION = 0.02
VALIDATION_FRACTION = 0.02
# ~1,000 tokens of BPE text: several windows of the presets' contexts (64 - 512) fit in a chunk, and the full
# default corpus (88 MB) gives ~20,000 chunks, so a 2% test split holds hundreds of them.
CHUNK_CHARS = 4096


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
    if isinstance(spec, str) and spec.startswith(HF_PREFIX):
        return load_user_data(spec, text_field)
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


def chunk_document(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Cut a document into pieces of about `size` characters (between size/2 and 3 size/2), each ending at a
    paragraph break where there is one in reach, else a line break, else a space, else anywhere. A document up to
    3 size/2 stays whole. The pieces joined give the document back."""
    out, pos, n = [], 0, len(text)
    while n - pos > size + size // 2:
        lo, hi = pos + size // 2, pos + size + size // 2
        cut = -1
        for sep in ("\n\n", "\n", " "):
            at = text.rfind(sep, lo, hi)
            if at >= 0:
                cut = at + len(sep)
                break
        cut = cut if cut > pos else pos + size
        out.append(text[pos:cut])
        pos = cut
    out.append(text[pos:])
    return out


def _chunks(docs: Sequence[str], size: int) -> tuple[list[str], list[str], list[int], list[int]]:
    """Chunks of the documents, de-duplicated by content hash: (chunks, hashes, parent document, index in it)."""
    seen: set[str] = set()
    chunks, hashes, parent, index = [], [], [], []
    for d, doc in enumerate(docs):
        for i, c in enumerate(chunk_document(doc, size)):
            h = text_hash(c)
            if h in seen or not c.strip():
                continue
            seen.add(h)
            chunks.append(c)
            hashes.append(h)
            parent.append(d)
            index.append(i)
    return chunks, hashes, parent, index


def _split(hashes: Sequence[str], test_fraction: float, validation_fraction: float = 0.0) -> np.ndarray:
    """The split of each document: 0 train, 1 test, 2 validation. The hash, read as a number u in [0, 1),
    decides: u < test_fraction is test, the next validation_fraction is validation. (Its last digits, because a
    max_bytes cap takes documents in order of the leading digits.) Each held-out split gets at least one
    document and train keeps at least one, where there are enough documents."""
    u = np.array([int(h[-13:], 16) / 16**13 for h in hashes])
    part = np.zeros(len(hashes), dtype=np.int8)
    part[u < test_fraction] = 1
    part[(u >= test_fraction) & (u < test_fraction + validation_fraction)] = 2
    wanted = [1] + ([2] if validation_fraction > 0 else [])
    for k in wanted:
        if len(hashes) > len(wanted) and not (part == k).any():
            free = np.flatnonzero(part == 0)
            part[free[int(np.argmin(u[free]))]] = k
    if len(hashes) > len(wanted) and not (part == 0).any():
        part[int(np.argmax(u))] = 0
    return part


def _inputs(corpus, tokenizer, transfer, max_bytes, seed, test_fraction, text_field, validation_fraction,
            chunk_chars) -> dict:
    def ident(spec):
        if isinstance(spec, str) and corpora.is_named(spec):
            return {"corpus": spec}
        return {"user": fingerprint(spec)}

    return {"prepare_version": PREPARE_VERSION, "corpus": ident(corpus), "tokenizer": tokenizer_ident(tokenizer),
            "transfer": [ident(t) for t in transfer], "max_bytes": max_bytes, "seed": seed,
            "test_fraction": test_fraction, "validation_fraction": validation_fraction, "chunk_chars": chunk_chars,
            "text_field": text_field}


def _transfer_name(spec, docs: CorpusDocs, taken: set[str]) -> str:
    if isinstance(spec, str) and spec.startswith(HF_PREFIX):
        spec = spec[len(HF_PREFIX):].replace("/", "_").replace(":", "_")
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
    validation_fraction: float = VALIDATION_FRACTION,
    chunk_chars: int = CHUNK_CHARS,
    force: bool = False,
) -> Path:
    """Prepare token shards for `corpus` (a name like "default" or "stdlib", or a path to the user's data) in
    `out_dir` and return it. `transfer` None means the default transfer sets for the default corpus and none
    otherwise. `max_bytes` caps the text used per corpus. A repeated call with the same inputs returns at once.
    An `out_dir` holding files scalinglab did not write is refused before any work (OutputError); with `force`
    they are kept and only scalinglab's own files replaced."""
    out = Path(out_dir)
    parse_spec(tokenizer)  # fail fast on a bad spec
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction {test_fraction} must be between 0 and 1 (e.g. 0.02)")
    if not 0 <= validation_fraction < 1 or test_fraction + validation_fraction >= 1:
        raise DataError(f"validation_fraction {validation_fraction} must be in [0, 1) and leave documents to train "
                        f"on beside test_fraction {test_fraction} (e.g. 0.02)")
    if chunk_chars < 64:
        raise DataError(f"chunk_chars {chunk_chars} is too small (at least 64; default {CHUNK_CHARS})")
    if max_bytes is not None and max_bytes < 1:
        raise DataError(f"max_bytes {max_bytes} must be positive")
    if transfer is None:
        transfer = corpora.DEFAULT_TRANSFER if corpus == "default" else []
    transfer = list(transfer)
    cache = cache_root(cache_dir)
    inputs = _inputs(corpus, tokenizer, transfer, max_bytes, seed, test_fraction, text_field, validation_fraction,
                     chunk_chars)
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads((out / "meta.json").read_text())["inputs"] == inputs:
            return out
    outdir.check(out, legacy=dataset_files, force=force)
    outdir.check_names(out, ["meta.json", "tokenizer.json", "train.bin", "test.bin", "validation.bin"], dataset_files)

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
        chunks, chunk_hashes, parent, index = _chunks(docs, chunk_chars)
        need = 3 if validation_fraction > 0 else 2
        if len(chunks) < need:
            raise DataError(f"{corpus}: only {len(chunks)} distinct document chunk(s); a train/validation/test split "
                            f"needs at least {need} (add documents or raise --max-bytes)")
        split_of = _split(chunk_hashes, test_fraction, validation_fraction)
        rng = np.random.default_rng(seed)
        rank = rng.permutation(len(docs))  # the shuffled order of the documents; chunks keep theirs inside it

        def ordered(k: int) -> list[str]:
            picked = np.flatnonzero(split_of == k)
            keys = sorted(picked, key=lambda i: (rank[parent[i]], index[i]))
            return [chunks[i] for i in keys]

        train_docs, test_docs, validation_docs = ordered(0), ordered(1), ordered(2)
        seen = set(hashes) | set(chunk_hashes)

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
        held_out = {"validation": validation_docs} if validation_fraction > 0 else {}
        all_sets = {"train": train_docs, "test": test_docs, **held_out, **transfer_docs}
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
                validation=streams.pop("validation", None),
                transfer=streams,
                vocab_size=tok.vocab_size,
                tokenizer=tok.describe(),
                n_docs={k: len(v) for k, v in all_sets.items()},
                sources=sources,
                tokenizer_json=tok.to_json(),
                force=force,
                extra_meta={
                    "inputs": inputs,
                    "corpus": main.name if not corpora.is_named(str(corpus)) else str(corpus),
                    "n_bytes": {k: sum(len(d.encode("utf-8")) for d in v) for k, v in all_sets.items()},
                    "split": {"by": "sha256 of chunk text", "test_fraction": test_fraction,
                              "validation_fraction": validation_fraction, "chunk_chars": chunk_chars,
                              "n_source_docs": len(docs), "seed": seed},
                    "timings": {**timings, "total_s": time.perf_counter() - t0},
                },
            )
            advance()
    return out
