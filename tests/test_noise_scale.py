"""The gradient noise scale estimator on a problem whose answer is analytic, and inside real training."""

import json

import numpy as np
import pytest
import torch

from scalinglab.training.config import RunConfig
from scalinglab.training.noise_scale import NoiseScaleEstimator
from scalinglab.store import RunStore
from scalinglab.training.trainer import train_run


def test_recovers_analytic_noise_scale_of_linear_regression():
    # Loss per example l = 0.5 (w.x - y)^2 with x ~ N(0, I_d), y = w*.x + eps, eps ~ N(0, s^2).
    # At w = w* + delta: G = delta and, by Isserlis' theorem, tr(Sigma) = (d + 1)|delta|^2 + d s^2, so
    # B_simple = tr(Sigma) / |G|^2 = (d + 1) + d s^2 / |delta|^2.
    d, s, b_small, b_big = 32, 0.5, 16, 64
    gen = torch.Generator().manual_seed(0)
    w_star = torch.randn(d, generator=gen)
    delta = 0.3 * torch.randn(d, generator=gen)
    w = (w_star + delta).requires_grad_(True)
    truth = (d + 1) + d * s**2 / float(delta @ delta)

    est = NoiseScaleEstimator(decay=0.999)
    for _ in range(3000):
        x = torch.randn(b_big, d, generator=gen)
        y = x @ w_star + s * torch.randn(b_big, generator=gen)
        per_example = 0.5 * (x @ w - y) ** 2
        # accumulate like the trainer: the first micro-batch, then the rest; read |g|^2 at both points
        (g_small,) = torch.autograd.grad(per_example[:b_small].mean(), w, retain_graph=True)
        (g_big,) = torch.autograd.grad(per_example.mean(), w)
        est.update(float(g_small @ g_small), b_small, float(g_big @ g_big), b_big)
    assert abs(est.b_simple / truth - 1) < 0.10, (est.b_simple, truth)
    assert est.g2 == pytest.approx(float(delta @ delta), rel=0.15)


def test_estimator_state_roundtrip_and_undefined_start():
    est = NoiseScaleEstimator()
    assert np.isnan(est.b_simple)
    est.update(2.0, 8, 1.0, 32)
    copy = NoiseScaleEstimator()
    copy.load_state_dict(est.state_dict())
    assert copy.b_simple == est.b_simple


def test_noise_scale_is_logged_during_training(byte_dataset, tmp_path):
    cfg = RunConfig(data=str(byte_dataset), n_layer=1, d_model=32, n_head=2, n_ctx=32, batch_size=16,
                    tokens=120 * 16 * 32, lr=2e-3, threads=1, noise_scale=True, n_evals=4)  # fmt: skip
    store = RunStore(tmp_path / "n.sqlite")
    result = train_run(cfg, store=store)
    curve = store.curves()
    b = curve.dropna(subset=["b_simple"]).set_index("step")["b_simple"]
    assert len(b) >= 10
    # single-step estimates are noisy (even negative) at first; the moving averages settle, and the noise
    # scale grows as the loss falls (McCandlish et al. 2018; Kaplan section 5.1)
    late = b[b.index > 0.5 * cfg.steps]
    assert (late > 0).all() and late.iloc[-1] > 3 * b[b.index >= 0.1 * cfg.steps].iloc[0]
    final = json.loads(store.runs().iloc[0]["final_metrics"])["b_simple"]
    # B_simple is in tokens: between one sequence's tokens and a few hundred batches
    assert 32 < final < 300 * cfg.batch_tokens
    assert result.status == "done"
