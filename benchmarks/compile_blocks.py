"""Does torch.compile's CPU backend (inductor) pay for the Transformer's blocks? Eager against compiled, step by step.

    PYTHONPATH=src python benchmarks/compile_blocks.py               # shapes a and b of train_throughput.py
    PYTHONPATH=src python benchmarks/compile_blocks.py --only c --steps 10

The blocks (`Transformer.hidden`: embeddings, blocks, final LayerNorm) eager in one fresh process and compiled in
the next, --rounds times, the loss staying the fused one (`fused_loss`, which compiled code would replace by the
plain one). Separate processes because eager steps in a process that had also run the compiled blocks measured
1.8-2.7x slower than in a process of their own, which made a one-process A/B meaningless. Prints the first
compiled step (the compile; inductor caches its kernels on disk, so later processes pay less), the best median
step of each arm, and the ratio round by round (adjacent processes, about the same state of a drifting machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import SHAPES, build_step, time_steps  # noqa: E402


def measure(name: str, arm: str, steps: int) -> dict:
    """Median training step of shape `name` with the blocks eager or compiled, in this process."""
    step, _, _ = build_step(name, "scalinglab", compile_blocks=arm == "compiled")
    t = time.perf_counter()
    step(0)
    first = time.perf_counter() - t
    for i in range(3):
        step(i)
    return dict(first_s=first, step_s=statistics.median(time_steps(step, steps)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES), action="append", help="shape(s) (default: a, b)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per process (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the two processes (default 3)")
    ap.add_argument("--worker", choices=["eager", "compiled"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = args.only or ["a", "b"]
    if args.worker:
        print(json.dumps(measure(names[0], args.worker, args.steps)))
        return 0
    import torch

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in names:
        res: dict[str, list[dict]] = {"eager": [], "compiled": []}
        for _ in range(args.rounds):
            for arm in res:
                cmd = [sys.executable, __file__, "--worker", arm, "--only", name, "--steps", str(args.steps)]
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
                res[arm].append(json.loads(out.strip().splitlines()[-1]))
        ratios = sorted(e["step_s"] / c["step_s"] for e, c in zip(res["eager"], res["compiled"]))
        n_layer, d_model, n_ctx, vocab, batch = SHAPES[name]
        print(f"({name}) L{n_layer} d{d_model} T{n_ctx} B{batch}: first compiled step "
              f"{min(c['first_s'] for c in res['compiled']):.1f}-{max(c['first_s'] for c in res['compiled']):.1f} s; "
              f"step eager {min(e['step_s'] for e in res['eager']) * 1e3:.1f} ms, compiled "
              f"{min(c['step_s'] for c in res['compiled']) * 1e3:.1f} ms (best of {args.rounds}); compiled "
              f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}x round by round)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
