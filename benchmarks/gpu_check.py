"""The GPU path, checked end to end on one CUDA GPU in one command (within 5 minutes), printed as one table.

    PYTHONPATH=src python benchmarks/gpu_check.py              # on a machine with a CUDA GPU
    PYTHONPATH=src python benchmarks/gpu_check.py --dry-run    # anywhere: what it would run (imports checked)

Needs no network: its data is the Python standard library's source (corpus "stdlib", a BPE tokenizer of 1024),
prepared in --out (default: a new temporary directory). Checks, in order (each a row: ok / FAIL / skip, and its
figures):

1. device: the GPU, its bf16 support, torch and CUDA versions.
2. bf16 autocast: a model's forward and backward under the trainer's bf16 autocast (`trainer.autocast_for`): the
   block matmuls in bfloat16, the loss (fused_loss.py) and every gradient in float32, all finite.
3. fused SDPA: causal attention of bf16 [8, 12, 512, 64] through the flash and memory-efficient kernels (each
   timed) against the math kernel's output.
4. torch.compile: the model compiled (`compile = true`): compile time, its loss on one batch against eager's,
   step time against eager's.
5. DDP over NCCL: one tiny run through `torchrun --nproc_per_node 1 -m scalinglab.sweep.ddp_worker` (the
   process group, DistributedDataParallel, rank-0 store writes), done and stored.
6. gpu preset: the two smallest models of the gpu preset's size sweep (studies/gpu/1_sizes.toml: its n_ctx,
   batch, noise scale, evaluations), on this data with the budget cut to --preset-tokens, through `run_study`
   into a store; each run's end-to-end tokens/s.
7. throughput: the training step of the preset's largest size-sweep model (12 x 768, n_ctx 512, batch 64) in
   bf16: tokens/s and MFU against the device's measured bf16 matmul peak (8192^2 products).
8. GPU vs CPU: a fixed tiny run (seed 0) trained on the GPU (bf16) and on the CPU (fp32, seeds 0-2): the GPU's
   test loss within half the CPU's seed-to-seed spread of the same run (the criterion of the CPU test of bf16
   in tests/test_train.py).

Exit status 0 when every check is ok, 1 when one failed, 2 without a CUDA device (unless --dry-run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

DATA = {"corpus": "stdlib", "tokenizer": "bpe-1024", "max_bytes": 3_000_000}
TINY = dict(n_layer=2, d_model=64, n_head=4, n_ctx=128, batch_size=32, tokens=150 * 32 * 128, lr=3e-3,
            n_evals=6, eval_tokens=16_384)  # the run compared across GPU and CPU  # fmt: skip
BIG = dict(n_layer=12, d_model=768, n_head=12, n_ctx=512, batch_size=64)  # the throughput shape
PRESET_RUNS = 2


def _preset_raw() -> dict:
    from scalinglab.reproduce import preset_files

    [sizes] = [f for f in preset_files("gpu") if f.name.startswith("1_")]
    return tomllib.loads(sizes.read_text())


def preset_spec(data_dir: Path, tokens: int) -> dict:
    """The gpu preset's size sweep cut to its smallest models and `tokens`, on the prepared data."""
    raw = _preset_raw()
    models = raw["axes"][0]["model"] if isinstance(raw["axes"], list) else raw["axes"]["model"]
    from scalinglab.accounting import ModelShape, n_params

    models = sorted(models, key=lambda m: n_params(ModelShape(vocab_size=1024, n_ctx=raw["base"]["n_ctx"], **m)))
    raw["study"] = {**raw["study"], "name": "gpu-check-preset", "data": str(data_dir), "store": "preset.sqlite"}
    raw.pop("data", None)
    raw["base"] = {**raw["base"], "tokens": tokens, "eval_tokens": min(raw["base"]["eval_tokens"], 65_536)}
    raw["axes"] = [{"model": models[:PRESET_RUNS]}]
    return raw


def plan(args) -> list[tuple[str, str]]:
    """(check, what it runs): the dry run's table, and the rows' order."""
    steps = TINY["tokens"] // (TINY["batch_size"] * TINY["n_ctx"])
    raw = preset_spec(Path("<out>/data"), args.preset_tokens)
    models = ", ".join(f"L{m['n_layer']} d{m['d_model']}" for m in raw["axes"][0]["model"])
    return [
        ("device", "torch.cuda.get_device_properties(0), torch.cuda.is_bf16_supported()"),
        ("bf16 autocast", "Transformer L2 d256 V4096 T256: forward+backward under autocast_for(cuda, 'bf16')"),
        ("fused SDPA", "scaled_dot_product_attention bf16 [8,12,512,64] causal: flash, efficient vs math"),
        ("torch.compile", "torch.compile(Transformer L4 d256 T256), loss vs eager, 10 steps each"),
        ("DDP over NCCL", f"torchrun --nproc_per_node 1 -m scalinglab.sweep.ddp_worker <out>/ddp.toml "
                          f"(1 run L2 d64, {steps} steps)"),
        ("gpu preset", f"run_study: gpu preset 1_sizes, {PRESET_RUNS} smallest ({models}), n_ctx "
                       f"{raw['base']['n_ctx']}, batch {raw['base']['batch_size']}, {args.preset_tokens:,} tokens "
                       "each -> <out>/preset.sqlite"),
        ("throughput", f"train step L{BIG['n_layer']} d{BIG['d_model']} T{BIG['n_ctx']} B{BIG['batch_size']} bf16, "
                       f"{args.seconds:g} s; MFU vs bf16 matmul peak (8192^2)"),
        ("GPU vs CPU loss", f"tiny run L2 d64 T128 B32, {steps} steps: GPU seed 0 (bf16) vs CPU seeds 0-2 (fp32)"),
    ]


# -------------------------------------------------------------------------------------------------- the checks


def _sync():
    import torch

    torch.cuda.synchronize()


def check_device(ctx):
    import torch

    p = torch.cuda.get_device_properties(0)
    ok = torch.cuda.is_bf16_supported()
    return ok, (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, bf16 "
                f"{'yes' if ok else 'NO'}; torch {torch.__version__}, CUDA {torch.version.cuda}")


def check_autocast(ctx):
    import torch

    from scalinglab.accounting import ModelShape
    from scalinglab.training.model import Transformer
    from scalinglab.training.trainer import autocast_for, model_loss

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = Transformer(ModelShape(vocab_size=4096, n_layer=2, d_model=256, n_head=4, n_ctx=256)).to(dev)
    batch = torch.randint(0, 4096, (8, 257), device=dev)
    seen = {}
    model.blocks[0].fc.register_forward_hook(lambda m, i, o: seen.setdefault("fc", o.dtype))
    with autocast_for(dev, "bf16"):
        loss = model_loss(model, batch)
    loss.backward()
    grads = {p.grad.dtype for p in model.parameters()}
    finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    ok = seen.get("fc") == torch.bfloat16 and loss.dtype == torch.float32 and grads == {torch.float32} and finite
    return ok, f"matmul out {seen.get('fc')}, loss {loss.dtype} {float(loss):.4f}, grads {sorted(map(str, grads))}"


def check_sdpa(ctx):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(8, 12, 512, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = {}
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                          ("math", SDPBackend.MATH)):
        try:
            with sdpa_kernel(backend):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                _sync()
                t = time.perf_counter()
                for _ in range(20):
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)
                _sync()
            out[name] = ((time.perf_counter() - t) / 20 * 1e3, float((y.float() - ref.float()).abs().max()))
        except RuntimeError:
            out[name] = None
    fused = [n for n in ("flash", "efficient") if out[n] is not None]
    ok = bool(fused) and all(out[n][1] < 2e-2 for n in fused)
    return ok, "; ".join(f"{n} " + (f"{v[0]:.3f} ms (max diff {v[1]:.1e})" if v else "unavailable")
                         for n, v in out.items())


def check_compile(ctx):
    import torch

    from scalinglab.accounting import ModelShape
    from scalinglab.training.model import Transformer
    from scalinglab.training.trainer import autocast_for, model_loss

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = Transformer(ModelShape(vocab_size=4096, n_layer=4, d_model=256, n_head=4, n_ctx=256)).to(dev)
    batch = torch.randint(0, 4096, (16, 257), device=dev)
    compiled = torch.compile(model)

    def timed(m, n):
        _sync()
        t = time.perf_counter()
        for _ in range(n):
            with autocast_for(dev, "bf16"):
                loss = model_loss(m, batch)
            loss.backward()
            model.zero_grad(set_to_none=True)
        _sync()
        return (time.perf_counter() - t) / n, float(loss)

    t0 = time.perf_counter()
    _, loss_c = timed(compiled, 1)
    t_compile = time.perf_counter() - t0
    step_c, loss_c = timed(compiled, 10)
    timed(model, 2)
    step_e, loss_e = timed(model, 10)
    ok = abs(loss_c - loss_e) < 2e-2
    return ok, (f"compile {t_compile:.1f} s; loss {loss_c:.4f} vs eager {loss_e:.4f}; step {step_c * 1e3:.2f} ms vs "
                f"eager {step_e * 1e3:.2f} ms ({step_e / step_c:.2f}x)")


def check_ddp(ctx):
    from scalinglab.store import RunStore

    spec = ctx["out"] / "ddp.toml"
    spec.write_text(_spec_text("gpu-check-ddp", ctx["data"], "ddp.sqlite", {**TINY, "device": "cuda"}))
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m",
           "scalinglab.sweep.ddp_worker", str(spec)]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        return False, f"exit {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1][:150]}"
    with RunStore(ctx["out"] / "ddp.sqlite", readonly=True) as st:
        run = st.runs().iloc[0]
    ok = run["status"] == "done" and str(run["device"]).startswith("cuda")
    return ok, (f"{run['status']} on {run['device']} ({run['precision']}), test loss {run['final_test_loss']:.4f}, "
                f"{run['tokens_per_s']:,.0f} tok/s; {wall:.0f} s with torchrun's start")


def check_preset(ctx):
    from scalinglab import accounting
    from scalinglab.store import RunStore
    from scalinglab.sweep import run_study, study_from_dict

    study = study_from_dict(preset_spec(ctx["data"], ctx["args"].preset_tokens), base_dir=ctx["out"])
    t = time.perf_counter()
    summary = run_study(study, executor="sequential", progress=False)
    wall = time.perf_counter() - t
    with RunStore(study.store_path, readonly=True) as st:
        runs = st.runs()
    peak = ctx.get("peak") or _bf16_peak()
    parts = []
    for _, r in runs.iterrows():
        shape = accounting.ModelShape(vocab_size=int(r["vocab_size"]), n_layer=int(r["n_layer"]),
                                      d_model=int(r["d_model"]), n_head=int(r["n_head"]), n_ctx=int(r["n_ctx"]))
        mfu = 3 * accounting.forward_flop_per_token_exact(shape) * r["tokens_per_s"] / peak
        parts.append(f"N={int(r['N']):,} {r['status']} loss {r['final_test_loss']:.3f} {r['tokens_per_s']:,.0f} "
                     f"tok/s (MFU {mfu:.3f} end to end)")
    ok = summary.ok and len(runs) == PRESET_RUNS and (runs["status"] == "done").all()
    return ok, "; ".join(parts) + f"; {wall:.0f} s"


def _bf16_peak(n: int = 8192, reps: int = 20) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    a @ b
    _sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync()
    return 2.0 * n**3 * reps / (time.perf_counter() - t)


def check_throughput(ctx):
    import torch

    from scalinglab import accounting
    from scalinglab.training.config import RunConfig
    from scalinglab.training.model import Transformer
    from scalinglab.training.trainer import autocast_for, make_optimizer, model_loss

    dev = torch.device("cuda")
    peak = ctx["peak"] = max(_bf16_peak(), _bf16_peak())
    cfg = RunConfig(**BIG, precision="bf16", device="cuda")
    shape = cfg.shape(1024)
    torch.manual_seed(0)
    model = Transformer(shape).to(dev)
    opt = make_optimizer(model, cfg, lr=1e-4)
    batches = [torch.randint(0, 1024, (cfg.batch_size, cfg.n_ctx + 1), device=dev) for _ in range(4)]

    def step(i):
        with autocast_for(dev, "bf16"):
            loss = model_loss(model, batches[i % 4])
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(3):
        step(i)
    times = []
    t_end = time.perf_counter() + ctx["args"].seconds
    while time.perf_counter() < t_end or len(times) < 5:
        _sync()
        t = time.perf_counter()
        step(len(times))
        _sync()
        times.append(time.perf_counter() - t)
    tps = cfg.batch_tokens / statistics.median(times)
    mfu = 3 * accounting.forward_flop_per_token_exact(shape) * tps / peak
    return mfu > 0.05, (f"{tps:,.0f} tok/s (median of {len(times)} steps), MFU {mfu:.3f} of the measured bf16 peak "
                        f"{peak / 1e12:.0f} TFLOP/s")


def check_cpu_vs_gpu(ctx):
    from scalinglab.training.config import RunConfig
    from scalinglab.training.trainer import train_run

    base = dict(TINY, data=str(ctx["data"]))
    gpu = train_run(RunConfig(**base, seed=0, device="cuda", precision="bf16")).final_test_loss
    cpu = [train_run(RunConfig(**base, seed=s, device="cpu", precision="fp32")).final_test_loss for s in range(3)]
    spread = max(cpu) - min(cpu)
    ok = abs(gpu - cpu[0]) < 0.5 * spread
    return ok, (f"GPU bf16 {gpu:.4f} vs CPU fp32 {cpu[0]:.4f} (diff {abs(gpu - cpu[0]):.4f}); CPU seeds 0-2 "
                f"{', '.join(f'{c:.4f}' for c in cpu)}: spread {spread:.4f}")


CHECKS = [check_device, check_autocast, check_sdpa, check_compile, check_ddp, check_preset, check_throughput,
          check_cpu_vs_gpu]


def _spec_text(name: str, data: Path, store: str, base: dict) -> str:
    lines = [f'[study]\nname = "{name}"\ndata = "{data}"\nstore = "{store}"\n\n[base]']
    lines += [f"{k} = {json.dumps(v)}" for k, v in base.items()]
    return "\n".join(lines) + "\n"


def prepare_data(out: Path) -> Path:
    from scalinglab.sweep import study_from_dict

    raw = {"study": {"name": "gpu-check-data", "data": "data", "store": "data.sqlite"}, "data": DATA,
           "base": dict(TINY)}
    return study_from_dict(raw, base_dir=out, prepare=True).data_dir


def import_check() -> list[str]:
    """Import everything the checks use, so a dry run on a CPU catches a missing module or name."""
    import importlib

    names = ["torch", "torch.distributed", "torch.distributed.run", "torch.nn.attention", "torch._dynamo",
             "scalinglab.training.model", "scalinglab.training.trainer", "scalinglab.sweep.ddp_worker", "scalinglab.sweep.runner"]
    for n in names:
        importlib.import_module(n)
    from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401
    from torch.nn.parallel import DistributedDataParallel  # noqa: F401

    import torch

    assert torch.distributed.is_available()
    return names


def validate_specs(args) -> int:
    """Expand the specs and configs the checks use (without data): a bad key or value fails the dry run too."""
    import tomllib

    from scalinglab.training.config import RunConfig
    from scalinglab.sweep import study_from_dict

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        raw = {"study": {"name": "dry", "data": "data", "store": "dry.sqlite"}, "data": DATA, "base": dict(TINY)}
        n = len(study_from_dict(raw, base_dir=Path(tmp), prepare=False).runs)
        n += len(study_from_dict(preset_spec(data, args.preset_tokens), base_dir=Path(tmp), prepare=False).runs)
        ddp = tomllib.loads(_spec_text("gpu-check-ddp", data, "ddp.sqlite", {**TINY, "device": "cuda"}))
        n += len(study_from_dict({**ddp, "data": DATA}, base_dir=Path(tmp), prepare=False).runs)
    RunConfig(**BIG, precision="bf16", device="cuda")
    RunConfig(**TINY, seed=0, device="cuda", precision="bf16")
    return n


def print_table(rows: list[tuple[str, str, str]]) -> None:
    w = max(len(r[0]) for r in rows)
    print(f"{'check':<{w}}  {'result':<6}  figures")
    print("-" * (w + 60))
    for check, result, text in rows:
        print(f"{check:<{w}}  {result:<6}  {text}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print what would run (no GPU needed)")
    ap.add_argument("--out", help="working directory for data and stores (default: a new temporary directory)")
    ap.add_argument("--preset-tokens", type=int, default=4_000_000, help="tokens per gpu-preset run (default 4M)")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds of the throughput check")
    args = ap.parse_args(argv)

    if args.dry_run:
        names = import_check()
        runs = validate_specs(args)
        print(f"gpu_check --dry-run: imports ok ({', '.join(names)}); specs expand ({runs} runs); data: {DATA}\n")
        print_table([(c, "would", what) for c, what in plan(args)])
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine, or "
              "give --dry-run", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        if out.exists() and any(out.iterdir()):
            print(f"gpu_check: {out} is not empty; give a new directory", file=sys.stderr)
            return 2
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = Path(tempfile.mkdtemp(prefix="scalinglab-gpu-check-"))
    t0 = time.perf_counter()
    ctx = {"args": args, "out": out}
    t = time.perf_counter()
    ctx["data"] = prepare_data(out)
    rows = [("data", "ok", f"{DATA['corpus']} {DATA['tokenizer']} prepared in {time.perf_counter() - t:.0f} s "
                           f"-> {ctx['data']}")]
    failed = 0
    for (name, _), fn in zip(plan(args), CHECKS):
        t = time.perf_counter()
        try:
            ok, text = fn(ctx)
            result = "ok" if ok else "FAIL"
        except Exception as exc:  # one row per check, whatever breaks
            result, text = "FAIL", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc) else ''}"
        failed += result == "FAIL"
        rows.append((name, result, f"{text} [{time.perf_counter() - t:.0f} s]"))
        print(f"  {name}: {result}", file=sys.stderr, flush=True)
    print()
    print_table(rows)
    print(f"\n{len(CHECKS) - failed} of {len(CHECKS)} checks ok in {time.perf_counter() - t0:.0f} s; work dir {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
