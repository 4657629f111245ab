"""Train one run: where a run is trained.

`train_run(config)` builds the model its config describes, trains it on random windows of the prepared data with
AdamW (or Adafactor), a linear warm-up and a cosine decay, for a fixed token budget, and records the learning
curve: train loss every few steps, test loss (and transfer-set losses) at log-spaced steps and at the end, the
per-position test loss at the end (Kaplan Fig. 20), and optionally the gradient noise scale.

Fault tolerance: a checkpoint (model, optimizer, step, curve so far, RNG, noise-scale state) is written
atomically every `checkpoint_every_s` seconds; a run started again with the same checkpoint directory resumes
from it and, because the batch at each step is a pure function of (seed, step), ends on the same curve as an
uninterrupted run. NaN/inf or a loss far above its start stops the run as 'diverged'.

Several devices: launched under torchrun (WORLD_SIZE > 1), each rank takes its share of every global batch
through DistributedDataParallel; rank 0 alone writes the store and the checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from scalinglab import accounting
from scalinglab._runtime import keep_freed_memory
from scalinglab.config import RunConfig, describe  # noqa: F401 (describe: part of this module's API)
from scalinglab.data.shards import TokenDataset, WindowSampler
from scalinglab.errors import ConfigError
from scalinglab.model import Transformer
from scalinglab.noise import NoiseScaleEstimator

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class RunResult:
    run_id: str
    status: str  # 'done' or 'diverged'
    summary: dict  # columns of the store's runs table
    points: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)

    @property
    def final_test_loss(self) -> float:
        return self.summary.get("final_test_loss", float("nan"))


# -------------------------------------------------------------------------------------------------- pieces


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def lr_at(step: int, peak: float, warmup: int, total: int, min_frac: float = 0.0) -> float:
    """LR for update number `step` (0-based): linear warm-up over `warmup` updates, then a cosine from the peak
    down to min_frac * peak at the last update."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
    return peak * (min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def eval_steps(total: int, n: int) -> list[int]:
    """Log-spaced steps in [1, total] (about n of them), always including the last one."""
    pts = np.unique(np.round(np.geomspace(1, total, num=max(2, n))).astype(int))
    return sorted(set(int(p) for p in pts) | {total})


def make_optimizer(model: Transformer, config: RunConfig, lr: float, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW (Kaplan's optimizer) or Adafactor. Weight decay on the matrices of the blocks only: not on biases,
    LayerNorm gains or embeddings. AdamW is the fused kernel (one pass over all parameters): on tiny CPU models
    PyTorch's default per-tensor loop is ~12% of a step (benchmarks/train_throughput.py); same update rule."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim == 2 and not name.startswith(("tok_emb", "pos_emb")) else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adafactor":
        return torch.optim.Adafactor(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr, betas=(config.beta1, config.beta2), eps=config.eps, fused=fused)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sq_norm(grads: list[torch.Tensor]) -> float:
    return float(sum(torch.sum(g.float() * g.float()) for g in grads))


# -------------------------------------------------------------------------------------------------- trainer


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        *,
        store=None,
        study: str | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ):
        if not config.data:
            raise ConfigError("run config: `data` must name a prepared dataset directory (scalinglab data prepare)")
        self.config = config
        self.run_id = config.run_id()
        self.store = store
        self.study = study
        self.on_progress = on_progress
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None

        self.dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if self.dist else 0
        self.world = torch.distributed.get_world_size() if self.dist else 1
        self.is_main = self.rank == 0

        self.data = TokenDataset(config.data)
        self.train_tokens = self.data.train_subset(config.d_unique)
        self.sampler = WindowSampler(self.train_tokens, config.n_ctx, config.batch_size, seed=config.seed)
        self.eval_sets = config.eval_sets if config.eval_sets is not None else self.data.eval_sets
        for s in self.eval_sets:
            self.data.n_tokens(s)  # a clear error for an unknown set, before any training
        self.shape = config.shape(self.data.vocab_size)
        self.info = describe(config, self.data.vocab_size)
        self.n = self.info["N"]

        micro = config.micro_batch_size or config.batch_size // self.world
        if config.noise_scale and micro == config.batch_size // self.world:
            micro = max(1, micro // 2)  # the noise scale compares the first micro-batch with the whole step
        if config.batch_size % (micro * self.world):
            raise ConfigError(
                f"batch_size={config.batch_size} does not split into micro-batches of {micro} on {self.world} ranks"
            )
        self.micro = micro
        self.n_micro_local = config.batch_size // (micro * self.world)

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model: Transformer, split: str, per_position: bool = False):
        cfg = self.config
        windows = torch.from_numpy(self.data.eval_windows(split, cfg.n_ctx, cfg.eval_tokens))
        total = torch.zeros(cfg.n_ctx, dtype=torch.float64)
        bs = max(self.micro, 8)
        model.eval()
        for i in range(0, windows.shape[0], bs):
            w = windows[i : i + bs].to(self.device, non_blocking=True)
            with self.autocast():
                losses = model.loss(w[:, :-1], w[:, 1:], reduction="none")
            total += losses.double().sum(0).cpu()
        model.train()
        per_pos = total / windows.shape[0]
        mean = float(per_pos.mean())
        return (mean, per_pos.tolist()) if per_position else mean

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    # ------------------------------------------------------------------------------------------ the run
    def run(self) -> RunResult:
        cfg = self.config
        keep_freed_memory()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        if self.dist and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        torch.manual_seed(cfg.seed)
        model = Transformer(self.shape).to(self.device)
        peak = cfg.peak_lr(self.n)
        optimizer = make_optimizer(model, cfg, peak)
        S, warmup = cfg.steps, cfg.warmup
        evals_at = set(eval_steps(S, cfg.n_evals))
        gns = NoiseScaleEstimator() if cfg.noise_scale else None

        step, points, evals, wall_prior = 0, [], [], 0.0
        initial_loss, loss_sum, loss_count, per_pos = None, 0.0, 0, None
        ckpt_path = self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir else None
        if ckpt_path is not None and ckpt_path.exists():
            state = torch.load(ckpt_path, map_location=self.device, weights_only=False)
            if state.get("run_id") == self.run_id:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                step, points, evals = state["step"], state["points"], state["evals"]
                wall_prior, initial_loss = state["wall_time_s"], state["initial_loss"]
                loss_sum, loss_count = state["loss_sum"], state["loss_count"]
                torch.set_rng_state(state["rng_cpu"])
                if gns is not None and state.get("gns"):
                    gns.load_state_dict(state["gns"])
        if self.store is not None and self.is_main:
            self.store.add_run(self.run_id, cfg.to_dict(), name=cfg.name, study=self.study, info=self.info)
            self.store.mark_running(self.run_id, device=str(self.device))
            self.store.truncate_curve(self.run_id, -1)
            self.store.add_curve(self.run_id, points, evals)

        train_model = model
        if cfg.compile:
            train_model = torch.compile(model)
        if self.dist:
            train_model = torch.nn.parallel.DistributedDataParallel(train_model)
        params = [p for p in model.parameters()]

        loss_acc = torch.full((), loss_sum, dtype=torch.float64, device=self.device)
        flop_per_token_exact = 3.0 * accounting.forward_flop_per_token_exact(self.shape)
        t_start = time.perf_counter() - wall_prior
        last_ckpt = time.perf_counter()
        flushed_points, flushed_evals = len(points), len(evals)
        status = "done"
        B_tok = cfg.batch_tokens

        def record_point(step_done: int, train_loss: float | None, lr: float) -> dict:
            tokens = step_done * B_tok
            p = dict(
                step=step_done, tokens=tokens, flop=6.0 * self.n * tokens, flop_exact=flop_per_token_exact * tokens,
                lr=lr, train_loss=train_loss, wall_time_s=time.perf_counter() - t_start,
                b_simple=gns.b_simple if gns else None, gns_g2=gns.g2 if gns else None,
                gns_trace=gns.trace if gns else None,
            )
            if points and points[-1]["step"] == step_done:
                points[-1] = {**points[-1], **{k: v for k, v in p.items() if v is not None}}
            else:
                points.append(p)
            return p

        while step < S:
            lr = lr_at(step, peak, warmup, cfg.schedule_steps, cfg.min_lr_frac)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batch = torch.from_numpy(self.sampler.batch(step))
            mine = batch[self.rank * self.micro * self.n_micro_local : (self.rank + 1) * self.micro * self.n_micro_local]
            step_loss = torch.zeros((), device=self.device)
            sq_small = None
            for m in range(self.n_micro_local):
                mb = mine[m * self.micro : (m + 1) * self.micro].to(self.device, non_blocking=True)
                sync = (m == self.n_micro_local - 1) or not self.dist
                ctx = train_model.no_sync() if (self.dist and not sync) else contextlib.nullcontext()
                with ctx, self.autocast():
                    loss = model_loss(train_model, mb)
                    (loss / self.n_micro_local).backward()
                step_loss += loss.detach()
                if gns is not None and m == 0 and self.n_micro_local > 1:
                    # mean gradient over the first micro-batch: .grad holds it divided by n_micro
                    sq_small = _sq_norm([p.grad for p in params if p.grad is not None]) * self.n_micro_local**2
            if gns is not None and sq_small is not None:
                sq_big = _sq_norm([p.grad for p in params if p.grad is not None])
                gns.update(sq_small, self.micro * cfg.n_ctx, sq_big, self.micro * self.n_micro_local * cfg.n_ctx)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            # summed on the device (no host sync per step); averaged over ranks only when logged, so every
            # rank sees the same loss and takes the same divergence decision
            loss_acc += step_loss.double() / self.n_micro_local
            loss_count += 1
            diverged = False
            if step % cfg.train_log_every == 0 or step in evals_at or step == S:
                if self.dist:
                    torch.distributed.all_reduce(loss_acc)
                    loss_acc /= self.world
                mean_loss = float(loss_acc) / loss_count
                loss_acc.zero_()
                loss_count = 0
                if initial_loss is None:
                    initial_loss = mean_loss
                record_point(step, mean_loss, lr)
                limit = max(initial_loss, math.log(self.data.vocab_size)) + 1.5
                diverged = not math.isfinite(mean_loss) or (step > warmup and mean_loss > limit)
            if step in evals_at and not diverged:
                sets = self.eval_sets if step == S else [s for s in self.eval_sets if s == "test"] or self.eval_sets[:1]
                for s in sets:
                    if step == S and s == "test":
                        loss_e, per_pos = self.evaluate(model, s, per_position=True)
                    else:
                        loss_e = self.evaluate(model, s)
                    evals.append(dict(step=step, eval_set=s, loss=loss_e))
                    diverged |= not math.isfinite(loss_e)
                if self.store is not None and self.is_main:
                    self.store.add_curve(self.run_id, points[flushed_points:], evals[flushed_evals:])
                    flushed_points, flushed_evals = len(points), len(evals)
            if self.on_progress and self.is_main:
                self.on_progress(dict(step=step, steps=S, loss=points[-1]["train_loss"] if points else None,
                                      tokens_per_s=step * B_tok / max(1e-9, time.perf_counter() - t_start),
                                      run_id=self.run_id))
            if diverged:
                status = "diverged"
                break
            if ckpt_path is not None and self.is_main and time.perf_counter() - last_ckpt > cfg.checkpoint_every_s \
                    and step < S:
                self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
                _atomic_save(dict(
                    run_id=self.run_id, step=step, model=model.state_dict(), optimizer=optimizer.state_dict(),
                    points=points, evals=evals, wall_time_s=time.perf_counter() - t_start,
                    initial_loss=initial_loss, loss_sum=float(loss_acc), loss_count=loss_count,
                    rng_cpu=torch.get_rng_state(),
                    gns=gns.state_dict() if gns else None,
                ), ckpt_path)  # fmt: skip
                last_ckpt = time.perf_counter()
                if self.store is not None:
                    self.store.add_curve(self.run_id, points[flushed_points:], evals[flushed_evals:])
                    flushed_points, flushed_evals = len(points), len(evals)

        wall = time.perf_counter() - t_start
        final = {e["eval_set"]: e["loss"] for e in evals if e["step"] == step}
        summary = dict(
            self.info,
            final_test_loss=final.get("test", float("nan")) if status == "done" else None,
            final_train_loss=points[-1]["train_loss"] if points else None,
            final_metrics=dict(
                eval_losses=final,
                per_position_test_loss=per_pos if status == "done" and "test" in final else None,
                initial_loss=initial_loss, steps_done=step, b_simple=gns.b_simple if gns else None,
            ),
            epochs=self.sampler.epochs(step * B_tok),
            wall_time_s=wall, tokens_per_s=step * B_tok / max(wall, 1e-9), device=str(self.device),
            error=None if status == "done" else f"diverged at step {step} (loss {points[-1]['train_loss']:.3g})",
        )
        if self.store is not None and self.is_main:
            self.store.finish_run(self.run_id, status, summary, points=points, evals=evals, replace_curve=True)
        if ckpt_path is not None and self.is_main and ckpt_path.exists():
            ckpt_path.unlink()  # the store now holds everything; a finished run needs no checkpoint
        return RunResult(self.run_id, status, summary, points, evals)


def model_loss(model, batch: torch.Tensor) -> torch.Tensor:
    module = model.module if hasattr(model, "module") else model
    if hasattr(module, "_orig_mod"):
        module = module._orig_mod
    if model is module:
        return module.loss(batch[:, :-1], batch[:, 1:])
    return model(batch[:, :-1], batch[:, 1:])  # through the DDP / compiled wrapper so its hooks run


def train_run(config: RunConfig, **kwargs) -> RunResult:
    """Train one run from its config. See `Trainer` for the keyword arguments (store, study, checkpoint_dir,
    on_progress)."""
    return Trainer(config, **kwargs).run()
