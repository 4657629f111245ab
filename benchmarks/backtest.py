"""Benchmark: `backtest --form auto` on 300 points with 1000 bootstrap resamples. Goal: under 30 s on 2 cores.

The 300 points: 15 model sizes (2e7 - 2e9 parameters) x 20 tokens-per-parameter ratios (2 - 200), losses from
Epoch's Chinchilla constants with 1% log-normal noise; the largest 3 sizes are held out. auto scores 48
recipes (3 forms x 2 Huber deltas x 2 over-estimate penalties x 2 dropped-point choices x 2 near-target weights)
by nested backtests at the holdout's extrapolation ratio, refits the chosen one with the bootstrap, and measures
the intervals' extrapolation term. Runs the real command in this process.

    PYTHONPATH=src python benchmarks/backtest.py [--jobs 2] [--bootstrap 1000] [--method lbfgs|vpnls|both]
"""

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.cli import main as cli
from scalinglab.published import EPOCH2024 as P


def points(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(2e7, 2e9, 15), 20)
    D = N * np.tile(np.geomspace(2, 200, 20), 15)
    L = (P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]) * np.exp(0.01 * rng.standard_normal(N.size))
    return pd.DataFrame({"N": N, "D": D, "loss": L})


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_now() -> float:
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--method", choices=["lbfgs", "vpnls", "both"], default="both",
                    help="the final fit's method (auto's nested backtests are the same for both)")
    args = ap.parse_args()
    methods = ["lbfgs", "vpnls"] if args.method == "both" else [args.method]
    load0 = os.getloadavg()[0]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.csv"
        points().to_csv(path, index=False)
        for method in methods:
            t0, c0 = time.perf_counter(), cpu_now()
            rc = cli(["backtest", str(path), "--holdout", "N > 8e8", "--form", "auto", "--n-resamples",
                      str(args.bootstrap), "--jobs", str(args.jobs), "--method", method])
            times[method] = (time.perf_counter() - t0, cpu_now() - c0)
            print(f"[{method}] exit code {rc}; 300 points, --form auto, {args.bootstrap} bootstrap resamples, "
                  f"jobs {args.jobs}")
    for method, (wall, cpu) in times.items():
        print(f"[{method}] wall time: {wall:.1f} s   CPU time (all processes): {cpu:.1f} s")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load average before: {load0:.1f}, after: "
          f"{os.getloadavg()[0]:.1f} (a load above the core count means other processes shared the cores)")


if __name__ == "__main__":
    main()
