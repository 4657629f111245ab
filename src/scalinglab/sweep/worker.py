"""What every executor runs for one run, and how worker processes stay tied to their driver.

`run_task` trains one run and writes it to the store itself (live curve, then done/diverged), or returns the
result for the driver to write (`write_store=False`, as Ray does). An error in one run marks that run failed with
its one-line reason and never stops the study.

Exactly once: a driver killed with SIGKILL must not leave workers that go on to finish runs the restarted driver
runs again. Each worker asks the kernel to kill it when its parent dies (Linux PR_SET_PDEATHSIG), and checks its
parent at every step as a portable fallback, so a run is written 'done' by at most one live process.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from scalinglab.errors import ScalingLabError, StoreError
from scalinglab.store import RunStore
from scalinglab.training.config import RunConfig

_PR_SET_PDEATHSIG = 1
TERMINAL = ("done", "diverged")  # a run in either state is finished: never run again
_parent_pid: int | None = None


@dataclass
class RunTask:
    """One run handed to an executor: its RunConfig, with the threads it trains on set in it (the one place a
    run's thread count is kept), and its run id (hashing the config reads the dataset: no executor redoes it).
    It crosses process and Ray boundaries pickled, as it is; where a boundary needs text (torchrun's task file)
    it is written once with `to_json` and rebuilt once with `from_json`."""

    run_id: str
    config: RunConfig
    study: str
    store_path: str | None
    checkpoint_dir: str | None
    tracker: str | None = None  # live tracking (scalinglab.tracking): the tracker's name, and its folder
    tracker_dir: str | None = None

    @classmethod
    def for_run(cls, config, threads: int, study) -> "RunTask":
        """The task for `config` (a RunConfig) of `study`, checkpointing to <store>.ckpt/<run_id>."""
        run_id = config.run_id()
        return cls(run_id, config.replace(threads=threads), study.name, str(study.store_path),
                   str(study.checkpoint_root / run_id), getattr(study, "tracker", None),
                   getattr(study, "tracker_dir", None))

    def to_json(self) -> dict:
        return asdict(self)  # the RunConfig as RunConfig.to_dict()

    @classmethod
    def from_json(cls, d: dict) -> "RunTask":
        return cls(**{**d, "config": RunConfig.from_dict(d["config"])})

    @property
    def threads(self) -> int:
        return self.config.threads

    def open_store(self, write_store: bool = True):
        """The run store this task writes (None when the driver writes it), wrapped for its tracker if any."""
        if not (write_store and self.store_path):
            return None
        from scalinglab.tracking import tracked_store

        return tracked_store(RunStore(self.store_path), self.tracker, self.tracker_dir, self.study)

    @property
    def name(self) -> str:
        return self.config.name

    def failed(self, error: str) -> "Outcome":
        return Outcome(self.run_id, self.name, "failed", {}, error)


@dataclass
class Outcome:
    run_id: str
    name: str
    status: str  # done | diverged | failed
    summary: dict
    error: str | None = None
    result: object | None = None  # the RunResult, when the driver writes the store


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process exit when `parent_pid` (default: the current parent) exits."""
    global _parent_pid
    _parent_pid = parent_pid or os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - other libc
            pass
    exit_if_orphaned()  # the parent may have died before prctl took effect


def exit_if_orphaned() -> None:
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)


def init_worker(driver_pid: int | None) -> None:
    """ProcessPoolExecutor initializer: tie the worker to its parent (the driver, or None: the process that
    forked it, a forkserver that lives as long as the driver); one thread until a run asks for more; and exit
    without the interpreter's teardown once the pool lets the worker go."""
    die_with_parent(driver_pid)
    if driver_pid is None:
        _release_forkserver()
    atexit.register(_exit_now)
    import torch

    torch.set_num_threads(1)


def _release_forkserver() -> None:
    """A worker forked by multiprocessing's forkserver inherits the write end of the pipe by which the server learns
    that its clients are gone. Closed here, only the driver holds it: the driver's death (even SIGKILL) ends the
    server, and the server's end kills its workers (die_with_parent), so no worker outlives its driver."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None


def _exit_now() -> None:
    """Tearing down an interpreter that has imported torch takes ~0.6 s of CPU (measured on 2 cores), and the
    driver waits for it when the study ends. A pool worker has nothing left to clean up when it exits: every run
    is committed to the store (SQLite transactions) before its result is sent, so leave at once. Registered last,
    this atexit hook runs first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_task(task: RunTask, write_store: bool = True) -> Outcome:
    from scalinglab.training.trainer import train_run  # torch: imported by the process that trains

    run_id = task.run_id
    store = None
    try:
        store = task.open_store(write_store)
        result = train_run(task.config, store=store, study=task.study, checkpoint_dir=task.checkpoint_dir,
                           on_progress=lambda _info: exit_if_orphaned())
        return Outcome(run_id, task.name, result.status, _brief(result.summary), result.summary.get("error"),
                       None if write_store else result)
    except ScalingLabError as exc:
        error = str(exc)
    except Exception as exc:  # a bug or a crash in one run: record it and keep the study going
        error = f"{type(exc).__name__}: {exc} (at {_where(exc)})"
    if store is not None:
        record_failure(store, run_id, error)
    return task.failed(error)


def run_group(tasks: list[RunTask], write_store: bool = True) -> list[Outcome]:
    """Train same-shape runs together as one batched model (grouped.py); their outcomes in the order of `tasks`.
    Each run is stored and checkpointed as its own, exactly as `run_task` would. Should the group fail as a whole
    (a run's config or data rejected, a crash in the batched step), each run is trained alone instead: a run
    resumes from whatever checkpoint the group wrote, and one bad run fails alone without taking the others."""
    if len(tasks) == 1:
        return [run_task(tasks[0], write_store)]
    from scalinglab.training.grouped import train_grouped  # torch: imported by the process that trains

    store = None
    try:
        configs = [t.config for t in tasks]
        store = tasks[0].open_store(write_store)
        results = train_grouped(configs, store=store, study=tasks[0].study,
                                checkpoint_dirs=[t.checkpoint_dir for t in tasks],
                                on_progress=lambda _info: exit_if_orphaned())
    except Exception as exc:  # noqa: BLE001 - the group's failure is not any one run's: each run gets its own try
        print(f"scalinglab: a group of {len(tasks)} runs could not train together ({type(exc).__name__}: {exc}); "
              "training each alone", file=sys.stderr, flush=True)
        return [run_task(t, write_store) for t in tasks]
    finally:
        if store is not None:
            store.close()
    return [Outcome(t.run_id, c.name, r.status, _brief(r.summary), r.summary.get("error"),
                    None if write_store else r) for t, c, r in zip(tasks, configs, results)]  # fmt: skip


def record_failure(store, run_id: str, error: str) -> None:
    """Mark the run failed with its reason. When the store itself cannot be written (the disk is full), the
    driver records it later: the error is already in the Outcome it receives."""
    try:
        store.set_status(run_id, "failed", error)
    except StoreError:
        pass


def _brief(summary: dict) -> dict:
    keep = ("N", "D", "B", "C", "C_exact", "final_test_loss", "wall_time_s", "tokens_per_s")
    return {k: summary.get(k) for k in keep}


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    f = tb[-1]
    return f"{Path(f.filename).name}:{f.lineno}"
