"""Before a study runs: how much compute it asks for, how to pack it on the cores, and how long it will take.

Threads per run: a tiny model's step is a few small matrix products, too small for intra-op parallelism to pay
(measured on 2 cores: two 1-thread processes out-run one 2-thread process), so tiny runs get one thread each and
run side by side; a run gets more threads once a step's work is large enough to keep them busy
(`threads_for`). The schedule then packs runs, largest first, while the threads in use fit the cores.

Wall time: a short throughput probe (a few seconds at most, PROBE_BUDGET_S) times a few training steps of the
smallest and the largest model at the threads each will get (a model too large to time in that budget is estimated
from its FLOP and the measured matmul peak); every run's time is its FLOP (training plus evaluations) divided by
the throughput interpolated (log-log in FLOP per step) between the two probes, plus a fixed start-up cost.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from dataclasses import dataclass, field

from scalinglab import accounting
from scalinglab.training.config import RunConfig

# FLOP per optimizer step below which one thread is best; each doubling above it earns one more thread. Runs are
# packed side by side, so a run's second thread only pays where intra-op threading gains more than a second run
# beside it would. Measured on 2 cores (benchmarks/grouped.py, packed vs packed-1t: 4 runs as one 2-thread run at a
# time, or as two 1-thread runs side by side): two 1-thread runs gave 1.42x the throughput at 9e9 FLOP per step
# (shape a), 1.49x at 3.9e10 (b), 1.18x at 1.6e11 (c). (It was 2e9, which gave every one of them 2 threads.)
ONE_THREAD_FLOP_PER_STEP = 4e11
RUN_STARTUP_S = 0.3  # per-run set-up in a warm worker (dataset open, model build, first evaluation windows)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def memory_limit(device: str) -> int | None:
    """Bytes a run on `device` (a RunConfig device: auto, cpu, cuda, cuda:K) can use: the GPU's memory, or the
    machine's (its container's limit). Looks at CUDA only where torch is already imported or a GPU was asked for."""
    import sys

    from scalinglab.training._runtime import machine_memory_bytes

    if device.startswith("cuda") or (device == "auto" and "torch" in sys.modules):
        import torch

        if torch.cuda.is_available():
            index = int(device.split(":")[1]) if ":" in device else 0
            return int(torch.cuda.get_device_properties(index).total_memory)
    return machine_memory_bytes()


def flop_per_step(config: RunConfig, vocab_size: int) -> float:
    return 3.0 * accounting.forward_flop_per_token_exact(config.shape(vocab_size)) * config.batch_tokens


def threads_for(config: RunConfig, vocab_size: int, cores: int) -> int:
    """Threads a run gets: 1 for tiny models, doubling with each doubling of a step's FLOP, at most `cores`.
    A thread count in the run's config wins."""
    if config.threads:
        return max(1, min(cores, config.threads))
    ratio = flop_per_step(config, vocab_size) / ONE_THREAD_FLOP_PER_STEP
    t = 1 if ratio <= 1 else 2 ** int(math.floor(math.log2(ratio)) + 1)
    return max(1, min(cores, t))


def run_flop(config: RunConfig, vocab_size: int) -> float:
    """Exact FLOP the run will spend: training plus its evaluations (forward passes only)."""
    shape = config.shape(vocab_size)
    train = accounting.training_flop_exact(shape, config.steps * config.batch_tokens)
    n_sets = len(config.eval_sets) if config.eval_sets is not None else 2
    evals = (config.n_evals + 1) * config.eval_tokens * accounting.forward_flop_per_token_exact(shape)
    return train + evals * (2 + 0.1 * (n_sets - 1))  # validation and test at every eval step, transfer at the end


# The probe never trains for long: it times a model only when its steps fit in this many seconds (a model too large
# for that is estimated from its FLOP and the measured matmul peak instead).
PROBE_BUDGET_S = 4.0
# Fraction of the matmul peak a training step of a model too large to time is assumed to reach.
LARGE_MODEL_EFFICIENCY = 0.4
# When deciding whether a model can be timed, assume a step reaches at least this fraction of the peak.
_PESSIMISTIC_EFFICIENCY = 0.2


@dataclass
class Probe:
    """How one model's throughput was found: `steps` timed training steps, or 0 when it was estimated from FLOP
    over the measured matmul peak (the model was too large to time within the probe's budget)."""

    n_params: int
    flop_per_step: float
    steps: int
    flop_per_s: float
    how: str


@dataclass
class Throughput:
    """Measured FLOP/s at a few FLOP-per-step points; interpolated log-log in between, flat outside."""

    points: list[tuple[float, float]]  # (flop_per_step, flop_per_s), sorted
    probes: list[Probe] = field(default_factory=list)
    peak_flop_s: float | None = None  # the measured matmul peak (FLOP/s)

    def rate(self, fps: float) -> float:
        pts = self.points
        if fps <= pts[0][0] or len(pts) == 1:
            return pts[0][1]
        if fps >= pts[-1][0]:
            return pts[-1][1]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x0 <= fps <= x1:
                t = (math.log(fps) - math.log(x0)) / max(1e-12, math.log(x1) - math.log(x0))
                return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
        return pts[-1][1]  # pragma: no cover

    def seconds(self, config: RunConfig, vocab_size: int) -> float:
        return RUN_STARTUP_S + run_flop(config, vocab_size) / self.rate(flop_per_step(config, vocab_size))


def matmul_peak(device, seconds: float = 0.2, precision: str | None = None) -> float:
    """FLOP/s of square matrix products on `device` in the runs' precision ('bf16' or 'fp32'; None: bf16 on CUDA,
    fp32 on CPU), timed for about `seconds`: the ceiling a training step's arithmetic can reach."""
    import torch

    n = 2048 if device.type == "cuda" else 384
    if precision is None:
        precision = "bf16" if device.type == "cuda" else "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    a @ b  # warm-up
    sync()
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        sync()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return 2.0 * n**3 * reps / dt


def probe_throughput(configs: list[RunConfig], vocab_size: int, cores: int, steps: int = 4,
                     budget_s: float = PROBE_BUDGET_S, log=None) -> Throughput:
    """Throughput of the smallest and the largest model, each at the threads it will run with, on random tokens.

    A model is timed over `steps` training steps (after one warm-up step) when, even at a pessimistic fraction of
    the measured matmul peak, they fit in what is left of `budget_s`; fewer steps when only those fit; and a model
    too large for even one step is not trained at all: its rate is LARGE_MODEL_EFFICIENCY of the matmul peak.
    `log(message)` hears what the probe is doing. So the probe takes seconds whatever the study (the gpu preset's
    85M-parameter model with 32k-token batches on a CPU would take minutes per step)."""
    import torch

    from scalinglab.training.model import Transformer
    from scalinglab.training.trainer import autocast_for, make_optimizer, resolve_device

    say = log or (lambda _msg: None)
    by_size = sorted(configs, key=lambda c: flop_per_step(c, vocab_size))
    picks = [by_size[0]] if len(by_size) == 1 else [by_size[0], by_size[-1]]
    old_threads = torch.get_num_threads()
    points, probes, peak = [], [], None
    t_begin = time.perf_counter()
    try:
        for cfg in picks:
            threads = threads_for(cfg, vocab_size, cores)
            torch.set_num_threads(threads)
            device = resolve_device(cfg.device)
            fps = flop_per_step(cfg, vocab_size)
            n = accounting.n_params(cfg.shape(vocab_size))
            if peak is None:
                peak = matmul_peak(device, precision=cfg.precision)
                say(f"probe: matmul peak {peak / 1e9:.3g} GFLOP/s on {device} ({threads} thread(s))")
            step_s = fps / (peak * _PESSIMISTIC_EFFICIENCY)  # a pessimistic guess of one step's time
            left = budget_s - (time.perf_counter() - t_begin)
            k = min(steps, int(left // step_s) - 1)  # timed steps that fit after the warm-up step
            need = accounting.train_memory(cfg.shape(vocab_size), cfg.micro_batch_size or cfg.batch_size,
                                           cfg.optimizer)["total"]
            limit = memory_limit(cfg.device)
            if k < 1 or (limit and need > limit):  # never allocate a model the memory cannot hold
                rate = peak * LARGE_MODEL_EFFICIENCY
                why = (f"one step of {fps:.3g} FLOP would take ~{step_s:.3g} s" if k < 1 else
                       f"it needs ~{accounting.fmt_bytes(need)} of the {accounting.fmt_bytes(limit)} of memory")
                how = f"estimated, not timed: {why}; {LARGE_MODEL_EFFICIENCY:.0%} of the matmul peak"
                say(f"probe: N={n:,} {how}")
                points.append((fps, rate))
                probes.append(Probe(n, fps, 0, rate, how))
                continue
            say(f"probe: timing {k} training step(s) of N={n:,} (B={cfg.batch_tokens:,} tokens) on {device}")
            torch.manual_seed(0)
            model = Transformer(cfg.shape(vocab_size)).to(device)
            opt = make_optimizer(model, cfg, 1e-4)
            micro = cfg.micro_batch_size or cfg.batch_size
            x = torch.randint(0, vocab_size, (micro, cfg.n_ctx + 1), device=device)
            n_micro = cfg.batch_size // micro

            def step():
                for _ in range(n_micro):
                    with autocast_for(device, cfg.precision):  # as the run will train
                        model.loss(x[:, :-1], x[:, 1:]).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(k):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / k
            rate = fps / max(dt, 1e-9)
            points.append((fps, rate))
            probes.append(Probe(n, fps, k, rate, f"timed {k} step(s): {dt:.3g} s per step"))
    finally:
        torch.set_num_threads(old_threads)
    return Throughput(sorted(points), probes, peak)


def simulate_schedule(durations: list[float], threads: list[int], cores: int, workers: int | None = None) -> float:
    """Wall time of the local executor's packing: runs start largest-first whenever their threads fit in the
    free cores (and a worker is free); the estimate of the whole study's wall time."""
    order = sorted(range(len(durations)), key=lambda i: -durations[i])
    free, slots, now = cores, workers or cores, 0.0
    running: list[tuple[float, int]] = []
    queue = list(order)
    while queue or running:
        started = True
        while queue and started:
            started = False
            i = queue[0]
            if threads[i] <= free and slots > 0 or not running:
                queue.pop(0)
                free -= threads[i]
                slots -= 1
                heapq.heappush(running, (now + durations[i], threads[i]))
                started = True
        end, t = heapq.heappop(running)
        now, free, slots = end, free + t, slots + 1
    return now
