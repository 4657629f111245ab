"""Benchmark: grouped training (scalinglab.training.grouped) of 4 same-shape runs against the same 4 runs packed as separate
processes, the way the local executor runs them.

    PYTHONPATH=src python benchmarks/grouped.py                       # shape (a), 4 runs, 3 rounds
    PYTHONPATH=src python benchmarks/grouped.py --steps 40 --rounds 1 # quicker

Shape (a) of train_throughput.py: n_layer 2, d_model 64, 1 head of 64, n_ctx 128, vocabulary 4096, batch 32
sequences; the 4 runs differ in seed and learning rate (an LR sweep). Arms, each in fresh processes (torch
imported and a warm-up step taken before the clock starts, so start-up is left out of every arm):

- packed: the local executor's packing: W = cores // threads worker processes at once, threads per run as the
  executor gives them (`sweep.cost.threads_for`), each worker training its share of the runs one after another
  with `train_run`; the time is the makespan (the longest worker's sum of its runs' wall times);
- packed-1t: the same runs alone, but one thread each and cores processes at once (the thread policy apart
  from grouping: grouped-split's fair reference);
- grouped: one process on every core training the 4 runs together (`train_grouped`, batched matmuls);
- grouped-vmap: the same with torch.vmap over torch.func.functional_call instead of explicit batched matmuls;
- grouped-split: W processes of one thread, each training its share of the runs as a group.

Throughput = the 4 runs' training tokens over the arm's time; each arm's ratio is against packed. Arms alternate
within each round and the best round counts (a shared machine's other jobs take cores at random moments); the
load average and the measured float32 matmul peak are printed beside the figures. Final-loss differences are
each run's grouped final test loss against its packed (lone) run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ARMS = ("packed", "packed-1t", "grouped", "grouped-vmap", "grouped-split")


# name -> (n_layer, d_model, n_head, n_ctx, batch_size): (a) is train_throughput.py's shape (a); the others bracket
# the executor's grouping threshold (sweep.executor.GROUP_MAX_STEP_FLOP): a smaller and a larger step
SHAPES = {"a": (2, 64, 1, 128, 32), "small": (2, 32, 2, 64, 16), "tiny": (1, 16, 2, 64, 32), "b": (4, 128, 2, 256, 16),
          "c": (6, 384, 6, 256, 8)}
SHAPE = "a"


def configs(data: str, runs: int, steps: int, threads: int | None = None):
    from scalinglab.training.config import RunConfig

    n_layer, d_model, n_head, n_ctx, batch = SHAPES[SHAPE]
    lrs = [1e-3 * 2 ** (i / 2) for i in range(runs)]
    return [RunConfig(data=data, n_layer=n_layer, d_model=d_model, n_head=n_head, n_ctx=n_ctx, batch_size=batch,
                      tokens=steps * batch * n_ctx, lr=lr, seed=i, n_evals=2, eval_tokens=8192, threads=threads,
                      checkpoint_every_s=1e9)
            for i, lr in enumerate(lrs)]  # fmt: skip


def worker(arm: str, data: str, runs: list[int], steps: int, threads: int) -> dict:
    """Train `runs` (indices into the benchmark's configs) in this process; their final losses and the time."""
    import torch

    from scalinglab.training.grouped import train_grouped
    from scalinglab.training.trainer import train_run

    torch.set_num_threads(threads)
    cfgs = [configs(data, max(runs) + 1, steps, threads)[i] for i in runs]
    warm = configs(data, 1, 2, threads)[0]
    # warm-up outside the clock: first optimizer (torch._dynamo import), MKL's buffers, the data's pages
    if arm.startswith("packed"):
        train_run(warm)
    else:
        train_grouped([warm] * 2, how="vmap" if arm == "grouped-vmap" else "bmm")
    t = time.perf_counter()
    if arm.startswith("packed"):
        results = [train_run(c) for c in cfgs]
    else:
        results = train_grouped(cfgs, how="vmap" if arm == "grouped-vmap" else "bmm")
    wall = time.perf_counter() - t
    return dict(wall=wall, losses={i: r.final_test_loss for i, r in zip(runs, results)},
                status=[r.status for r in results])


def run_arm(arm: str, data: str, n_runs: int, steps: int, cores: int, threads_packed: int) -> dict:
    """Start the arm's processes at once; the makespan and every run's final loss."""
    if arm == "grouped":
        shares, threads = [list(range(n_runs))], cores
    elif arm == "grouped-vmap":
        shares, threads = [list(range(n_runs))], cores
    else:
        threads = threads_packed if arm == "packed" else 1  # packed-1t: the runs alone, one thread each
        w = max(1, cores // threads)
        shares = [list(range(n_runs))[k::w] for k in range(w)]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS=str(threads))
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", arm, "--data", data, "--steps", str(steps),
                               "--share", ",".join(map(str, s)), "--threads", str(threads), "--shape", SHAPE],
                              env=env, stdout=subprocess.PIPE, text=True) for s in shares]  # fmt: skip
    outs = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"{arm} worker failed (exit {p.returncode})")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    losses = {int(k): v for o in outs for k, v in o["losses"].items()}
    if any(s != "done" for o in outs for s in o["status"]):
        raise SystemExit(f"{arm}: a run did not finish: {[o['status'] for o in outs]}")
    return dict(wall=max(o["wall"] for o in outs), losses=losses, processes=len(shares), threads=threads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shape", choices=SHAPES, default="a",
                    help="a: L2 d64 h1 T128 B32 (default); small: L2 d32 h2 T64 B16; b: L4 d128 h2 T256 B16")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {','.join(ARMS)}")
    ap.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--share", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global SHAPE
    SHAPE = args.shape
    if args.worker:
        share = [int(x) for x in args.share.split(",")]
        print(json.dumps(worker(args.worker, args.data, share, args.steps, args.threads)))
        return 0

    from _data import stdlib_dataset
    from train_throughput import matmul_peak_gflops

    from scalinglab.data.shards import TokenDataset
    from scalinglab.sweep.cost import available_cores, flop_per_step, threads_for
    from scalinglab.sweep.executor import GROUP_MAX_STEP_FLOP

    arms = [a for a in args.arms.split(",") if a]
    if "packed" not in arms:
        arms.insert(0, "packed")
    data = str(stdlib_dataset(vocab_size=4096, max_bytes=4_000_000))
    cores = available_cores()
    vocab = TokenDataset(data).vocab_size
    threads_packed = threads_for(configs(data, 1, args.steps)[0], vocab, cores)
    load = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    load_start, peak_start = load(), matmul_peak_gflops()
    best: dict[str, dict] = {}
    for _ in range(max(1, args.rounds)):
        for arm in arms:
            r = run_arm(arm, data, args.runs, args.steps, cores, threads_packed)
            r["load"] = load()
            if arm not in best or r["wall"] < best[arm]["wall"]:
                best[arm] = r
    peak = max(peak_start, matmul_peak_gflops())
    n_layer, d_model, n_head, n_ctx, batch = SHAPES[SHAPE]
    tokens = args.runs * args.steps * batch * n_ctx
    step = flop_per_step(configs(data, 1, args.steps)[0], vocab)
    print(f"grouped training: {args.runs} runs of shape {SHAPE} (L{n_layer} d{d_model} h{n_head} T{n_ctx} V{vocab} "
          f"B{batch}), {args.steps} steps each, on {cores} cores; {step:.2g} FLOP per step (--group groups "
          f"runs below {GROUP_MAX_STEP_FLOP:.0g}); {threads_packed} thread(s) per packed run; float32 matmul peak "
          f"{peak:.0f} GFLOP/s; load average {load_start} at the start, {load()} at the end\n")  # fmt: skip
    header = f"{'arm':<14} {'processes x threads':>19} {'time s':>7} {'tok/s':>8} {'vs packed':>9} " \
             f"{'max |dloss|':>11} {'load after':>14}"
    print(header)
    print("-" * len(header))
    base = best["packed"]
    for arm in arms:
        r = best[arm]
        diff = max(abs(r["losses"][i] - base["losses"][i]) for i in range(args.runs))
        print(f"{arm:<14} {r['processes']:>13} x {r['threads']:<3} {r['wall']:>7.2f} {tokens / r['wall']:>8,.0f} "
              f"{base['wall'] / r['wall']:>8.2f}x {diff:>11.1e} {r['load']:>14}")
    print(f"\ntime: best of {args.rounds} alternating rounds, start-up excluded (torch imported and a warm-up run "
          "before the clock); packed as the local executor packs: threads per run from sweep.cost.threads_for, "
          "cores // threads processes at once.")
    print("final test losses: " + "; ".join(
        f"run {i}: packed {base['losses'][i]:.6f} grouped {best.get('grouped', base)['losses'][i]:.6f}"
        for i in range(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
