"""Parameter and FLOP accounting: where N is counted. Pure functions, no torch.

Kaplan et al. 2020 state their laws in N, the non-embedding parameters, and C = 6 N B S. Their Table 1 counts,
per layer, 2 d_model (2 d_attn + d_ff) matrix parameters (QKV, output projection, two MLP matrices), which gives
N ~ 12 n_layer d_model^2 for d_attn = d_model and d_ff = 4 d_model. `n_params` here is the *exact* count of the
model built by model.py (biases and LayerNorm gains included, embeddings and positions excluded); the
approximation is `n_params_kaplan`.

Two families (`ModelShape.family`): "gpt2", Kaplan's (pre-LayerNorm, biased linears, GELU MLP of two matrices,
learned positions), and "llama" (RMSNorm gains only, no biases, a SwiGLU MLP of three matrices d_model x d_ff,
rotary positions: no position parameters). Convention for comparable sizes: a llama block's default d_ff is
round(8 d_model / 3), so its three MLP matrices hold ~ the 8 d_model^2 of the GPT-2 MLP's two at d_ff = 4 d_model
and N ~ 12 n_layer d_model^2 in both families (`LLAMA_D_FF_RATIO`).

FLOP: Kaplan's forward cost per token is 2N + 2 n_layer n_ctx d_attn (Table 1). `forward_flop_per_token_exact`
counts every matrix product the model performs, including the unembedding (2 d_model n_vocab) and both attention
products (scores Q K^T and the weighted sum A V, each 2 n_ctx d_attn per layer, computed densely). Leaving out
the unembedding is one of the reasons Kaplan's and Chinchilla's compute-optimal exponents differ (Porian et al.
2024). Training costs 3x the forward pass (backward = 2x forward). For llama, the MLP is three matrix products
(gate, up, down: 2 * 3 d_model d_ff); rotary positions cost 3 FLOP per rotated element of Q and K (6 d_attn per
layer and token, `rotary_flop_per_token`), elementwise like LayerNorm, GELU and SwiGLU's product and, like them,
left out of the exact count (they are O(d) per token; torch's FLOP counter does not count them either).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from scalinglab.errors import ConfigError

from scalinglab.published import PF_DAY  # noqa: E402,F401


FAMILIES = ("gpt2", "llama")
LLAMA_D_FF_RATIO = 8 / 3  # SwiGLU's three matrices at 8/3 d_model hold what GPT-2's two hold at 4 d_model


def default_d_ff(d_model: int, family: str = "gpt2") -> int:
    """The MLP width a shape gets when d_ff is not given: 4 d_model (gpt2), round(8 d_model / 3) (llama)."""
    return 4 * d_model if family == "gpt2" else max(1, int(round(LLAMA_D_FF_RATIO * d_model)))


@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only Transformer. d_attn defaults to d_model; d_ff to 4 d_model (gpt2) or
    round(8 d_model / 3) (llama: SwiGLU's three matrices, see the module docstring)."""

    n_layer: int
    d_model: int
    n_head: int
    n_ctx: int
    vocab_size: int
    d_ff: int | None = None
    d_attn: int | None = None
    tie_embeddings: bool = True
    family: str = "gpt2"  # gpt2 (Kaplan) | llama (RMSNorm, SwiGLU, rotary, no biases)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ConfigError(f"model shape: family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.d_ff is None and isinstance(self.d_model, int):
            object.__setattr__(self, "d_ff", default_d_ff(self.d_model, self.family))
        if self.d_attn is None:
            object.__setattr__(self, "d_attn", self.d_model)
        for name in ("n_layer", "d_model", "n_head", "n_ctx", "vocab_size", "d_ff", "d_attn"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model shape: {name} must be a positive integer, got {value!r}")
        if self.d_attn % self.n_head:
            raise ConfigError(
                f"model shape: n_head={self.n_head} does not divide d_attn={self.d_attn}; "
                "choose n_head among the divisors of d_attn"
            )
        if self.family == "llama" and self.d_head % 2:
            raise ConfigError(f"model shape: rotary positions (family llama) need an even head size, "
                              f"got d_attn / n_head = {self.d_head}")

    @property
    def d_head(self) -> int:
        return self.d_attn // self.n_head

    @property
    def aspect_ratio(self) -> float:
        return self.d_model / self.n_layer

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "ModelShape":
        return replace(self, **changes)


# ---------------------------------------------------------------------------------------------- parameters


def n_params_layer(shape: ModelShape) -> int:
    """Exact parameters of one Transformer block: gpt2 (two LayerNorms, biased linears, two MLP matrices) or
    llama (two RMSNorm gains, no biases, SwiGLU's gate, up and down matrices)."""
    d, a, f = shape.d_model, shape.d_attn, shape.d_ff
    if shape.family == "llama":
        return 2 * d + d * 3 * a + a * d + 3 * d * f
    ln = 2 * (2 * d)  # two LayerNorms, gain and bias
    attn = d * 3 * a + 3 * a + a * d + d  # QKV and output projection, with biases
    mlp = d * f + f + f * d + d
    return ln + attn + mlp


def n_params(shape: ModelShape) -> int:
    """N: exact non-embedding parameters (every block plus the final norm: LayerNorm gain and bias, RMSNorm gain)."""
    return shape.n_layer * n_params_layer(shape) + (2 if shape.family == "gpt2" else 1) * shape.d_model


def n_mlp_matrices(shape: ModelShape) -> int:
    """Matrices d_model x d_ff in one MLP: 2 (gpt2: in, out), 3 (llama: gate, up, down)."""
    return 2 if shape.family == "gpt2" else 3


def n_params_kaplan(shape: ModelShape) -> int:
    """Kaplan's approximation: the blocks' matrices only, 2 d_model n_layer (2 d_attn + d_ff) for gpt2
    (= 12 n_layer d_model^2 for standard shapes), d_model n_layer (4 d_attn + 3 d_ff) for llama."""
    return shape.d_model * shape.n_layer * (4 * shape.d_attn + n_mlp_matrices(shape) * shape.d_ff)


def n_params_embed(shape: ModelShape) -> int:
    """Token and position embeddings (none for llama: rotary), plus the unembedding when it is not tied."""
    tok = shape.vocab_size * shape.d_model
    pos = shape.n_ctx * shape.d_model if shape.family == "gpt2" else 0
    return tok + pos + (0 if shape.tie_embeddings else tok)


def n_params_total(shape: ModelShape) -> int:
    return n_params(shape) + n_params_embed(shape)


# ---------------------------------------------------------------------------------------------- FLOP


def forward_flop_per_token_kaplan(shape: ModelShape) -> float:
    """Kaplan Table 1: C_forward = 2N + 2 n_layer n_ctx d_attn."""
    return 2.0 * n_params_kaplan(shape) + 2.0 * shape.n_layer * shape.n_ctx * shape.d_attn


def forward_flop_per_token_exact(shape: ModelShape) -> float:
    """Every multiply-add of the forward pass, counted as 2 FLOP, averaged per token of a full context:
    QKV, attention scores and reduction (dense), output projection, MLP (two matrices, three for llama), and the
    unembedding. Additions of biases, LayerNorm / RMSNorm, GELU / SwiGLU's product, rotary and softmax are O(d) per
    token and left out, as every FLOP counter does."""
    d, a, f, T = shape.d_model, shape.d_attn, shape.d_ff, shape.n_ctx
    per_layer = 2 * (d * 3 * a) + 2 * (a * d) + 2 * (n_mlp_matrices(shape) * d * f) + 2 * (2 * T * a)
    return float(shape.n_layer * per_layer + 2 * d * shape.vocab_size)


def rotary_flop_per_token(shape: ModelShape) -> float:
    """Rotary positions' elementwise cost (llama; 0 for gpt2): q * cos + rotate(q) * sin for Q and K, 3 FLOP per
    element, 6 d_attn per layer and token. Not in `forward_flop_per_token_exact` (O(d) terms are left out)."""
    return 0.0 if shape.family == "gpt2" else float(6 * shape.n_layer * shape.d_attn)


def training_flop_6nd(n: int | float, tokens: int | float) -> float:
    """Kaplan's C = 6 N D (with D = B S tokens)."""
    return 6.0 * float(n) * float(tokens)


def training_flop_exact(shape: ModelShape, tokens: int | float) -> float:
    """3 x exact forward FLOP per token x tokens (backward costs twice the forward)."""
    return 3.0 * forward_flop_per_token_exact(shape) * float(tokens)


def to_pf_days(flop: float) -> float:
    return flop / PF_DAY


def from_pf_days(pf_days: float) -> float:
    return pf_days * PF_DAY


# ---------------------------------------------------------------------------------------------- memory


def train_memory(shape: ModelShape, micro_batch: int, optimizer: str = "adamw", bytes_per_value: int = 4) -> dict:
    """An estimate, in bytes, of what training `shape` holds at once, before any of it is allocated: the
    parameters, their gradients, the optimizer state (AdamW: two moments per parameter; Adafactor: at most one),
    and the activations kept for the backward pass of one micro-batch of `micro_batch` sequences. Per token and
    layer the blocks keep about 16 d_model + 3 d_attn + 2 d_ff values (LayerNorm inputs and outputs, Q K V, the
    attention output, the MLP's input and activation), plus the attention weights (n_head n_ctx) where a fused
    kernel does not avoid them; the loss keeps a chunk of logits (counted in full: 2 vocab values per token). An
    upper estimate of float32 training, good to refuse a run that cannot fit, not to pack memory tightly."""
    p = n_params_total(shape)
    tokens = micro_batch * shape.n_ctx
    per_token = shape.n_layer * (16 * shape.d_model + 3 * shape.d_attn + 2 * shape.d_ff + shape.n_head * shape.n_ctx)
    per_token += 2 * shape.vocab_size
    parts = {
        "parameters": p * bytes_per_value,
        "gradients": p * bytes_per_value,
        "optimizer": (2 if optimizer == "adamw" else 1) * p * bytes_per_value,
        "activations": tokens * per_token * bytes_per_value,
    }
    return {**parts, "total": sum(parts.values())}


def fmt_bytes(n: float) -> str:
    """1.5 GB-style (powers of 1000)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


# ---------------------------------------------------------------------------------------------- shapes from N


def shape_for_n(
    target_n: float,
    *,
    n_ctx: int,
    vocab_size: int,
    aspect_ratio: float | None = None,
    n_layer: int | None = None,
    d_head: int = 64,
    min_d_head: int = 8,
    d_ff_ratio: float | None = None,
    multiple_of: int = 8,
    tie_embeddings: bool = True,
    family: str = "gpt2",
) -> ModelShape:
    """The shape of `family` whose exact N is closest to `target_n` under a depth rule: either a fixed `n_layer`
    or a fixed aspect ratio d_model / n_layer (Kaplan's models use ~ 40-100). d_model is a multiple of
    `multiple_of`; heads are d_model / d_head (smaller heads for narrow models, never below `min_d_head`);
    d_ff = d_ff_ratio d_model (default 4 for gpt2, 8/3 for llama: see the module docstring)."""
    if family not in FAMILIES:
        raise ConfigError(f"shape_for_n: family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if d_ff_ratio is None:
        d_ff_ratio = 4.0 if family == "gpt2" else LLAMA_D_FF_RATIO
    n_mlp = 2 if family == "gpt2" else 3
    if (aspect_ratio is None) == (n_layer is None):
        raise ConfigError("shape_for_n: give exactly one of aspect_ratio or n_layer")
    if target_n <= 0:
        raise ConfigError(f"shape_for_n: target N must be positive, got {target_n}")

    def make(layers: int, d: int) -> ModelShape:
        dh = d_head if d % d_head == 0 and d >= d_head else max(min_d_head, math.gcd(d, d_head))
        while d % dh:
            dh //= 2
        return ModelShape(
            n_layer=layers,
            d_model=d,
            n_head=d // dh,
            n_ctx=n_ctx,
            vocab_size=vocab_size,
            d_ff=int(round(d_ff_ratio * d)),
            tie_embeddings=tie_embeddings,
            family=family,
        )

    best = None
    for layers in ([n_layer] if n_layer is not None else range(1, 129)):
        # d from (4 + n_mlp r) L d^2 ~ N (12 L d^2 for standard shapes), then search multiples around it
        d0 = math.sqrt(target_n / ((4 + n_mlp * d_ff_ratio) * layers))
        for k in range(max(1, int(d0 / multiple_of) - 2), int(d0 / multiple_of) + 3):
            d = k * multiple_of
            if aspect_ratio is not None and abs(math.log(d / layers / aspect_ratio)) > math.log(2.0):
                continue
            s = make(layers, d)
            err = abs(math.log(n_params(s) / target_n))
            if aspect_ratio is not None:
                err += 0.5 * abs(math.log(s.aspect_ratio / aspect_ratio))  # prefer the stated aspect ratio
            if best is None or err < best[0]:
                best = (err, s)
    if best is None:
        raise ConfigError(f"shape_for_n: no shape near N={target_n:.3g} with aspect ratio {aspect_ratio}")
    return best[1]
