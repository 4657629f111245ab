"""The unembedding and the cross-entropy fused: F.cross_entropy(F.linear(h, W), targets) in row chunks.

On CPU the unembedding and the cross-entropy over the vocabulary are a large share of a small model's step:
the plain path writes [tokens, vocab] logits, reads them back for log-softmax, writes log-probabilities,
zero-fills a gradient of the same size, scatters into it, and writes the logits' gradient, every one of
them a 64 MB round trip through memory at 4096 tokens x 4096 vocab. Done in row chunks, the logits of a
chunk stay in cache while they become log-probabilities (one fused log-softmax, in place), give up the targets'
log-probabilities, become probabilities (exp) and the chunk's gradient (minus one at the targets), then its
contributions to the gradients of the hidden states and of the unembedding matrix. The gradients are computed
in the forward pass (the loss is the graph's last node, so nothing is wasted); backward scales them by 1/tokens
and the incoming gradient in one pass.

Measured (benchmarks/step_profile.py): at d_model 64 the unembedding's three matrix products ran at 0.45-0.60
of the machine's float32 matmul peak and take most of this function's time; the passes over the logits take
about a quarter of it.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = ["linear_cross_entropy"]

_CHUNK_ELEMENTS = 1 << 19  # logits per chunk: 2 MiB of float32, about a core's L2 cache (measured: 64-512 rows
# of a 4096 vocabulary are within a few % of each other, all ~1.5-1.9x faster than the plain path on shapes a, b)


def _chunk_rows(vocab: int) -> int:
    return max(64, _CHUNK_ELEMENTS // max(1, vocab))  # fewer rows would starve the matmuls


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of softmax(h W^T) against targets, with gradients for h and W. With `lowp` (bfloat16,
    under autocast) the three matrix products take bfloat16 operands; the logits, their log-softmax, the picked
    log-probabilities, the loss and both gradients stay float32."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                lowp: torch.dtype | None = None) -> torch.Tensor:
        n, vocab = h.shape[0], weight.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        step = _chunk_rows(vocab)
        buf = torch.empty((min(step, n), vocab), dtype=h.dtype, device=h.device)
        minus_one = torch.full((min(step, n), 1), -1.0, dtype=h.dtype, device=h.device)
        picked = torch.empty((n, 1), dtype=h.dtype, device=h.device)  # log-probability of each target
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        w_low = weight.to(lowp) if lowp is not None else None
        # Four passes over a chunk of logits while it is in cache: log-softmax in place (one fused kernel), the
        # targets' log-probabilities, exp (the softmax), minus one at the targets (d loss / d logits, unscaled);
        # the 1/n of the mean is applied once to the two gradients in backward.
        chunks = zip(h.split(step), targets.view(-1, 1).split(step), picked.split(step),
                     grad_h.split(step) if need_h else itertools.repeat(None))  # fmt: skip
        with torch.autocast(h.device.type, enabled=False):  # the casts below are explicit
            for hc, tc, pc, ghc in chunks:
                logits = buf[: hc.shape[0]]
                hc_low = hc.to(lowp) if lowp is not None else None
                if lowp is None:
                    torch.mm(hc, weight.t(), out=logits)
                else:
                    logits.copy_(torch.mm(hc_low, w_low.t()))
                torch.log_softmax(logits, 1, out=logits)
                torch.gather(logits, 1, tc, out=pc)
                if need_h or need_w:
                    logits.exp_().scatter_add_(1, tc, minus_one[: hc.shape[0]])
                    if lowp is None:
                        if need_h:
                            torch.mm(logits, weight, out=ghc)
                        if need_w:
                            grad_w.addmm_(logits.t(), hc)
                    else:
                        g_low = logits.to(lowp)
                        if need_h:
                            ghc.copy_(torch.mm(g_low, w_low))
                        if need_w:
                            grad_w.add_(torch.mm(g_low.t(), hc_low))
        ctx.save_for_backward(grad_h, grad_w)
        ctx.scale = 1.0 / n
        return picked.sum().neg_().mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out * ctx.scale  # [tokens, d] and [vocab, d]: small next to the logits
        return (None if grad_h is None else grad_h * scale, None if grad_w is None else grad_w * scale, None, None)


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

    Float32 inputs with reduction 'mean' (training) take the fused, chunked path, its matrix products in
    bfloat16 under a bfloat16 autocast (the run's precision 'bf16'), the log-sum-exp in float32 either way;
    without gradients 'none' and 'sum' are chunked too; anything else (half inputs, gradients through per-token
    losses, tracing by torch.compile) falls back to the plain computation. Targets must be valid class indices
    (no ignore_index: every position of a training window has a next token)."""
    grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    dev = h.device.type
    lowp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
    fused = h.dtype == torch.float32 and weight.dtype == torch.float32 and lowp in (None, torch.bfloat16)
    if fused and h.shape[0] > 0 and not torch.compiler.is_compiling():
        if reduction == "mean":
            return _LinearCrossEntropy.apply(h, weight, targets, lowp)
        if not grad and reduction in ("none", "sum"):
            losses = _chunked_cross_entropy_none(h, weight, targets)  # F.linear autocasts; the rest is float32
            return losses if reduction == "none" else losses.sum()
    return F.cross_entropy(F.linear(h, weight).float(), targets, reduction=reduction)
