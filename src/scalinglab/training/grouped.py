"""Grouped training: several tiny runs of the same shape trained at once in one process, as one batched model.

Runs that differ only in what does not change the model's shape or the step's layout (seed, learning rate, data
subset, token budget, schedule, weight decay, ...) are trained together: every step stacks the runs' parameters
into [G, ...] tensors and computes the G forward and backward passes as batched matmuls (one kernel where there
were G), so a tiny model's per-op overhead is paid once per group instead of once per run. The batched step is
only the arithmetic: everything else is each run's own `Trainer` (trainer.py) driven step by step, so each run
keeps its own model, AdamW state, LR schedule, data stream, evaluations, checkpoints (the same files a lone run
writes, so a grouped run resumes alone and the other way round) and stored curve. The runs' losses are summed
before the backward pass; no parameter is shared, so each run's gradient is that of its own loss alone. A run that
ends (budget reached, diverged, failed) leaves the group and the others go on. Both model families are grouped
(the family is part of the shape, so a group is of one family).

Numerics: the same operations as `Transformer` in another order of summation (batched matmuls, the LayerNorm's
gain applied outside its kernel), so a run's curve matches its lone run to float rounding (tested in fp32: 1e-4).
The runs of a group share a precision (part of the key); under bf16 the batched forward runs under the same
autocast as a lone run's.

Two batched forms were measured (benchmarks/grouped.py): explicit torch.baddbmm over the stacked weights
(`grouped_hidden`, used) and torch.func.functional_call under torch.vmap (`vmap_hidden`, kept for that
comparison). The loss of each run goes through `fused_loss.linear_cross_entropy`, as a lone run's does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from scalinglab.errors import ConfigError
from scalinglab.training.config import RunConfig
from scalinglab.training.fused_loss import linear_cross_entropy
from scalinglab.training.model import RMS_EPS, Transformer, apply_rotary, rotary_tables
from scalinglab.training.trainer import RunResult, Trainer, TrainState, resolve_device

__all__ = ["GroupedTrainer", "group_key", "grouped_hidden", "stack_parameters", "train_grouped", "vmap_hidden"]


def group_key(config: RunConfig) -> tuple | None:
    """Runs with equal keys can be trained as one group; None for a run that must train alone (another device
    than the CPU, micro-batches or the noise scale (their step is not one forward-backward), torch.compile,
    Adafactor), a stable phase with cooldowns (its branches train after it, each alone). The vocabulary is the
    dataset's: `GroupedTrainer` checks it."""
    if (config.micro_batch_size not in (None, config.batch_size) or config.noise_scale or config.compile
            or config.optimizer != "adamw" or resolve_device(config.device).type != "cpu" or config.cooldowns):
        return None
    return (tuple(sorted(config.shape_without_vocab.items())), config.batch_size, config.threads, config.precision)


# -------------------------------------------------------------------------------------------------- batched model


def stack_parameters(models: Sequence[Transformer]) -> dict[str, torch.Tensor]:
    """Each parameter of the runs' models stacked along a new first dimension (differentiable: the gradient of a
    stacked tensor flows back to each run's own parameter)."""
    names = [n for n, _ in models[0].named_parameters()]
    params = [dict(m.named_parameters()) for m in models]
    return {n: torch.stack([p[n] for p in params]) for n in names}


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # x [G, M, d], weight and bias [G, d]; nn.LayerNorm's eps. Without a bias: RMSNorm (llama), model.py's eps
    if bias is None:
        return F.rms_norm(x, x.shape[-1:], eps=RMS_EPS) * weight[:, None]
    return torch.addcmul(bias[:, None], F.layer_norm(x, x.shape[-1:], eps=1e-5), weight[:, None])


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # x [G, M, in], weight [G, out, in], bias [G, out] or None: one batched matmul for the G runs
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias[:, None], x, weight.transpose(1, 2))


def grouped_hidden(shape, P: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """`Transformer.hidden` of G runs at once: idx [G, batch, time] -> final-norm states [G, batch*time, d].
    Both families: a llama model's parameters have no biases (`P.get` gives None) and no position table."""
    G, b, t = idx.shape
    V, d, H, d_attn = shape.vocab_size, shape.d_model, shape.n_head, shape.d_attn
    llama = shape.family == "llama"
    # one embedding lookup for the G runs: run g's rows of the stacked table start at g * V
    offsets = torch.arange(G, device=idx.device).view(G, 1, 1) * V
    x = F.embedding(idx + offsets, P["tok_emb.weight"].reshape(G * V, d))
    if llama:
        cos, sin = rotary_tables(t, d_attn // H, device=idx.device)
    else:
        x = x + P["pos_emb.weight"][:, None, :t]
    x = x.reshape(G, b * t, d)
    for i in range(shape.n_layer):
        p = f"blocks.{i}."
        h = _layer_norm(x, P[p + "ln_1.weight"], P.get(p + "ln_1.bias"))
        qkv = _linear(h, P[p + "attn.qkv.weight"], P.get(p + "attn.qkv.bias"))
        q, k, v = qkv.view(G * b, t, 3, H, d_attn // H).permute(2, 0, 3, 1, 4)
        if llama:
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + _linear(y.transpose(1, 2).reshape(G, b * t, d_attn), P[p + "attn.proj.weight"],
                        P.get(p + "attn.proj.bias"))  # fmt: skip
        h = _layer_norm(x, P[p + "ln_2.weight"], P.get(p + "ln_2.bias"))
        h = _linear(h, P[p + "fc.weight"], P.get(p + "fc.bias"))
        if llama:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)
        x = x + _linear(h, P[p + "fc_out.weight"], P.get(p + "fc_out.bias"))
    return _layer_norm(x, P["ln_f.weight"], P.get("ln_f.bias"))


class _Hidden(torch.nn.Module):
    """`model.hidden` as a module's forward, for torch.func.functional_call."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model.hidden(idx)


def vmap_hidden(model: Transformer, P: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """The same as `grouped_hidden`, by torch.vmap over torch.func.functional_call of `model` (any one of the
    runs' models: its own parameters are replaced by the stacked ones)."""
    wrapper = _Hidden(model)
    G, b, t = idx.shape

    def one(params, x):
        return torch.func.functional_call(wrapper, {"model." + n: v for n, v in params.items()}, (x,))

    return torch.vmap(one)(P, idx).reshape(G, b * t, -1)


def grouped_losses(models: Sequence[Transformer], batches: torch.Tensor, how: str = "bmm") -> list[torch.Tensor]:
    """Each run's mean training loss on its batch (batches [G, batch, n_ctx + 1]), from one batched forward."""
    P = stack_parameters(models)
    shape = models[0].shape
    idx, targets = batches[..., :-1], batches[..., 1:]
    h = grouped_hidden(shape, P, idx) if how == "bmm" else vmap_hidden(models[0], P, idx)
    W = P["tok_emb.weight"] if shape.tie_embeddings else P["unembed.weight"]
    return [linear_cross_entropy(h[g], W[g], targets[g].flatten()) for g in range(len(models))]


# -------------------------------------------------------------------------------------------------- training


@dataclass
class _Member:
    index: int
    trainer: Trainer
    state: TrainState


def grouped_train_step(members: Sequence[_Member], lrs: Sequence[float], how: str = "bmm") -> list[torch.Tensor]:
    """One optimizer step of every member (what `Trainer.train_step` does for one run without micro-batches):
    each run's batch at its own step, one batched forward and backward, then each run's own update
    (`Trainer.update`: clipping and the AdamW step) at its own LR. Returns each run's loss."""
    for m, lr in zip(members, lrs):
        m.trainer.set_lr(m.state, lr)
    batches = torch.stack([torch.from_numpy(m.trainer.sampler.batch(m.state.step)) for m in members])
    with members[0].trainer.autocast():  # the group's precision (part of its key): the forward only
        losses = grouped_losses([m.state.model for m in members], batches.to(members[0].trainer.device), how)
    torch.stack(losses).sum().backward()  # no shared parameter: each run's gradient is that of its own loss
    for m in members:
        m.trainer.update(m.state)
    return [loss.detach() for loss in losses]


class GroupedTrainer:
    """Train runs of one group (equal `group_key`) together; each run is stored and checkpointed as its own.

    checkpoint_dirs: one per run (or None); on_progress: called with each run's progress after each of its
    steps, as `Trainer`'s is."""

    def __init__(
        self,
        configs: Sequence[RunConfig],
        *,
        store=None,
        study: str | None = None,
        checkpoint_dirs: Sequence[str | os.PathLike | None] | None = None,
        on_progress: Callable[[dict], None] | None = None,
        how: str = "bmm",
    ):
        if not configs:
            raise ConfigError("grouped training needs at least one run")
        keys = [group_key(c) for c in configs]
        if keys[0] is None or any(k != keys[0] for k in keys):
            raise ConfigError("grouped training: the runs must share the model shape, batch size, threads and "
                              "precision, on the CPU, without micro-batches, noise scale, compile or Adafactor")
        if how not in ("bmm", "vmap"):
            raise ConfigError(f"grouped training: how must be 'bmm' or 'vmap', got {how!r}")
        dirs = list(checkpoint_dirs) if checkpoint_dirs is not None else [None] * len(configs)
        if len(dirs) != len(configs):
            raise ConfigError(f"grouped training: {len(dirs)} checkpoint directories for {len(configs)} runs")
        self.trainers = [Trainer(c, store=store, study=study, checkpoint_dir=d, on_progress=on_progress)
                         for c, d in zip(configs, dirs)]  # fmt: skip
        if len({t.data.vocab_size for t in self.trainers}) > 1:
            raise ConfigError("grouped training: the runs' datasets have different vocabularies")
        for t in self.trainers:  # the store says which runs were trained as a group
            t.device_label = f"{t.device} (group of {len(configs)})"
        self.how = how

    def run(self) -> list[RunResult]:
        """Train every run to its end; their results in the order of the configs."""
        results: dict[int, RunResult] = {}
        active: list[_Member] = []
        try:
            return self._run(results, active)
        except KeyboardInterrupt:  # Ctrl-C: every run not finished is marked interrupted, not left running
            states = {m.index: m.state for m in active}
            for i, tr in enumerate(self.trainers):
                if i not in results:
                    tr.interrupted(states.get(i))
            raise

    def _run(self, results: dict, active: list) -> list[RunResult]:
        for i, tr in enumerate(self.trainers):
            state, stop = tr.begin()
            if stop is not None:
                results[i] = tr.finish(state, "failed", stop)
            elif state.step >= tr.config.steps:
                results[i] = tr.finish(state, "done", None)
            else:
                active.append(_Member(i, tr, state))
        while active:
            lrs = [m.trainer.lr(m.state) for m in active]
            losses = grouped_train_step(active, lrs, self.how)
            still = []
            for m, lr, loss in zip(active, lrs, losses):
                ended = m.trainer.after_step(m.state, loss, lr)
                if ended is None:
                    still.append(m)
                else:
                    results[m.index] = m.trainer.finish(m.state, *ended)
            active[:] = still
        return [results[i] for i in range(len(self.trainers))]


def train_grouped(configs: Sequence[RunConfig], **kwargs) -> list[RunResult]:
    """Train same-shape runs together as one batched model. See `GroupedTrainer` for the keyword arguments."""
    return GroupedTrainer(configs, **kwargs).run()
