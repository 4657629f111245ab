"""Training throughput on CPU: tokens/s and MFU of scalinglab's training step, beside a plain baseline.

    PYTHONPATH=src python benchmarks/train_throughput.py            # all three shapes, ~3 minutes on 2 cores
    PYTHONPATH=src python benchmarks/train_throughput.py --only a --seconds 5 --rounds 3
    PYTHONPATH=src python benchmarks/train_throughput.py --precision      # fp32 against bf16, side by side

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
after; the load average is printed so a busy machine shows. Because the machine's speed drifts by tens of per cent
from minute to minute (other tenants), two more figures follow: scalinglab against plain round by round (the two
processes of a round run back to back, so in about the same state), scalinglab against plain step by step in one
process (both models and optimizers in one process with the same allocator setting, steps alternating: the most
precise comparison, since both see the same machine state), and scalinglab's MFU on the peak measured by
its own process just before its steps.

With --precision, the table is the run config's precision instead: scalinglab's step in float32 and under bf16
autocast (precision = "bf16": matmuls and attention in bfloat16, float32 weights, AdamW and loss reductions), and
the plain float32 step, alternating in fresh processes each round. Both matmul peaks, float32 and bfloat16, are
measured in the same run (before and after; the better counts), and each arm's MFU is given against the peak of
its own precision and, for bf16, against the float32 peak too. The bf16/fp32 ratio is per round (adjacent
processes) and step by step (both precisions in one process, steps alternating), median and range over rounds.
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


def matmul_peak_gflops(seconds: float = 3.0, dtype: str = "float32") -> float:
    """Best GFLOP/s of square matmuls (sizes 1024-4096) in `dtype` on torch's current intra-op threads."""
    import torch

    best = 0.0
    dt = getattr(torch, dtype)
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        c = torch.empty(n, n, dtype=dt)
        torch.mm(a, b, out=c)  # warm-up: MKL's buffers and thread pool
        deadline = time.perf_counter() + seconds / 3
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def build_step(name: str, impl: str, d_head: int = 64, compile_blocks: bool = False, precision: str = "fp32"):
    """(step, shape, tokens per step): one training step of shape `name` as `impl` runs it (see the module doc).
    compile_blocks: the blocks (`Transformer.hidden`) through torch.compile, the loss staying the fused one.
    precision: the run config's ('bf16': the forward under the trainer's bf16 autocast)."""
    import torch
    import torch.nn.functional as F

    from scalinglab.training._runtime import keep_freed_memory
    from scalinglab.training.config import RunConfig
    from scalinglab.training.model import Transformer
    from scalinglab.training.trainer import autocast_for, make_optimizer, model_loss

    n_layer, d_model, n_ctx, vocab, batch = SHAPES[name]
    if impl in ("scalinglab", "plain"):
        keep_freed_memory()
    cfg = RunConfig(n_layer=n_layer, d_model=d_model, n_head=max(1, d_model // d_head), n_ctx=n_ctx,
                    batch_size=batch, precision=precision)  # fmt: skip
    shape = cfg.shape(vocab)
    torch.manual_seed(0)
    model = Transformer(shape)
    if compile_blocks:
        model.hidden = torch.compile(model.hidden)  # forward calls self.hidden: only the blocks are compiled
    optimizer = make_optimizer(model, cfg, lr=1e-3, fused=impl == "scalinglab")
    params = list(model.parameters())
    batches = [torch.randint(0, vocab, (batch, n_ctx + 1)) for _ in range(4)]

    def plain_loss(mb):
        logits = model(mb[:, :-1])
        return F.cross_entropy(logits.float().flatten(0, 1), mb[:, 1:].flatten())

    loss_fn = (lambda mb: model_loss(model, mb)) if impl == "scalinglab" else plain_loss
    cpu = torch.device("cpu")

    def step(i: int) -> float:
        with autocast_for(cpu, cfg.precision):  # as Trainer.train_step
            loss = loss_fn(batches[i % len(batches)])
            loss.backward()
        with torch.profiler.record_function("clip_grad_norm_"):  # a label for step_profile.py; free otherwise
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step, shape, batch * n_ctx


def time_steps(step, n: int) -> list[float]:
    """Wall seconds of each of n calls step(0), ..., step(n - 1)."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t)
    return times


def measure(name: str, impl: str, seconds: float, d_head: int, warmup: int = 3, precision: str = "fp32") -> dict:
    """Time training steps of one shape with one implementation, in this process."""
    import torch

    from scalinglab import accounting

    step, shape, tok_per_step = build_step(name, impl, d_head, precision=precision)
    # this process's peak, just before its steps: the machine's speed drifts
    own_peak = matmul_peak_gflops(1.5, "bfloat16" if precision == "bf16" else "float32")
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
        threads=torch.get_num_threads(), own_peak=own_peak, precision=precision,
        step_s_median=statistics.median(times),
    )  # fmt: skip


def interleaved(name: str, seconds: float, d_head: int, warmup: int = 3) -> dict:
    """Plain and scalinglab in one process (both keep freed memory), one step of each in turn: the two see the
    same machine state step by step, so their ratio is free of the drift between processes."""
    plain, _, tok_per_step = build_step(name, "plain", d_head)
    fast, _, _ = build_step(name, "scalinglab", d_head)
    for i in range(warmup):
        plain(i), fast(i)
    times: dict[str, list[float]] = {"plain": [], "scalinglab": []}
    t_end = time.perf_counter() + 2 * seconds
    while time.perf_counter() < t_end or len(times["plain"]) < 5:
        for impl, step in (("plain", plain), ("scalinglab", fast)):
            t = time.perf_counter()
            step(len(times[impl]))
            times[impl].append(time.perf_counter() - t)
    return dict(shape=name, impl="interleaved", steps=len(times["plain"]),
                ratio=statistics.median(times["plain"]) / statistics.median(times["scalinglab"]),
                **{f"{k}_tokens_per_s": tok_per_step / statistics.median(v) for k, v in times.items()})  # fmt: skip


def interleaved_precision(name: str, seconds: float, d_head: int, warmup: int = 3) -> dict:
    """scalinglab's step at fp32 and at bf16 in one process, one step of each in turn (as `interleaved`): the
    bf16/fp32 ratio free of the drift between processes."""
    f32, _, tok_per_step = build_step(name, "scalinglab", d_head, precision="fp32")
    b16, _, _ = build_step(name, "scalinglab", d_head, precision="bf16")
    for i in range(warmup):
        f32(i), b16(i)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    t_end = time.perf_counter() + 2 * seconds
    while time.perf_counter() < t_end or len(times["fp32"]) < 5:
        for prec, step in (("fp32", f32), ("bf16", b16)):
            t = time.perf_counter()
            step(len(times[prec]))
            times[prec].append(time.perf_counter() - t)
    return dict(shape=name, impl="interleaved-precision", steps=len(times["fp32"]),
                ratio=statistics.median(times["fp32"]) / statistics.median(times["bf16"]))


def run_worker(name: str, impl: str, seconds: float, d_head: int, precision: str = "fp32") -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--worker", impl, "--only", name, "--seconds", str(seconds),
           "--d-head", str(d_head), "--worker-precision", precision]  # fmt: skip
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES), action="append", help="shape(s) to run (default: all)")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per shape and implementation")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per shape; the best counts")
    ap.add_argument("--d-head", type=int, default=64, help="head width; n_head = d_model // d_head (default 64)")
    ap.add_argument("--precision", action="store_true", help="fp32 against bf16 (see the module doc)")
    ap.add_argument("--worker", choices=[*IMPLS, "interleaved", "interleaved-precision"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-precision", default="fp32", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = args.only or sorted(SHAPES)

    if args.worker == "interleaved":
        print(json.dumps(interleaved(names[0], args.seconds, args.d_head)))
        return 0
    if args.worker == "interleaved-precision":
        print(json.dumps(interleaved_precision(names[0], args.seconds, args.d_head)))
        return 0
    if args.worker:
        print(json.dumps(measure(names[0], args.worker, args.seconds, args.d_head, precision=args.worker_precision)))
        return 0
    if args.precision:
        return precision_table(names, args)

    import torch

    load = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    load_start, peak_start = load(), matmul_peak_gflops()
    results, load_rows = [], []
    for name in names:
        rounds: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
        inter: list[float] = []
        for _ in range(max(1, args.rounds)):
            for impl, runs in rounds.items():
                runs.append(run_worker(name, impl, args.seconds, args.d_head))
            inter.append(run_worker(name, "interleaved", args.seconds, args.d_head)["ratio"])
        best = {impl: max(r, key=lambda x: x["tokens_per_s"]) for impl, r in rounds.items()}
        # scalinglab against plain within each round (adjacent processes, so the same state of a drifting machine)
        best["ratios"] = sorted(f["tokens_per_s"] / p["tokens_per_s"] for f, p in zip(rounds["scalinglab"],
                                                                                     rounds["plain"]))
        best["interleaved"] = sorted(inter)
        best["own_mfu"] = max(r["tokens_per_s"] * r["flop_per_token"] / (r["own_peak"] * 1e9)
                              for r in rounds["scalinglab"])  # fmt: skip
        results.append(best)
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
    print("\nscalinglab vs plain: round by round in adjacent processes, and step by step in one process "
          "(median, range over rounds); scalinglab's best MFU on the peak its own process measured before its steps:")
    for name, res in zip(names, results):
        r, i = res["ratios"], res["interleaved"]
        print(f"  ({name}) by round {statistics.median(r):.2f}x ({r[0]:.2f}-{r[-1]:.2f}x), step by step "
              f"{statistics.median(i):.2f}x ({i[0]:.2f}-{i[-1]:.2f}x) over {len(r)} rounds; "
              f"MFU on own peak {res['own_mfu']:.2f}")
    print(f"\ntok/s: best of {args.rounds} alternating rounds (each the median step over >= {args.seconds:g} s); "
          f"MFU: 3 x exact forward FLOP/token x tok/s / peak (GFLOP/s {peak:.0f}).\nHeadline: 'vs plain', the same "
          "allocator setting in both processes; 'vs malloc' is against glibc's defaults (the old baseline).")
    return 0


PRECISION_ARMS = (("plain", "fp32"), ("scalinglab", "fp32"), ("scalinglab", "bf16"))  # in this order each round


def precision_table(names: list[str], args) -> int:
    """scalinglab's step at precision fp32 and bf16, and the plain fp32 step: see the module doc (--precision)."""
    import torch

    load = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    load_start = load()
    peaks0 = {dt: matmul_peak_gflops(dtype=dt) for dt in ("float32", "bfloat16")}
    rows = []
    for name in names:
        got: dict[tuple, list[dict]] = {arm: [] for arm in PRECISION_ARMS}
        inter: list[float] = []
        for r in range(max(1, args.rounds)):
            for impl, prec in PRECISION_ARMS:
                got[impl, prec].append(run_worker(name, impl, args.seconds, args.d_head, prec))
            inter.append(run_worker(name, "interleaved-precision", args.seconds, args.d_head)["ratio"])
            print(f"  ({name}) round {r + 1}: " + ", ".join(
                f"{i} {p} {got[i, p][-1]['tokens_per_s']:,.0f} tok/s" for i, p in PRECISION_ARMS)
                + f"; bf16/fp32 step by step {inter[-1]:.2f}x", flush=True)
        rows.append((name, got, load(), sorted(inter)))
    peaks = {dt: max(v, matmul_peak_gflops(dtype=dt)) for dt, v in peaks0.items()}
    p32, p16 = peaks["float32"], peaks["bfloat16"]
    print(f"\nmatmul peaks: float32 {p32:.0f} GFLOP/s, bfloat16 {p16:.0f} GFLOP/s ({p16 / p32:.2f}x) on "
          f"{torch.get_num_threads()} threads (torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}); load average {load_start} at the start, {load()} at the end\n")
    header = (f"{'shape':<22} {'plain fp32':>10} {'MFU32':>5} {'fp32 tok/s':>10} {'MFU32':>5} {'bf16 tok/s':>10} "
              f"{'MFU16':>5} {'MFU32':>5} {'bf16/fp32 median (range)':>25} {'step by step':>22} {'bf16/plain':>10}")
    print(header)
    print("-" * len(header))
    for name, got, _, inter in rows:
        best = {arm: max(v, key=lambda x: x["tokens_per_s"]) for arm, v in got.items()}
        plain, f32, b16 = best["plain", "fp32"], best["scalinglab", "fp32"], best["scalinglab", "bf16"]
        mfu = lambda r, peak: r["tokens_per_s"] * r["flop_per_token"] / (peak * 1e9)  # noqa: E731
        ratios = sorted(b["tokens_per_s"] / f["tokens_per_s"] for b, f in zip(got["scalinglab", "bf16"],
                                                                               got["scalinglab", "fp32"]))
        vs_plain = sorted(b["tokens_per_s"] / p["tokens_per_s"] for b, p in zip(got["scalinglab", "bf16"],
                                                                                 got["plain", "fp32"]))
        n_layer, d_model, n_ctx, vocab, batch = SHAPES[name]
        label = f"({name}) L{n_layer} d{d_model} T{n_ctx} B{batch}"
        print(f"{label:<22} {plain['tokens_per_s']:>10,.0f} {mfu(plain, p32):>5.2f} {f32['tokens_per_s']:>10,.0f} "
              f"{mfu(f32, p32):>5.2f} {b16['tokens_per_s']:>10,.0f} {mfu(b16, p16):>5.2f} {mfu(b16, p32):>5.2f} "
              f"{statistics.median(ratios):>9.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}x) "
              f"{statistics.median(inter):>9.2f}x ({inter[0]:.2f}-{inter[-1]:.2f}x) "
              f"{statistics.median(vs_plain):>9.2f}x")
    print(f"\ntok/s: best of {args.rounds} alternating rounds (each the median step over >= {args.seconds:g} s); "
          "MFU32 / MFU16: 3 x exact forward FLOP/token x tok/s over the float32 / bfloat16 matmul peak; ratios per "
          "round (adjacent processes), median and range; step by step: both precisions in one process, steps alternating "
          "(free of the machine's drift); bf16/plain: scalinglab bf16 against the plain fp32 step.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
