"""Calibration of the study's estimates on simulated studies of known truth, at a preset's own design.

Each simulated study trains nothing: it draws the learning curves of the design's sizes from a known L(N, S)
surface (by default the cpu preset's own fitted law, docs/cpu/fits.json), each run shifted by one run-to-run
factor e^(sigma_run z) and each evaluation by e^(sigma_eval z'), and runs the study analysis on them
(scalinglab.analysis.study_laws.fit_study, the same code the report uses). Over --studies simulated studies it
prints, per quantity, the truth, the mean estimate, the bias, the mean 95% interval width, the seed-to-seed spread
of the estimate and the coverage of the 95% intervals.

The truth of each quantity: alpha_N and alpha_S of L(N, S) are the surface's; the N_opt exponent (approaches 3
and 1) is alpha_S/(alpha_N + alpha_S) and the frontier's alpha_C is 1/(1/alpha_S + 1/alpha_N) (C = 6 N B S);
L(N)'s alpha_N is what the same fit gives on the noise-free design (its estimand: the runs stop before
convergence, so it is not the surface's alpha_N).

    python3 benchmarks/calibration.py --studies 100 --bootstrap 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# the cpu preset's size sweep: (layers, width) -> N = 12 L d^2; 3M tokens at 32 x 128 tokens per step, 16 evals
CPU_SHAPES = [(1, 16), (1, 32), (2, 32), (2, 64), (4, 64), (3, 96), (4, 112)]
CPU_TOKENS, CPU_BATCH, CPU_EVALS = 3_000_000, 32 * 128, 16


def truth_law() -> dict:
    p = ROOT / "docs" / "cpu" / "fits.json"
    d = json.loads(p.read_text())["L(N,S)"]
    return dict((d.get("law", d))["params"])


def simulate(law: dict, rng, sigma_run: float, sigma_eval: float, noise_free: bool = False):
    from synthetic_study import run, study

    steps = np.round(np.linspace(1, CPU_EVALS, CPU_EVALS) * (CPU_TOKENS / CPU_BATCH) / CPU_EVALS)  # whole steps
    runs = []
    for i, (nl, dm) in enumerate(CPU_SHAPES):
        n = 12 * nl * dm ** 2
        shift = 1.0 if noise_free else np.exp(sigma_run * rng.standard_normal())
        ev = np.ones(steps.size) if noise_free else np.exp(sigma_eval * rng.standard_normal(steps.size))
        curve = ((law["N_c"] / n) ** law["alpha_N"] + (law["S_c"] / steps) ** law["alpha_S"]) * shift * ev
        table = dict(zip(steps, curve))
        runs.append(run(f"r{i}", N=n, roles="sizes", n_layer=nl, d_model=dm, B=CPU_BATCH, D=CPU_TOKENS,
                        steps=steps, loss=lambda s, t=table: t[s]))
    return study(runs)


def estimates(sd, n_boot: int) -> dict:
    from scalinglab.analysis.study_laws import fit_study

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_study(sd, n_resamples=n_boot, only=["L(N)", "L(N,S)", "N_opt(C)", "L(C_min)"])
    out = {}

    def put(key, law, name, lo_hi=None):
        if law is None or not getattr(law, "converged", False):
            return
        ci = law.ci.get(name, (np.nan, np.nan))
        out[key] = (float(law.params[name]), float(ci[0]), float(ci[1]))

    put("L(N) alpha_N", fits["L(N)"].law, "alpha_N")
    put("L(N,S) alpha_N", fits["L(N,S)"].law, "alpha_N")
    put("L(N,S) alpha_S", fits["L(N,S)"].law, "alpha_S")
    put("L(C) alpha_C (envelope)", fits["L(C_min)"].law, "alpha_C_min")
    nf = fits["N_opt(C)"]
    if nf.law is not None:
        put("N_opt exponent, approach 3" if nf.envelope is not None else "N_opt exponent, approach 1",
            nf.law, "exponent")
    if nf.envelope is not None and nf.envelope.law is not None:
        put("N_opt exponent, approach 1", nf.envelope.law, "exponent")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--sigma-run", type=float, default=0.013)
    ap.add_argument("--sigma-eval", type=float, default=0.002)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    law = truth_law()
    an, as_ = law["alpha_N"], law["alpha_S"]
    truth = {"L(N,S) alpha_N": an, "L(N,S) alpha_S": as_, "N_opt exponent, approach 3": as_ / (an + as_),
             "N_opt exponent, approach 1": as_ / (an + as_), "L(C) alpha_C (envelope)": 1 / (1 / as_ + 1 / an)}
    nf = estimates(simulate(law, None, 0, 0, noise_free=True), 0)
    truth["L(N) alpha_N"] = nf["L(N) alpha_N"][0]
    print(f"truth: the cpu preset's L(N, S) {json.dumps({k: float(f'{v:.4g}') for k, v in law.items()})}; "
          f"noise: run {args.sigma_run:.2%}, eval {args.sigma_eval:.2%}; {args.studies} studies, "
          f"{args.bootstrap} bootstrap resamples each")
    print("noise-free design: " + ", ".join(f"{k} {v[0]:.4g}" for k, v in nf.items()))
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.time()
    for k in range(args.studies):
        est = estimates(simulate(law, rng, args.sigma_run, args.sigma_eval), args.bootstrap)
        rows += [{"study": k, "quantity": q, "est": v[0], "lo": v[1], "hi": v[2]} for q, v in est.items()]
    df = pd.DataFrame(rows)
    print(f"{time.time() - t0:.0f} s")
    print(f"{'quantity':<30}{'truth':>8}{'mean':>8}{'bias':>8}{'width':>8}{'spread':>8}{'|bias|/hw':>10}"
          f"{'coverage':>10}{'n':>5}")
    for q, g in df.groupby("quantity", sort=False):
        t = truth[q]
        ok = np.isfinite(g["lo"]) & np.isfinite(g["hi"])
        cov = float(((g.loc[ok, "lo"] <= t) & (t <= g.loc[ok, "hi"])).mean()) if ok.any() else np.nan
        width = float((g.loc[ok, "hi"] - g.loc[ok, "lo"]).mean()) if ok.any() else np.nan
        bias = float(g["est"].mean() - t)
        print(f"{q:<30}{t:>8.4f}{g['est'].mean():>8.4f}{bias:>+8.4f}{width:>8.4f}{2 * 1.96 * g['est'].std():>8.4f}"
              f"{abs(bias) / (width / 2):>10.2f}{cov:>10.2f}{int(ok.sum()):>5}")
    print("spread: 2 x 1.96 x the seed-to-seed SD of the estimate (what a calibrated interval's width should be)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
