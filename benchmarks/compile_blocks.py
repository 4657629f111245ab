"""Does torch.compile's CPU backend (inductor) pay for the Transformer's blocks? Eager against compiled, step by step.

    PYTHONPATH=src python benchmarks/compile_blocks.py               # shapes a and b of train_throughput.py
    PYTHONPATH=src python benchmarks/compile_blocks.py --only c --steps 10

One process, one model, one optimizer: the blocks (`Transformer.hidden`: embeddings, blocks, final LayerNorm) run
eager and compiled in alternate training steps, the loss staying the fused one (`fused_loss`, which compiled code
would replace by the plain one), so both see the same machine state and the ratio is free of drift. Prints the
compile time (the first compiled step; inductor caches its kernels on disk, so a second run of this script pays
less), the median step of each, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import SHAPES  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES), action="append", help="shape(s) (default: a, b)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of each (default 20)")
    args = ap.parse_args(argv)
    import torch

    from scalinglab._runtime import keep_freed_memory
    from scalinglab.config import RunConfig
    from scalinglab.fused_loss import linear_cross_entropy
    from scalinglab.model import Transformer
    from scalinglab.trainer import make_optimizer

    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.only or ["a", "b"]:
        n_layer, d_model, n_ctx, vocab, batch = SHAPES[name]
        cfg = RunConfig(n_layer=n_layer, d_model=d_model, n_head=max(1, d_model // 64), n_ctx=n_ctx,
                        batch_size=batch)  # fmt: skip
        torch.manual_seed(0)
        model = Transformer(cfg.shape(vocab))
        optimizer = make_optimizer(model, cfg, lr=1e-3)
        params = list(model.parameters())
        batches = [torch.randint(0, vocab, (batch, n_ctx + 1)) for _ in range(4)]
        arms = {"eager": model.hidden, "compiled": torch.compile(model.hidden)}

        def step(hidden, i: int) -> None:
            mb = batches[i % len(batches)]
            h = hidden(mb[:, :-1])
            linear_cross_entropy(h.flatten(0, 1), model.unembedding_weight, mb[:, 1:].flatten()).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        t = time.perf_counter()
        step(arms["compiled"], 0)
        compile_s = time.perf_counter() - t
        for i in range(3):
            for hidden in arms.values():
                step(hidden, i)
        times: dict[str, list[float]] = {k: [] for k in arms}
        for i in range(args.steps):
            for k, hidden in arms.items():
                t = time.perf_counter()
                step(hidden, i)
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"({name}) L{n_layer} d{d_model} T{n_ctx} B{batch}: first compiled step {compile_s:.1f} s; step eager "
              f"{med['eager'] * 1e3:.1f} ms, compiled {med['compiled'] * 1e3:.1f} ms: compiled "
              f"{med['eager'] / med['compiled']:.3f}x over {args.steps} alternating steps")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
