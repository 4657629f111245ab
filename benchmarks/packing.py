"""Benchmark: packing tiny runs on the cores. 8 tiny runs through the local executor (worker processes, threads
per run chosen by model size: one each here) against the same 8 runs one by one in one process using every core.

    PYTHONPATH=src python benchmarks/packing.py [--runs 8] [--steps 300]

Prints the local executor's wall time (start-up of the workers included), the sum of the runs' wall times one by
one, and their ratio (goal: <= 0.6 on 2 cores). Losses are compared too: packing must not change results beyond
the float rounding that a different thread count brings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import stdlib_dataset  # noqa: E402

from scalinglab.sweep import run_study, study_from_dict  # noqa: E402
from scalinglab.sweep.estimate import available_cores  # noqa: E402
from scalinglab.sweep.worker import RunTask, run_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--baseline-threads", type=int, default=None,
                    help="threads of the one-by-one runs (default: every core, as a lone run would use)")
    args = ap.parse_args()

    data = stdlib_dataset(vocab_size=256, max_bytes=2_000_000)
    work = Path(tempfile.mkdtemp(prefix="scalinglab-packing-"))
    base = dict(n_layer=2, d_model=32, n_head=4, n_ctx=64, batch_size=16, tokens=args.steps * 16 * 64,
                eval_tokens=4096, n_evals=4, lr=3e-3)
    raw = {"study": {"name": "packing", "data": str(data)}, "base": base,
           "axes": {"seed": list(range(args.runs))}}  # fmt: skip
    study = study_from_dict(raw, base_dir=work)
    cores = available_cores()
    bt = args.baseline_threads or cores

    import torch

    torch.set_num_threads(bt)
    run_task(RunTask({**study.runs[0].to_dict(), "seed": 999}, bt, "warm-up", None, None))  # pay imports once
    one_by_one, losses_seq = [], []
    for cfg in study.runs:
        t0 = time.perf_counter()
        out = run_task(RunTask(cfg.to_dict(), bt, "packing", None, None))
        one_by_one.append(time.perf_counter() - t0)
        if out.status != "done":
            raise SystemExit(f"run {cfg.name} {out.status}: {out.error}")
        losses_seq.append(out.summary["final_test_loss"])

    t0 = time.perf_counter()
    summary = run_study(study, executor="local", progress=False, probe=False)
    local_wall = time.perf_counter() - t0
    assert summary.done == args.runs, summary

    from scalinglab.store import RunStore

    with RunStore(study.store_path, readonly=True) as store:
        runs = store.runs().set_index("run_id")
    losses_local = [runs.loc[c.run_id(), "final_test_loss"] for c in study.runs]
    max_diff = max(abs(a - b) for a, b in zip(losses_seq, losses_local))

    total = sum(one_by_one)
    print(f"packing: {args.runs} runs of {args.steps} steps (n_layer 2, d_model 32, n_ctx 64, batch 16) on {cores} "
          f"cores")
    print(f"  one by one ({bt} thread(s) each): sum of wall times {total:.1f} s "
          f"({total / args.runs:.2f} s per run)")
    print(f"  local executor ({min(cores, args.runs)} workers x 1 thread, start-up included): {local_wall:.1f} s")
    print(f"  ratio local / one-by-one: {local_wall / total:.2f} (goal <= 0.6)")
    # where the executor's time goes: the runs themselves (two at a time) and what is left (worker start-up:
    # spawning, importing torch, the first optimizer; scheduling; store writes)
    inside = float(runs["wall_time_s"].sum())
    workers = min(cores, args.runs)
    print(f"  executor breakdown: runs {inside / args.runs:.2f} s each while packed ({inside / workers:.1f} s of "
          f"wall on {workers} workers), the rest {local_wall - inside / workers:.1f} s")
    print(f"  largest final-loss difference: {max_diff:.2e} (thread count changes float rounding only)")


if __name__ == "__main__":
    main()
