"""Benchmark: the Chinchilla fit plus bootstrap resamples on Epoch's 240 points, by each fit method.

lbfgs: the full grid (4,500 L-BFGS starts), each resample refitted from the full-data optimum (and up to two other
good local optima). vpnls: starts from the variable-projection least-squares optimum (laws/vpnls.py), each
resample from its own. Prints, per method: the point fit's time, the bootstrap's time (the fit with resamples
minus the fit without), the estimates, and how far the two methods' intervals are apart. Goal (lbfgs, 4000
resamples): under 20 s on 2 cores.

    PYTHONPATH=src python benchmarks/fit_chinchilla.py [--jobs 2] [--bootstrap 4000] [--method lbfgs|vpnls|both]
"""

import argparse
import os
import resource
import time
from pathlib import Path

from scalinglab.laws import fit_law

POINTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_points_epoch2024.csv"  # vendored, see its README


def cpu_now() -> float:
    """CPU seconds of this process and of its finished children (worker processes) so far."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def run(args, method: str):
    kw = dict(form="chinchilla", n="Model Size", c="Training FLOP", loss="loss", drop_highest_loss=5,
              n_jobs=args.jobs, method=method)
    t0, c0 = time.perf_counter(), cpu_now()
    fit_law(args.data, n_resamples=0, **kw)
    t_point, c_point = time.perf_counter() - t0, cpu_now() - c0
    t0, c0 = time.perf_counter(), cpu_now()
    law = fit_law(args.data, n_resamples=args.bootstrap, **kw)
    wall, cpu = time.perf_counter() - t0, cpu_now() - c0
    print(law.summary())
    print(f"[{method}] grid starts: {law.diagnostics['n_starts']}, bootstrap resamples: {law.n_resamples} "
          f"({law.n_resamples_ok} converged), jobs: {args.jobs}")
    print(f"[{method}] wall time: {wall:.1f} s (point fit {t_point:.2f} s, bootstrap ~{wall - t_point:.1f} s)   "
          f"CPU time (all processes): {cpu:.1f} s (point fit {c_point:.2f} s, bootstrap ~{cpu - c_point:.1f} s)")
    return law, cpu, c_point


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=4000)
    ap.add_argument("--method", choices=["lbfgs", "vpnls", "both"], default="both")
    ap.add_argument("--data", default=str(POINTS))
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    methods = ["lbfgs", "vpnls"] if args.method == "both" else [args.method]
    out = {m: run(args, m) for m in methods}
    if len(out) == 2:
        (a, wa, pa), (b, wb, pb) = out["lbfgs"], out["vpnls"]
        rel = abs(a.objective - b.objective) / a.objective
        print(f"objective: lbfgs {a.objective:.12g}, vpnls {b.objective:.12g} (relative difference {rel:.1e})")
        for p in a.form.param_names:
            (l1, h1), (l2, h2) = a.ci[p], b.ci[p]
            print(f"  {p:<6} estimate {a.params[p]:.6g} vs {b.params[p]:.6g}; 95% interval "
                  f"[{l1:.4g}, {h1:.4g}] vs [{l2:.4g}, {h2:.4g}]")
        print(f"CPU time of the bootstrap ({args.bootstrap} resamples): lbfgs ~{wa - pa:.1f} s, vpnls ~{wb - pb:.1f} s;"
              f" of the whole fit: lbfgs {wa:.1f} s, vpnls {wb:.1f} s")


if __name__ == "__main__":
    main()
