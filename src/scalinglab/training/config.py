"""RunConfig: everything that defines one training run, and nothing else.

A run is a pure function of its config (and the prepared data it names): the run id is a hash of the config's
defining fields, so the same config always maps to the same run in a store. Defaults follow Kaplan et al. 2020
scaled down: AdamW, linear warm-up then cosine decay to zero, a fixed token budget, the LR rule of eq. D.1.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from scalinglab import accounting
from scalinglab.accounting import ModelShape
from scalinglab.data.shards import dataset_fingerprint
from scalinglab.errors import ConfigError
from scalinglab.training.schedule import DECAY_SHAPES, SCHEDULES, cosine_lr, decay_start, wsd_lr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Fields that do not change what is computed (where and how fast it runs): left out of the run id.
_NON_DEFINING = {"name", "device", "threads", "compile", "checkpoint_every_s"}
# Fields added after stores existed: left out of the id while they hold the value every earlier run had (unset, a
# gpt2 model, float32 arithmetic), so existing runs keep their ids.
_OPTIONAL_LATER = {"warmup_tokens": None, "schedule_tokens": None, "precision": "fp32", "family": "gpt2",
                   "schedule": "cosine", "decay_fraction": 0.2, "decay_shape": "1-sqrt", "cooldowns": None}
PRECISIONS = ("fp32", "bf16", "auto")


def kaplan_lr(n: float) -> float:
    """Kaplan eq. D.1: LR(N) ~ 0.003239 - 0.0001395 log(N), the learning rate they used across model sizes."""
    return 0.003239 - 0.0001395 * math.log(n)


@dataclass
class RunConfig:
    # data
    data: str = ""  # a prepared dataset directory (scalinglab data prepare)
    d_unique: int | None = None  # train on the first D_unique tokens of the training stream (None: all)
    # shape
    n_layer: int = 2  # Transformer blocks
    d_model: int = 64  # residual stream width
    n_head: int = 4  # attention heads (divides d_attn)
    n_ctx: int = 128  # context length in tokens
    d_ff: int | None = None  # MLP width; default 4 d_model (gpt2), round(8 d_model / 3) (llama)
    d_attn: int | None = None  # default d_model
    tie_embeddings: bool = True  # unembedding = token embedding (an untied one counts as embedding, not N)
    family: str = "gpt2"  # gpt2 (Kaplan: LayerNorm, GELU, learned positions) | llama (RMSNorm, SwiGLU, rotary)
    # budget and batch
    tokens: int = 2_000_000  # training token budget D = B S; steps S = tokens // B
    batch_size: int = 32  # sequences per optimizer step; B = batch_size * n_ctx tokens
    micro_batch_size: int | None = None  # gradient accumulation when smaller than batch_size
    # optimizer
    optimizer: str = "adamw"  # adamw | adafactor
    lr: float | None = None  # peak LR; None = Kaplan's rule by N (eq. D.1)
    lr_scale: float = 1.0  # multiplies the rule's (or the given) LR; LR sweeps vary this
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.1  # decoupled, on matrices only (not biases, gains, embeddings)
    warmup_steps: int | None = None  # default: 5% of the steps (Kaplan: 3000 of 250k, i.e. ~1%, at far more steps)
    warmup_tokens: int | None = None  # warm-up given in tokens (rounded up to steps); wins over warmup_steps
    schedule_tokens: int | None = None  # cosine horizon in tokens, fixed across runs (None: the run's own length)
    min_lr_frac: float = 0.0  # the schedule decays to min_lr_frac * peak (Kaplan: to zero)
    schedule: str = "cosine"  # cosine (warm-up, cosine decay) | wsd (warm-up, stable, decay: schedule.py)
    decay_fraction: float = 0.2  # wsd: the share of the updates in the final decay (Hagele et al. 2024: ~20%)
    decay_shape: str = "1-sqrt"  # wsd: the decay's shape, 1-sqrt | linear | cosine
    # wsd: budgets (tokens, or fractions <= 1 of `tokens`) that share this run's stable phase: the stable phase
    # trains once, to the last decay start, and each budget's cooldown branches from it as its own run
    cooldowns: list | None = None
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    # evaluation
    n_evals: int = 16  # validation and test evaluations at log-spaced steps, plus the last step
    eval_tokens: int = 65_536  # tokens per evaluation set (fixed windows spread over every document of it)
    eval_sets: list[str] | None = None  # None: 'test' and every transfer set of the dataset
    train_log_every: int = 10  # train-loss points every k steps (mean over those steps)
    noise_scale: bool = False  # estimate the gradient noise scale B_simple at each evaluation
    # system
    seed: int = 0  # initialisation and data order
    device: str = "auto"  # auto | cpu | cuda | cuda:K
    threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)
    compile: bool = False  # torch.compile the model
    precision: str = "auto"  # fp32 | bf16 (matmuls and attention in bfloat16, fp32 weights) | auto (bf16 if native)
    checkpoint_every_s: float = 60.0  # seconds between checkpoints (a killed run resumes from the last)
    name: str = ""  # a label in the store (not part of the run id)
    extra: dict = field(default_factory=dict)  # free-form labels a study attaches (axes values); part of the id

    # ------------------------------------------------------------------------------------------ derived
    def __post_init__(self):
        for f in fields(self):  # each value checked against its field's type; 2e6 from TOML becomes an int
            setattr(self, f.name, field_value(f.name, getattr(self, f.name)))
        self.validate()
        if self.precision == "auto":  # resolved here, once: the run id and the store record what is computed
            from scalinglab.training._runtime import auto_precision

            self.precision = auto_precision(self.device, self.d_model)

    @property
    def shape_without_vocab(self) -> dict:
        return dict(
            n_layer=self.n_layer,
            d_model=self.d_model,
            n_head=self.n_head,
            n_ctx=self.n_ctx,
            d_ff=self.d_ff,
            d_attn=self.d_attn,
            tie_embeddings=self.tie_embeddings,
            family=self.family,
        )

    def shape(self, vocab_size: int) -> ModelShape:
        return ModelShape(vocab_size=vocab_size, **self.shape_without_vocab)

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.n_ctx

    @property
    def steps(self) -> int:
        """Updates this run trains: its budget in whole batches, or with cooldowns its stable phase (up to the last
        cooldown's decay start)."""
        if self.cooldowns:
            return max(decay_start(t // self.batch_tokens, self.decay_fraction) for t in self._budget_tokens())
        return max(1, self.tokens // self.batch_tokens)

    def _budget_tokens(self) -> list[int]:
        return sorted({int(round(c * self.tokens)) if c <= 1 else int(c) for c in self.cooldowns})

    def _budgets(self) -> list["RunConfig"]:
        """The cooldowns as run configs of their own budget (warm-up not yet fixed)."""
        return [dataclasses.replace(self, tokens=t, cooldowns=None) for t in self._budget_tokens()]

    def branches(self) -> list[tuple["RunConfig", int]]:
        """(config, branch step) of each cooldown: the config of a run trained alone to that budget with this WSD
        schedule and this run's warm-up (so its run id is that run's), and the update count it branches at (its
        decay start). Empty without cooldowns."""
        if not self.cooldowns:
            return []
        fixed = {} if self.warmup_steps is not None or self.warmup_tokens is not None else \
            {"warmup_steps": self.warmup}  # the trunk's warm-up, written out: every branch warms up the same
        out = []
        for b in self._budgets():
            b = dataclasses.replace(b, **fixed, name=f"{self.name} cooldown {b.tokens:,}" if self.name else "")
            out.append((b, decay_start(b.steps, b.decay_fraction)))
        return out

    def lr_at(self, step: int, peak: float) -> float:
        """The LR of update number `step` (0-based) for this run's schedule and the given peak. A run with
        cooldowns (the stable phase) holds the peak after its warm-up: its branches decay."""
        if self.schedule == "wsd":
            return wsd_lr(step, peak, self.warmup, self.steps, 0.0 if self.cooldowns else self.decay_fraction,
                          self.decay_shape, self.min_lr_frac)
        return cosine_lr(step, peak, self.warmup, self.schedule_steps, self.min_lr_frac)

    def lr_schedule(self, peak: float) -> list[float]:
        """The LR of every update of the run (element i is update i + 1's): what the curve law reads."""
        return [self.lr_at(i, peak) for i in range(self.steps)]

    @property
    def warmup(self) -> int:
        if self.warmup_tokens is not None:
            return max(1, -(-self.warmup_tokens // self.batch_tokens))
        return self.warmup_steps if self.warmup_steps is not None else max(1, int(round(0.05 * self.steps)))

    @property
    def schedule_steps(self) -> int:
        """Updates the cosine spans: the run's own length, or a fixed horizon (Kaplan: one schedule for all runs,
        so a run that stops early never finishes its decay)."""
        return self.steps if self.schedule_tokens is None else max(1, self.schedule_tokens // self.batch_tokens)

    def budget_notes(self) -> list[str]:
        """What the run trains that differs from what its config asks: a token budget rounded to whole batches
        (below one batch it becomes one step), fewer steps than its warm-up (the LR never reaches its peak)."""
        notes = []
        trained = self.steps * self.batch_tokens
        if self.tokens < self.batch_tokens:
            notes.append(f"tokens={self.tokens:,} is below one batch ({self.batch_tokens:,} tokens): it trains one "
                         f"step, D={trained:,}")
        elif trained != self.tokens and abs(trained - self.tokens) > 0.01 * self.tokens:
            notes.append(f"tokens={self.tokens:,} rounds down to {self.steps:,} whole batches: D={trained:,}")
        if self.steps < self.warmup:
            notes.append(f"{self.steps:,} steps, fewer than its {self.warmup:,} warm-up steps: the learning rate "
                         "never reaches its peak")
        return notes

    def peak_lr(self, n: int) -> float:
        """The effective peak LR of a model of N = n: the given `lr` (None: Kaplan's rule at N) times lr_scale.
        One meaning per place: the config's `lr` is the given peak (or None), the runs table's `lr` column is this
        effective peak (computed once per run, by `describe`, which the trainer reads), and a curve point's `lr`
        is the scheduled value at its step."""
        return (self.lr if self.lr is not None else kaplan_lr(n)) * self.lr_scale

    def validate(self) -> None:
        ints = ["n_layer", "d_model", "n_head", "n_ctx", "tokens", "batch_size", "n_evals", "eval_tokens"]
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"run config: {name} must be a positive integer, got {v!r}")
        ModelShape(vocab_size=1, **self.shape_without_vocab)  # shape checks (heads divide d_attn, ...)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"run config: precision must be 'fp32', 'bf16' or 'auto', got {self.precision!r}")
        if self.optimizer not in ("adamw", "adafactor"):
            raise ConfigError(f"run config: optimizer must be 'adamw' or 'adafactor', got {self.optimizer!r}")
        if self.micro_batch_size is not None and (
            self.micro_batch_size < 1 or self.batch_size % self.micro_batch_size
        ):
            raise ConfigError(
                f"run config: micro_batch_size={self.micro_batch_size} must divide batch_size={self.batch_size}"
            )
        if self.noise_scale and self.batch_size < 2:
            raise ConfigError("run config: noise_scale needs batch_size >= 2 (it compares two batch sizes)")
        if self.lr is not None and not (self.lr > 0):
            raise ConfigError(f"run config: lr must be positive, got {self.lr}")
        for name in ("warmup_tokens", "schedule_tokens"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"run config: {name} must be a positive integer (tokens) or unset, got {v!r}")
        if not (0 <= self.min_lr_frac <= 1):
            raise ConfigError(f"run config: min_lr_frac must be in [0, 1], got {self.min_lr_frac}")
        self._validate_schedule()
        if self.d_unique is not None and self.d_unique < self.n_ctx + 2:
            raise ConfigError(f"run config: d_unique={self.d_unique} is smaller than one context window")

    def _validate_schedule(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"run config: schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.decay_shape not in DECAY_SHAPES:
            raise ConfigError(f"run config: decay_shape must be one of {', '.join(DECAY_SHAPES)}, got "
                              f"{self.decay_shape!r}")
        if not (0 < self.decay_fraction <= 1):
            raise ConfigError(f"run config: decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.schedule != "wsd":
            if self.cooldowns is not None:
                raise ConfigError("run config: cooldowns need schedule = \"wsd\" (a cosine run has no stable phase "
                                  "to branch from)")
            return
        if self.schedule_tokens is not None:
            raise ConfigError("run config: schedule_tokens (a cosine horizon) does not apply to schedule = \"wsd\"; "
                              "a WSD run decays over its own last decay_fraction")
        if self.cooldowns is not None:
            if not self.cooldowns or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0
                                             for c in self.cooldowns):
                raise ConfigError(f"run config: cooldowns must be a non-empty list of token budgets (or fractions "
                                  f"<= 1 of tokens), got {self.cooldowns!r}")
            budgets = self._budget_tokens()
            if budgets[-1] > self.tokens:
                raise ConfigError(f"run config: cooldown budget {budgets[-1]:,} is above tokens={self.tokens:,} "
                                  "(the family's longest budget)")
            if budgets[0] < self.batch_tokens:
                raise ConfigError(f"run config: cooldown budget {budgets[0]:,} is below one batch "
                                  f"({self.batch_tokens:,} tokens)")
            checks = [(t, decay_start(t // self.batch_tokens, self.decay_fraction)) for t in budgets]
        else:
            checks = [(self.tokens, decay_start(self.steps, self.decay_fraction))]
        for tokens, start in checks:
            if start < self.warmup:
                raise ConfigError(f"run config: the budget of {tokens:,} tokens starts its decay at update {start:,}, "
                                  f"before its warm-up of {self.warmup:,} updates ends; give a shorter warm-up, a "
                                  "larger budget or a smaller decay_fraction")

    # ------------------------------------------------------------------------------------------ identity, io
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "RunConfig":
        """A new config: this one with `changes` (checked as any config is; lists and dicts are copied)."""
        return RunConfig.from_dict({**self.to_dict(), **changes}, where="run config")

    def run_id(self) -> str:
        """A stable id: hash of every field that changes what the run computes."""
        return self._hash(_NON_DEFINING)

    def model_id(self) -> str:
        """The run id without the study's labels (`extra`): two runs with one model_id train the same model on the
        same budget, whatever their axes were called."""
        return self._hash(_NON_DEFINING | {"extra"})

    def _hash(self, leave_out: set) -> str:
        defining = {k: v for k, v in self.to_dict().items() if k not in leave_out
                    and not (k in _OPTIONAL_LATER and v == _OPTIONAL_LATER[k])}  # older runs keep their ids
        # the dataset by content, not by path: a moved or copied dataset keeps its runs' ids
        defining["data"] = dataset_fingerprint(self.data) or self.data
        blob = json.dumps(defining, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict, where: str = "run config") -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except ConfigError as exc:  # say where the bad value came from (a file, a spec's [base], one of its runs)
            msg = str(exc)
            raise ConfigError(f"{where}: {msg.removeprefix('run config: ')}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> "RunConfig":
        d = load_toml(path, "config file")
        return cls.from_dict(d.get("run", d), where=str(path))


@functools.cache
def field_kinds() -> dict[str, tuple[type, ...]]:
    """RunConfig's field types, read from its annotations once: (kinds..., NoneType when optional)."""
    import typing

    kinds = {}
    for name, hint in typing.get_type_hints(RunConfig).items():
        args = typing.get_args(hint)
        kinds[name] = tuple(typing.get_origin(a) or a for a in args) if args and typing.get_origin(hint) is not list \
            else (typing.get_origin(hint) or hint,)
    return kinds


def field_value(name: str, value, where: str = "run config", what: str = ""):
    """`value` as RunConfig field `name` holds it, or a ConfigError with one line: an integral float (TOML writes
    2e6 as one) becomes an int for an int field, an int is a float where a float is expected, and a bool is
    never a number. The one place a run config's values are type-checked (run configs, [base], axes)."""
    kinds = field_kinds()[name]
    if value is None and type(None) in kinds:
        return None
    for kind in kinds:
        if kind is int and not isinstance(value, bool):
            if isinstance(value, numbers.Integral):
                return int(value)
            if isinstance(value, numbers.Real) and float(value).is_integer():
                return int(value)
        elif kind is float and not isinstance(value, bool) and isinstance(value, numbers.Real):
            return value
        elif kind is str and isinstance(value, os.PathLike):
            return str(value)
        elif kind not in (int, float, type(None)) and isinstance(value, kind):
            return value
    expected = " or ".join(getattr(k, "__name__", str(k)) for k in kinds if k is not type(None))
    raise ConfigError(f"{where}: {what}{name} value {value!r} is not {expected}")


def load_toml(path: str | Path, what: str = "file") -> dict:
    """Parse a TOML file; a missing or malformed file is a ConfigError with one line."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: no such {what}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def describe(config: RunConfig, vocab_size: int) -> dict:
    """The runs-table columns known before training: shape, N, budget, FLOP. No torch: a study's driver
    registers its runs with this before any worker has started."""
    shape = config.shape(vocab_size)
    n = accounting.n_params(shape)
    tokens = config.steps * config.batch_tokens
    return dict(
        name=config.name,
        n_layer=shape.n_layer, d_model=shape.d_model, n_head=shape.n_head, d_ff=shape.d_ff, d_attn=shape.d_attn,
        n_ctx=shape.n_ctx, vocab_size=vocab_size,
        N=n, n_params_total=accounting.n_params_total(shape), n_params_embed=accounting.n_params_embed(shape),
        batch_size=config.batch_size, B=config.batch_tokens, S=config.steps, D=tokens, d_unique=config.d_unique,
        lr=config.peak_lr(n), precision=config.precision,
        C=accounting.training_flop_6nd(n, tokens), C_exact=accounting.training_flop_exact(shape, tokens),
    )  # fmt: skip
