"""The figures behind laws/fit.py's identifiability thresholds: for well-posed fits and for broken ones, the
curvature figure the check uses (least/greatest singular value of the column-scaled Jacobian of the log
predictions, MIN_CURVATURE = 1e-6) beside the smallest eigenvalue of the diagonally scaled finite-difference
Hessian of the Huber objective itself, and each fit's verdict. Prints a table; no assertion.

    python benchmarks/identifiability.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_laws_recovery import TRUTH, make  # noqa: E402

from scalinglab.laws import fit_law, get_form  # noqa: E402
from scalinglab.laws.fit import MIN_CURVATURE  # noqa: E402
from scalinglab.laws.optimize import Objective  # noqa: E402

EPOCH = str(ROOT / "tests" / "data" / "chinchilla_points_epoch2024.csv")


def huber_hessian_min_eig(law) -> float:
    """Smallest eigenvalue of D^-1/2 H D^-1/2, H the central-difference Hessian of the fit's own objective (from
    its analytic gradient) at the optimum in internal coordinates, D = |diag H|."""
    f = law.form
    X = {v: law.data[v].to_numpy(float) for v in f.inputs}
    obj = Objective(f, X, np.log(law.data[f.response].to_numpy(float)), law.huber_delta)
    z = f.to_internal(f.theta(law.params)[None, :])[0]
    H = np.zeros((len(z), len(z)))
    for j in range(len(z)):
        h = 1e-5 * max(1.0, abs(z[j]))
        zp, zm = z.copy(), z.copy()
        zp[j] += h
        zm[j] -= h
        H[:, j] = (obj(zp[None])[1][0] - obj(zm[None])[1][0]) / (2 * h)
    H = 0.5 * (H + H.T)
    d = np.sqrt(np.abs(np.diag(H)))
    d[d == 0] = 1.0
    return float(np.linalg.eigvalsh(H / np.outer(d, d)).min())


def grid(Ns, Ds, noise=0.01, seed=0):
    N, D = np.meshgrid(Ns, Ds, indexing="ij")
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    loss = get_form("chinchilla").predict(TRUTH["chinchilla"], {"N": df["N"].to_numpy(), "D": df["D"].to_numpy()})
    df["loss"] = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(len(df)))
    return df


def cases():
    for form in TRUTH:
        yield f"recovery {form}, noise-free", "good", dict(data=make(form), form=form)
        for seed in range(3):
            yield f"recovery {form}, 2% noise, seed {seed}", "good", dict(data=make(form, 0.02, seed), form=form)
    epoch = dict(data=EPOCH, n="Model Size", c="Training FLOP", loss="loss")
    yield "Epoch points, chinchilla", "good", dict(epoch, form="chinchilla")
    yield "Epoch points, 5 highest dropped", "good", dict(epoch, form="chinchilla", drop_highest_loss=5)
    yield "Epoch points, chinchilla_tied", "good", dict(epoch, form="chinchilla_tied")
    g = grid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8))
    yield "8x8 grid, 1% noise", "good", dict(data=g, form="chinchilla")
    yield "8x8 grid, N x 1e290 (rescaled)", "good", dict(data=g.assign(N=g["N"] * 1e290), form="chinchilla")
    yield "2 distinct N", "bad", dict(data=grid([1e7, 1e9], np.geomspace(1e9, 1e12, 8)), form="chinchilla")
    yield "constant loss", "bad", dict(data=g.assign(loss=3.0), form="chinchilla")
    N = np.geomspace(1e7, 1e10, 12)
    conf = pd.DataFrame({"N": N, "D": 20 * N})
    conf["loss"] = get_form("chinchilla").predict(TRUTH["chinchilla"], {"N": N, "D": 20 * N})
    yield "every run at D = 20 N", "bad", dict(data=conf, form="chinchilla")
    nod = g.assign(loss=1.8 + 480 / g["N"] ** 0.35)
    yield "loss independent of D", "bad", dict(data=nod, form="chinchilla")


def main():
    warnings.simplefilter("ignore")
    print(f"MIN_CURVATURE = {MIN_CURVATURE:g}")
    print(f"{'case':<42}{'kind':<6}{'curvature':>12}{'Huber H min eig':>17}  verdict")
    for name, kind, kw in cases():
        law = fit_law(kw.pop("data"), n_resamples=0, **kw)
        curv = law.diagnostics.get("curvature")
        verdict = "converged" if law.converged else law.message[:70]
        print(f"{name:<42}{kind:<6}{curv if curv is not None else float('nan'):>12.2e}"
              f"{huber_hessian_min_eig(law):>17.2e}  {verdict}")


if __name__ == "__main__":
    main()
