"""The fast paths of model.py compute the same numbers as the plain ones.

Transformer.loss goes through `linear_cross_entropy` (chunked unembedding + cross-entropy with the gradients
built in the forward pass); these tests compare its loss and every parameter's gradient with the plain
F.cross_entropy on full logits, for shapes with one chunk, many chunks and a ragged last chunk, tied and
untied embeddings, and check the per-position ('none') and no-gradient evaluation paths.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scalinglab.accounting import ModelShape
from scalinglab.training.fused_loss import _chunk_rows, linear_cross_entropy
from scalinglab.training.model import Transformer

SHAPES = [
    # (shape, batch): vocab 300: one chunk; vocab 4096: 128 rows per chunk, so 165 and 448 tokens make 2 and 4
    # chunks with a ragged last one (checked in test_chunking_covers_the_shapes)
    (ModelShape(n_layer=2, d_model=32, n_head=2, n_ctx=16, vocab_size=300, tie_embeddings=True), 3),
    (ModelShape(n_layer=1, d_model=24, n_head=3, n_ctx=33, vocab_size=4096, tie_embeddings=False), 5),
    (ModelShape(n_layer=2, d_model=16, n_head=1, n_ctx=64, vocab_size=4096, tie_embeddings=True), 7),
]


def plain_loss(model: Transformer, idx, targets, reduction="mean"):
    logits = model(idx)
    out = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)
    return out.view_as(targets) if reduction == "none" else out


def grads(model: Transformer, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("shape,batch", SHAPES, ids=lambda x: f"V{x.vocab_size}-tied{x.tie_embeddings}"
                         if isinstance(x, ModelShape) else str(x))  # fmt: skip
def test_fused_loss_matches_plain_cross_entropy(shape, batch):
    torch.manual_seed(0)
    model = Transformer(shape)
    with torch.no_grad():  # larger weights than the init, so the softmax is far from uniform
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    idx = torch.randint(0, shape.vocab_size, (batch, shape.n_ctx + 1))
    x, y = idx[:, :-1], idx[:, 1:]

    fast = model.loss(x, y)
    ref = plain_loss(model, x, y)
    assert fast.shape == ref.shape == ()
    assert type(fast.grad_fn).__name__ == "_LinearCrossEntropyBackward"  # the fused path, not the fallback
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)

    # gradients of every parameter, with an upstream factor as under gradient accumulation (loss / n_micro)
    g_fast = grads(model, model.loss(x, y) / 3)
    g_ref = grads(model, plain_loss(model, x, y) / 3)
    assert g_fast.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)
    assert g_ref["tok_emb.weight"].abs().sum() > 0


@pytest.mark.parametrize("shape,batch", SHAPES[1:], ids=["untied", "tied"])
def test_per_position_and_no_grad_losses_match(shape, batch):
    torch.manual_seed(1)
    model = Transformer(shape)
    idx = torch.randint(0, shape.vocab_size, (batch, shape.n_ctx + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    with torch.no_grad():
        per_pos = model.loss(x, y, reduction="none")
        ref = plain_loss(model, x, y, reduction="none")
        mean = model.loss(x, y)
        total = linear_cross_entropy(model.hidden(x).flatten(0, 1), model.unembedding_weight, y.flatten(), "sum")
    assert per_pos.shape == y.shape
    torch.testing.assert_close(per_pos, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, ref.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, ref.sum(), rtol=1e-5, atol=1e-4)
    # with gradients, 'none' falls back to the plain path and still back-propagates
    g = grads(model, model.loss(x, y, reduction="none")[:, -1].sum())
    g_ref = grads(model, plain_loss(model, x, y, reduction="none")[:, -1].sum())
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_chunking_covers_the_shapes():
    chunks = [-(-batch * s.n_ctx // _chunk_rows(s.vocab_size)) for s, batch in SHAPES]
    assert chunks == [1, 2, 4]
    assert all(batch * s.n_ctx % _chunk_rows(s.vocab_size) for s, batch in SHAPES[1:])


def test_forward_still_returns_logits_and_targets_give_the_loss():
    shape = ModelShape(n_layer=1, d_model=16, n_head=2, n_ctx=8, vocab_size=50)
    model = Transformer(shape)
    idx = torch.randint(0, 50, (2, 9))
    assert model(idx[:, :-1]).shape == (2, 8, 50)
    torch.testing.assert_close(model(idx[:, :-1], idx[:, 1:]), model.loss(idx[:, :-1], idx[:, 1:]))
