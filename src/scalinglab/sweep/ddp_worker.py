"""One run over several processes (DistributedDataParallel), started by torchrun.

    torchrun --nproc_per_node 2 -m scalinglab.sweep.ddp_worker study.toml [--store S] [--retry-failed]
        every run of the study that is not done, one after another, each across all the processes
    torchrun --nproc_per_node 2 -m scalinglab.sweep.ddp_worker --task task.json
        one run (what `scalinglab study run --nproc-per-node K` launches for each run)

The process group uses NCCL when the run is on CUDA and Gloo on CPU. trainer.py splits each global batch across
the ranks (the same batch a single process would see), so the run matches a one-process run of the same config;
rank 0 alone registers the runs and writes the store and the checkpoints. Given a spec, rank 0 holds the study's
store lock (<store>.lock) like `scalinglab study run`, so the two never drive one store at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys

from scalinglab.errors import ScalingLabError
from scalinglab.sweep.worker import RunTask, die_with_parent, run_task


def _backend(device: str) -> str:
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "nccl"
    return "gloo"


def _tasks_from_spec(args, rank: int, hold) -> list:
    """Rank 0 loads the study (preparing its data), takes the study's store lock (held by `hold`, an ExitStack,
    until this process ends: one driver per store, as `study run` does), registers its runs and decides what to
    run; the others receive the list, or rank 0's one-line error (then every rank stops)."""
    import torch.distributed as dist

    from scalinglab.sweep.cost import available_cores
    from scalinglab.sweep.runner import pending_runs, register_runs, study_lock
    from scalinglab.sweep.spec import load_study

    payload = [None]
    if rank == 0:
        try:
            study = load_study(args.spec, store=args.store)
            from scalinglab.store import RunStore

            hold.enter_context(study_lock(study.store_path))
            store = RunStore(study.store_path)
            register_runs(study, store)
            todo = pending_runs(study, store, retry_failed=args.retry_failed)
            per_rank = max(1, available_cores() // dist.get_world_size())
            payload = [[RunTask.for_run(c, c.threads or per_rank, study) for c in todo]]  # pickled
        except ScalingLabError as exc:
            payload = [{"error": str(exc), "exit_code": exc.exit_code}]
    dist.broadcast_object_list(payload, src=0)
    if isinstance(payload[0], dict):
        err = ScalingLabError(payload[0]["error"])
        err.exit_code = payload[0]["exit_code"]
        raise err
    return payload[0]


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist


    p = argparse.ArgumentParser(prog="scalinglab.sweep.ddp_worker", description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", help="study spec (TOML)")
    p.add_argument("--task", help="one run: a JSON task file written by `scalinglab study run --nproc-per-node`")
    p.add_argument("--store", default=None)
    p.add_argument("--retry-failed", action="store_true")
    args = p.parse_args(argv)
    if (args.spec is None) == (args.task is None):
        p.error("give a study spec or --task FILE")
    if "RANK" not in os.environ:
        p.error("run me under torchrun: torchrun --nproc_per_node K -m scalinglab.sweep.ddp_worker ...")
    die_with_parent()  # torchrun's agent: if it dies, so do we

    rank = int(os.environ["RANK"])
    first = json.loads(open(args.task).read()) if args.task else None
    device = (first or {}).get("config", {}).get("device", "auto")
    dist.init_process_group(_backend(device))
    hold = contextlib.ExitStack()  # the store lock (spec mode: this is the driver; --task: `study run` is)
    try:
        try:
            tasks = [RunTask.from_json(first)] if first else _tasks_from_spec(args, rank, hold)
        except ScalingLabError as exc:
            if rank == 0:
                print(f"scalinglab: error: {exc}", file=sys.stderr)
            return exc.exit_code
        failed = 0
        for t in tasks:
            if t.threads:
                torch.set_num_threads(t.threads)
            # every rank trains; run_task hands the store to the trainer, which writes it from rank 0 only
            outcome = run_task(dataclasses.replace(t, store_path=t.store_path if rank == 0 else None),
                               write_store=True)
            if rank == 0:
                loss = outcome.summary.get("final_test_loss")
                print(f"{outcome.status:8s} {outcome.name or outcome.run_id}  "
                      f"test loss {loss if loss is None else round(loss, 4)}  {outcome.error or ''}", flush=True)
            failed += outcome.status == "failed"
            dist.barrier()
        return 1 if failed else 0
    finally:
        dist.destroy_process_group()
        hold.close()


if __name__ == "__main__":
    sys.exit(main())
