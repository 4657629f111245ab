"""`scalinglab data prepare` and `scalinglab data info`."""

from __future__ import annotations

import argparse
import time

from scalinglab.commands._common import positive_int
from scalinglab.errors import ConfigError, DataError


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="prepare and inspect token datasets")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    prep = sub.add_parser("prepare", help="corpus -> tokenizer -> token shards (train/test + transfer sets)")
    prep.add_argument("--corpus", default="default",
                      help="a corpus name (default, stdlib, wikipedia, ...) or a path: a directory of text files, "
                           "a .jsonl, a .parquet, or a saved Hugging Face dataset; or hf:NAME[:CONFIG], a Hugging "
                           "Face dataset by name (datasets.load_dataset: its cache, a local folder, or the Hub; needs "
                           "pip install 'scalinglab[datasets]')")
    prep.add_argument("--tokenizer", default="bpe-4096",
                      help="bpe-<vocab size> (trained here; default bpe-4096), gpt2, or the path of a Hugging Face "
                           "tokenizer: a tokenizers JSON file or a transformers directory holding tokenizer.json")
    prep.add_argument("--out", required=True, help="output dataset directory")
    prep.add_argument("--transfer", nargs="*", default=None,
                      help="transfer sets (names or paths); default: wikipedia sotu brown kjv for the default "
                           "corpus, none otherwise; give the flag with no value for none")
    prep.add_argument("--max-bytes", type=positive_int, default=None, help="cap on the text used per corpus")
    prep.add_argument("--text-field", default="text",
                      help="JSONL field / Parquet or Hugging Face dataset column holding the text (default text)")
    prep.add_argument("--test-fraction", type=float, default=0.02, help="share of documents held out as test")
    prep.add_argument("--validation-fraction", type=float, default=0.02,
                      help="share of documents held out as validation (early stopping), disjoint from test")
    prep.add_argument("--seed", type=int, default=0, help="seed of the document shuffle")
    prep.add_argument("--cache-dir", default=None,
                      help="download/tokenizer cache (default $SCALINGLAB_CACHE or $XDG_CACHE_HOME/scalinglab)")
    prep.add_argument("--quiet", action="store_true", help="no progress bar and no tables: only the last line")
    prep.add_argument("--force", action="store_true",
                      help="write into an --out that holds other files: replace only scalinglab's own files there "
                           "and leave the rest (without it such a directory is refused)")
    prep.set_defaults(func=_prepare)

    info = sub.add_parser("info", help="show the splits, transfer sets, token counts and sources of a dataset")
    info.add_argument("dir", help="a prepared dataset directory")
    info.add_argument("--json", action="store_true", help="print the dataset's description as JSON")
    info.add_argument("--n-ctx", type=positive_int, default=None,
                      help="context of the evaluation windows described (default: the run default)")
    info.add_argument("--eval-tokens", type=positive_int, default=None,
                      help="tokens per evaluation set described (default: the run default)")
    info.set_defaults(func=_info)

    ls = sub.add_parser("corpora", help="list the named corpora and where they come from")
    ls.set_defaults(func=_corpora)


def _prepare(args: argparse.Namespace) -> int:
    from scalinglab.data.prepare import prepare_dataset

    t0 = time.perf_counter()
    out = prepare_dataset(args.corpus, args.out, tokenizer=args.tokenizer, transfer=args.transfer,
                          max_bytes=args.max_bytes, cache_dir=args.cache_dir, seed=args.seed,
                          progress=not args.quiet, test_fraction=args.test_fraction, text_field=args.text_field,
                          validation_fraction=args.validation_fraction, force=args.force)
    if not args.quiet:
        _info(argparse.Namespace(dir=out, json=False, n_ctx=None, eval_tokens=None))
    print(f"prepared {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def describe_eval_sets(ds, n_ctx: int, eval_tokens: int) -> dict:
    """{set: {n_docs, n_docs_evaluated, eval_tokens, n_windows}} for validation, test and the transfer sets."""
    sets = (["validation"] if ds.has_validation else []) + ds.eval_sets
    return {s: ds.eval_set(s, n_ctx, eval_tokens).describe() for s in sets}


def _info(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from scalinglab.training.config import RunConfig
    from scalinglab.data.shards import TokenDataset

    ds = TokenDataset(args.dir)
    meta = ds.meta
    defaults = RunConfig.__dataclass_fields__
    n_ctx = args.n_ctx or defaults["n_ctx"].default
    eval_tokens = args.eval_tokens or defaults["eval_tokens"].default
    if n_ctx < 1 or eval_tokens < 1:
        raise ConfigError("--n-ctx and --eval-tokens must be positive")
    evals = describe_eval_sets(ds, n_ctx, eval_tokens)
    if getattr(args, "json", False):
        out = {"path": str(ds.path), "corpus": meta.get("corpus"), "tokenizer": meta["tokenizer"].get("spec"),
               "vocab_size": ds.vocab_size, "splits": meta["splits"], "transfer": meta.get("transfer", {}),
               "n_bytes": meta.get("n_bytes", {}), "split": meta.get("split"),
               "eval_sets": {"n_ctx": n_ctx, **evals}}
        print(json.dumps(out, indent=2))
        return 0
    nbytes = meta.get("n_bytes", {})
    tok = meta["tokenizer"]
    console = Console()
    table = Table(title=f"{ds.path}  (corpus {meta.get('corpus', '?')}, tokenizer {tok.get('spec')}, "
                        f"vocab {ds.vocab_size:,}, {meta['dtype']})")
    num = ("documents", "tokens", "bytes/token", "docs evaluated", "eval tokens")
    for col in ("set", "kind", "documents", "tokens", "bytes/token", "docs evaluated", "eval tokens", "file"):
        table.add_column(col, justify="right" if col in num else "left")
    rows = [(k, "split", v) for k, v in meta["splits"].items()] + [(k, "transfer", v) for k, v in
                                                                    meta.get("transfer", {}).items()]
    for name, kind, e in rows:
        bpt = f"{nbytes[name] / e['n_tokens']:.2f}" if name in nbytes and e["n_tokens"] else "-"
        ev = evals.get(name)
        table.add_row(name, kind, f"{e.get('n_docs', 0):,}", f"{e['n_tokens']:,}", bpt,
                      f"{ev['n_docs_evaluated']:,} of {ev['n_docs']:,}" if ev else "-",
                      f"{ev['eval_tokens']:,}" if ev else "-", e["file"])
    console.print(table)
    console.print(f"evaluation windows of {n_ctx} tokens, at most {eval_tokens:,} tokens per set")
    src = Table(title="sources")
    for col in ("corpus", "role", "registry", "package", "version", "licence", "sha256"):
        src.add_column(col)
    for s in meta.get("sources", []):
        src.add_row(str(s.get("corpus")), str(s.get("role", "")), str(s.get("registry")), str(s.get("package")),
                    str(s.get("version")), str(s.get("licence")), str(s.get("sha256") or s.get("text_sha256", ""))[:16])
    console.print(src)
    return 0


def _corpora(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from scalinglab.data import corpora

    table = Table(title="named corpora")
    for col in ("name", "genre", "registry", "package", "licence"):
        table.add_column(col)
    for name, parts in corpora.COMPOSITES.items():
        table.add_row(name, "composite: " + " + ".join(parts), "", "", "")
    for c in corpora.CORPORA.values():
        table.add_row(c.name, c.genre, c.registry, c.package, c.licence)
    Console().print(table)
    return 0


__all__ = ["register", "DataError"]
