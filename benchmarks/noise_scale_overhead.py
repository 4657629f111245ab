"""What the gradient noise scale costs: training tokens/s with `noise_scale` off and on, side by side.

    python benchmarks/noise_scale_overhead.py [--repeats 3]

With it on, each step is accumulated over two micro-batches and two squared gradient norms are taken."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import stdlib_dataset  # noqa: E402

from scalinglab.training.config import RunConfig  # noqa: E402
from scalinglab.training.trainer import train_run  # noqa: E402

SHAPES = {
    "(a) L2 d64 ctx128 b32": dict(n_layer=2, d_model=64, n_head=4, n_ctx=128, batch_size=32),
    "(b) L4 d128 ctx256 b16": dict(n_layer=4, d_model=128, n_head=4, n_ctx=256, batch_size=16),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    data = stdlib_dataset(4096)
    print(f"{'shape':26s} {'off tok/s':>10s} {'on tok/s':>10s} {'overhead':>9s}")
    for label, shape in SHAPES.items():
        tps = {False: [], True: []}
        for _ in range(args.repeats):
            for on in (False, True):  # interleaved, so background load hits both alike
                tokens = args.steps * shape["batch_size"] * shape["n_ctx"]
                cfg = RunConfig(data=str(data), tokens=tokens, lr=1e-3, n_evals=2, eval_tokens=2048,
                                noise_scale=on, threads=2, **shape)  # fmt: skip
                tps[on].append(train_run(cfg).summary["tokens_per_s"])
        off, on = statistics.median(tps[False]), statistics.median(tps[True])
        print(f"{label:26s} {off:10,.0f} {on:10,.0f} {1 - on / off:9.1%}")


if __name__ == "__main__":
    main()
