"""Training throughput on CPU: tokens/s and MFU of scalinglab's training step, beside a plain baseline.

    PYTHONPATH=src python benchmarks/train_throughput.py            # all three shapes, ~3 minutes on 2 cores
    PYTHONPATH=src python benchmarks/train_throughput.py --only a --seconds 5 --rounds 3

First the machine's float32 matmul peak (GFLOP/s, large square matmuls on all intra-op threads). Then, for each
shape, a training step as trainer.py runs it (forward and loss, backward, global-norm gradient clipping, AdamW
step, zero_grad(set_to_none)) on random tokens, in three fresh subprocesses measured one after the other:

- scalinglab: what trainer.py does: `keep_freed_memory()` at start, the loss through `trainer.model_loss`
  (Transformer.loss, the fused chunked unembedding + cross-entropy), the fused AdamW kernel;
- plain: the same model with PyTorch's default AdamW (per-tensor loop, not fused) and the plain loss
  F.cross_entropy(model(idx)) on full logits, in a process with the same allocator setting as scalinglab
  (`keep_freed_memory()`, which any user can set): the strongest plain baseline, and the headline speed-up is
  against it;
- plain-malloc: the plain step with glibc's default allocator settings (mallopt is process-wide, hence the
  separate processes): the old baseline, kept so the allocator's share of the gain shows.

MFU = 3 x forward_flop_per_token_exact (accounting.py, unembedding and dense attention included) x tokens/s
over the measured peak. On a shared machine other processes take cores at random moments, so each
implementation runs --rounds times, alternating with the others, and the table shows the best round (a round's
figure is the median step time over its timed steps); the peak is the better of a measurement before and one
after; the load average is printed so a busy machine shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMPLS = ("plain-malloc", "plain", "scalinglab")  # measured in this order in every round
SHAPES = {  # name: (n_layer, d_model, n_ctx, vocab, batch sequences)
    "a": (2, 64, 128, 4096, 32),
    "b": (4, 128, 256, 4096, 16),
    "c": (6, 384, 256, 4096, 8),
}


def matmul_peak_gflops(seconds: float = 3.0) -> float:
    """Best float32 GFLOP/s of square matmuls (sizes 1024-4096) on torch's current intra-op threads."""
    import torch

    best = 0.0
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up: MKL's buffers and thread pool
        deadline = time.perf_counter() + seconds / 3
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def build_step(name: str, impl: str, d_head: int = 64):
    """(step, shape, tokens per step): one training step of shape `name` as `impl` runs it (see the module doc)."""
    import torch
    import torch.nn.functional as F

    from scalinglab._runtime import keep_freed_memory
    from scalinglab.config import RunConfig
    from scalinglab.model import Transformer
    from scalinglab.trainer import make_optimizer, model_loss

    n_layer, d_model, n_ctx, vocab, batch = SHAPES[name]
    if impl in ("scalinglab", "plain"):
        keep_freed_memory()
    cfg = RunConfig(n_layer=n_layer, d_model=d_model, n_head=max(1, d_model // d_head), n_ctx=n_ctx,
                    batch_size=batch)  # fmt: skip
    shape = cfg.shape(vocab)
    torch.manual_seed(0)
    model = Transformer(shape)
    optimizer = make_optimizer(model, cfg, lr=1e-3, fused=impl == "scalinglab")
    params = list(model.parameters())
    batches = [torch.randint(0, vocab, (batch, n_ctx + 1)) for _ in range(4)]

    def plain_loss(mb):
        logits = model(mb[:, :-1])
        return F.cross_entropy(logits.float().flatten(0, 1), mb[:, 1:].flatten())

    loss_fn = (lambda mb: model_loss(model, mb)) if impl == "scalinglab" else plain_loss

    def step(i: int) -> float:
        loss = loss_fn(batches[i % len(batches)])
        loss.backward()
        with torch.profiler.record_function("clip_grad_norm_"):  # a label for step_profile.py; free otherwise
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step, shape, batch * n_ctx


def measure(name: str, impl: str, seconds: float, d_head: int, warmup: int = 3) -> dict:
    """Time training steps of one shape with one implementation, in this process."""
    import torch

    from scalinglab import accounting

    step, shape, tok_per_step = build_step(name, impl, d_head)
    for i in range(warmup):
        step(i)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 5:
        t = time.perf_counter()
        step(len(times))
        times.append(time.perf_counter() - t)
    return dict(
        shape=name, impl=impl, n_head=shape.n_head, steps=len(times),
        tokens_per_s=tok_per_step / statistics.median(times),
        tokens_per_s_mean=tok_per_step * len(times) / sum(times),
        flop_per_token=3.0 * accounting.forward_flop_per_token_exact(shape),
        threads=torch.get_num_threads(),
    )  # fmt: skip


def run_worker(name: str, impl: str, seconds: float, d_head: int) -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--worker", impl, "--only", name, "--seconds", str(seconds),
           "--d-head", str(d_head)]  # fmt: skip
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES), action="append", help="shape(s) to run (default: all)")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per shape and implementation")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per shape; the best counts")
    ap.add_argument("--d-head", type=int, default=64, help="head width; n_head = d_model // d_head (default 64)")
    ap.add_argument("--worker", choices=list(IMPLS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = args.only or sorted(SHAPES)

    if args.worker:
        print(json.dumps(measure(names[0], args.worker, args.seconds, args.d_head)))
        return 0

    import torch

    load = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    load_start, peak_start = load(), matmul_peak_gflops()
    results, load_rows = [], []
    for name in names:
        rounds: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
        for _ in range(max(1, args.rounds)):
            for impl, runs in rounds.items():
                runs.append(run_worker(name, impl, args.seconds, args.d_head))
        results.append({impl: max(r, key=lambda x: x["tokens_per_s"]) for impl, r in rounds.items()})
        load_rows.append(load())
    # the peak, too, is the best of two measurements (before and after), so a busy moment does not inflate MFU
    peak = max(peak_start, matmul_peak_gflops())
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s on {torch.get_num_threads()} threads (torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs; load average {load_start} at the start, {load()} at the end)\n")  # fmt: skip
    header = (f"{'shape':<26} {'tok/step':>8} {'plain-malloc':>12} {'MFU':>5} {'plain tok/s':>11} {'MFU':>5} "
              f"{'scalinglab':>10} {'MFU':>5} {'vs plain':>8} {'vs malloc':>9} {'load after':>14}")  # fmt: skip
    print(header)
    print("-" * len(header))
    mfu = lambda r: r["tokens_per_s"] * r["flop_per_token"] / (peak * 1e9)  # noqa: E731
    for name, res, load_row in zip(names, results, load_rows):
        old, plain, fast = res["plain-malloc"], res["plain"], res["scalinglab"]
        n_layer, d_model, n_ctx, vocab, batch = SHAPES[name]
        label = f"({name}) L{n_layer} d{d_model} h{fast['n_head']} T{n_ctx} V{vocab}"
        print(f"{label:<26} {batch * n_ctx:>8} {old['tokens_per_s']:>12,.0f} {mfu(old):>5.2f} "
              f"{plain['tokens_per_s']:>11,.0f} {mfu(plain):>5.2f} {fast['tokens_per_s']:>10,.0f} {mfu(fast):>5.2f} "
              f"{fast['tokens_per_s'] / plain['tokens_per_s']:>7.2f}x "
              f"{fast['tokens_per_s'] / old['tokens_per_s']:>8.2f}x {load_row:>14}")  # fmt: skip
    print(f"\ntok/s: best of {args.rounds} alternating rounds (each the median step over >= {args.seconds:g} s); "
          f"MFU: 3 x exact forward FLOP/token x tok/s / peak (GFLOP/s {peak:.0f}).\nHeadline: 'vs plain', the same "
          "allocator setting in both processes; 'vs malloc' is against glibc's defaults (the old baseline).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
