"""Benchmark: `scalinglab data prepare --corpus default` from an empty cache, the repeat run, and tokenising.

Prints: wall time of a cold prepare (downloads from the registries included), token counts per split and transfer
set, wall time of the repeat CLI run (served from the cache), and the time to tokenise the default corpus.

    PYTHONPATH=src python benchmarks/data_prepare.py [--cache-dir DIR] [--out DIR] [--tokenizer bpe-4096]

Without --cache-dir a fresh temporary cache is used, so the first run really starts empty.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from scalinglab.data import TokenDataset, prepare_dataset  # noqa: E402
from scalinglab.data.cache import cache_root  # noqa: E402
from scalinglab.data.corpora import load_corpus  # noqa: E402
from scalinglab.data.tokenizer import load_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--tokenizer", default="bpe-4096")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scalinglab-bench-"))
    cache = Path(args.cache_dir) if args.cache_dir else tmp / "cache"
    out = Path(args.out) if args.out else tmp / "default"
    print(f"cache: {cache} ({'empty' if not cache.exists() else 'existing'}), cores: {os.cpu_count()}")

    t0 = time.perf_counter()
    prepare_dataset("default", out, tokenizer=args.tokenizer, cache_dir=cache)
    cold = time.perf_counter() - t0
    ds = TokenDataset(out)
    timings = ds.meta["timings"]
    print(f"cold prepare: {cold:.1f} s  (acquire+clean {timings['acquire_s']:.1f} s, tokenizer training "
          f"{timings['tokenizer_s']:.1f} s, tokenising all sets {timings['tokenise_s']:.1f} s)")
    for name in ["train", *ds.eval_sets]:
        entry = ds.meta["splits"].get(name) or ds.meta["transfer"][name]
        print(f"  {name:<10} {entry['n_tokens']:>12,} tokens  {entry['n_docs']:>7,} docs")

    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "scalinglab.cli", "data", "prepare", "--corpus", "default", "--out", str(out),
           "--tokenizer", args.tokenizer, "--cache-dir", str(cache), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    print(f"repeat CLI run (cached): {time.perf_counter() - t0:.2f} s")

    docs = load_corpus("default", cache_root(cache)).docs
    tok = load_tokenizer(out)  # the tokenizer the dataset was made with
    t0, c0 = time.perf_counter(), time.process_time()
    n = tok.encode_documents(docs).size
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    mb = sum(len(d.encode()) for d in docs) / 1e6
    # CPU seconds (all threads) show the cost apart from other load on a shared machine.
    print(f"tokenising the default corpus: {dt:.1f} s wall, {cpu:.1f} s CPU, for {mb:.1f} MB -> {n:,} tokens "
          f"({mb / dt:.1f} MB/s); load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
