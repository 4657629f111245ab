"""Benchmark: the batched L-BFGS of laws/optimize.py against the same file at another git revision, in one
process, calls alternating (this machine's speed drifts by 25-45% between minutes, so only side-by-side ratios
mean anything). Both must reach bit-identical iterates; the script stops if they do not.

    PYTHONPATH=src python benchmarks/lbfgs_batched.py [--rev HEAD~1] [--rounds 8]

Workloads: the Chinchilla form on 64 synthetic points with 2% noise, K problems at once from random starts of
its published grid, each with its own bootstrap weights (K=40: a backtest's bootstrap; K=200: a grid chunk).
Prints each workload's median time per call for both revisions and the median ratio (range over rounds).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PATH = "src/scalinglab/laws/optimize.py"


def load(source: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, source)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev", default="HEAD~1", help="git revision to compare against (default HEAD~1)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--max-iter", type=int, default=500)
    args = ap.parse_args()
    from scalinglab.laws import get_form

    text = subprocess.run(["git", "show", f"{args.rev}:{PATH}"], cwd=REPO, capture_output=True, text=True)
    if text.returncode != 0:
        raise SystemExit(f"cannot read {PATH} at {args.rev}: {text.stderr.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        old_file = Path(tmp) / "optimize_old.py"
        old_file.write_text(text.stdout)
        old, new = load(old_file, "optimize_old"), load(REPO / PATH, "optimize_new")

    form = get_form("chinchilla")
    rng = np.random.default_rng(0)
    N, D = np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8), indexing="ij")
    X = {"N": N.ravel(), "D": D.ravel()}
    truth = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}
    logy = np.log(form.predict(truth, X)) + 0.02 * rng.standard_normal(N.size)
    grid = form.start_grid()
    print(f"rev {args.rev} against the working tree; {args.rounds} rounds; max_iter {args.max_iter}")
    for K in (40, 200):
        Z0 = grid[rng.choice(len(grid), K)]
        W = rng.multinomial(N.size, np.full(N.size, 1 / N.size), size=K).astype(float)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(args.rounds):
            res = {}
            for tag, mod in (("old", old), ("new", new)):
                t0 = time.perf_counter()
                res[tag] = mod.lbfgs_batched(mod.Objective(form, X, logy), Z0, W, max_iter=args.max_iter)
                times[tag].append(time.perf_counter() - t0)
            if not (np.array_equal(res["old"].Z, res["new"].Z) and np.array_equal(res["old"].n_iter, res["new"].n_iter)):
                raise SystemExit(f"K={K}: the two revisions reached different iterates")
        ratios = [a / b for a, b in zip(times["old"], times["new"])]
        print(f"K={K:>4}: {args.rev} {statistics.median(times['old']) * 1e3:7.0f} ms, working tree "
              f"{statistics.median(times['new']) * 1e3:7.0f} ms; speed-up {statistics.median(ratios):.2f}x "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f}); identical iterates")


if __name__ == "__main__":
    main()
