import math
import random

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scalinglab import accounting as acc
from scalinglab.accounting import ModelShape
from scalinglab.errors import ConfigError
from scalinglab.training.model import Transformer


def random_shapes(k: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(k):
        n_head = rng.choice([1, 2, 3, 4, 8])  # head sizes 4, 8, 16: even, as rotary positions need
        d_attn = n_head * rng.choice([4, 8, 16])
        yield ModelShape(
            n_layer=rng.randint(1, 5), d_model=rng.choice([16, 24, 40, 64, 96]), n_head=n_head,
            n_ctx=rng.choice([8, 32, 128]), vocab_size=rng.randint(50, 700), d_ff=rng.randint(8, 300),
            d_attn=d_attn, tie_embeddings=rng.random() < 0.5, family=rng.choice(["gpt2", "llama"]),
        )  # fmt: skip


@pytest.mark.parametrize("shape", list(random_shapes(24)), ids=lambda s: f"{s.family}L{s.n_layer}d{s.d_model}f{s.d_ff}")
def test_n_matches_model_parameters(shape):
    model = Transformer(shape)
    assert acc.n_params(shape) == sum(p.numel() for p in model.non_embedding_parameters())
    # N is everything but the embeddings, counted from the model's own tensors by name
    embeddings = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("tok_emb", "pos_emb", "unembed")))
    assert acc.n_params(shape) == sum(p.numel() for p in model.parameters()) - embeddings
    assert acc.n_params_total(shape) == sum(p.numel() for p in model.parameters())
    assert acc.n_params_total(shape) == acc.n_params(shape) + acc.n_params_embed(shape)


@pytest.mark.parametrize("n_layer,d_model", [(2, 512), (12, 768), (24, 1024), (48, 1600), (6, 4096)])
def test_kaplan_approximation_within_one_percent(n_layer, d_model):
    shape = ModelShape(n_layer=n_layer, d_model=d_model, n_head=8, n_ctx=1024, vocab_size=50257)
    assert acc.n_params_kaplan(shape) == 12 * n_layer * d_model**2
    assert abs(acc.n_params(shape) / acc.n_params_kaplan(shape) - 1) < 0.01


@pytest.mark.parametrize(
    "shape",
    [ModelShape(2, 64, 4, 128, 512), ModelShape(3, 96, 6, 64, 1000, d_ff=200),
     ModelShape(1, 128, 2, 256, 300, d_attn=64), ModelShape(4, 48, 3, 96, 777, tie_embeddings=False),
     ModelShape(2, 64, 4, 128, 512, family="llama"), ModelShape(3, 96, 6, 64, 1000, d_ff=200, family="llama"),
     ModelShape(2, 48, 3, 96, 777, tie_embeddings=False, family="llama")],
    ids=lambda s: f"{s.family}L{s.n_layer}d{s.d_model}",
)  # fmt: skip
def test_exact_forward_flop_matches_flop_counter(shape):
    model = Transformer(shape)
    idx = torch.randint(0, shape.vocab_size, (2, shape.n_ctx))
    # the math backend decomposes attention into matmuls the counter sees (fused CPU kernels are not counted)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx)
    measured = counter.get_total_flops() / idx.numel()
    assert abs(measured / acc.forward_flop_per_token_exact(shape) - 1) < 0.02
    # Kaplan's count leaves out the unembedding: it must be below the exact count by about 2 d_model vocab
    assert acc.forward_flop_per_token_kaplan(shape) < acc.forward_flop_per_token_exact(shape)


def test_training_flop_and_pf_days():
    shape = ModelShape(12, 768, 12, 1024, 50257)
    n = acc.n_params(shape)
    assert acc.training_flop_6nd(n, 1e9) == pytest.approx(6 * n * 1e9)
    assert acc.training_flop_exact(shape, 1e9) == pytest.approx(3 * acc.forward_flop_per_token_exact(shape) * 1e9)
    assert acc.to_pf_days(8.64e19) == pytest.approx(1.0)
    assert acc.from_pf_days(acc.to_pf_days(1.234e21)) == pytest.approx(1.234e21)


def test_llama_block_counts_and_the_comparable_size_convention():
    d = 96
    g, ll = ModelShape(4, d, 4, 64, 500), ModelShape(4, d, 4, 64, 500, family="llama")
    assert ll.d_ff == 256 and g.d_ff == 384  # round(8 d / 3) and 4 d
    model = Transformer(ll)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("bias") for n in names) and not any(n.startswith("pos_emb") for n in names)
    assert model.blocks[0].fc.weight.shape == (2 * ll.d_ff, d)  # gate and up, one matrix
    # SwiGLU's three matrices at 8/3 d hold GPT-2's two at 4 d exactly when 3 divides d: N differs by the norms only
    assert acc.n_params_kaplan(ll) == acc.n_params_kaplan(g) == 12 * 4 * d**2
    # gpt2's extra: per layer the biases of QKV, proj, fc, fc_out and of its two LayerNorms; ln_f's bias
    assert acc.n_params(g) - acc.n_params(ll) == 4 * ((3 * d + d + 4 * d + d) + 2 * d) + d
    assert acc.n_params_embed(g) - acc.n_params_embed(ll) == 64 * d  # no position table
    assert acc.rotary_flop_per_token(ll) == 6 * 4 * d and acc.rotary_flop_per_token(g) == 0
    with pytest.raises(ConfigError, match="even head size"):
        ModelShape(2, 60, 4, 32, 100, family="llama")
    with pytest.raises(ConfigError, match="family"):
        ModelShape(2, 64, 4, 32, 100, family="mamba")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("target", [3e4, 2e5, 1e6, 1e7, 8.5e7])
def test_shape_for_n_hits_target(target, family):
    s = acc.shape_for_n(target, n_ctx=128, vocab_size=4096, aspect_ratio=32, family=family)
    assert s.family == family
    assert abs(math.log(acc.n_params(s) / target)) < math.log(1.25)
    assert s.d_model % s.n_head == 0
    s2 = acc.shape_for_n(target, n_ctx=128, vocab_size=4096, n_layer=4, family=family)
    assert s2.n_layer == 4 and abs(math.log(acc.n_params(s2) / target)) < math.log(1.3)


def test_bad_shapes_raise_config_error():
    with pytest.raises(ConfigError, match="does not divide"):
        ModelShape(2, 64, 5, 128, 100)
    with pytest.raises(ConfigError, match="positive integer"):
        ModelShape(0, 64, 4, 128, 100)
