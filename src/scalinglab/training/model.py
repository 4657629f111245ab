"""The decoder-only Transformer, in two families (`ModelShape.family`).

gpt2 (Kaplan et al. 2020): pre-LayerNorm blocks, learned position embeddings, a GELU MLP, biased linears.
llama (today's scaling ladders: OLMo, Marin, OpenLM): pre-RMSNorm blocks (gains only), rotary positions on Q and K
(no position parameters), a SwiGLU MLP (gate and up as one d_model x 2 d_ff matrix, then down), no biases.
Both: attention through
torch.nn.functional.scaled_dot_product_attention (fused kernels where the backend has them), token and
unembedding matrices tied by default. The shape is `accounting.ModelShape`; N is counted in accounting.py and a
test checks it against this module's parameters. The loss goes through `fused_loss.linear_cross_entropy`
(the unembedding and the cross-entropy in cache-sized chunks): the same value as F.cross_entropy on the logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.accounting import ModelShape
import scalinglab._torch_check  # noqa: F401,E402  (a torch older than the lower bound: one clear line)
from scalinglab.training.fused_loss import linear_cross_entropy

__all__ = ["ModelShape", "Transformer", "linear_cross_entropy", "rotary_tables", "apply_rotary", "RMS_EPS"]

ROTARY_BASE = 10_000.0
RMS_EPS = 1e-6


def rotary_tables(n_ctx: int, d_head: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [n_ctx, d_head / 2] of rotary positions (RoFormer; base 10000): pair i of a head turns by
    position * base^(-2i / d_head)."""
    inv = ROTARY_BASE ** (-torch.arange(0, d_head, 2, dtype=torch.float32, device=device) / d_head)
    ang = torch.arange(n_ctx, dtype=torch.float32, device=device)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., time, d_head] by its position: the head's two halves are the pairs' coordinates (the
    GPT-NeoX / Hugging Face Llama layout). cos, sin: [time, d_head / 2]."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # under autocast Q and K may be bf16
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def _norm(shape: ModelShape) -> nn.Module:
    if shape.family == "llama":
        return nn.RMSNorm(shape.d_model, eps=RMS_EPS)
    return nn.LayerNorm(shape.d_model)


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.n_head, self.d_attn = shape.n_head, shape.d_attn
        bias = shape.family == "gpt2"
        self.qkv = nn.Linear(shape.d_model, 3 * shape.d_attn, bias=bias)
        self.proj = nn.Linear(shape.d_attn, shape.d_model, bias=bias)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, self.d_attn // self.n_head).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos[:t], sin[:t]), apply_rotary(k, cos[:t], sin[:t])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.d_attn))


class Block(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.swiglu = shape.family == "llama"
        self.ln_1 = _norm(shape)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = _norm(shape)
        # llama: gate and up projections as one matrix [2 d_ff, d_model] (gate first), SiLU(gate) * up, then down
        self.fc = nn.Linear(shape.d_model, (2 if self.swiglu else 1) * shape.d_ff, bias=not self.swiglu)
        self.fc_out = nn.Linear(shape.d_ff, shape.d_model, bias=not self.swiglu)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rotary)
        h = self.fc(self.ln_2(x))
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            return x + self.fc_out(F.silu(gate) * up)
        # exact (erf) GELU: on CPU the tanh approximation costs ~5x more and ~11% of a small model's step
        return x + self.fc_out(F.gelu(h))


class Transformer(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        self.tok_emb = nn.Embedding(shape.vocab_size, shape.d_model)
        self.pos_emb = nn.Embedding(shape.n_ctx, shape.d_model) if shape.family == "gpt2" else None
        if shape.family == "llama":  # not parameters, not saved: recomputed from the shape
            cos, sin = rotary_tables(shape.n_ctx, shape.d_head)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_f = _norm(shape)
        self.unembed = None if shape.tie_embeddings else nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        self.reset_parameters()

    # Initialisation: N(0, 0.02) for matrices and embeddings, zero biases, and the two projections that write
    # into the residual stream scaled by 1/sqrt(2 n_layer), so the residual's variance stays O(1) with depth and
    # deep, narrow models (Kaplan's aspect-ratio sweep goes down to d_model/n_layer ~ 2) remain trainable.
    def reset_parameters(self) -> None:
        std = 0.02
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_f"):
                nn.init.ones_(p)
            elif name.endswith(("attn.proj.weight", "fc_out.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.shape.n_layer))
            elif name.startswith("pos_emb"):
                nn.init.normal_(p, 0.0, std / 2)
            else:
                nn.init.normal_(p, 0.0, std)

    def non_embedding_parameters(self):
        """The parameters N counts: everything but token/position embeddings and an untied unembedding."""
        for name, p in self.named_parameters():
            if not name.startswith(("tok_emb", "pos_emb", "unembed")):
                yield p

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states [batch, time, d_model]."""
        t = idx.shape[1]
        if t > self.shape.n_ctx:
            raise ValueError(f"sequence of {t} tokens is longer than n_ctx={self.shape.n_ctx}")
        if self.pos_emb is not None:
            x = self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device))
            rotary = None
        else:
            x = self.tok_emb(idx)
            rotary = (self.rotary_cos, self.rotary_sin)
        for block in self.blocks:
            x = block(x, rotary)
        return self.ln_f(x)

    @property
    def unembedding_weight(self) -> torch.Tensor:
        return self.tok_emb.weight if self.unembed is None else self.unembed.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"):
        """Logits [batch, time, vocab]; with targets, the loss instead (see `loss`), so that wrappers whose
        hooks run on forward (DDP, torch.compile) can take the fused loss path too."""
        h = self.hidden(idx)
        if targets is None:
            return F.linear(h, self.unembedding_weight)
        out = linear_cross_entropy(h.flatten(0, 1), self.unembedding_weight, targets.flatten(), reduction)
        return out.view_as(targets) if reduction == "none" else out

    def loss(self, idx: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy in nats per token. reduction='none' gives [batch, time] (per-position losses).

        Same value as F.cross_entropy on `self(idx)`, computed without materialising the full [tokens, vocab]
        logits at once (see `linear_cross_entropy`)."""
        return self(idx, targets, reduction)
