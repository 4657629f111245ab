"""Where a run meets the store: the one place a training run writes its row, its learning curve and its outcome.

    rec = RunRecorder(store, config, run_id, study=..., info=describe(config, vocab))
    rec.start(points, evals, device)   # registered, marked running, the curve so far (a resumed run's) rewritten
    rec.flush(points, evals)           # the points and evaluations recorded since the last write
    rec.finish(status, summary, points, evals)   # the outcome and the whole curve, in one transaction
    rec.interrupted(step, points, evals)         # Ctrl-C: the curve so far, and the run marked 'interrupted'

A recorder without a store (or on a rank other than 0 under DDP) writes nothing and keeps no count.
"""

from __future__ import annotations

from scalinglab.training.config import RunConfig


class RunRecorder:
    def __init__(self, store, config: RunConfig, run_id: str, *, study: str | None, info: dict,
                 enabled: bool = True):
        self.store = store if enabled else None
        self.config = config
        self.run_id = run_id
        self.study = study
        self.info = info
        self.started = False
        self._written = (0, 0)  # points and evaluations already in the store

    def start(self, points: list[dict], evals: list[dict], device: str) -> None:
        if self.store is not None:
            self.store.add_run(self.run_id, self.config.to_dict(), name=self.config.name, study=self.study,
                               info=self.info)
            self.store.mark_running(self.run_id, device=device)
            self.store.truncate_curve(self.run_id, -1)
            self.store.add_curve(self.run_id, points, evals)
        self._written = (len(points), len(evals))
        self.started = True

    def flush(self, points: list[dict], evals: list[dict]) -> None:
        """Write the curve points and evaluations recorded since the last write."""
        if self.store is not None:
            p, e = self._written
            self.store.add_curve(self.run_id, points[p:], evals[e:])
        self._written = (len(points), len(evals))

    def finish(self, status: str, summary: dict, points: list[dict], evals: list[dict]) -> None:
        if self.store is not None:
            self.store.finish_run(self.run_id, status, summary, points=points, evals=evals, replace_curve=True)

    def interrupted(self, step: int, points: list[dict] | None, evals: list[dict] | None) -> None:
        """Ctrl-C (SIGINT) stopped the run: the curve so far is written and the run marked 'interrupted' (not
        left 'running'). Nothing when this process never registered it, or the store cannot be written now (the
        next driver re-runs a 'running' row anyway)."""
        if self.store is None or not self.started:
            return
        try:
            if points is not None:
                self.flush(points, evals)
            self.store.set_status(self.run_id, "interrupted", f"interrupted by Ctrl-C (SIGINT) at step {step}; "
                                  "run it again to resume")
        except Exception:  # noqa: BLE001 - the store cannot be written now
            pass
