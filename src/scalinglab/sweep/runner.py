"""Run a study: register its runs, run what is not done on an executor, report progress, survive being killed.

The store is the study's memory. Every run of the spec is registered as 'planned' (its id is the hash of its
config); a run is 'running' while some process trains it, then 'done', 'diverged' or 'failed'. A driver killed
at any moment leaves 'running' rows and checkpoints in <store>.ckpt/<run_id>: the next `run_study` re-runs those
rows, resuming from their checkpoints, and skips what is done, so every run completes exactly once. One driver
per store at a time (an exclusive lock on <store>.lock), so a 'running' row seen at start is always stale.

    study = load_study("study.toml")
    summary = run_study(study, executor="local")        # or "sequential", or "ray" (ray_address="auto")
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scalinglab.accounting import fmt_bytes, train_memory
from scalinglab.errors import ConfigError, StoreError
from scalinglab.store import RunStore
from scalinglab.sweep.cost import (PROBE_BUDGET_S, Throughput, available_cores, memory_limit, probe_throughput,
                                   run_flop, simulate_schedule, threads_for)
from scalinglab.sweep.executor import DDPExecutor, Executor, LocalExecutor, RayExecutor, SequentialExecutor
from scalinglab.sweep.spec import Study
from scalinglab.sweep.worker import TERMINAL, Outcome, RunTask
from scalinglab.training.config import RunConfig, describe

EXECUTORS = ("local", "sequential", "ray")


@dataclass
class PlannedRun:
    config: RunConfig
    run_id: str
    info: dict  # config.describe(): N, D, B, C, ...
    status: str  # in the store before this call: planned | running | done | failed | diverged
    threads: int
    flop: float  # exact FLOP including evaluations (what the time estimate uses)
    est_s: float | None = None
    memory: int = 0  # estimated bytes training it holds (accounting.train_memory)
    notes: list = field(default_factory=list)  # its budget as trained differs from its config (RunConfig.budget_notes)


@dataclass
class StudyPlan:
    study: Study
    runs: list[PlannedRun]
    cores: int
    workers: int
    retry_failed: bool = False
    throughput: Throughput | None = None
    est_wall_s: float | None = None
    memory_limit: int | None = None  # bytes a run may use on the study's device (None: unknown)

    def too_large(self) -> list[PlannedRun]:
        """The runs to run whose estimated memory exceeds the device's."""
        return [r for r in self.todo if self.memory_limit and r.memory > self.memory_limit]

    def memory_error(self, r: PlannedRun) -> str:
        return (f"run {r.config.name or r.run_id} needs about {fmt_bytes(r.memory)} to train, more than the "
                f"{fmt_bytes(self.memory_limit)} this machine's device has: choose a smaller model or a smaller "
                "micro_batch_size")

    @property
    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if _wants_run(r.status, self.retry_failed)]

    @property
    def flop_planned(self) -> float:
        return sum(r.info["C"] for r in self.runs)


@dataclass
class StudySummary:
    """What `run_study` did. Counts are over all runs of the study after this call."""

    name: str
    store_path: Path
    runs: int
    already_done: int
    ran: int
    done: int
    diverged: int
    failed: int
    pending: int
    flop_planned: float  # Kaplan's C = 6 N D, summed over the study
    flop_done: float
    wall_s: float
    est_wall_s: float | None = None
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (run_id, name, error)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.pending == 0


# ------------------------------------------------------------------------------------------------ store state


def _wants_run(status: str, retry_failed: bool) -> bool:
    return status in ("new", "planned", "running", "interrupted") or (retry_failed and status == "failed")


def _vocab_size(study: Study) -> int:
    from scalinglab.data.shards import TokenDataset

    return TokenDataset(study.data_dir).vocab_size


def register_runs(study: Study, store) -> None:
    """Add every run of the study to the store as 'planned' (runs already there keep their status)."""
    vocab = _vocab_size(study)
    for cfg in study.runs:
        store.add_run(cfg.run_id(), cfg.to_dict(), name=cfg.name, study=study.name, info=describe(cfg, vocab))
        if not cfg.cooldowns:  # a stable phase ends at a constant LR: its final loss is no budget's; its branches'
            store.add_roles(cfg.run_id(), study.roles, study.name)
        for branch, at in cfg.branches():  # a stable phase's cooldowns: runs of their own, planned with it
            info = {**describe(branch, vocab), "parent_run_id": cfg.run_id(), "branch_step": at}
            store.add_run(branch.run_id(), branch.to_dict(), name=branch.name, study=study.name, info=info)
            store.add_roles(branch.run_id(), study.roles, study.name)


def run_statuses(study: Study, store) -> dict[str, str]:
    """Every run's status (its cooldown branches' too), 'new' where the store has not seen it."""
    known = store.column("status")
    return {rid: known.get(rid, "new") for rid in study.run_ids(branches=True)}


def _family_status(cfg: RunConfig, status: dict[str, str], retry_failed: bool) -> str:
    """A run's status as a unit of work: a stable phase is still to run while any of its cooldowns is."""
    own = status.get(cfg.run_id(), "new")
    if _wants_run(own, retry_failed):
        return own
    for branch, _ in cfg.branches():
        if own == "done" and _wants_run(status.get(branch.run_id(), "new"), retry_failed):
            return status.get(branch.run_id(), "new")
    return own


def pending_runs(study: Study, store, retry_failed: bool = False) -> list[RunConfig]:
    status = run_statuses(study, store)
    return [c for c in study.runs if _wants_run(_family_status(c, status, retry_failed), retry_failed)]


STATUSES_ORDER = ("done", "diverged", "running", "interrupted", "planned", "failed", "new")


def study_status(study: Study, store) -> list[dict]:
    """One dict per run of the spec (each followed by its cooldown branches), in spec order: the store's row
    (status, N, D, C, attempts, loss, ...), or status 'new' for a run the store has not seen (the spec changed
    since the last `study run`)."""
    df = store.runs()
    rows = {r["run_id"]: r for r in df.to_dict("records")} if not df.empty else {}
    vocab = None
    out = []
    for cfg in (c for spec_run in study.runs for c in [spec_run, *(b for b, _ in spec_run.branches())]):
        rid = cfg.run_id()
        row = rows.get(rid)
        if row is None:
            row = dict(run_id=rid, status="new", N=None, D=None, C=None, attempts=0, final_test_loss=None,
                       wall_time_s=None, error=None)
            if (study.data_dir / "meta.json").is_file():
                vocab = vocab or _vocab_size(study)
                row.update({k: v for k, v in describe(cfg, vocab).items() if k in ("N", "D", "C")})
        out.append({**row, "name": cfg.name})
    return out


@contextmanager
def study_lock(store_path: Path):
    """Hold <store>.lock exclusively for the life of a driver; the OS releases it when the driver dies."""
    path = Path(str(store_path) + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StoreError(f"{store_path}: another scalinglab driver (pid {other}: `study run`, or torchrun on "
                             "scalinglab.sweep.ddp_worker) is running this store; wait for it to finish or stop it"
                             ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ planning


def plan_study(study: Study, *, store=None, workers: int | None = None, threads_per_worker: int | None = None,
               retry_failed: bool = False, probe: bool = True, nproc_per_node: int | None = None,
               log=None) -> StudyPlan:
    """Each run's FLOP, threads and (with `probe`) estimated time, and the study's estimated wall time. The probe
    takes a few seconds at most (sweep.cost.probe_throughput); `log(message)` hears what it does. Each run's
    memory is estimated too (accounting.train_memory) and compared with the device's (`too_large`)."""
    vocab = _vocab_size(study)
    cores = available_cores()
    statuses = run_statuses(study, store) if store is not None else {r: "new" for r in study.run_ids()}
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise ConfigError(f"threads per worker must be at least 1, got {threads_per_worker}")
    runs = []
    for cfg in study.runs:
        if threads_per_worker:
            t = threads_per_worker
        elif nproc_per_node:
            t = cfg.threads or max(1, cores // nproc_per_node)
        else:
            t = threads_for(cfg, vocab, cores)
            if workers and not cfg.threads:
                t = min(t, max(1, cores // workers))
        mem = train_memory(cfg.shape(vocab), cfg.micro_batch_size or cfg.batch_size, cfg.optimizer)["total"]
        # a stable phase's unit of work: its own updates and each cooldown's updates after its branch step
        flop = run_flop(cfg, vocab) + sum(run_flop(b, vocab) * (b.steps - at) / b.steps for b, at in cfg.branches())
        runs.append(PlannedRun(cfg, cfg.run_id(), describe(cfg, vocab), _family_status(cfg, statuses, retry_failed),
                               t, flop, memory=mem, notes=cfg.budget_notes()))
    plan = StudyPlan(study, runs, cores, workers or cores, retry_failed,
                     memory_limit=memory_limit(study.runs[0].device if study.runs else "cpu"))
    todo = plan.todo  # (the probe never allocates a run that cannot fit: it estimates it from its FLOP)
    if probe and todo:
        if log:
            log(f"probing throughput for the time estimate (at most {PROBE_BUDGET_S:g} s of training)")
        plan.throughput = probe_throughput([r.config for r in todo], vocab, cores, log=log)
        for r in todo:
            r.est_s = plan.throughput.seconds(r.config, vocab)
        if nproc_per_node:
            plan.est_wall_s = sum(r.est_s for r in todo) / nproc_per_node * 1.2
        else:
            budget = max(cores, (workers or 0) * (threads_per_worker or 1))
            plan.est_wall_s = simulate_schedule([r.est_s for r in todo], [r.threads for r in todo], budget,
                                                plan.workers)
    return plan


# ------------------------------------------------------------------------------------------------ progress


class _Progress:
    """An overall bar (runs and FLOP done of planned, ETA) and one line per finished run."""

    def __init__(self, mode, plan: StudyPlan):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.lines = bool(mode)
        self.bar = mode is True
        self.console = Console(stderr=True)
        self.total_runs = len(plan.runs)
        self.done_runs = sum(r.status in TERMINAL for r in plan.runs)
        self.total_flop = plan.flop_planned
        self.done_flop = sum(r.info["C"] for r in plan.runs if r.status in TERMINAL)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[runs]} runs"),
            TextColumn("{task.fields[flop]} FLOP"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not self.bar,
        )  # fmt: skip
        self.task = None
        self.name = plan.study.name

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task(self.name, total=max(self.total_flop, 1.0), completed=self.done_flop,
                                           runs=self._runs(), flop=self._flop())
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def _runs(self) -> str:
        return f"{self.done_runs}/{self.total_runs}"

    def _flop(self) -> str:
        return f"{self.done_flop:.3g}/{self.total_flop:.3g}"

    def finished(self, outcome: Outcome, planned: PlannedRun) -> None:
        if outcome.status in TERMINAL:
            self.done_runs += 1
            self.done_flop += planned.info["C"]
        self.progress.update(self.task, completed=self.done_flop, runs=self._runs(), flop=self._flop())
        if self.lines:
            s = outcome.summary
            color = {"done": "green", "diverged": "yellow"}.get(outcome.status, "red")
            loss = s.get("final_test_loss")
            detail = (f"test loss {loss:.4f}" if isinstance(loss, float) else "") + (
                f"  {s['wall_time_s']:.1f} s" if s.get("wall_time_s") else "")
            i = planned.info
            self.console.print(
                f"[{color}]{outcome.status:8s}[/] {outcome.name or outcome.run_id}  N={i['N']:,} D={i['D']:,} "
                f"B={i['B']:,} C={i['C']:.3g}  {detail}{'  ' + outcome.error if outcome.error else ''}",
                highlight=False,
            )


# ------------------------------------------------------------------------------------------------ running


def run_study(
    study: Study,
    executor: str = "local",
    workers: int | None = None,
    threads_per_worker: int | None = None,
    ray_address: str | None = None,
    retry_failed: bool = False,
    progress: bool | str = True,
    *,
    nproc_per_node: int | None = None,
    probe: bool | None = None,
    max_attempts: int = 3,
    group: bool = False,
) -> StudySummary:
    """Run every run of `study` that is not done and return a StudySummary.

    executor: "local" (worker processes on this machine, packed to fill the cores), "sequential" (one run after
    another in this process) or "ray" (one Ray task per run; `ray_address` "auto", an address, or None = auto).
    workers / threads_per_worker: override the packing (default: as many runs at once as fit the cores, threads
    per run by model size). retry_failed: also re-run 'failed' runs. progress: True = bar and a line per run,
    "lines" = lines only, False = quiet. nproc_per_node: K > 1 trains each run across K processes with torchrun
    (DDP), one run after another. probe: time a few steps first for the wall-time estimate (default: when
    progress is shown). max_attempts: Ray resubmits a run whose worker process died, up to this many attempts in
    all (each one counted in the store's `attempts`). group: the local and sequential executors train small
    runs of one shape together as one batched model (sweep.executor.group_tasks); default: each alone."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if nproc_per_node is not None and nproc_per_node < 1:
        raise ConfigError(f"nproc_per_node must be at least 1, got {nproc_per_node}")
    if max_attempts < 1:
        raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
    if executor == "ray" and any(c.cooldowns for c in study.runs):
        raise ConfigError(f"{study.name}: runs with cooldowns need workers that write the store themselves (their "
                          "branches are recorded by the worker): run it with the local or sequential executor")
    ddp = bool(nproc_per_node and nproc_per_node > 1)
    t0 = time.perf_counter()
    with study_lock(study.store_path):
        store = RunStore(study.store_path)
        register_runs(study, store)
        pool = None
        if executor == "local" and not ddp:
            from scalinglab.sweep.local import LocalPool

            plan0 = plan_study(study, store=store, workers=workers, threads_per_worker=threads_per_worker,
                               retry_failed=retry_failed, probe=False)
            if plan0.todo:  # workers start importing torch while the driver registers and plans
                pool = LocalPool(min(plan0.workers, len(plan0.todo)))
                if progress if probe is None else probe:
                    pool.wait_warm()  # then the probe below times the model, not the workers' start-up
        ex: Executor | None = LocalExecutor(pool, cores=0, flop={}) if pool is not None else None
        tasks: list[RunTask] = []
        interrupted = False
        try:
            plan = plan_study(study, store=store, workers=workers, threads_per_worker=threads_per_worker,
                              retry_failed=retry_failed, probe=bool(progress) if probe is None else probe,
                              nproc_per_node=nproc_per_node if ddp else None, log=_stderr_line if progress else None)
            todo = plan.todo
            if plan.too_large() and executor != "ray":  # checked before anything is spent (a Ray node may differ)
                raise ConfigError(plan.memory_error(plan.too_large()[0]))
            already = sum(r.status in TERMINAL for r in plan.runs)
            if ddp:
                ex = DDPExecutor(nproc_per_node)
            elif executor == "sequential":
                ex = SequentialExecutor()
            elif executor == "ray":
                ex = RayExecutor(ray_address, max_attempts=max_attempts)
            elif ex is not None:
                ex.cores = max(plan.cores, plan.workers * (threads_per_worker or 1))
                ex.flop = {r.run_id: r.flop for r in todo}
            if group and isinstance(ex, (SequentialExecutor, LocalExecutor)):
                ex.group, ex.vocab_size = True, _vocab_size(study)
            if progress:
                _print_header(plan, executor if not ddp else f"torchrun x{nproc_per_node}")
            by_id = {r.run_id: r for r in plan.runs}
            failures: list[tuple[str, str, str]] = []
            tasks = [RunTask.for_run(r.config, r.threads, study) for r in todo]

            with _Progress(progress, plan) as bar:
                def on_done(o: Outcome) -> None:
                    _record_outcome(store, o, driver_writes=not ex.writes_store)
                    if o.status == "failed":
                        failures.append((o.run_id, o.name, o.error or ""))
                    bar.finished(o, by_id[o.run_id])

                def on_start(t: RunTask) -> None:
                    if not ex.writes_store:  # the workers will not mark it: the driver does, once per attempt
                        store.mark_running(t.run_id, device=ex.name)

                if tasks:
                    ex.run(tasks, on_start=on_start, on_done=on_done)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if ex is not None:
                ex.close()
            if interrupted:  # Ctrl-C: this driver's runs still 'running' (their workers stopped) say so
                _mark_interrupted(store, [t.run_id for t in tasks])
        status = run_statuses(study, store)
        c_by_id = store.column("C")
        store.close()
    counts = {s: sum(v == s for v in status.values()) for s in ("done", "diverged", "failed")}
    summary = StudySummary(
        name=study.name, store_path=study.store_path, runs=len(status), already_done=already, ran=len(todo),
        done=counts["done"], diverged=counts["diverged"], failed=counts["failed"],
        pending=sum(_wants_run(v, False) for v in status.values()),
        flop_planned=plan.flop_planned,
        flop_done=sum(float(c_by_id.get(r, 0) or 0) for r, v in status.items() if v in TERMINAL),
        wall_s=time.perf_counter() - t0, est_wall_s=plan.est_wall_s, failures=failures,
    )  # fmt: skip
    if progress:
        _print_footer(summary)
    return summary


def _mark_interrupted(store, run_ids: list[str]) -> None:
    """Mark as 'interrupted' the runs of `run_ids` the store still has 'running' (a worker stopped by Ctrl-C before
    it could say so itself). The driver holds the store's lock: no other process trains them."""
    try:
        status = store.column("status")
        for rid in run_ids:
            if status.get(rid) == "running":
                store.set_status(rid, "interrupted", "interrupted by Ctrl-C (SIGINT); run the study again to resume")
    except Exception:  # the store cannot be written now: the next driver re-runs 'running' rows anyway
        pass


def _record_outcome(store, o: Outcome, *, driver_writes: bool) -> None:
    """The driver's share of recording a finished task: the whole run when the workers do not write the store
    (Ray), else only a failure the worker could not record itself (it died, or its disk was full)."""
    if driver_writes and o.result is not None:
        r = o.result
        store.finish_run(r.run_id, r.status, r.summary, points=r.points, evals=r.evals, replace_curve=True)
    elif o.status == "failed":
        store.set_status(o.run_id, "failed", o.error)


# ------------------------------------------------------------------------------------------------ printing


def _stderr_line(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(msg, highlight=False)


def _print_header(plan: StudyPlan, how: str) -> None:
    from rich.console import Console

    todo = plan.todo
    c_todo = sum(r.info["C"] for r in todo)
    est = f", est. {_fmt_s(plan.est_wall_s)}" if plan.est_wall_s is not None else ""
    Console(stderr=True).print(
        f"study [bold]{plan.study.name}[/]: {len(plan.runs)} runs ({len(plan.runs) - len(todo)} done or skipped, "
        f"{len(todo)} to run), C = {plan.flop_planned:.3g} FLOP planned ({c_todo:.3g} to run){est} "
        f"on {plan.cores} cores ({how}) -> {plan.study.store_path}",
        highlight=False,
    )


def _print_footer(s: StudySummary) -> None:
    from rich.console import Console

    Console(stderr=True).print(
        f"study [bold]{s.name}[/]: {s.done} done, {s.diverged} diverged, {s.failed} failed, {s.pending} pending "
        f"of {s.runs}; ran {s.ran} in {_fmt_s(s.wall_s)}"
        + (f" (estimated {_fmt_s(s.est_wall_s)})" if s.est_wall_s else ""),
        highlight=False,
    )


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
