"""Benchmark: the full-grid Chinchilla fit (4,500 L-BFGS starts) plus 4,000 bootstrap resamples on Epoch's
240 points. Goal: under 20 s on 2 cores.

    PYTHONPATH=src python benchmarks/fit_chinchilla.py [--jobs 2] [--bootstrap 4000]
"""

import argparse
import os
import resource
import time
from pathlib import Path

from scalinglab.laws import fit_law

POINTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_points_epoch2024.csv"  # vendored, see its README


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=4000)
    ap.add_argument("--data", default=str(POINTS))
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    law = fit_law(args.data, form="chinchilla", n="Model Size", c="Training FLOP", loss="loss",
                  drop_highest_loss=5, n_resamples=args.bootstrap, n_jobs=args.jobs)
    wall = time.perf_counter() - t0
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + child.ru_utime + child.ru_stime
    print(law.summary())
    print(f"grid starts: {law.diagnostics['n_starts']}, bootstrap resamples: {law.n_resamples} "
          f"({law.n_resamples_ok} converged), jobs: {args.jobs}")
    print(f"wall time: {wall:.1f} s   CPU time (all processes): {cpu:.1f} s   "
          f"load average before: {load0:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
