"""Synthetic study data of known answer: runs, curves and roles as a run store holds them, built from chosen
laws, so each finding's check can be given a case that must read yes, one no and one inconclusive."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from scalinglab.analysis.study_data import StudyData


def run(rid: str, *, N: float, roles, loss, steps=None, n_layer: int = 2, d_model: int | None = None,
        n_head: int = 4, d_ff: int | None = None, B: int = 1024, D: float = 2e6, d_unique=None,
        total: float | None = None, eval_losses: dict | None = None, loss_se: float | None = None,
        b_simple=None, lr: float = 1e-3, labels: dict | None = None, exact_factor: float = 1.5, n_ctx: int = 64, vocab_size: int = 4096) -> dict:
    """One finished run. `loss` is a number (a flat curve at that loss) or a function of the step giving the
    test loss; the validation loss is the test loss plus a constant, so it picks the test curve's minimum.
    Compute is 6 N B S (and `exact_factor` times that for the exact count)."""
    steps = np.arange(1, 21) * 10 if steps is None else np.asarray(steps, float)
    curve = np.array([loss(s) for s in steps]) if callable(loss) else np.full(steps.size, float(loss))
    d_model = d_model or max(8, int(round((N / (12 * n_layer)) ** 0.5)))
    d_ff = d_ff or 4 * d_model
    epochs = D / d_unique if d_unique else 1.0
    metrics = {"eval_losses": {"test": float(curve[-1]), "validation": float(curve[-1]) + 0.01,
                               **(eval_losses or {})}}
    if loss_se is not None:
        metrics["final_test_loss_se"] = loss_se
    r = dict(run_id=rid, name=rid, status="done", N=N, n_params_total=total if total is not None else N + 1000,
             n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=d_ff, n_ctx=n_ctx, vocab_size=vocab_size, B=B, batch_size=B // 64,
             S=int(steps[-1]), D=D, d_unique=d_unique, epochs=epochs, lr=lr, C=6 * N * D,
             C_exact=exact_factor * 6 * N * D, final_test_loss=float(curve[-1]),
             final_metrics=json.dumps(metrics), config=json.dumps({"extra": labels or {}}))
    if loss_se is not None:
        r["final_test_loss_se"] = loss_se
    c = pd.DataFrame({"run_id": rid, "step": steps.astype(int), "tokens": steps * B, "flop": 6 * N * B * steps,
                      "flop_exact": exact_factor * 6 * N * B * steps, "test_loss": curve,
                      "loss_validation": curve + 0.01})
    if b_simple is not None:
        c["b_simple"] = [b_simple(l) for l in curve] if callable(b_simple) else b_simple
    return {"run": r, "curve": c, "roles": [roles] if isinstance(roles, str) else list(roles)}


def study(runs: list[dict], name: str = "synthetic") -> StudyData:
    rr = pd.DataFrame([r["run"] for r in runs])
    cur = pd.concat([r["curve"] for r in runs], ignore_index=True)
    roles = pd.DataFrame([(r["run"]["run_id"], role, "spec") for r in runs for role in r["roles"]],
                         columns=["run_id", "role", "study"])
    return StudyData.from_frames(rr, cur, roles, name=name)


def wiggle(i: int, size: float) -> float:
    """A deterministic +-size pattern (1, -1, 1, ...) scaled: noise whose answer is known."""
    return size * (1 if i % 2 == 0 else -1)
