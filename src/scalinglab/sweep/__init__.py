"""Studies: a sweep of runs declared in one TOML file, run on local processes, on Ray, or across devices (DDP).

    from scalinglab.sweep import load_study, run_study
    study = load_study("study.toml")          # .name, .runs (list[RunConfig]), .store_path, .data_dir
    summary = run_study(study, executor="local", workers=None, threads_per_worker=None, ray_address=None,
                        retry_failed=False, progress=True, max_attempts=3)   # -> StudySummary

spec.py      the TOML spec and its expansion into runs (axes, shapes at fixed N, validation)
cost.py      FLOP, threads per run, the throughput probe and the wall-time estimate
runner.py    register runs, run what is not done, progress, the lock
executor.py  the one executor interface, run(tasks, on_start, on_done): sequential, local, Ray, DDP
local.py     the local executor (worker processes packed to fill the cores)
ray_executor.py  the Ray executor (one task per run, resubmitted when its worker dies; the driver writes the store)
worker.py    RunTask (a run's RunConfig, threads set in it, and its id) and what runs it in any executor; workers
             die with their driver
ddp_launch.py    the DDP launch: each run in turn under torchrun, its outcome read back from the store
ddp_worker.py    the torchrun entry point (one run across several processes)
reconcile_plan.py  the reconcile study's plan (plan.toml) expanded into study specs, the tuned grid from the
                   tuning runs (analysis/reconcile.py analyzes what they trained)
"""

from scalinglab.sweep.runner import StudyPlan, StudySummary, plan_study, run_study
from scalinglab.sweep.spec import Study, load_study, study_from_dict

__all__ = ["Study", "StudyPlan", "StudySummary", "load_study", "plan_study", "run_study", "study_from_dict"]
