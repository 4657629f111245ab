"""Live tracking: each run's curve, config, N, FLOP and final metrics written to TensorBoard, MLflow or W&B as it
trains. The run store stays the source of truth; a tracker is a copy for watching a study live.

A tracker sees exactly what the store is sent: `TrackedStore` wraps a `RunStore` and forwards every call, and on
the three writes a trainer makes (`add_run`: config and counts; `add_curve`: the points and evaluations recorded
since the last write, which a trainer sends at every evaluation step and checkpoint; `finish_run`: status and
final metrics) it also hands the same values to the tracker. So the trainer, the grouped trainer and every
executor's worker track without a line of their own, and nothing is tracked that the store did not get.

Scalars, at each run's step: train/loss, train/lr, train/tokens, train/flop (6 N tokens), train/flop_exact,
eval/<set>/loss (validation, test, ...) and, where measured, train/b_simple. Files, under one folder (default:
<store>.tracking/<tracker>):
- tensorboard: an event file per run in <dir>/<run_id>/ (torch.utils.tensorboard, or tensorboardX), the config
  and counts as text, final metrics as scalars at the last step;
- mlflow: a local file store <dir> (file: URI; MLflow >= 3 keeps it only with MLFLOW_ALLOW_FILE_STORE=true,
  which is set for this process unless already set), one experiment per study ("scalinglab" for lone runs), one
  MLflow run per run tagged scalinglab.run_id (a resumed run continues its MLflow run), the config as params;
- wandb: offline mode (no network; `wandb sync <dir>/wandb/offline-run-*` uploads later), one W&B run per run
  with id = the run id, the config and counts in its config, final metrics in its summary.
Each is an optional extra (`pip install 'scalinglab[tensorboard]'`, `[mlflow]`, `[wandb]`); a missing one is one
line and exit code 2 before any training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from scalinglab.errors import DependencyError

__all__ = ["TRACKERS", "TrackedStore", "Tracker", "check_tracker", "make_tracker", "tracked_store"]

TRACKERS = ("tensorboard", "mlflow", "wandb")
_MODULES = {"tensorboard": ("torch.utils.tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",)}


def check_tracker(name: str | None) -> None:
    """Raise DependencyError (one line) when `name` is not a tracker or its extra is not installed."""
    if name is None:
        return
    if name not in TRACKERS:
        raise DependencyError(f"unknown tracker {name!r}; choose one of {', '.join(TRACKERS)}")
    if _import_first(name) is None:
        raise DependencyError(f"--tracker {name} needs the {name} package: pip install 'scalinglab[{name}]'")


def _import_first(name: str):
    import importlib

    for mod in _MODULES[name]:
        try:
            if name == "tensorboard" and mod == "torch.utils.tensorboard":
                import tensorboard  # noqa: F401  (torch's writer needs the tensorboard package itself)
            return importlib.import_module(mod)
        except ImportError:
            continue
    return None


def default_dir(store_path: str | os.PathLike, name: str) -> Path:
    return Path(str(store_path) + ".tracking") / name


def _scalars(points, evals) -> dict[int, dict[str, float]]:
    """{step: {tag: value}} of curve points and evaluations, as the store receives them."""
    by_step: dict[int, dict[str, float]] = {}
    for p in points:
        row = by_step.setdefault(int(p["step"]), {})
        for key, tag in (("train_loss", "train/loss"), ("lr", "train/lr"), ("tokens", "train/tokens"),
                         ("flop", "train/flop"), ("flop_exact", "train/flop_exact"), ("b_simple", "train/b_simple")):
            v = p.get(key)
            if v is not None:
                row[tag] = float(v)
    for e in evals:
        if e.get("loss") is not None:
            by_step.setdefault(int(e["step"]), {})[f"eval/{e['eval_set']}/loss"] = float(e["loss"])
    return by_step


def _final_scalars(summary: dict) -> dict[str, float]:
    out = {}
    for k in ("final_test_loss", "final_train_loss", "N", "n_params_total", "C", "C_exact", "D", "tokens_per_s",
              "wall_time_s"):
        v = summary.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"final/{k}"] = float(v)
    metrics = summary.get("final_metrics") or {}
    for s, v in (metrics.get("eval_losses") or {}).items():
        if isinstance(v, (int, float)):
            out[f"final/{s}_loss"] = float(v)
    return out


def _flat(config: dict, info: dict | None) -> dict[str, str]:
    flat = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in config.items()}
    for k, v in (info or {}).items():
        flat[f"info.{k}"] = str(v)
    return flat


class Tracker:
    """What a tracker does for a run: start (config and counts), scalars at steps, end (status, final metrics)."""

    name = ""

    def __init__(self, directory: str | os.PathLike, study: str | None = None):
        self.dir = Path(directory)
        self.study = study

    def start(self, run_id: str, name: str, config: dict, info: dict | None) -> None:
        raise NotImplementedError

    def log(self, run_id: str, scalars: dict[int, dict[str, float]]) -> None:
        raise NotImplementedError

    def end(self, run_id: str, status: str, summary: dict) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, directory, study=None):
        super().__init__(directory, study)
        mod = _import_first("tensorboard")
        self._writer_cls = mod.SummaryWriter
        self._writers: dict = {}
        self._last: dict[str, int] = {}

    def _writer(self, run_id: str):
        if run_id not in self._writers:
            self._writers[run_id] = self._writer_cls(log_dir=str(self.dir / run_id))
        return self._writers[run_id]

    def start(self, run_id, name, config, info):
        w = self._writer(run_id)
        w.add_text("run", f"{name or run_id} (run id {run_id}, study {self.study or '-'})", 0)
        w.add_text("config", "    " + json.dumps(config, indent=1, sort_keys=True).replace("\n", "\n    "), 0)
        w.add_text("counts", "    " + json.dumps(info or {}, indent=1, default=str).replace("\n", "\n    "), 0)
        w.flush()

    def log(self, run_id, scalars):
        w = self._writer(run_id)
        for step in sorted(scalars):
            for tag, v in scalars[step].items():
                w.add_scalar(tag, v, step)
            self._last[run_id] = step
        w.flush()

    def end(self, run_id, status, summary):
        w = self._writer(run_id)
        step = int((summary.get("final_metrics") or {}).get("steps_done") or self._last.get(run_id, 0))
        for tag, v in _final_scalars(summary).items():
            w.add_scalar(tag, v, step)
        w.add_text("status", status + (f": {summary['error']}" if summary.get("error") else ""), step)
        w.close()
        self._writers.pop(run_id, None)


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, directory, study=None):
        super().__init__(directory, study)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.dir.mkdir(parents=True, exist_ok=True)
        self.uri = self.dir.resolve().as_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self._runs: dict[str, str] = {}

    def _experiment(self) -> str:
        name = self.study or "scalinglab"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # noqa: BLE001 - another worker of the study created it first (MlflowException)
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _run(self, run_id: str, name: str = "") -> str:
        if run_id not in self._runs:
            exp = self._experiment()
            found = self.client.search_runs([exp], filter_string=f"tags.`scalinglab.run_id` = '{run_id}'")
            if found:
                self._runs[run_id] = found[0].info.run_id
                self.client.update_run(found[0].info.run_id, status="RUNNING")
            else:
                r = self.client.create_run(exp, run_name=name or run_id, tags={"scalinglab.run_id": run_id})
                self._runs[run_id] = r.info.run_id
        return self._runs[run_id]

    def start(self, run_id, name, config, info):
        from mlflow.entities import Param

        rid = self._run(run_id, name)
        logged = self.client.get_run(rid).data.params
        params = [Param(k, v[:500]) for k, v in _flat(config, info).items() if k not in logged]
        for i in range(0, len(params), 100):
            self.client.log_batch(rid, params=params[i:i + 100])

    def log(self, run_id, scalars):
        import time

        from mlflow.entities import Metric

        rid = self._run(run_id)
        now = int(time.time() * 1000)
        metrics = [Metric(tag, v, now, step) for step, row in sorted(scalars.items()) for tag, v in row.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(rid, metrics=metrics[i:i + 1000])

    def end(self, run_id, status, summary):
        import time

        from mlflow.entities import Metric

        rid = self._run(run_id)
        step = int((summary.get("final_metrics") or {}).get("steps_done") or 0)
        now = int(time.time() * 1000)
        self.client.log_batch(rid, metrics=[Metric(k, v, now, step) for k, v in _final_scalars(summary).items()])
        self.client.set_tag(rid, "scalinglab.status", status)
        self.client.set_terminated(rid, status="FINISHED" if status == "done" else "FAILED")
        self._runs.pop(run_id, None)


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, directory, study=None):
        super().__init__(directory, study)
        import wandb

        self.wandb = wandb
        self._runs: dict = {}

    def _run(self, run_id: str, name: str = "", config: dict | None = None):
        if run_id not in self._runs:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._runs[run_id] = self.wandb.init(
                project=self.study or "scalinglab", name=name or run_id, id=run_id, dir=str(self.dir),
                mode=os.environ.get("WANDB_MODE", "offline"), config=config or {}, reinit=True, resume="allow")
        return self._runs[run_id]

    def start(self, run_id, name, config, info):
        run = self._run(run_id, name, {**config, **{f"info.{k}": v for k, v in (info or {}).items()}})
        run.config.update({f"info.{k}": v for k, v in (info or {}).items()}, allow_val_change=True)

    def log(self, run_id, scalars):
        run = self._run(run_id)
        for step in sorted(scalars):
            if run.step <= step:  # W&B refuses steps below its last one (a resumed run re-sends its curve)
                run.log(scalars[step], step=step)

    def end(self, run_id, status, summary):
        run = self._run(run_id)
        run.summary.update({**_final_scalars(summary), "status": status})
        run.finish(exit_code=0 if status == "done" else 1)
        self._runs.pop(run_id, None)


_CLASSES = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}


def make_tracker(name: str, directory: str | os.PathLike, study: str | None = None) -> Tracker:
    check_tracker(name)
    return _CLASSES[name](directory, study)


class TrackedStore:
    """A RunStore that also sends what it is given to a tracker. Every other call goes to the store unchanged."""

    def __init__(self, store, tracker: Tracker):
        self._store = store
        self.tracker = tracker
        self._sent: dict[str, dict[tuple[int, str], float]] = {}  # per run: (step, tag) -> value sent

    def __getattr__(self, attr):
        return getattr(self._store, attr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._store.__exit__(*exc)

    def add_run(self, run_id: str, config: dict, *, name: str = "", study: str | None = None, info=None, **kw):
        out = self._store.add_run(run_id, config, name=name, study=study, info=info, **kw)
        self.tracker.start(run_id, name, config, info)
        return out

    def add_curve(self, run_id: str, points=(), evals=()):
        points, evals = list(points), list(evals)
        out = self._store.add_curve(run_id, points, evals)
        self._send(run_id, points, evals)
        return out

    def _send(self, run_id: str, points, evals) -> None:
        """The scalars not sent yet (or changed since: a point completed later), so no step is logged twice."""
        sent = self._sent.setdefault(run_id, {})
        new: dict[int, dict[str, float]] = {}
        for step, row in _scalars(points, evals).items():
            for tag, v in row.items():
                if sent.get((step, tag)) != v:
                    new.setdefault(step, {})[tag] = sent[(step, tag)] = v
        if new:
            self.tracker.log(run_id, new)

    def finish_run(self, run_id: str, status: str, summary: dict | None = None, *, points=(), evals=(), **kw):
        points, evals = list(points), list(evals)
        out = self._store.finish_run(run_id, status, summary, points=points, evals=evals, **kw)
        self._send(run_id, points, evals)  # the whole curve comes here: only what was not sent yet goes on
        self.tracker.end(run_id, status, summary or {})
        self._sent.pop(run_id, None)
        return out


def tracked_store(store, tracker: str | None, directory: str | os.PathLike | None = None, study: str | None = None):
    """`store` wrapped for `tracker` (a name in TRACKERS), writing under `directory` (default
    <store>.tracking/<tracker>); the store itself when tracker is None or there is no store."""
    if tracker is None or store is None:
        return store
    return TrackedStore(store, make_tracker(tracker, directory or default_dir(store.path, tracker), study))
