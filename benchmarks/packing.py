"""Benchmark: packing tiny runs on the cores. 8 tiny runs through the local executor (worker processes, threads
per run chosen by model size: one each here) against the same 8 runs one by one in one process using every core.

    PYTHONPATH=src python benchmarks/packing.py [--runs 8] [--steps 1000] [--model 2,32,4]

The default run is as long as the smoke preset's (about 1000 steps) on a tiny model (n_layer 2, d_model 32,
vocabulary 256, n_ctx 64, batch 16). Prints:

- the sum of the runs' wall times one by one, each run alone on every core (the issue's baseline: a run's wall
  time as the trainer measures it, torch already imported);
- the local executor's wall time, start-up of its workers included (spawning, importing torch, the first
  optimizer), and the ratio of the two (goal: <= 0.6 on 2 cores);
- the bound on that ratio from the machine itself: with W one-thread workers, each run takes t1 (one thread)
  instead of tW (every core), so no packing of R runs beats (R / W) t1 / (R tW) = t1 / (W tW), whatever the
  executor; the executor's own overhead is what lies between that bound and the ratio;
- the largest final-loss difference (thread count changes float rounding only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import stdlib_dataset  # noqa: E402

from scalinglab.sweep import run_study, study_from_dict  # noqa: E402
from scalinglab.sweep.cost import available_cores  # noqa: E402
from scalinglab.sweep.worker import RunTask, run_task  # noqa: E402


def one_by_one(configs, threads: int) -> tuple[list[float], list[float]]:
    """Each run alone in this process on `threads` threads: (wall times as the trainer measures them, losses)."""
    import torch

    torch.set_num_threads(threads)
    walls, losses = [], []
    for cfg in configs:
        out = run_task(RunTask(cfg.run_id(), cfg.to_dict(), threads, "packing", None, None))
        if out.status != "done":
            raise SystemExit(f"run {cfg.name} {out.status}: {out.error}")
        walls.append(out.summary["wall_time_s"])
        losses.append(out.summary["final_test_loss"])
    return walls, losses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--model", default="2,32,4", help="n_layer,d_model,n_head (default 2,32,4)")
    ap.add_argument("--baseline-threads", type=int, default=None,
                    help="threads of the one-by-one runs (default: every core, as a lone run would use)")
    args = ap.parse_args()

    n_layer, d_model, n_head = (int(x) for x in args.model.split(","))
    data = stdlib_dataset(vocab_size=256, max_bytes=2_000_000)
    work = Path(tempfile.mkdtemp(prefix="scalinglab-packing-"))
    base = dict(n_layer=n_layer, d_model=d_model, n_head=n_head, n_ctx=64, batch_size=16,
                tokens=args.steps * 16 * 64, eval_tokens=4096, n_evals=4, lr=3e-3)  # fmt: skip
    raw = {"study": {"name": "packing", "data": str(data)}, "base": base,
           "axes": {"seed": list(range(args.runs))}}  # fmt: skip
    study = study_from_dict(raw, base_dir=work)
    cores = available_cores()
    bt = args.baseline_threads or cores
    workers = min(cores, args.runs)

    warm = study_from_dict({**raw, "axes": {"seed": [999]}}, base_dir=work).runs
    one_by_one(warm, bt)  # pay imports and first-call costs once, outside every timing
    walls_all, losses_seq = one_by_one(study.runs, bt)
    walls_one, _ = one_by_one(study.runs[:2], 1)  # the bound: the same runs on one thread each

    t0 = time.time()
    summary = run_study(study, executor="local", progress=False, probe=False)
    local_wall = time.time() - t0
    assert summary.done == args.runs, summary

    from scalinglab.store import RunStore

    with RunStore(study.store_path, readonly=True) as store:
        runs = store.runs().set_index("run_id")
    losses_local = [runs.loc[c.run_id(), "final_test_loss"] for c in study.runs]
    max_diff = max(abs(a - b) for a, b in zip(losses_seq, losses_local))

    total = sum(walls_all)
    t_all = statistics.mean(walls_all)
    t_one = statistics.mean(walls_one)
    packed = float(runs["wall_time_s"].mean())
    start_up = float(runs["started_at"].min()) - t0
    bound = t_one / (workers * t_all)
    print(f"packing: {args.runs} runs of {args.steps} steps (n_layer {n_layer}, d_model {d_model}, n_ctx 64, "
          f"batch 16, vocab 256) on {cores} cores")
    print(f"  one by one, {bt} thread(s) each: sum of wall times {total:.1f} s ({t_all:.2f} s per run)")
    print(f"  one by one, 1 thread each: {t_one:.2f} s per run (2 runs): {bt} threads are {t_one / t_all:.2f}x "
          f"faster than 1")
    print(f"  local executor ({workers} workers x 1 thread, start-up included): {local_wall:.1f} s")
    print(f"  ratio local / one-by-one: {local_wall / total:.3f} (goal <= 0.6)")
    print(f"  bound from the machine, t1 / ({workers} x t{bt}): {bound:.3f} (no executor of 1-thread workers beats "
          f"it; <= 0.6 needs {bt} threads to be under {workers * 0.6:.2f}x faster than 1 on this model)")
    print(f"  executor breakdown: workers' start-up {start_up:.1f} s until the first run began; runs "
          f"{packed:.2f} s each while packed ({packed / t_one:.2f}x their time alone on 1 thread); the rest "
          f"{local_wall - start_up - packed * args.runs / workers:.1f} s (scheduling, store writes, shutdown)")
    print(f"  largest final-loss difference: {max_diff:.2e} (thread count changes float rounding only)")


if __name__ == "__main__":
    main()
