"""The one interface every executor speaks: `run(tasks, on_start, on_done)`.

    ex = make_executor("local", ...)        # SequentialExecutor | LocalExecutor | RayExecutor | DDPExecutor
    try:
        ex.run(tasks, on_start=..., on_done=...)   # on_start(task) per attempt, on_done(outcome) once per task
    finally:
        ex.close()

`writes_store` says who records a run: True when the process that trains it writes the store itself (sequential,
local workers, torchrun's rank 0); False when the result comes back to the driver, which writes it (Ray: the
workers may be on other machines, without the store's file system). The driver marks a run 'running' itself
(`on_start`) only when the workers do not. A task carries its RunConfig and its run id; no executor rebuilds either.

Grouping (opt-in, `group=True`): the sequential and local executors train runs that share a small model's shape
together in one process as one batched model (`group_tasks`, training/grouped.py): each run is still stored, checkpointed
and resumed as its own, and its curve equals its lone run's to float rounding. Off by default: on 2 CPU cores it
measured no faster than the same runs packed one thread each (benchmarks/grouped.py: grouped-split against
packed-1t 0.83x at shape a; against the packing of the time 0.97x to 1.18x), since the unembedding and its loss,
which batching does not shrink, dominate these models' steps.
"""

from __future__ import annotations

import math
from typing import Callable

from scalinglab.sweep.cost import flop_per_step
from scalinglab.sweep.worker import Outcome, RunTask, run_group

OnStart = Callable[[RunTask], None]
OnDone = Callable[[Outcome], None]


# Grouping can only pay where a step is small enough that per-op overhead, not arithmetic, sets its time: below
# this many FLOP per optimizer step. Larger runs train alone.
GROUP_MAX_STEP_FLOP = 2e9
# At most this many runs in one group (memory grows with it; the gain levels off after a few).
GROUP_MAX_RUNS = 8


def group_tasks(tasks: list[RunTask], *, workers: int = 1, flop: dict[str, float] | None = None,
                vocab_size: int | None = None) -> list[list[RunTask]]:
    """The tasks as units to train: runs with equal `grouped.group_key`, in the same study and store, whose step
    is below GROUP_MAX_STEP_FLOP, form groups; every other run is a unit of one. A key's runs are ordered by FLOP
    (so runs of similar length share a group) and split into enough groups that `workers` processes all get one
    where there are runs enough (two runs at least per group), at most GROUP_MAX_RUNS each."""
    from scalinglab.training.grouped import group_key  # torch: only where grouping is asked for

    flop = flop or {}
    keyed: dict[tuple, list[RunTask]] = {}
    units: list[list[RunTask]] = []
    for t in tasks:
        config = t.config
        key = group_key(config)
        small = vocab_size is not None and flop_per_step(config, vocab_size) <= GROUP_MAX_STEP_FLOP
        if key is None or not small:
            units.append([t])
        else:
            keyed.setdefault((key, t.study, t.store_path), []).append(t)
    for runs in keyed.values():
        runs.sort(key=lambda t: -flop.get(t.run_id, 0.0))
        n = len(runs)
        k = max(math.ceil(n / GROUP_MAX_RUNS), min(workers, n // 2), 1)
        size, extra = divmod(n, k)
        start = 0
        for i in range(k):
            stop = start + size + (i < extra)
            units.append(runs[start:stop])
            start = stop
    return units


class Executor:
    name = "executor"
    writes_store = True
    group = False  # train small same-shape runs as groups (the sequential and local executors)
    vocab_size: int | None = None  # the study's vocabulary, which grouping needs to size a step

    def units(self, tasks: list[RunTask], *, workers: int = 1, flop: dict[str, float] | None = None):
        """What to train, unit by unit: `group_tasks` when grouping is on, else each run alone."""
        if not self.group:
            return [[t] for t in tasks]
        return group_tasks(tasks, workers=workers, flop=flop, vocab_size=self.vocab_size)

    def run(self, tasks: list[RunTask], *, on_start: OnStart, on_done: OnDone) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SequentialExecutor(Executor):
    """One run (or one group of small same-shape runs) after another in this process."""

    name = "sequential"

    def run(self, tasks, *, on_start, on_done) -> None:
        for unit in self.units(tasks):
            for t in unit:
                on_start(t)
            for outcome in run_group(unit):
                on_done(outcome)


class LocalExecutor(Executor):
    """Worker processes on this machine, packed to fill the cores (sweep.local); with `group`, small same-shape
    runs grouped."""

    name = "local"

    def __init__(self, pool, *, cores: int, flop: dict[str, float]):
        self.pool, self.cores, self.flop = pool, cores, flop

    def run(self, tasks, *, on_start, on_done) -> None:
        from scalinglab.sweep.local import run_local

        units = self.units(tasks, workers=self.pool.workers, flop=self.flop)
        run_local(units, flop=self.flop, cores=self.cores, pool=self.pool, on_start=on_start, on_done=on_done)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class RayExecutor(Executor):
    """One Ray task per run; a task whose worker dies is resubmitted, up to `max_attempts` (sweep.ray_executor)."""

    name = "ray"
    writes_store = False

    def __init__(self, address: str | None, *, max_attempts: int = 3):
        self.address, self.max_attempts = address, max_attempts

    def run(self, tasks, *, on_start, on_done) -> None:
        from scalinglab.sweep.ray_executor import run_ray

        run_ray(tasks, address=self.address, on_start=on_start, on_done=on_done, max_attempts=self.max_attempts)


class DDPExecutor(Executor):
    """Each run in turn across `nproc` processes under torchrun (sweep.ddp_worker)."""

    name = "ddp"

    def __init__(self, nproc: int):
        self.nproc = nproc

    def run(self, tasks, *, on_start, on_done) -> None:
        from scalinglab.sweep.ddp_launch import run_ddp

        run_ddp(tasks, self.nproc, on_start=on_start, on_done=on_done)
