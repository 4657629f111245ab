"""Train one run: where a run is trained.

`train_run(config)` builds the model its config describes, trains it on random windows of the prepared data with
AdamW (or Adafactor), a linear warm-up and a cosine decay (or warm-up, stable, decay: schedule.py), for a fixed
token budget, and records the learning
curve: train loss every few steps, test loss (and transfer-set losses) at log-spaced steps and at the end, the
per-position test loss at the end (Kaplan Fig. 20), and optionally the gradient noise scale.

Evaluation: the validation split (where the dataset has one) and the test split at log-spaced steps, every
loss with its document-clustered standard error (data/shards.py `EvalSet`); transfer sets at the end. The best
step of the curve is chosen on validation, and the loss reported for it is the test loss there.

The run is a sequence of named steps around a `TrainState` (model, optimizer, noise-scale estimator, step,
curve so far, loss accumulator, RNG): the checkpoint is exactly the TrainState, written atomically every
`checkpoint_every_s` seconds with a SHA-256 checksum, the previous one kept beside it. A run started again with
the same checkpoint directory resumes from the newest checkpoint that verifies and, because the batch at each
step is a pure function of (seed, step), ends on the same curve as an uninterrupted run.

Faults: a truncated or unreadable checkpoint is reported in one line and the previous one (or a fresh start)
is used; a full disk while checkpointing stops the run as 'failed' with the reason and leaves the previous
checkpoint in place for a retry; a dataset whose content (fingerprint) changed under the run stops it as
'failed'; a NaN/inf loss at any step, or a loss far above its start, stops it as 'diverged'.

Cooldown branches: a WSD run with `cooldowns` trains its stable phase once (keeping every update's loss) and, at
each cooldown's decay start, writes that cooldown's checkpoint into its own folder, as the run trained alone to
that budget would have saved it there; `train_run` then trains each cooldown from it as its own run
(`train_cooldowns`).

Several devices: launched under torchrun (WORLD_SIZE > 1), each rank takes its share of every global batch
through DistributedDataParallel; rank 0 alone writes the store and the checkpoints.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch

from scalinglab import accounting, outdir
from scalinglab.data.shards import EvalSet, TokenDataset, WindowSampler, dataset_fingerprint
from scalinglab.errors import ConfigError
from scalinglab.training._runtime import keep_freed_memory, machine_memory_bytes
from scalinglab.training.checkpoint import (CHECKPOINT_NAME, CheckpointError, checkpoint_paths, read_checkpoint,
                                            write_checkpoint)
from scalinglab.training.config import _NON_DEFINING, RunConfig, describe
from scalinglab.training.model import Transformer
from scalinglab.training.noise_scale import NoiseScaleEstimator
from scalinglab.training.recorder import RunRecorder
from scalinglab.training.schedule import cosine_lr as lr_at, eval_steps  # noqa: F401 (part of this module's API)


@dataclass
class RunResult:
    run_id: str
    status: str  # 'done', 'diverged' or 'failed' (a fault stopped it: disk full, data changed)
    summary: dict  # columns of the store's runs table
    points: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    branches: list["RunResult"] = field(default_factory=list)  # a stable phase's cooldown branches

    @property
    def final_test_loss(self) -> float:
        return self.summary.get("final_test_loss", float("nan"))


@dataclass
class TrainState:
    """Everything a run carries from one step to the next. A checkpoint is exactly this (`state_dict`), and a
    resumed run is exactly this restored (`load_state_dict`): the field list is written once, here."""

    model: Transformer
    optimizer: torch.optim.Optimizer
    gns: NoiseScaleEstimator | None
    loss_sum: torch.Tensor  # train loss summed (on the device) over the steps since the last logged point
    step: int = 0
    loss_count: int = 0
    points: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    initial_loss: float | None = None
    rng_cpu: torch.Tensor | None = None
    # the stable phase of a run with cooldowns: every update's train loss (on the device), from which each branch's
    # train-loss points are averaged over its own logging windows
    step_losses: torch.Tensor | None = None

    def state_dict(self) -> dict:
        self.rng_cpu = torch.get_rng_state()
        return {f.name: (v.state_dict() if hasattr(v, "state_dict") else v)
                for f in fields(self) for v in [getattr(self, f.name)]}

    def load_state_dict(self, saved: dict) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in saved and v is None:  # a field added later, unset in this run: older checkpoints lack it
                continue
            if hasattr(v, "load_state_dict"):
                v.load_state_dict(saved[f.name])
            elif isinstance(v, torch.Tensor):
                v.copy_(saved[f.name])
            else:
                setattr(self, f.name, saved[f.name])
        if self.rng_cpu is not None:
            torch.set_rng_state(self.rng_cpu)


# -------------------------------------------------------------------------------------------------- pieces


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def device_memory_bytes(device: torch.device) -> int | None:
    """The memory a run on `device` can use at most: the GPU's, or the machine's (its container's limit)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return machine_memory_bytes()


def check_memory(config: RunConfig, shape: accounting.ModelShape, micro: int, device: torch.device) -> dict:
    """The run's memory estimate (accounting.train_memory); a ConfigError, before anything is allocated, when it
    exceeds what `device` has."""
    mem = accounting.train_memory(shape, micro, config.optimizer)
    limit = device_memory_bytes(device)
    if limit and mem["total"] > limit:
        weights = mem["parameters"] + mem["gradients"] + mem["optimizer"]
        fix = ("choose a smaller model" if weights > limit else
               f"give a smaller micro_batch_size (activations of {micro} sequences: "
               f"{accounting.fmt_bytes(mem['activations'])}) or a smaller model")
        raise ConfigError(
            f"run {config.name or config.run_id()}: training it needs about {accounting.fmt_bytes(mem['total'])} "
            f"(parameters, gradients and {config.optimizer} state {accounting.fmt_bytes(weights)}, activations "
            f"{accounting.fmt_bytes(mem['activations'])}), more than the {accounting.fmt_bytes(limit)} of "
            f"{'this GPU' if device.type == 'cuda' else 'this machine'}: {fix}")
    return mem


def autocast_for(device: torch.device, precision: str):
    """torch.autocast for a run of this `precision` ('bf16' or 'fp32') on `device`."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


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


def _sq_norm(grads: list[torch.Tensor]) -> float:
    return float(sum(torch.sum(g.float() * g.float()) for g in grads))


def _say(message: str) -> None:
    print(f"scalinglab: {message}", file=sys.stderr, flush=True)


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
        parent: tuple[str, int] | None = None,
    ):
        """parent: (run id, step) of the stable phase a cooldown branch continues (recorded in the store)."""
        if not config.data:
            raise ConfigError("run config: `data` must name a prepared dataset directory (scalinglab data prepare)")
        self.config = config
        self.run_id = config.run_id()
        self.study = study
        self.on_progress = on_progress
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None

        self.dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if self.dist else 0
        self.world = torch.distributed.get_world_size() if self.dist else 1
        self.is_main = self.rank == 0
        self.device = resolve_device(config.device)
        if self.dist and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        self.device_label = str(self.device)  # the store's `device` column; grouped.py adds the group's size

        self.data = TokenDataset(config.data)
        self.fingerprint = dataset_fingerprint(config.data)
        self.train_tokens = self.data.train_subset(config.d_unique)
        self.sampler = WindowSampler(self.train_tokens, config.n_ctx, config.batch_size, seed=config.seed)
        self.eval_sets = config.eval_sets if config.eval_sets is not None else self.data.eval_sets
        for s in self.eval_sets:
            self.data.n_tokens(s)  # a clear error for an unknown set, before any training
        # evaluated at every eval step: validation (for choosing the best step) and the test split
        self.curve_sets = ((["validation"] if self.data.has_validation and "validation" not in self.eval_sets else [])
                           + ([s for s in self.eval_sets if s == "test"] or self.eval_sets[:1]))
        self.shape = config.shape(self.data.vocab_size)
        self.info = describe(config, self.data.vocab_size)
        if parent is not None:
            self.info.update(parent_run_id=parent[0], branch_step=int(parent[1]))
        self.n = self.info["N"]
        self.peak_lr = self.info["lr"]  # the effective peak LR (RunConfig.peak_lr), computed once, in describe
        self.recorder = RunRecorder(store, config, self.run_id, study=study, info=self.info, enabled=self.is_main)
        self.flop_per_token_exact = 3.0 * accounting.forward_flop_per_token_exact(self.shape)

        micro = config.micro_batch_size or config.batch_size // self.world
        if config.noise_scale and micro == config.batch_size // self.world:
            micro = max(1, micro // 2)  # the noise scale compares the first micro-batch with the whole step
        if config.batch_size % (micro * self.world):
            raise ConfigError(
                f"batch_size={config.batch_size} does not split into micro-batches of {micro} on {self.world} ranks"
            )
        self.micro = micro
        self.memory = check_memory(config, self.shape, micro, self.device)  # before any allocation
        self.n_micro_local = config.batch_size // (micro * self.world)
        self._eval_cache: dict[str, tuple[torch.Tensor, EvalSet]] = {}
        # set by `begin` (the run's clock, its parameters, its evaluation steps, its fault state)
        self.t_start = 0.0
        self.params: list[torch.nn.Parameter] = []
        self.per_position: list[float] | None = None
        self._evals_at: set[int] = set()
        self._branch_at: dict[int, list[RunConfig]] = {}  # the stable phase: branch step -> its cooldowns
        self._first_nonfinite: torch.Tensor | None = None  # the first step whose loss is not finite (on the device)
        self._last_ckpt = 0.0
        self._fault: str | None = None

    # ------------------------------------------------------------------------------------------ evaluation
    def eval_set(self, split: str) -> tuple[torch.Tensor, EvalSet]:
        if split not in self._eval_cache:
            ev = self.data.eval_set(split, self.config.n_ctx, self.config.eval_tokens)
            self._eval_cache[split] = (torch.from_numpy(ev.windows), ev)
        return self._eval_cache[split]

    @torch.no_grad()
    def evaluate(self, model: Transformer, split: str, per_position: bool = False):
        """(loss, se) on the split's fixed windows, in nats per token: the length-weighted mean over windows
        and its document-clustered standard error (`EvalSet.mean_and_se`). With per_position, also the mean
        loss at each position of the context (Kaplan Fig. 20)."""
        cfg = self.config
        windows, ev = self.eval_set(split)
        total = torch.zeros(cfg.n_ctx, dtype=torch.float64)
        per_window = torch.empty(windows.shape[0], dtype=torch.float64)
        bs = max(self.micro, 8)
        model.eval()
        for i in range(0, windows.shape[0], bs):
            w = windows[i : i + bs].to(self.device, non_blocking=True)
            with self.autocast():
                losses = model.loss(w[:, :-1], w[:, 1:], reduction="none").double().cpu()
            total += losses.sum(0)
            per_window[i : i + bs] = losses.mean(1)
        model.train()
        mean, se = ev.mean_and_se(per_window.numpy())
        if per_position:
            return mean, se, (total / windows.shape[0]).tolist()
        return mean, se

    def autocast(self):
        """The forward's precision (the run config's `precision`): under 'bf16', matrix products and attention in
        bfloat16 on the CPU or the GPU alike, while the weights, the optimizer state, LayerNorm and the loss's
        log-sum-exp and reductions stay float32 (autocast's rules; fused_loss.py keeps them float32)."""
        return autocast_for(self.device, self.config.precision)

    # ------------------------------------------------------------------------------------------ the steps
    def new_state(self) -> TrainState:
        torch.manual_seed(self.config.seed)
        model = Transformer(self.shape).to(self.device)
        return TrainState(
            model=model,
            optimizer=make_optimizer(model, self.config, self.peak_lr),
            gns=NoiseScaleEstimator() if self.config.noise_scale else None,
            loss_sum=torch.zeros((), dtype=torch.float64, device=self.device),
            step_losses=torch.full((self.config.steps,), float("nan"), dtype=torch.float64, device=self.device)
            if self.config.cooldowns else None,
        )

    def restore(self, state: TrainState) -> str | None:
        """Load the newest checkpoint that verifies into `state` (untouched when there is none). A checkpoint
        that fails its checksum or cannot be loaded is reported in one line and the previous one is tried, then
        a fresh start. Returns a reason to stop instead: the checkpoint is of this run on other data."""
        for path in checkpoint_paths(self.checkpoint_dir):
            if not path.exists():
                continue
            later = "the previous checkpoint" if path.name == CHECKPOINT_NAME else "a fresh start"
            try:
                saved = read_checkpoint(path, self.device)
            except CheckpointError as exc:
                _say(f"checkpoint {path}: {exc}; using {later} instead")
                continue
            if saved.get("run_id") != self.run_id:
                if saved.get("config") == self._config_without_data() and saved.get("data") != self.fingerprint:
                    return (f"the dataset {self.config.data} changed under this run: its checkpoint was made on "
                            f"data {saved.get('data')}, the data is now {self.fingerprint}; prepare the original "
                            f"data again, or delete {self.checkpoint_dir} to start the run over")
                _say(f"checkpoint {path}: of another run ({saved.get('run_id')}); using {later} instead")
                continue
            try:
                state.load_state_dict(saved["state"])
            except (KeyError, RuntimeError, ValueError) as exc:
                _say(f"checkpoint {path}: does not fit this run ({type(exc).__name__}); using {later} instead")
                state_fresh = self.new_state()
                for f in fields(state):
                    setattr(state, f.name, getattr(state_fresh, f.name))
                continue
            return None
        return None

    def _config_without_data(self) -> dict:
        return _defining(self.config)

    def flush(self, state: TrainState) -> None:
        """Write the curve points and evaluations recorded since the last flush."""
        self.recorder.flush(state.points, state.evals)

    def set_lr(self, state: TrainState, lr: float) -> None:
        for g in state.optimizer.param_groups:
            g["lr"] = lr

    def update(self, state: TrainState) -> None:
        """The update once the step's gradient is in .grad: global-norm clipping, the optimizer step, the step
        count. A lone run's step and a grouped step (grouped.py) end here alike."""
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.step += 1

    def train_step(self, state: TrainState, train_model, lr: float) -> torch.Tensor:
        """One optimizer step over the global batch (this rank's share, in micro-batches); the mean loss."""
        cfg = self.config
        self.set_lr(state, lr)
        batch = torch.from_numpy(self.sampler.batch(state.step))
        share = self.micro * self.n_micro_local
        mine = batch[self.rank * share : (self.rank + 1) * share]
        params = self.params
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
            if state.gns is not None and m == 0 and self.n_micro_local > 1:
                # mean gradient over this rank's first micro-batch: .grad holds it divided by n_micro
                sq_small = _sq_norm([p.grad for p in params if p.grad is not None]) * self.n_micro_local**2
        if state.gns is not None and sq_small is not None:
            # after the last micro-batch the gradient is the mean over the whole global batch: under DDP the
            # all-reduce averaged it over every rank's share, so B_big counts all ranks' tokens
            sq_big = _sq_norm([p.grad for p in params if p.grad is not None])
            state.gns.update(sq_small, self.micro * cfg.n_ctx, sq_big, cfg.batch_size * cfg.n_ctx)
        self.update(state)
        return step_loss / self.n_micro_local

    def log_point(self, state: TrainState, lr: float, fault: bool) -> tuple[str | None, bool]:
        """Record a train-loss point (mean over the steps since the last one). Every rank takes the same
        decision: returns (divergence reason, fault flag raised on some rank)."""
        loss_and_fault = torch.stack([state.loss_sum, torch.tensor(float(fault), dtype=torch.float64,
                                                                   device=self.device)])
        if self.dist:
            torch.distributed.all_reduce(loss_and_fault)
            loss_and_fault[0] /= self.world
        mean_loss = float(loss_and_fault[0]) / state.loss_count
        any_fault = float(loss_and_fault[1]) > 0
        state.loss_sum.zero_()
        state.loss_count = 0
        if state.initial_loss is None:
            state.initial_loss = mean_loss
        self.record_point(state, state.step, mean_loss, lr)
        if int(self._first_nonfinite) >= 0:
            return f"diverged: the train loss became non-finite at step {int(self._first_nonfinite)}", any_fault
        limit = max(state.initial_loss, math.log(self.data.vocab_size)) + 1.5
        if not math.isfinite(mean_loss) or (state.step > self.config.warmup and mean_loss > limit):
            return f"diverged at step {state.step} (loss {mean_loss:.3g})", any_fault
        return None, any_fault

    def record_point(self, state: TrainState, step: int, train_loss: float | None, lr: float) -> None:
        tokens = step * self.config.batch_tokens
        gns = state.gns
        p = dict(
            step=step, tokens=tokens, flop=6.0 * self.n * tokens, flop_exact=self.flop_per_token_exact * tokens,
            lr=lr, train_loss=train_loss, wall_time_s=time.perf_counter() - self.t_start,
            b_simple=gns.b_simple if gns else None, gns_g2=gns.g2 if gns else None,
            gns_trace=gns.trace if gns else None,
        )
        if state.points and state.points[-1]["step"] == step:
            state.points[-1] = {**state.points[-1], **{k: v for k, v in p.items() if v is not None}}
        else:
            state.points.append(p)

    def evaluate_step(self, state: TrainState, final: bool) -> str | None:
        """Validation and test losses (and, at the end, the transfer sets and the per-position test loss), each
        with its standard error. Returns a divergence reason if one is not finite."""
        sets = self.curve_sets + ([s for s in self.eval_sets if s not in self.curve_sets] if final else [])
        for s in sets:
            if final and s == "test":
                loss, se, self.per_position = self.evaluate(state.model, s, per_position=True)
            else:
                loss, se = self.evaluate(state.model, s)
            state.evals.append(dict(step=state.step, eval_set=s, loss=loss, se=se))
            if not math.isfinite(loss):
                return f"diverged at step {state.step} ({s} loss {loss:.3g})"
        return None

    def checkpoint(self, state: TrainState) -> str | None:
        """Write the TrainState (rank 0). Returns a reason to stop the run: the disk is full (or another write
        error), or the dataset changed under the run; the previous checkpoint is then left as it was."""
        now_fp = dataset_fingerprint(self.config.data)
        if now_fp != self.fingerprint:
            return (f"the dataset {self.config.data} changed under this run at step {state.step} (fingerprint "
                    f"{self.fingerprint} -> {now_fp}); start the run again on the data it should use")
        path = self.checkpoint_dir / CHECKPOINT_NAME
        state.wall_time_s = time.perf_counter() - self.t_start
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            write_checkpoint(dict(run_id=self.run_id, data=self.fingerprint, config=self._config_without_data(),
                                  state=state.state_dict()), path)
        except OSError as exc:
            what = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            return (f"checkpoint at step {state.step} not written ({what}: {path}); the previous checkpoint is "
                    "kept: fix the disk and run again (study run --retry-failed resumes from it)")
        except outdir.OutputError as exc:
            return f"checkpoint at step {state.step} not written: {exc}"
        return None

    def finish(self, state: TrainState, status: str, error: str | None) -> RunResult:
        wall = time.perf_counter() - self.t_start
        B_tok = self.config.batch_tokens
        final = {e["eval_set"]: e for e in state.evals if e["step"] == state.step}
        done = status == "done"
        best = self.best(state.evals)
        summary = dict(
            self.info,
            final_test_loss=final["test"]["loss"] if done and "test" in final else None,
            final_train_loss=state.points[-1]["train_loss"] if state.points else None,
            final_metrics=dict(
                eval_losses={k: e["loss"] for k, e in final.items()},
                eval_ses={k: e.get("se") for k, e in final.items()},
                final_test_loss_se=final["test"].get("se") if done and "test" in final else None,
                **best,
                eval_set_info={s: self.eval_set(s)[1].describe() for s in {e["eval_set"] for e in state.evals}},
                per_position_test_loss=self.per_position if done and "test" in final else None,
                initial_loss=state.initial_loss, steps_done=state.step,
                b_simple=state.gns.b_simple if state.gns else None,
            ),
            epochs=self.sampler.epochs(state.step * B_tok),
            wall_time_s=wall, tokens_per_s=state.step * B_tok / max(wall, 1e-9), device=self.device_label,
            error=error,
        )
        self.recorder.finish(status, summary, state.points, state.evals)
        if status != "failed" and self.is_main:
            for path in checkpoint_paths(self.checkpoint_dir):  # the store now holds everything; a finished run needs no checkpoint
                outdir.remove(path)  # only a checkpoint scalinglab wrote
        return RunResult(self.run_id, status, summary, state.points, state.evals)

    @staticmethod
    def best(evals: list[dict]) -> dict:
        """The best step of the curve, chosen on validation (argmin of the validation loss over the
        evaluations), and the test loss reported at it. None where there is no validation curve."""
        val = {e["step"]: e["loss"] for e in evals if e["eval_set"] == "validation" and math.isfinite(e["loss"])}
        test = {e["step"]: e for e in evals if e["eval_set"] == "test"}
        if not val:
            return dict(best_step=None, val_loss_at_best=None, test_loss_at_best=None, test_loss_se_at_best=None)
        step = min(val, key=lambda s: (val[s], s))
        t = test.get(step, {})
        return dict(best_step=step, val_loss_at_best=val[step], test_loss_at_best=t.get("loss"),
                    test_loss_se_at_best=t.get("se"))

    # ------------------------------------------------------------------------------------------ the run
    # `run` is `begin`, then `lr` / `train_step` / `after_step` until `after_step` says the run stops, then
    # `finish`; grouped.py drives several Trainers through the same steps with one batched train step.
    def begin(self) -> tuple[TrainState, str | None]:
        """The run's state, fresh or restored from its checkpoint and registered in the store, and a reason to
        stop at once (the checkpoint is of this run on other data) or None."""
        cfg = self.config
        keep_freed_memory()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        state = self.new_state()
        self.per_position = None
        stop = self.restore(state)
        self.t_start = time.perf_counter() - state.wall_time_s
        self.recorder.start(state.points, state.evals, self.device_label)
        self.params = list(state.model.parameters())
        self._evals_at = set(eval_steps(cfg.steps, cfg.n_evals))
        self._branch_at = {}
        for branch, at in cfg.branches():  # the stable phase also evaluates where each branch evaluates before it
            self._evals_at |= {s for s in eval_steps(branch.steps, branch.n_evals) if s <= at}
            self._branch_at.setdefault(at, []).append(branch)
        # the first step whose loss is not finite, tracked on the device (no host sync per step)
        self._first_nonfinite = torch.full((), -1, dtype=torch.int64, device=self.device)
        self._last_ckpt, self._fault = time.perf_counter(), None
        return state, stop

    def lr(self, state: TrainState) -> float:
        """The LR of the next update."""
        return self.config.lr_at(state.step, self.peak_lr)

    def after_step(self, state: TrainState, step_loss: torch.Tensor, lr: float) -> tuple[str, str | None] | None:
        """Everything after one optimizer step: the loss accumulator, the non-finite check, train-loss points,
        evaluations, progress, checkpoints. Returns (status, error) when the run stops here, else None."""
        cfg = self.config
        S = cfg.steps
        state.loss_sum += step_loss.double()
        state.loss_count += 1
        if state.step_losses is not None:
            state.step_losses[state.step - 1] = step_loss.detach().double()
        bad = ~torch.isfinite(step_loss) & (self._first_nonfinite < 0)
        self._first_nonfinite = torch.where(bad, state.step, self._first_nonfinite)
        step = state.step
        # every rank logs at the same steps (the log is a collective under DDP); a fault seen by rank 0 (one
        # process stops at once) stops all ranks at the next log
        if step % cfg.train_log_every == 0 or step in self._evals_at or step == S:
            error, any_fault = self.log_point(state, lr, self._fault is not None)
            if any_fault and error is None:
                return "failed", self._fault or "stopped: another rank hit a fault"
            if error is None and step in self._evals_at:
                error = self.evaluate_step(state, final=step == S)
                self.flush(state)
            if error is not None:
                return "diverged", error
        if self.on_progress and self.is_main:
            elapsed = max(1e-9, time.perf_counter() - self.t_start)
            self.on_progress(dict(step=step, steps=S, loss=state.points[-1]["train_loss"] if state.points else None,
                                  tokens_per_s=step * cfg.batch_tokens / elapsed, run_id=self.run_id))
        if self.checkpoint_dir is not None and self.is_main and self._fault is None and step < S \
                and time.perf_counter() - self._last_ckpt > cfg.checkpoint_every_s \
                and int(self._first_nonfinite) < 0:  # never checkpoint a run gone non-finite: the next log stops it
            self._fault = self.checkpoint(state)
            self._last_ckpt = time.perf_counter()
            if self._fault is not None and not self.dist:
                return "failed", self._fault
            self.flush(state)
        if step in self._branch_at and self.is_main and int(self._first_nonfinite) < 0:
            fault = self.write_branches(state, step)
            if fault is not None:
                return "failed", fault
        return ("done", None) if step >= S else None

    def branch_dir(self, run_id: str) -> Path:
        """Where a cooldown branch of this run checkpoints: beside this run's folder, as a run of its own does."""
        return self.checkpoint_dir.parent / run_id

    def write_branches(self, state: TrainState, step: int) -> str | None:
        """At a branch step of the stable phase: the checkpoint of each cooldown that branches here, written into
        its own folder as the run trained alone to that budget would have saved it at this step (the same
        weights, optimizer state and data position; its own train-loss points, averaged over its own logging
        windows from the per-update losses; the evaluations at its own evaluation steps). Training the branch
        then resumes from it. Returns a reason to stop (the checkpoint could not be written)."""
        if self.checkpoint_dir is None:
            raise ConfigError(f"run {self.config.name or self.run_id}: a run with cooldowns needs a checkpoint "
                              "folder for its branches (train_run gives one)")
        losses = state.step_losses[:step].tolist()
        mine = {p["step"]: p for p in state.points}
        for branch in self._branch_at[step]:
            evals_at = {s for s in eval_steps(branch.steps, branch.n_evals) if s <= step}
            every = branch.train_log_every
            points, prev = [], 0
            for s in sorted(set(range(every, step + 1, every)) | evals_at):
                total = 0.0
                for v in losses[prev:s]:  # summed in order, in float64, as the run alone accumulates them
                    total += v
                points.append({**mine[s], "train_loss": total / (s - prev)})
                prev = s
            pending = 0.0
            for v in losses[prev:step]:
                pending += v
            evals = [dict(e) for e in state.evals if e["step"] in evals_at and e["eval_set"] in self.curve_sets]
            at_branch = TrainState(
                model=state.model, optimizer=state.optimizer, gns=state.gns,
                loss_sum=torch.tensor(pending, dtype=torch.float64, device=self.device), step=step,
                loss_count=step - prev, points=points, evals=evals,
                wall_time_s=time.perf_counter() - self.t_start, initial_loss=state.initial_loss)
            run_id = branch.run_id()
            path = self.branch_dir(run_id) / CHECKPOINT_NAME
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_checkpoint(dict(run_id=run_id, data=self.fingerprint, config=_defining(branch),
                                      state=at_branch.state_dict()), path)
            except OSError as exc:
                what = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
                return f"the checkpoint of cooldown branch {run_id} at step {step} not written ({what}: {path})"
            except outdir.OutputError as exc:
                return f"the checkpoint of cooldown branch {run_id} at step {step} not written: {exc}"
        return None

    def interrupted(self, state: TrainState | None) -> None:
        """Ctrl-C (SIGINT) stopped the run: the curve so far is written and the run marked 'interrupted' (not left
        'running'); its checkpoint stays, so running it again resumes it."""
        self.recorder.interrupted(state.step if state is not None else 0, state and state.points,
                                  state and state.evals)

    def run(self) -> RunResult:
        state = None
        try:
            state, stop = self.begin()
            if stop is not None:
                return self.finish(state, "failed", stop)
            train_model = torch.compile(state.model) if self.config.compile else state.model
            if self.dist:
                train_model = torch.nn.parallel.DistributedDataParallel(train_model)
            while state.step < self.config.steps:
                lr = self.lr(state)
                ended = self.after_step(state, self.train_step(state, train_model, lr), lr)
                if ended is not None:
                    return self.finish(state, *ended)
            return self.finish(state, "done", None)
        except KeyboardInterrupt:
            self.interrupted(state)
            raise


def _defining(config: RunConfig) -> dict:
    """The config a checkpoint records: the defining fields without the data (the data is the checkpoint's
    fingerprint), so a checkpoint of this run made on other data is told apart from another run's."""
    return {k: v for k, v in config.to_dict().items() if k not in _NON_DEFINING and k != "data"}


def model_loss(model, batch: torch.Tensor) -> torch.Tensor:
    module = model.module if hasattr(model, "module") else model
    if hasattr(module, "_orig_mod"):
        module = module._orig_mod
    if model is module:
        return module.loss(batch[:, :-1], batch[:, 1:])
    return model(batch[:, :-1], batch[:, 1:])  # through the DDP / compiled wrapper so its hooks run


def train_run(config: RunConfig, **kwargs) -> RunResult:
    """Train one run from its config. See `Trainer` for the keyword arguments (store, study, checkpoint_dir,
    on_progress). A run with cooldowns trains its stable phase, then each cooldown branch (`train_cooldowns`)."""
    if config.cooldowns:
        return train_cooldowns(config, **kwargs)
    return Trainer(config, **kwargs).run()


def train_cooldowns(config: RunConfig, *, store=None, study: str | None = None,
                    checkpoint_dir: str | os.PathLike | None = None, on_progress=None) -> RunResult:
    """The stable phase of a warm-up-stable-decay run once, then every cooldown branched from it at its decay
    start, each trained to its own end as a run of its own (the run alone to that budget: its id, its curve),
    its parent and branch step recorded. The stable phase writes each branch's checkpoint into the branch's own
    folder (beside its own: <store>.ckpt/<run_id>) as it passes the branch step, so a killed family resumes like
    any run: a stable phase the store has as done is not trained again, a branch resumes from its checkpoint and
    a branch the store has as done is skipped. Returns the stable phase's result, its branches' in `branches`
    (those trained by this call)."""
    with contextlib.ExitStack() as stack:
        if checkpoint_dir is None:  # branches still need their checkpoints to start from: a folder of our own
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scalinglab-cooldowns-")))
            checkpoint_dir = root / config.run_id()
        status = store.column("status") if store is not None else {}
        trunk_id = config.run_id()
        if status.get(trunk_id) == "done":
            row = store.run(trunk_id)
            trunk = RunResult(trunk_id, "done", {k: row.get(k) for k in ("N", "D", "C", "final_test_loss")})
        else:
            trunk = Trainer(config, store=store, study=study, checkpoint_dir=checkpoint_dir,
                            on_progress=on_progress).run()
        if trunk.status != "done":
            return trunk
        for branch, at in config.branches():
            run_id = branch.run_id()
            if status.get(run_id) in ("done", "diverged"):
                continue
            trunk.branches.append(Trainer(branch, store=store, study=study,
                                          checkpoint_dir=Path(checkpoint_dir).parent / run_id,
                                          on_progress=on_progress, parent=(trunk_id, at)).run())
        return trunk
