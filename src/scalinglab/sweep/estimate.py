"""Before a study runs: how much compute it asks for, how to pack it on the cores, and how long it will take.

Threads per run: a tiny model's step is a few small matrix products, too small for intra-op parallelism to pay
(measured on 2 cores: two 1-thread processes out-run one 2-thread process), so tiny runs get one thread each and
run side by side; a run gets more threads once a step's work is large enough to keep them busy
(`threads_for`). The schedule then packs runs, largest first, while the threads in use fit the cores.

Wall time: a short throughput probe times a few training steps of the smallest and the largest model at the
threads each will get; every run's time is its FLOP (training plus evaluations) divided by the throughput
interpolated (log-log in FLOP per step) between the two probes, plus a fixed start-up cost measured alongside.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from dataclasses import dataclass

from scalinglab import accounting
from scalinglab.config import RunConfig

# FLOP per optimizer step below which one thread is best; each doubling above it earns one more thread.
ONE_THREAD_FLOP_PER_STEP = 2e9
RUN_STARTUP_S = 0.3  # per-run set-up in a warm worker (dataset open, model build, first evaluation windows)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


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


@dataclass
class Throughput:
    """Measured FLOP/s at a few FLOP-per-step points; interpolated log-log in between, flat outside."""

    points: list[tuple[float, float]]  # (flop_per_step, flop_per_s), sorted

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


def probe_throughput(configs: list[RunConfig], vocab_size: int, cores: int, steps: int = 4) -> Throughput:
    """Time `steps` training steps (after one warm-up step) of the smallest and the largest model, each at the
    threads it will run with, on random tokens. Takes a second or so for small models."""
    import torch

    from scalinglab.model import Transformer
    from scalinglab.train import make_optimizer, resolve_device

    by_size = sorted(configs, key=lambda c: flop_per_step(c, vocab_size))
    picks = [by_size[0]] if len(by_size) == 1 else [by_size[0], by_size[-1]]
    old_threads = torch.get_num_threads()
    points = []
    try:
        for cfg in picks:
            torch.set_num_threads(threads_for(cfg, vocab_size, cores))
            device = resolve_device(cfg.device)
            torch.manual_seed(0)
            model = Transformer(cfg.shape(vocab_size)).to(device)
            opt = make_optimizer(model, cfg, 1e-4)
            micro = cfg.micro_batch_size or cfg.batch_size
            x = torch.randint(0, vocab_size, (micro, cfg.n_ctx + 1), device=device)
            n_micro = cfg.batch_size // micro

            def step():
                for _ in range(n_micro):
                    model.loss(x[:, :-1], x[:, 1:]).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / steps
            fps = flop_per_step(cfg, vocab_size)
            points.append((fps, fps / max(dt, 1e-9)))
    finally:
        torch.set_num_threads(old_threads)
    return Throughput(sorted(points))


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
