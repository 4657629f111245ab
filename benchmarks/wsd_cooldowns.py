"""Benchmark: one warm-up-stable-decay family (the stable phase once, every cooldown branched from it) against the
same budgets trained alone, and the curve law's backtest on the family.

    PYTHONPATH=src python benchmarks/wsd_cooldowns.py                          # tiny shape, 800 steps
    PYTHONPATH=src python benchmarks/wsd_cooldowns.py --shape small --steps 1000

Both arms train in this process on one thread, float32, on the same real-text data (benchmarks/_data.py), arms
one after the other. Printed: the updates each arm trains and its wall time; for every budget, the largest
difference between the branch's curve (train loss, test loss, LR at every logged step) and the run's trained
alone (they are the same run: equal within float tolerance); and the curve law fitted on the stable phase and the
shorter cooldowns, predicting the longest cooldown's final test loss (`scalinglab curves`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SHAPES = {"tiny": (1, 32, 2, 32, 8), "small": (2, 64, 4, 64, 16)}  # n_layer, d_model, n_head, n_ctx, batch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--steps", type=int, default=800, help="the longest budget in steps (default 800)")
    ap.add_argument("--cooldowns", default="0.25,0.5,1", help="fractions of the longest budget (default 0.25,0.5,1)")
    ap.add_argument("--vocab", type=int, default=512)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from _data import stdlib_dataset
    from scalinglab.analysis.curves import backtest_cooldowns
    from scalinglab.store import RunStore
    from scalinglab.training.config import RunConfig
    from scalinglab.training.trainer import train_run

    torch.set_num_threads(1)
    data = stdlib_dataset(args.vocab, max_bytes=4_000_000)
    n_layer, d_model, n_head, n_ctx, batch = SHAPES[args.shape]
    cfg = RunConfig(data=str(data), n_layer=n_layer, d_model=d_model, n_head=n_head, n_ctx=n_ctx, batch_size=batch,
                    lr=3e-3, threads=1, n_evals=16, eval_tokens=16384, warmup_steps=30, precision="fp32",
                    schedule="wsd", tokens=args.steps * n_ctx * batch,
                    cooldowns=[float(c) for c in args.cooldowns.split(",")])
    tmp = Path(tempfile.mkdtemp(prefix="scalinglab-wsd-bench-"))
    print(f"shape {args.shape} ({n_layer} layers, d_model {d_model}, n_ctx {n_ctx}, batch {batch}); budgets "
          f"{[b.steps for b, _ in cfg.branches()]} steps; load average {os.getloadavg()[0]:.2f}")

    family = RunStore(tmp / "family.sqlite")
    t0 = time.perf_counter()
    train_run(cfg, store=family, checkpoint_dir=tmp / "family.ckpt" / cfg.run_id())
    t_family = time.perf_counter() - t0
    updates_family = cfg.steps + sum(b.steps - at for b, at in cfg.branches())

    alone = RunStore(tmp / "alone.sqlite")
    t0 = time.perf_counter()
    for b, _ in cfg.branches():
        train_run(b, store=alone)
    t_alone = time.perf_counter() - t0
    updates_alone = sum(b.steps for b, _ in cfg.branches())

    print(f"family (stable phase once + cooldowns): {updates_family:,} updates, {t_family:.1f} s")
    print(f"each budget alone:                      {updates_alone:,} updates, {t_alone:.1f} s")
    print(f"  the family trains {updates_family / updates_alone:.2f}x the updates in {t_family / t_alone:.2f}x "
          "the time")
    cols = ["step", "lr", "train_loss", "test_loss"]
    for b, at in cfg.branches():
        rid = b.run_id()
        x = family.curves([rid])[cols].to_numpy(float)
        y = alone.curves([rid])[cols].to_numpy(float)
        diff = np.nanmax(np.abs(x - y)) if x.shape == y.shape else float("nan")
        print(f"  budget {b.steps:>5} steps (branched at {at}): final test loss {family.run(rid)['final_test_loss']:.4f}"
              f", largest curve difference from the run alone {diff:.3g}")
    for bt in backtest_cooldowns(family, n_resamples=1000):
        print(f"curve law: {bt.law}")
        print(f"  {bt}  ({'inside' if bt.covered else 'outside'} its 95% interval)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
