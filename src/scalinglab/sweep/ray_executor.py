"""The Ray executor: each run is one Ray task with its CPU (and GPU) request; only the driver writes the store.

`--ray auto` joins a running cluster (`ray start --head` on this machine, or RAY_ADDRESS) and starts a private
local instance when there is none; `--ray ADDRESS` joins that cluster (e.g. ray://head:10001 or head:6379).
Workers need scalinglab installed and the study's dataset at the same path (a shared file system); checkpoints
go to <store>.ckpt/<run_id> on the node that runs the task, so a resubmitted run resumes where it can see them.
"""

from __future__ import annotations

from typing import Callable

from scalinglab.errors import ConfigError
from scalinglab.sweep.worker import Outcome, RunTask, run_task


def init_ray(address: str | None) -> bool:
    """Connect to (or start) Ray. Returns True if this call started it (the caller shuts it down)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray executor needs ray: pip install 'scalinglab[ray]'") from None
    if ray.is_initialized():
        return False
    if address in (None, "", "auto"):
        try:
            ray.init(address="auto", log_to_driver=False)
        except (ConnectionError, RuntimeError):
            ray.init(include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({exc}); check --ray ADDRESS") from None
    return True


def _run_remote(task: RunTask) -> Outcome:
    return run_task(task, write_store=False)


def run_ray(
    tasks: list[RunTask],
    *,
    address: str | None,
    gpus: dict[str, float],
    on_start: Callable[[RunTask], None],
    on_done: Callable[[Outcome], None],
) -> None:
    """Submit every task at once (Ray queues what does not fit) and hand results back as they finish."""
    import ray

    from scalinglab.config import RunConfig

    started = init_ray(address)
    try:
        remote = ray.remote(max_retries=0)(_run_remote)
        refs = {}
        for t in tasks:
            run_id = RunConfig.from_dict(t.config).run_id()
            ref = remote.options(num_cpus=t.threads, num_gpus=gpus.get(run_id, 0)).remote(t)
            refs[ref] = (t, run_id)
            on_start(t)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            t, run_id = refs.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as exc:  # the task's worker died (RayTaskError, WorkerCrashedError, ...)
                outcome = Outcome(run_id, t.config.get("name", ""), "failed", {},
                                  f"Ray task failed: {str(exc).splitlines()[0][:200]}")
            on_done(outcome)
    finally:
        if started:
            ray.shutdown()
