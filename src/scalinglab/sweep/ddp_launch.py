"""The DDP launch: each run in turn across several processes on this machine, under torchrun.

The driver writes the run's task (sweep.worker.RunTask) to a file beside its checkpoints, torchrun starts
scalinglab.sweep.ddp_worker on it in `nproc` processes (rank 0 writes the store), and the driver reads the run's
outcome back from the store. The child processes die with the driver (sweep.worker.die_with_parent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scalinglab.store import RunStore
from scalinglab.sweep.worker import TERMINAL, Outcome, RunTask, die_with_parent


def run_ddp(tasks: list[RunTask], nproc: int, *, on_start, on_done) -> None:
    """Each run in turn across `nproc` processes: torchrun launches scalinglab.sweep.ddp_worker on one task."""
    for t in tasks:
        run_id = t.run_id
        task_file = Path(t.checkpoint_dir).with_suffix(".ddp.json")
        task_file.parent.mkdir(parents=True, exist_ok=True)
        task_file.write_text(json.dumps(t.to_json()))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "scalinglab.sweep.ddp_worker", "--task", str(task_file)]
        on_start(t)
        env = {**os.environ, "OMP_NUM_THREADS": str(t.threads)}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=die_with_parent)  # in the child, before exec
        task_file.unlink(missing_ok=True)
        with RunStore(t.store_path, readonly=True) as store:
            row = store.run(run_id)
        if proc.returncode == 0 and row["status"] in TERMINAL:
            keep = ("N", "D", "B", "C", "final_test_loss", "wall_time_s")
            on_done(Outcome(run_id, t.name, row["status"], {k: row[k] for k in keep}))
        else:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            why = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
            on_done(t.failed(f"torchrun exited with {proc.returncode}: {why.strip()[:300]}"))
