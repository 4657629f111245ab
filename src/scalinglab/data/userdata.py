"""A user's own text: a directory of text files (or one text file), JSONL with a named text field, Parquet with
a text column, or a Hugging Face `datasets` dataset: a folder saved with `save_to_disk` (a path), or
`hf:NAME[:CONFIG]`, what `datasets.load_dataset(NAME, CONFIG)` gives (a dataset in the datasets cache, a local
folder of data files, or the Hub: the network is then the user's; HF_DATASETS_OFFLINE=1 keeps it to the cache).
Every split is read; `--text-field` names the text column. `datasets` is the optional extra `scalinglab[datasets]`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from scalinglab.data.cache import text_hash
from scalinglab.data.corpora import CorpusDocs
from scalinglab.errors import DataError


def _decode_text(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise DataError(f"{path}: binary file in text data; remove it or point --corpus at text files only")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8 or remove it")


def _text_files(root: Path) -> list[str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"{root}: empty directory, no text files found; add .txt files or pass another path")
    return [_decode_text(p, p.read_bytes()) for p in files]


def _jsonl(path: Path, field: str) -> list[str]:
    docs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}); fix the line or remove it")
            if not isinstance(rec, dict) or field not in rec:
                have = ", ".join(list(rec)[:8]) if isinstance(rec, dict) else type(rec).__name__
                raise DataError(f"{path}:{lineno}: no field {field!r} (has: {have}); pass --text-field NAME")
            if not isinstance(rec[field], str):
                raise DataError(f"{path}:{lineno}: field {field!r} is not a string; pass --text-field NAME")
            docs.append(rec[field])
    return docs


def _parquet(path: Path, field: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a non-parquet file
        raise DataError(f"{path}: not a readable Parquet file ({exc.__class__.__name__}); check the file")
    if field not in schema.names:
        raise DataError(f"{path}: no column {field!r} (has: {', '.join(schema.names[:8])}); pass --text-field NAME")
    return [t for t in pq.read_table(path, columns=[field]).column(field).to_pylist() if t is not None]


def _is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))


HF_PREFIX = "hf:"


def _datasets(what):
    try:
        import datasets
    except ImportError:
        raise DataError(f"{what}: a Hugging Face dataset needs the `datasets` package: "
                        "pip install 'scalinglab[datasets]'") from None
    return datasets


def _hf_dataset(path: Path, field: str) -> list[str]:
    datasets = _datasets(path)
    return _hf_texts(datasets.load_from_disk(str(path)), path, field)


def _hf_texts(ds, path, field: str) -> list[str]:
    import datasets

    parts = list(ds.values()) if isinstance(ds, datasets.DatasetDict) else [ds]
    docs = []
    for part in parts:
        if field not in part.column_names:
            raise DataError(f"{path}: no column {field!r} (has: {', '.join(part.column_names[:8])}); "
                            "pass --text-field NAME")
        docs.extend(t for t in part[field] if t is not None)
    return docs


def load_hf_named(spec: str, text_field: str = "text") -> CorpusDocs:
    """`hf:NAME[:CONFIG]` (or a save_to_disk folder after the prefix): the dataset `datasets` finds by that name."""
    ref = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    if not ref:
        raise DataError(f"{spec!r}: give a dataset after hf:, e.g. hf:wikitext:wikitext-2-raw-v1 or hf:PATH")
    if _is_hf_dataset(Path(ref).expanduser()):
        return load_user_data(Path(ref).expanduser(), text_field)
    datasets = _datasets(spec)
    name, _, config = ref.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types (not found, offline, no config)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{spec}: datasets could not load it ({type(exc).__name__}: {first[:200]})") from None
    docs = [d for d in (d.strip() for d in _hf_texts(ds, spec, text_field)) if d]
    if not docs:
        raise DataError(f"{spec}: no text found in column {text_field!r}; check --text-field")
    return _corpus(ref.replace("/", "_").replace(":", "_"), docs, ref, "huggingface-load_dataset")


def _corpus(name: str, docs: list[str], package: str, fmt: str) -> CorpusDocs:
    h = hashlib.sha256()
    for d in docs:
        h.update(text_hash(d).encode())
    source = {"corpus": name, "registry": "user", "package": package, "format": fmt,
              "version": None, "licence": "user data", "n_docs": len(docs),
              "n_bytes": sum(len(d.encode("utf-8")) for d in docs), "text_sha256": h.hexdigest()}
    return CorpusDocs(name, docs, [source])


def load_user_data(path: str | os.PathLike, text_field: str = "text") -> CorpusDocs:
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        return load_hf_named(path, text_field)
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or directory; pass a corpus name or an existing path to --corpus")
    if _is_hf_dataset(p):
        docs, fmt = _hf_dataset(p, text_field), "huggingface-datasets"
    elif p.is_dir():
        docs, fmt = _text_files(p), "text-directory"
    elif p.suffix in (".jsonl", ".ndjson") or p.name.endswith(".jsonl.gz"):
        docs, fmt = _jsonl(p, text_field), "jsonl"
    elif p.suffix == ".parquet":
        docs, fmt = _parquet(p, text_field), "parquet"
    else:
        docs, fmt = [_decode_text(p, p.read_bytes())], "text-file"
    docs = [d for d in (d.strip() for d in docs) if d]
    if not docs:
        raise DataError(f"{p}: no text found ({fmt}); check the file contents or --text-field")
    return _corpus(p.name, docs, str(p.resolve()), fmt)


def fingerprint(path: str | os.PathLike) -> dict:
    """Cheap identity of user data (paths, sizes, mtimes) to tell whether a prepared dataset is still current.
    A dataset loaded by name (hf:NAME) is known by its name: prepare it into a new folder when it changes."""
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        ref = path[len(HF_PREFIX):]
        if not _is_hf_dataset(Path(ref).expanduser()):
            return {"hf": ref}
        path = ref
    p = Path(path).expanduser().resolve()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p.parent)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return {"path": str(p), "files": len(files), "stat_sha256": h.hexdigest()}
