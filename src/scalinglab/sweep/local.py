"""The local executor: worker processes on this machine, packed so the threads in use fill the cores.

Runs start largest first (by FLOP) whenever their threads fit in the free cores and a worker is idle; smaller runs
backfill the cores a large one leaves. Workers stay alive across runs and write their own run to the store: SQLite in
WAL mode serialises the writers. They are forked from a forkserver that has imported torch and the training modules
(sweep/preload.py): a study pays that import once, not once per worker (benchmarks/worker_start.py). The server
is a fresh interpreter, not the driver, so no driver state is forked; where there is no forkserver (Windows),
workers are spawned and each imports torch itself.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from scalinglab.sweep.worker import Outcome, RunTask, init_worker, run_group


def _context(method: str | None = None):
    """The start method of workers: a forkserver that preloads torch where the platform has one, else spawn (or
    `method`, 'spawn' or 'forkserver', as benchmarks/worker_start.py compares them)."""
    if method is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["scalinglab.sweep.preload"])
        return ctx
    return multiprocessing.get_context("spawn")


def _warm() -> int:
    """Pay a worker's one-off start-up costs while the driver prepares: importing torch, and the first optimizer
    (its constructor imports torch._dynamo, seconds on a small machine). Nothing left to pay in a worker forked
    from the preloading forkserver; a spawned worker pays it here."""
    import torch

    import scalinglab.training.trainer  # noqa: F401

    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    return os.getpid()


class LocalPool:
    """A process pool started early so workers import torch while the driver prepares."""

    def __init__(self, workers: int, start_method: str | None = None):
        self.workers = workers
        self.start_method = start_method
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        ctx = _context(self.start_method)
        # a forked worker's parent is the forkserver (it exits when the driver does): the worker dies with it
        parent = os.getpid() if ctx.get_start_method() == "spawn" else None
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=init_worker,
                                   initargs=(parent,))
        self._warming: list[Future] = []
        # submitted from a thread: the first submit waits for the forkserver to preload torch, which goes on while
        # the driver prepares
        self._submitter = threading.Thread(target=self._warm_up, args=(pool,), daemon=True)
        self._submitter.start()
        return pool

    def _warm_up(self, pool: ProcessPoolExecutor) -> None:
        try:
            self._warming = [pool.submit(_warm) for _ in range(self.workers)]
        except (BrokenProcessPool, RuntimeError):  # the pool broke or was shut down: run_local restarts it
            pass

    def wait_warm(self) -> None:
        """Block until every worker has paid its start-up. A throughput probe taken while workers import torch
        measures contention, not speed (it read 12x slow on 2 cores), so the driver waits for this first."""
        self._submitter.join()
        wait(self._warming)

    def restart(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._start()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def run_local(
    units: list[list[RunTask]],
    *,
    flop: dict[str, float],
    cores: int,
    pool: LocalPool,
    on_start: Callable[[RunTask], None],
    on_done: Callable[[Outcome], None],
) -> None:
    """Run every unit (a lone run, or a group of same-shape runs trained together: executor.group_tasks);
    `flop[run_id]` orders them (largest first). Calls on_done once per run, in finish order."""
    def unit_flop(unit):
        return sum(flop.get(t.run_id, 0.0) for t in unit)

    pending = sorted(units, key=lambda u: -unit_flop(u))
    budget = max(cores, max((u[0].threads for u in units), default=1))
    running: dict[Future, list[RunTask]] = {}
    free = budget
    while pending or running:
        i = 0
        while i < len(pending) and len(running) < pool.workers:
            unit = pending[i]
            threads = unit[0].threads
            if threads <= free or not running:
                try:
                    fut = pool.pool.submit(run_group, unit)
                except BrokenProcessPool:
                    break  # a finished future below reports it; the pool restarts there
                running[fut] = unit
                free -= threads
                pending.pop(i)
                for t in unit:
                    on_start(t)
            else:
                i += 1  # a smaller run may still fit the free cores
        if not running:  # the pool broke before anything could start
            pool.restart()
            continue
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        broken = False
        for fut in done:
            unit = running.pop(fut)
            free += unit[0].threads
            try:
                outcomes = fut.result()
            except BrokenProcessPool:
                broken = True
                outcomes = [t.failed("its worker process died (killed, or out of memory); retry with --retry-failed")
                            for t in unit]  # fmt: skip
            for outcome in outcomes:
                on_done(outcome)
        if broken:
            for fut, unit in list(running.items()):  # every run on the broken pool is lost with it
                running.pop(fut)
                free += unit[0].threads
                for t in unit:
                    on_done(t.failed("a worker process died during the run; retry with --retry-failed"))
            pool.restart()
