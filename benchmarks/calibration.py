"""Calibration of the study's estimates on simulated studies of known truth, at a preset's own design.

Each simulated study trains nothing: it draws the runs of one of the cpu preset's sweeps from a known law, each
run shifted by one run-to-run factor e^(sigma_run z) and each evaluation by e^(sigma_eval z'):
  sizes  the size sweep's learning curves from the preset's own L(N, S) (docs/cpu/fits.json), with each shape's
         exact FLOP count: L(N), L(N, S), L(C) and N_opt(C) under 6ND and exact FLOP;
  data   the data-subset runs (3 sizes x 4 unique-data sizes) and the size sweep's finals from its L(N, D):
         L(D), L(N, D), alpha_N/alpha_D;
  batch  the batch-size sweep from Kaplan's model S = S_min (1 + B_crit(L)/B) with the preset's measured
         B_crit(L): alpha_B;
and runs the study analysis on them
(scalinglab.analysis.study_laws.fit_study, the same code the report uses). Over --studies simulated studies it
prints, per quantity, the truth, the mean estimate, the bias, the mean 95% interval width, the seed-to-seed spread
of the estimate and the coverage of the 95% intervals.

The truth of each quantity: alpha_N and alpha_S of L(N, S) are the surface's; the N_opt exponent (approaches 3
and 1) is alpha_S/(alpha_N + alpha_S) and the frontier's alpha_C is 1/(1/alpha_S + 1/alpha_N) (C = 6 N B S);
L(N)'s alpha_N and the envelope's alpha_C are what the same fit gives on the noise-free design (their estimands:
the runs stop before convergence, so they are not the surface's asymptotic exponents).

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
                        steps=steps, loss=lambda s, t=table: t[s], exact_factor=exact_factor(nl, dm)))
    return runs


def exact_factor(n_layer: int, d_model: int) -> float:
    """The exact FLOP count over 6 N D for a cpu preset shape (n_ctx 128, vocab 2048): attention and the
    unembedding weigh most on the smallest models."""
    from scalinglab.accounting import ModelShape, n_params, training_flop_exact

    shape = ModelShape(n_layer=n_layer, d_model=d_model, n_head=4, n_ctx=128, vocab_size=2048)
    return training_flop_exact(shape, 1.0) / (6.0 * n_params(shape))


# the cpu preset's data sweep: 3 sizes x 4 unique-data subsets, 1.5M tokens each, early-stopped loss
DATA_SHAPES = [(2, 32), (2, 64), (3, 96)]
DATA_UNIQUE = [60_000, 150_000, 400_000, 1_000_000]
# its batch sweep: one size (2 x 64), 6 batch sizes of 128-token sequences
BATCHES = [4 * 128, 8 * 128, 16 * 128, 32 * 128, 64 * 128, 128 * 128]


def simulate_data(nd: dict, rng, sigma_run: float, noise_free: bool = False) -> list:
    """Data-subset runs whose early-stopped loss is the known L(N, D) (Kaplan eq. 1.5), times run noise."""
    from synthetic_study import run

    runs = []
    for nl, dm in DATA_SHAPES:
        n = 12 * nl * dm ** 2
        for du in DATA_UNIQUE:
            loss = ((nd["N_c"] / n) ** (nd["alpha_N"] / nd["alpha_D"]) + nd["D_c"] / du) ** nd["alpha_D"]
            shift = 1.0 if noise_free else np.exp(sigma_run * rng.standard_normal())
            runs.append(run(f"d{n}-{du}", N=n, roles="subsets", n_layer=nl, d_model=dm, B=CPU_BATCH, D=1_500_000,
                            d_unique=du, loss=float(loss * shift)))
    return runs


def size_finals(nd: dict, rng, sigma_run: float, noise_free: bool = False) -> list:
    """The size sweep's runs as L(N, D) sees them: each at D = the 3M tokens it trained on, without repetition."""
    from synthetic_study import run

    runs = []
    for i, (nl, dm) in enumerate(CPU_SHAPES):
        n = 12 * nl * dm ** 2
        loss = ((nd["N_c"] / n) ** (nd["alpha_N"] / nd["alpha_D"]) + nd["D_c"] / CPU_TOKENS) ** nd["alpha_D"]
        shift = 1.0 if noise_free else np.exp(sigma_run * rng.standard_normal())
        runs.append(run(f"r{i}", N=n, roles="sizes", n_layer=nl, d_model=dm, B=CPU_BATCH, D=CPU_TOKENS,
                        loss=float(loss * shift)))
    return runs


def simulate_batch(bc: dict, rng, sigma_run: float, sigma_eval: float, noise_free: bool = False) -> list:
    """A batch-size sweep from Kaplan's model: after S_min steps at the critical batch the loss is
    L = L0 + (S_c/S_min)^alpha_S, and at batch B a run needs S = S_min (1 + B_crit(L)/B), B_crit = B*/L^(1/alpha_B);
    each run's curve shifted by run noise and each evaluation by evaluation noise."""
    from synthetic_study import run

    grid = np.linspace(bc["L0"] + 1e-4, bc["L0"] + 3.0, 6000)
    s_min = bc["S_c"] / (grid - bc["L0"]) ** (1 / bc["alpha_S"])
    steps = np.geomspace(20, 4000, 30)
    runs = []
    for b in BATCHES:
        s_at = s_min * (1 + bc["B_star"] / grid ** (1 / bc["alpha_B"]) / b)
        shift = 1.0 if noise_free else np.exp(sigma_run * rng.standard_normal())
        ev = np.ones(steps.size) if noise_free else np.exp(sigma_eval * rng.standard_normal(steps.size))
        curve = np.interp(np.log(steps), np.log(s_at[::-1]), grid[::-1]) * shift * ev
        table = dict(zip(steps, curve))
        runs.append(run(f"b{b}", N=12 * 2 * 64 ** 2, roles="batch", n_layer=2, d_model=64, B=b, steps=steps,
                        loss=lambda s, t=table: t[s], b_simple=float("nan")))
    return runs


PARTS = {"sizes": ["L(N)", "L(N,S)", "N_opt(C)", "L(C_min)", "N_opt(C) exact", "L(C_min) exact"],
         "data": ["L(D)", "L(N,D)"], "batch": ["B_crit(L)"]}


def estimates(runs: list, n_boot: int, part: str) -> dict:
    from synthetic_study import study

    from scalinglab.analysis.study_laws import fit_study

    sd = study(runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_study(sd, n_resamples=n_boot, only=PARTS[part])
    out = {}

    def put(key, law, name, lo_hi=None):
        if law is None or not getattr(law, "converged", False):
            return
        ci = law.ci.get(name, (np.nan, np.nan))
        out[key] = (float(law.params[name]), float(ci[0]), float(ci[1]))

    if part == "data":
        put("L(D) alpha_D", fits["L(D)"].law, "alpha_D")
        put("L(N,D) alpha_N", fits["L(N,D)"].law, "alpha_N")
        put("L(N,D) alpha_D", fits["L(N,D)"].law, "alpha_D")
        law = fits["L(N,D)"].law
        if law is not None and law.converged and law.samples is not None and len(law.samples) >= 20:
            names = list(law.form.param_names)
            r = law.samples[:, names.index("alpha_N")] / law.samples[:, names.index("alpha_D")]
            lo, hi = np.percentile(r, [2.5, 97.5])
            out["L(N,D) alpha_N/alpha_D"] = (law.params["alpha_N"] / law.params["alpha_D"], lo, hi)
        return out
    if part == "batch":
        put("B_crit(L) alpha_B", fits["B_crit(L)"].law, "alpha_B")
        return out
    put("L(N) alpha_N", fits["L(N)"].law, "alpha_N")
    put("L(N,S) alpha_N", fits["L(N,S)"].law, "alpha_N")
    put("L(N,S) alpha_S", fits["L(N,S)"].law, "alpha_S")
    for tag in ("", " exact"):
        put(f"L(C) alpha_C (envelope){tag}", fits[f"L(C_min){tag}"].law, "alpha_C_min")
        nf = fits[f"N_opt(C){tag}"]
        if nf.law is not None:
            put(("N_opt exponent, approach 3" if nf.envelope is not None else "N_opt exponent, approach 1") + tag,
                nf.law, "exponent")
        if nf.envelope is not None and nf.envelope.law is not None:
            put("N_opt exponent, approach 1" + tag, nf.envelope.law, "exponent")
    return out


def cpu_truths() -> tuple[dict, dict, dict]:
    """The known truths, from the cpu preset's own fits (docs/cpu/fits.json): L(N, S) for the size sweep, L(N, D)
    for the data sweep; the batch sweep's B_crit(L) from its finding 8 (alpha_B 0.15, B* 2.4e8 tokens) with a
    learning curve L0 + (S_c/S_min)^alpha_S placing the sweep's losses where the preset's were (4.4-5.4)."""
    d = json.loads((ROOT / "docs" / "cpu" / "fits.json").read_text())
    nd = dict((d["L(N,D)"].get("law", d["L(N,D)"]))["params"])
    bc = {"L0": 4.0, "S_c": 40.0, "alpha_S": 0.6, "alpha_B": 0.15, "B_star": 2.4e8}
    return truth_law(), nd, bc


def draw(part: str, laws, rng, sigma_run: float, sigma_eval: float, noise_free: bool = False) -> list:
    ns, nd, bc = laws
    if part == "sizes":
        return simulate(ns, rng, sigma_run, sigma_eval, noise_free)
    if part == "data":
        return simulate_data(nd, rng, sigma_run, noise_free) + size_finals(nd, rng, sigma_run, noise_free)
    return simulate_batch(bc, rng, sigma_run, sigma_eval, noise_free)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--sigma-run", type=float, default=0.013)
    ap.add_argument("--sigma-eval", type=float, default=0.002)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", choices=[*PARTS, "all"], default="all",
                    help="which sweep of the cpu preset to simulate: the size sweep, the data subsets, the batch sweep")
    args = ap.parse_args(argv)
    laws = cpu_truths()
    ns, nd, bc = laws
    an, as_ = ns["alpha_N"], ns["alpha_S"]
    asym = {"L(N,S) alpha_N": an, "L(N,S) alpha_S": as_, "N_opt exponent, approach 3": as_ / (an + as_),
            "N_opt exponent, approach 1": as_ / (an + as_), "L(N,D) alpha_N": nd["alpha_N"],
            "L(N,D) alpha_D": nd["alpha_D"], "L(N,D) alpha_N/alpha_D": nd["alpha_N"] / nd["alpha_D"],
            "B_crit(L) alpha_B": bc["alpha_B"]}
    print(f"truths: L(N, S) {json.dumps({k: float(f'{v:.4g}') for k, v in ns.items()})}; L(N, D) "
          f"{json.dumps({k: float(f'{v:.4g}') for k, v in nd.items()})}; B_crit {json.dumps(bc)}")
    print(f"noise: run {args.sigma_run:.2%}, eval {args.sigma_eval:.2%}; {args.studies} studies, {args.bootstrap} "
          "bootstrap resamples each")
    print("estimands: the laws' own parameters; where the design cannot reach the asymptote (L(N), L(D), the "
          "envelope's alpha_C, the exact-FLOP N_opt exponent), what the same fit gives on the noise-free design")
    parts = list(PARTS) if args.part == "all" else [args.part]
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.time()
    truth = {}
    for part in parts:
        nf = estimates(draw(part, laws, None, 0, 0, noise_free=True), 0, part)
        print(f"noise-free design ({part}): " + ", ".join(f"{k} {v[0]:.4g}" for k, v in nf.items()))
        for q, v in nf.items():
            truth[q] = asym.get(q, v[0])
        if part == "data":  # a ratio of draws: no noise-free interval, its truth is the law's
            truth["L(N,D) alpha_N/alpha_D"] = asym["L(N,D) alpha_N/alpha_D"]
        for k in range(args.studies):
            est = estimates(draw(part, laws, rng, args.sigma_run, args.sigma_eval), args.bootstrap, part)
            rows += [{"study": k, "quantity": q, "est": v[0], "lo": v[1], "hi": v[2]} for q, v in est.items()]
    df = pd.DataFrame(rows)
    print(f"{time.time() - t0:.0f} s")
    print(f"{'quantity':<36}{'truth':>8}{'mean':>8}{'bias':>8}{'width':>8}{'spread':>8}{'|bias|/hw':>10}"
          f"{'coverage':>10}{'n':>5}")
    for q, g in df.groupby("quantity", sort=False):
        t = truth.get(q, np.nan)
        ok = np.isfinite(g["lo"]) & np.isfinite(g["hi"])
        cov = float(((g.loc[ok, "lo"] <= t) & (t <= g.loc[ok, "hi"])).mean()) if ok.any() else np.nan
        width = float((g.loc[ok, "hi"] - g.loc[ok, "lo"]).mean()) if ok.any() else np.nan
        bias = float(g["est"].mean() - t)
        print(f"{q:<36}{t:>8.4f}{g['est'].mean():>8.4f}{bias:>+8.4f}{width:>8.4f}{2 * 1.96 * g['est'].std():>8.4f}"
              f"{abs(bias) / (width / 2):>10.2f}{cov:>10.2f}{int(ok.sum()):>5}")
    print("spread: 2 x 1.96 x the seed-to-seed SD of the estimate (what a calibrated interval's width should be); "
          "n: studies where the quantity was estimated with an interval")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
