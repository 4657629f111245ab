"""Learning-rate schedules and evaluation steps: pure functions of a run's numbers (no torch).

Two schedules:
- `cosine` (Kaplan et al. 2020): linear warm-up, then a cosine from the peak down to min_frac * peak at the last
  update of the cosine's horizon;
- `wsd`, warm-up-stable-decay (Hu et al. 2024; Hagele et al. 2024): linear warm-up, the peak held constant, then
  a decay over the last `decay_fraction` of the updates down to min_frac * peak at the last update. The decay's
  shape is "1-sqrt" (Hagele et al. 2024: a cooldown of ~20% of the run shaped 1 - sqrt matches a cosine schedule
  of that length), "linear" or "cosine".

Because the stable phase of a WSD run does not depend on the run's length (given one warm-up), runs of several
budgets share it up to each one's decay start: a study trains the stable phase once and branches every cooldown
from it (trainer.py, `RunConfig.cooldowns`).
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("cosine", "wsd")
DECAY_SHAPES = ("1-sqrt", "linear", "cosine")


def cosine_lr(step: int, peak: float, warmup: int, total: int, min_frac: float = 0.0) -> float:
    """LR for update number `step` (0-based): linear warm-up over `warmup` updates, then a cosine from the peak
    down to min_frac * peak at the last update."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
    return peak * (min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def decay_steps(steps: int, decay_fraction: float) -> int:
    """Updates of a WSD run's decay: the last round(decay_fraction * steps) (at least one when the fraction > 0)."""
    return 0 if decay_fraction <= 0 else max(1, min(steps, int(round(decay_fraction * steps))))


def decay_start(steps: int, decay_fraction: float) -> int:
    """The number of updates a WSD run of `steps` updates makes before its decay: its branch point."""
    return steps - decay_steps(steps, decay_fraction)


def _shape(x: float, shape: str) -> float:
    if shape == "1-sqrt":
        return 1.0 - math.sqrt(x)
    if shape == "linear":
        return 1.0 - x
    return 0.5 * (1.0 + math.cos(math.pi * x))


def wsd_lr(step: int, peak: float, warmup: int, total: int, decay_fraction: float = 0.2, shape: str = "1-sqrt",
           min_frac: float = 0.0) -> float:
    """LR for update number `step` (0-based) of a WSD run of `total` updates: linear warm-up over `warmup`
    updates, the peak, then over the last decay_steps(total, decay_fraction) updates the decay of `shape` from
    the peak to min_frac * peak (reached at the last update)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    start = decay_start(total, decay_fraction)
    if step < start or start >= total:  # (no decay: the stable phase of a run with cooldowns)
        return peak
    x = min(1.0, (step - start + 1) / (total - start))
    return peak * (min_frac + (1.0 - min_frac) * _shape(x, shape))


def eval_steps(total: int, n: int) -> list[int]:
    """Log-spaced steps in [1, total] (about n of them), always including the last one."""
    pts = np.unique(np.round(np.geomspace(1, total, num=max(2, n))).astype(int))
    return sorted(set(int(p) for p in pts) | {total})
