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


def _gpus(config) -> float:
    """A whole GPU for a run on CUDA, or on 'auto' when the cluster has GPUs; none otherwise."""
    import ray

    device = config.device
    if device.startswith("cuda"):
        return 1.0
    return 1.0 if device == "auto" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def run_ray(
    tasks: list[RunTask],
    *,
    address: str | None,
    on_start: Callable[[RunTask], None],
    on_done: Callable[[Outcome], None],
    max_attempts: int = 3,
) -> None:
    """Submit every task at once (Ray queues what does not fit) and hand results back as they finish.

    A task whose worker process dies (killed, out of memory, its node lost) is submitted again, to whichever
    worker Ray gives it (the dead one cannot take it), up to `max_attempts` in all; on_start is called for every
    attempt (the driver counts it in the store) and on_done once per task. Ray's own retries are off, so a run is
    trained by one live attempt at a time and recorded once. An error inside the run is not retried: run_task
    returns it as a 'failed' outcome."""
    import ray

    if max_attempts < 1:
        raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
    started = init_ray(address)
    try:
        remote = ray.remote(max_retries=0)(_run_remote)
        refs: dict = {}

        def submit(t: RunTask, attempt: int) -> None:
            ref = remote.options(num_cpus=t.threads, num_gpus=_gpus(t.config)).remote(t)
            refs[ref] = (t, attempt)
            on_start(t)

        for t in tasks:
            submit(t, 1)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            t, attempt = refs.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as exc:  # the task's worker died (WorkerCrashedError, NodeDiedError, ...)
                why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                if attempt < max_attempts:
                    submit(t, attempt + 1)  # resumes from the run's checkpoint where the new worker sees it
                    continue
                outcome = t.failed(f"its Ray worker died in each of {attempt} attempts (last: {why})")
            on_done(outcome)
    finally:
        if started:
            ray.shutdown()
