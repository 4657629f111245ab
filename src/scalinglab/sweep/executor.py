"""The one interface every executor speaks: `run(tasks, on_start, on_done)`.

    ex = make_executor("local", ...)        # SequentialExecutor | LocalExecutor | RayExecutor | DDPExecutor
    try:
        ex.run(tasks, on_start=..., on_done=...)   # on_start(task) per attempt, on_done(outcome) once per task
    finally:
        ex.close()

`writes_store` says who records a run: True when the process that trains it writes the store itself (sequential,
local workers, torchrun's rank 0); False when the result comes back to the driver, which writes it (Ray: the
workers may be on other machines, without the store's file system). The driver marks a run 'running' itself
(`on_start`) only when the workers do not. A task carries its run id; no executor rebuilds its RunConfig.
"""

from __future__ import annotations

from typing import Callable

from scalinglab.sweep.worker import Outcome, RunTask, run_task

OnStart = Callable[[RunTask], None]
OnDone = Callable[[Outcome], None]


class Executor:
    name = "executor"
    writes_store = True

    def run(self, tasks: list[RunTask], *, on_start: OnStart, on_done: OnDone) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SequentialExecutor(Executor):
    """One run after another in this process."""

    name = "sequential"

    def run(self, tasks, *, on_start, on_done) -> None:
        for t in tasks:
            on_start(t)
            on_done(run_task(t))


class LocalExecutor(Executor):
    """Worker processes on this machine, packed to fill the cores (sweep.local)."""

    name = "local"

    def __init__(self, pool, *, cores: int, flop: dict[str, float]):
        self.pool, self.cores, self.flop = pool, cores, flop

    def run(self, tasks, *, on_start, on_done) -> None:
        from scalinglab.sweep.local import run_local

        run_local(tasks, flop=self.flop, cores=self.cores, pool=self.pool, on_start=on_start, on_done=on_done)

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
        from scalinglab.sweep.runner import run_ddp

        run_ddp(tasks, self.nproc, on_start=on_start, on_done=on_done)
