"""The decoder-only Transformer (GPT-2 family, as in Kaplan et al. 2020).

Pre-LayerNorm blocks, learned position embeddings, a GELU MLP, attention through
torch.nn.functional.scaled_dot_product_attention (fused kernels where the backend has them), token and
unembedding matrices tied by default. The shape is `accounting.ModelShape`; N is counted in accounting.py and a
test checks it against this module's parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.accounting import ModelShape
import scalinglab._torch_check  # noqa: F401,E402  (a torch older than the lower bound: one clear line)

__all__ = ["ModelShape", "Transformer", "linear_cross_entropy"]


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.n_head, self.d_attn = shape.n_head, shape.d_attn
        self.qkv = nn.Linear(shape.d_model, 3 * shape.d_attn)
        self.proj = nn.Linear(shape.d_attn, shape.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, self.d_attn // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.d_attn))


class Block(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.d_model)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.d_model)
        self.fc = nn.Linear(shape.d_model, shape.d_ff)
        self.fc_out = nn.Linear(shape.d_ff, shape.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        # exact (erf) GELU: on CPU the tanh approximation costs ~5x more and ~11% of a small model's step
        return x + self.fc_out(F.gelu(self.fc(self.ln_2(x))))


class Transformer(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        self.tok_emb = nn.Embedding(shape.vocab_size, shape.d_model)
        self.pos_emb = nn.Embedding(shape.n_ctx, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_f = nn.LayerNorm(shape.d_model)
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
        """Final-LayerNorm hidden states [batch, time, d_model]."""
        t = idx.shape[1]
        if t > self.shape.n_ctx:
            raise ValueError(f"sequence of {t} tokens is longer than n_ctx={self.shape.n_ctx}")
        pos = torch.arange(t, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
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


# ------------------------------------------------------------------------------ fused unembedding + loss
#
# On CPU the unembedding and the cross-entropy over the vocabulary are a large share of a small model's step:
# the plain path writes [tokens, vocab] logits, reads them back for log-softmax, writes log-probabilities,
# zero-fills a gradient of the same size, scatters into it, and writes the logits' gradient, every one of
# them a 64 MB round trip through memory at 4096 tokens x 4096 vocab. Done in row chunks, the logits of a
# chunk stay in cache while they become probabilities, then the chunk's gradient, then its contributions to
# the gradients of the hidden states and of the unembedding matrix. The gradients are computed in the
# forward pass (the loss is the graph's last node, so nothing is wasted) and scaled by the incoming gradient
# in backward.

_CHUNK_ELEMENTS = 1 << 19  # logits per chunk: 2 MiB of float32, about a core's L2 cache (measured: 64-512 rows
# of a 4096 vocabulary are within a few % of each other, all ~1.5-1.9x faster than the plain path on shapes a, b)


def _chunk_rows(vocab: int) -> int:
    return max(64, _CHUNK_ELEMENTS // max(1, vocab))  # fewer rows would starve the matmuls


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of softmax(h W^T) against targets, with gradients for h and W."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n, vocab = h.shape[0], weight.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        step = _chunk_rows(vocab)
        buf = torch.empty((min(step, n), vocab), dtype=h.dtype, device=h.device)
        scale = 1.0 / n
        for i in range(0, n, step):
            hc, tc = h[i : i + step], targets[i : i + step, None]
            logits = buf[: hc.shape[0]]
            torch.mm(hc, weight.t(), out=logits)
            picked = logits.gather(1, tc)
            # log-sum-exp with one exp pass, in place; the exponentials are reused for the gradient
            top = logits.amax(1, keepdim=True)
            logits.sub_(top).exp_()
            sums = logits.sum(1, keepdim=True)
            total += (top + sums.log() - picked).sum()
            if need_h or need_w:
                # d loss / d logits = (softmax - onehot) / n
                logits.mul_(sums.reciprocal_().mul_(scale))
                logits.scatter_add_(1, tc, torch.full_like(picked, -scale))
                if need_h:
                    torch.mm(logits, weight, out=grad_h[i : i + step])
                if need_w:
                    grad_w.addmm_(logits.t(), hc)
        ctx.save_for_backward(grad_h, grad_w)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        # [tokens, d] and [vocab, d]: small next to the logits, so scaling them costs little
        return (
            None if grad_h is None else grad_h * grad_out,
            None if grad_w is None else grad_w * grad_out,
            None,
        )


def _chunked_cross_entropy_none(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row losses without gradients, one chunk of logits at a time."""
    out = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
    step = _chunk_rows(weight.shape[0])
    for i in range(0, h.shape[0], step):
        logits = F.linear(h[i : i + step], weight).float()
        out[i : i + step] = F.cross_entropy(logits, targets[i : i + step], reduction="none")
    return out


def linear_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """F.cross_entropy(F.linear(h, weight).float(), targets, reduction) for h [tokens, d], weight [vocab, d].

    Float32 inputs with reduction 'mean' (training) take the fused, chunked path; without gradients
    'none' and 'sum' are chunked too; anything else (bf16 autocast, gradients through per-token losses,
    tracing by torch.compile) falls back to the plain computation. Targets must be valid class indices
    (no ignore_index: every position of a training window has a next token)."""
    grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    plain_dtype = h.dtype == torch.float32 and weight.dtype == torch.float32 and not torch.is_autocast_enabled(
        h.device.type
    )
    if plain_dtype and h.shape[0] > 0 and not torch.compiler.is_compiling():
        if reduction == "mean":
            return _LinearCrossEntropy.apply(h, weight, targets)
        if not grad and reduction in ("none", "sum"):
            losses = _chunked_cross_entropy_none(h, weight, targets)
            return losses if reduction == "none" else losses.sum()
    return F.cross_entropy(F.linear(h, weight).float(), targets, reduction=reduction)
