"""Where a CPU training step's time goes, per op kind, and the MFU its matrix products allow.

    PYTHONPATH=src python benchmarks/step_profile.py                 # shapes a, b, c of train_throughput.py
    PYTHONPATH=src python benchmarks/step_profile.py --only a --steps 20
    PYTHONPATH=src python benchmarks/step_profile.py --shape 1,16,2,128,2048,32      # n_layer,d_model,n_head,T,V,B

For each shape, scalinglab's training step (the "scalinglab" arm of train_throughput.py: fused loss, fused AdamW,
global-norm clipping) runs under torch.profiler with FLOP counting. Every op's self time is put in one kind:

- GEMM: aten::mm / addmm / addmm_ / bmm, split into the unembedding's (inside the fused loss) and the blocks';
  their GFLOP/s are the profiler's FLOP counts over their self time;
- attention (the fused SDPA kernels), LayerNorm, GELU, the loss's other ops (log-softmax, gather, exp, scatter),
  AdamW, gradient clipping, embeddings, and every other op;
- outside ops: the profiled step's wall time minus every op's self time (Python, dispatch, and the profiler's
  own cost, so this line overstates dispatch).

Then three MFU figures on the float32 matmul peak (the better of one measurement just before the shape's steps and
one just after, since the machine's speed drifts): the step's (timed without the profiler, median of
--steps steps), and two ceilings: every op but the GEMMs and attention taking no time ("GEMM+attn bound"), and the
GEMMs alone at their measured speed ("GEMM bound"). A ceiling below a target says the target needs faster matrix
products at these shapes, not less overhead around them.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import SHAPES, build_step, matmul_peak_gflops, time_steps  # noqa: E402

GEMM_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}
KINDS = ("GEMM unembedding", "GEMM blocks", "attention", "loss other", "LayerNorm", "GELU", "AdamW",
         "clip", "embedding", "other ops", "outside ops")  # fmt: skip


def kind_of(event, ancestors: set[str]) -> str:
    name = event.name
    if name in GEMM_OPS:
        return "GEMM unembedding" if "_LinearCrossEntropy" in ancestors else "GEMM blocks"
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention"
    if "_LinearCrossEntropy" in ancestors or "_LinearCrossEntropyBackward" in name:
        return "loss other"
    if "layer_norm" in name:
        return "LayerNorm"
    if "gelu" in name:
        return "GELU"
    if any(a.startswith("Optimizer.step") for a in ancestors) or "zero_grad" in " ".join(ancestors):
        return "AdamW"
    if "clip_grad_norm_" in ancestors:
        return "clip"
    if "embedding" in name:
        return "embedding"
    return "other ops"


def gemm_flop(event) -> float:
    """2 M K N of an in-place addmm_ (the profiler counts FLOP for mm and addmm, not for addmm_)."""
    shapes = event.input_shapes or []
    if event.name == "aten::addmm_" and len(shapes) >= 3 and len(shapes[1]) == 2 and len(shapes[2]) == 2:
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2.0 * m * k * n
    return 0.0


def profile_shape(name: str, steps: int, d_head: int = 64, warmup: int = 3) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from scalinglab import accounting

    step, shape, tokens = build_step(name, "scalinglab", d_head)
    for i in range(warmup):
        step(i)
    times = time_steps(step, steps)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
        t = time.perf_counter()
        for i in range(steps):
            step(i)
        profiled_wall = time.perf_counter() - t
    self_us: dict[str, float] = collections.Counter()
    flops: dict[str, float] = collections.Counter()
    names: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CPU:
            continue
        ancestors, parent = set(), ev.cpu_parent
        while parent is not None:
            ancestors.add(parent.name)
            parent = parent.cpu_parent
        kind = kind_of(ev, ancestors)
        self_us[kind] += ev.self_cpu_time_total
        if kind.startswith("GEMM"):
            flops[kind] += ev.flops or gemm_flop(ev)
        else:
            names[kind][ev.name] += ev.self_cpu_time_total
    per_step = {k: self_us[k] / 1e6 / steps for k in KINDS if k != "outside ops"}
    per_step["outside ops"] = max(0.0, profiled_wall / steps - sum(per_step.values()))
    return dict(
        shape=shape, tokens=tokens, step_s=statistics.median(times), profiled_step_s=profiled_wall / steps,
        per_step=per_step, gemm_flop={k: flops[k] / steps for k in flops},
        top_ops={k: [n for n, _ in c.most_common(4)] for k, c in names.items()},
        exact_flop=3.0 * accounting.forward_flop_per_token_exact(shape) * tokens,
    )  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES), action="append", help="shape(s) (default: all)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps, and profiled steps (default 10)")
    ap.add_argument("--shape", metavar="L,D,H,T,V,B", help="another shape: n_layer, d_model, n_head, n_ctx, vocabulary, "
                    "batch (e.g. 1,16,2,128,2048,32, the cpu preset's smallest model), profiled as 'custom'")
    args = ap.parse_args(argv)
    names = args.only or ([] if args.shape else sorted(SHAPES))
    heads = {}
    if args.shape:
        n_layer, d_model, n_head, n_ctx, vocab, batch = (int(x) for x in args.shape.split(","))
        SHAPES["custom"] = (n_layer, d_model, n_ctx, vocab, batch)
        heads["custom"] = d_model // n_head
        names.append("custom")
    import torch

    results = {}
    for name in names:  # each shape's peak: the better of one taken just before its steps and one just after
        before = matmul_peak_gflops()
        results[name] = profile_shape(name, args.steps, heads.get(name, 64))
        results[name]["peak"] = max(before, matmul_peak_gflops())
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"float32 matmul peak measured around each shape, on {torch.get_num_threads()} threads (torch "
          f"{torch.__version__}, load average {load})\n")  # fmt: skip
    for name, r in results.items():
        s, ps, peak = r["shape"], r["profiled_step_s"], r["peak"]
        print(f"({name}) L{s.n_layer} d{s.d_model} h{s.n_head} T{s.n_ctx} V{s.vocab_size}, {r['tokens']} tokens/step: "
              f"step {r['step_s'] * 1e3:.1f} ms unprofiled, {ps * 1e3:.1f} ms profiled; peak {peak:.0f} GFLOP/s")  # fmt: skip
        for kind in KINDS:
            t = r["per_step"][kind]
            rate = ""
            if kind in r["gemm_flop"] and t > 0:
                gf = r["gemm_flop"][kind] / t / 1e9
                rate = f"  {r['gemm_flop'][kind] / 1e9:6.2f} GFLOP at {gf:5.0f} GFLOP/s = {gf / peak:.2f} of peak"
            if not rate and r["top_ops"].get(kind):
                rate = "  " + ", ".join(n.removeprefix("aten::") for n in r["top_ops"][kind])
            print(f"  {kind:<17} {t * 1e3:8.1f} ms {t / ps:6.1%}{rate}")
        gemm_t = sum(r["per_step"][k] for k in ("GEMM unembedding", "GEMM blocks"))
        bound = lambda secs: r["exact_flop"] / secs / (peak * 1e9)  # noqa: E731
        print(f"  MFU {bound(r['step_s']):.2f} (exact FLOP {r['exact_flop'] / 1e9:.2f} G/step); ceilings: "
              f"GEMM+attn bound {bound(gemm_t + r['per_step']['attention']):.2f}, GEMM bound {bound(gemm_t):.2f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
