"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), measured inside training.

Within one optimizer step the gradient is accumulated over micro-batches; the mean gradient after the first
part (B_small tokens) and after the whole step (B_big tokens) are two unbiased-in-expectation views at two batch
sizes. Since E|g_B|^2 = |G|^2 + tr(Sigma)/B:

    |G|^2    ~ (B_big |g_big|^2 - B_small |g_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|g_small|^2 - |g_big|^2) / (1/B_small - 1/B_big)

Each single-step estimate is very noisy (and can be negative), so, as McCandlish et al. advise, the numerator
and the denominator are averaged over steps (exponential moving averages) before taking the ratio. The cost is
two squared norms per step: nothing next to the forward and backward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class NoiseScaleEstimator:
    decay: float = 0.95  # EMA factor per measurement (~20-step memory)
    g2_ema: float = 0.0
    trace_ema: float = 0.0
    weight: float = 0.0  # bias correction for the EMAs started at zero
    last_g2: float = float("nan")
    last_trace: float = float("nan")

    def update(self, sq_small: float, b_small: float, sq_big: float, b_big: float) -> None:
        """Feed |g_small|^2 (mean gradient over b_small examples) and |g_big|^2 (over b_big > b_small)."""
        if not (b_big > b_small > 0) or not (math.isfinite(sq_small) and math.isfinite(sq_big)):
            return
        g2 = (b_big * sq_big - b_small * sq_small) / (b_big - b_small)
        trace = (sq_small - sq_big) / (1.0 / b_small - 1.0 / b_big)
        self.last_g2, self.last_trace = g2, trace
        self.g2_ema = self.decay * self.g2_ema + (1 - self.decay) * g2
        self.trace_ema = self.decay * self.trace_ema + (1 - self.decay) * trace
        self.weight = self.decay * self.weight + (1 - self.decay)

    @property
    def g2(self) -> float:
        return self.g2_ema / self.weight if self.weight else float("nan")

    @property
    def trace(self) -> float:
        return self.trace_ema / self.weight if self.weight else float("nan")

    @property
    def b_simple(self) -> float:
        """The noise scale in the units of b_small/b_big (tokens in training). NaN until it is defined."""
        g2, tr = self.g2, self.trace
        return tr / g2 if self.weight and g2 > 0 else float("nan")

    def state_dict(self) -> dict:
        return dict(decay=self.decay, g2_ema=self.g2_ema, trace_ema=self.trace_ema, weight=self.weight)

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)
