"""Benchmark: what a study pays to start its local workers, spawned (each imports torch and torch._dynamo itself)
against forked from the preloading forkserver (sweep/local.py, sweep/preload.py; the default where the platform
has a forkserver).

    PYTHONPATH=src python benchmarks/worker_start.py                # 2 workers, 3 rounds
    PYTHONPATH=src python benchmarks/worker_start.py --workers 4 --rounds 2

Each arm runs in a fresh Python process (nothing imported, no forkserver yet), alternating within each round. It
starts a `LocalPool` of W workers and times until every worker has run a task that holds it (so W distinct
processes exist and each has paid its start-up): 'first pool' includes the forkserver's one preload, 'restart' is a
second pool of the same driver (what `run_local` does after a worker died). Per worker = the pool's time / W. The
driver's own `import torch` is not counted in either arm (the driver does not import torch to start workers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_ARM = r"""
import json, sys, time
from concurrent.futures import wait
from scalinglab.sweep.local import LocalPool
sys.path.insert(0, {bench!r})
from worker_start import hold

def ready(pool, w):
    t = time.perf_counter()
    pool.wait_warm()
    futs = [pool.pool.submit(hold, 0.5) for _ in range(w)]  # busy at once: the pool must hold w processes
    pids = {{f.result() for f in futs}}
    return time.perf_counter() - t, len(pids)

if __name__ == "__main__":
    w = {workers}
    pool = LocalPool(w, start_method={method!r})  # returns at once: workers start in the background
    first, n1 = ready(pool, w)
    pool.restart()
    again, n2 = ready(pool, w)
    pool.shutdown()
    print(json.dumps(dict(first=first, restart=again, pids=[n1, n2])))
"""


def hold(seconds: float) -> int:
    """A task that keeps its worker busy (minus the fixed hold, the time left is start-up)."""
    time.sleep(seconds)
    return os.getpid()


def run_arm(method: str, workers: int) -> dict:
    code = _ARM.format(bench=os.path.dirname(os.path.abspath(__file__)), workers=workers, method=method)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["first"] -= 0.5  # the hold
    res["restart"] -= 0.5
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    arms = ("spawn", "forkserver")
    got: dict[str, list[dict]] = {a: [] for a in arms}
    for r in range(args.rounds):
        for a in arms:
            got[a].append(run_arm(a, args.workers))
            g = got[a][-1]
            print(f"round {r + 1} {a:10s} first pool {g['first']:6.2f} s  restart {g['restart']:6.2f} s  "
                  f"(distinct workers {g['pids']})", flush=True)
    print(f"\n{args.workers} workers, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}; seconds until "
          "every worker is up (median, min-max), and per worker")
    print(f"{'start method':12s} {'first pool':>22s} {'per worker':>11s} {'restart':>22s} {'per worker':>11s}")
    for a in arms:
        f = [g["first"] for g in got[a]]
        s = [g["restart"] for g in got[a]]
        print(f"{a:12s} {statistics.median(f):8.2f} ({min(f):5.2f}-{max(f):5.2f}) "
              f"{statistics.median(f) / args.workers:11.2f} {statistics.median(s):8.2f} ({min(s):5.2f}-{max(s):5.2f}) "
              f"{statistics.median(s) / args.workers:11.2f}")


if __name__ == "__main__":
    main()
