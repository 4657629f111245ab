"""The reconcile study's plan (studies/reconcile*/plan.toml) and the study specs it expands into: the planning half
of Kaplan against Chinchilla (analysis/reconcile.py analyzes what these studies trained).

    plan, vocab = load_plan_and_vocab("plan.toml", data_dir)
    for name, spec in plan_specs(plan, vocab):     # (a/b) long runs, (c) long runs, (d) the grid, the LR sweep
        write_spec(spec, out / name)               # a study spec file, as `scalinglab study run` reads it
    spec, rule = tuned_spec(plan, vocab, runs)     # (e): the grid with each size's chosen LR, batch and beta2
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab import accounting, outdir
from scalinglab.accounting import ModelShape
from scalinglab.data.shards import TokenDataset
from scalinglab.errors import ConfigError
from scalinglab.training.config import load_toml

# Study names in the store: which runs serve which setting (the run roles of this study)
STUDY = {"kaplan": "reconcile-kaplan", "warmup": "reconcile-warmup", "cosine": "reconcile-cosine",
         "tune": "reconcile-tune", "tuned": "reconcile-tuned"}


# ------------------------------------------------------------------------------------------------ the plan


@dataclass
class ReconcilePlan:
    data: dict  # the [data] table every study shares
    sizes: list[dict]  # shapes: n_layer, d_model, n_head
    budgets: list[float]  # compute budgets (FLOP; 6ND in (a), exact from (b) on)
    n_ctx: int = 64
    batch_size: int = 32
    lr: float = 3e-3
    beta2: float = 0.95
    kaplan_warmup_tokens: int = 500_000  # (a), (b): one long warm-up for every size
    warmup_tokens_per_param: float = 1.0  # (c) on: warm-up of this many tokens per parameter
    tokens_per_param: tuple[float, float] = (1.0, 1000.0)  # a (size, budget) is trained when D/N lies in this range
    min_steps: int = 20  # ... and it has at least this many optimizer steps
    n_evals: int = 40  # evaluations along the long runs (log-spaced)
    eval_tokens: int = 16_384
    tune_budget: int = 2  # index of the budget the per-size sweep runs at
    tune: list[dict] = field(default_factory=lambda: [
        {"lr_scale": 2.0, "beta2": 0.95, "batch_size": 32}, {"lr_scale": 0.5, "beta2": 0.95, "batch_size": 32},
        {"lr_scale": 1.0, "beta2": 0.99, "batch_size": 16}, {"lr_scale": 2.0, "beta2": 0.99, "batch_size": 16}])
    base: dict = field(default_factory=dict)  # more RunConfig fields for every run (device, threads, ...)

    @classmethod
    def load(cls, path: str | Path) -> ReconcilePlan:
        raw = load_toml(path, "reconcile plan")
        where = str(path)
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw.get("plan", {})) - known)
        if unknown:
            raise ConfigError(f"{where} [plan]: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        kw = dict(raw.get("plan", {}))
        if "data" not in raw or "corpus" not in raw["data"]:
            raise ConfigError(f"{where}: a [data] table with a corpus is required")
        kw["data"] = raw["data"]
        kw["base"] = raw.get("base", {})
        if "tokens_per_param" in kw:
            kw["tokens_per_param"] = tuple(kw["tokens_per_param"])
        try:
            plan = cls(**kw)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if len(plan.sizes) < 5 or len(plan.budgets) < 4:
            raise ConfigError(f"{where}: give at least 5 sizes and 4 budgets (an IsoFLOP study needs them)")
        if sorted(plan.budgets) != list(plan.budgets) or min(plan.budgets) <= 0:
            raise ConfigError(f"{where}: budgets must be positive and increasing")
        if not 0 <= plan.tune_budget < len(plan.budgets):
            raise ConfigError(f"{where}: tune_budget must index one of the {len(plan.budgets)} budgets")
        return plan

    def shape(self, size: dict, vocab: int) -> ModelShape:
        return ModelShape(vocab_size=vocab, n_ctx=self.n_ctx, n_layer=size["n_layer"], d_model=size["d_model"],
                          n_head=size["n_head"])

    def flop_per_token(self, size: dict, vocab: int, exact: bool) -> float:
        sh = self.shape(size, vocab)
        return 3 * accounting.forward_flop_per_token_exact(sh) if exact else 6.0 * accounting.n_params(sh)

    def grid_tokens(self, size: dict, vocab: int, budget: float) -> int | None:
        """Tokens of the (size, budget) run with the cosine matched: exact FLOP = budget; None when D/N falls
        outside tokens_per_param or the run would be shorter than min_steps."""
        n = accounting.n_params(self.shape(size, vocab))
        bt = self.batch_size * self.n_ctx
        d = budget / self.flop_per_token(size, vocab, exact=True)
        lo, hi = self.tokens_per_param
        if not lo <= d / n <= hi or d < self.min_steps * bt:
            return None
        return round(d / bt) * bt

    def curve_tokens(self, size: dict, vocab: int) -> int:
        """A long run's length: far enough to reach every budget it takes part in, in either FLOP count."""
        n = accounting.n_params(self.shape(size, vocab))
        d_top = self.budgets[-1] / self.flop_per_token(size, vocab, exact=False)
        d = min(d_top, self.tokens_per_param[1] * n)
        bt = self.batch_size * self.n_ctx
        return max(self.min_steps, math.ceil(d / bt)) * bt


def _warmup(per_param: int, tokens: int) -> int:
    """Warm-up of settings (c)-(e): N tokens, but never more than a quarter of a (short) run."""
    return max(1, min(per_param, tokens // 4))


def _common(plan: ReconcilePlan) -> dict:
    return {"n_ctx": plan.n_ctx, "batch_size": plan.batch_size, "lr": plan.lr, "beta2": plan.beta2,
            "n_evals": plan.n_evals, "eval_tokens": plan.eval_tokens, "eval_sets": ["test"], **plan.base}


def _study(name: str, plan: ReconcilePlan, base: dict, axes: dict, note: str) -> dict:
    return {"study": {"name": name, "data": "data", "store": "study.sqlite", "description": note},
            "data": dict(plan.data), "base": base, "axes": [{"mode": "zip", **axes}]}


def plan_specs(plan: ReconcilePlan, vocab: int) -> list[tuple[str, dict]]:
    """The studies that need no results to be planned: (a/b) long runs, (c) long runs, (d) grid, the sweep."""
    sizes = [dict(s) for s in plan.sizes]
    horizon = max(plan.curve_tokens(s, vocab) for s in sizes)
    common = _common(plan)
    curve_tok = [plan.curve_tokens(s, vocab) for s in sizes]
    kaplan = _study(STUDY["kaplan"], plan, {**common, "warmup_tokens": plan.kaplan_warmup_tokens,
                                            "schedule_tokens": horizon},
                    {"model": sizes, "tokens": curve_tok},
                    "settings (a), (b): one long run per size, one fixed warm-up and one fixed cosine horizon")
    warm = [max(1, int(plan.warmup_tokens_per_param * accounting.n_params(plan.shape(s, vocab)))) for s in sizes]
    warmup = _study(STUDY["warmup"], plan, {**common, "schedule_tokens": horizon},
                    {"model": sizes, "tokens": curve_tok, "warmup_tokens": warm},
                    "setting (c): as (a) with a warm-up of N tokens")
    gm, gt, gw = [], [], []
    for b in plan.budgets:
        for s, w in zip(sizes, warm):
            t = plan.grid_tokens(s, vocab, b)
            if t is not None:
                gm.append(s), gt.append(t), gw.append(_warmup(w, t))
    cosine = _study(STUDY["cosine"], plan, dict(common), {"model": gm, "tokens": gt, "warmup_tokens": gw},
                    "setting (d): one run per (size, budget), the cosine matched to the run")
    tm, tt, tw, extra = [], [], [], {k: [] for k in ("lr_scale", "beta2", "batch_size")}
    for s, w in zip(sizes, warm):
        t = plan.grid_tokens(s, vocab, plan.budgets[plan.tune_budget])
        if t is None:
            continue
        for cand in plan.tune:
            tm.append(s), tt.append(t), tw.append(_warmup(w, t))
            for k, values in extra.items():
                values.append(cand.get(k, common[k] if k != "lr_scale" else 1.0))
    tune = _study(STUDY["tune"], plan, dict(common), {"model": tm, "tokens": tt, "warmup_tokens": tw, **extra},
                  "setting (e), part 1: the per-size sweep at one budget (the (d) run there is the baseline)")
    return [("1_kaplan.toml", kaplan), ("2_warmup.toml", warmup), ("3_cosine.toml", cosine), ("4_tune.toml", tune)]


def _key(d: dict) -> tuple:
    return (int(d["n_layer"]), int(d["d_model"]), int(d["n_head"]))


def tuning_rule(runs: pd.DataFrame) -> pd.DataFrame:
    """Per size: the sweep's candidates at the tuning budget (the (d) run there is the baseline), their final
    losses and the one chosen: the lowest final validation loss (the test loss only for data without a
    validation split), so the test split never chooses what it then measures. `runs` is the store's runs table."""
    def selection_loss(r) -> float:
        metrics = json.loads(r["final_metrics"]) if isinstance(r.get("final_metrics"), str) else {}
        return float(metrics.get("eval_losses", {}).get("validation", r["final_test_loss"]))

    tune = runs[(runs["study"] == STUDY["tune"]) & (runs["status"] == "done")]
    rows = []
    for _, r in tune.iterrows():
        cfg = json.loads(r["config"])
        rows.append({"n_layer": r["n_layer"], "d_model": r["d_model"], "n_head": r["n_head"], "N": r["N"],
                     "tokens": r["D"], "lr_scale": cfg.get("lr_scale", 1.0), "beta2": cfg.get("beta2"),
                     "batch_size": cfg.get("batch_size"), "loss": selection_loss(r), "run_id": r["run_id"]})
    if not rows:
        return pd.DataFrame(columns=["n_layer", "d_model", "n_head", "N", "tokens", "lr_scale", "beta2",
                                     "batch_size", "loss", "run_id", "chosen", "baseline"])
    cand = pd.DataFrame(rows)
    cos = runs[(runs["study"] == STUDY["cosine"]) & (runs["status"] == "done")]
    base_rows = []
    for (L, dm, nh, D), _ in cand.groupby(["n_layer", "d_model", "n_head", "tokens"]):
        m = cos[(cos["n_layer"] == L) & (cos["d_model"] == dm) & (cos["n_head"] == nh) & (cos["D"] == D)]
        for _, r in m.iterrows():
            cfg = json.loads(r["config"])
            base_rows.append({"n_layer": L, "d_model": dm, "n_head": nh, "N": r["N"], "tokens": D, "lr_scale": 1.0,
                              "beta2": cfg.get("beta2"), "batch_size": cfg.get("batch_size"),
                              "loss": selection_loss(r), "run_id": r["run_id"]})
    table = pd.concat([cand.assign(baseline=False), pd.DataFrame(base_rows).assign(baseline=True)],
                      ignore_index=True)
    best = table.groupby(["n_layer", "d_model", "n_head"])["loss"].idxmin()
    table["chosen"] = False
    table.loc[best.to_numpy(), "chosen"] = True
    return table.sort_values(["N", "loss"]).reset_index(drop=True)


def choice_for(rule: pd.DataFrame, n: float):
    """The chosen row of the tuning rule for a model of N = n: its own size's choice, else the choice of the
    nearest size swept (in log N); None without a sweep."""
    chosen = rule[rule["chosen"]]
    if chosen.empty:
        return None
    i = int(np.argmin(np.abs(np.log(chosen["N"].astype(float).to_numpy()) - math.log(n))))
    return chosen.iloc[i]


def tuned_spec(plan: ReconcilePlan, vocab: int, runs: pd.DataFrame) -> tuple[dict | None, pd.DataFrame]:
    """The (e) grid: every (size, budget) of (d) with the size's chosen hyper-parameters (a size the sweep did not
    reach takes the choice of the nearest size swept). Sizes whose choice is the baseline reuse their (d) runs."""
    rule = tuning_rule(runs)
    common = _common(plan)
    axes = {k: [] for k in ("model", "tokens", "warmup_tokens", "lr_scale", "beta2", "batch_size")}
    for b in plan.budgets:
        for s in plan.sizes:
            n = accounting.n_params(plan.shape(s, vocab))
            r = choice_for(rule, n)
            if r is None or bool(r["baseline"]):
                continue
            t = plan.grid_tokens(s, vocab, b)
            if t is None:
                continue
            bt = int(r["batch_size"]) * plan.n_ctx
            axes["model"].append(dict(s))
            axes["tokens"].append(max(plan.min_steps, round(t / bt)) * bt)
            axes["warmup_tokens"].append(_warmup(max(1, int(plan.warmup_tokens_per_param * n)), axes["tokens"][-1]))
            axes["lr_scale"].append(float(r["lr_scale"]))
            axes["beta2"].append(float(r["beta2"]))
            axes["batch_size"].append(int(r["batch_size"]))
    if not axes["model"]:
        return None, rule
    return _study(STUDY["tuned"], plan, dict(common), axes,
                  "setting (e), part 2: the grid of (d) with each size's chosen LR, batch and beta2"), rule


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def write_spec(spec: dict, path: str | Path, header: str = "") -> Path:
    """A study dict as a TOML spec file (the subset of TOML specs use)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for table in ("study", "data", "base"):
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.get(table, {}).items()]
        lines.append("")
    for g in spec.get("axes", []):
        lines.append("[[axes]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in g.items()]
    return outdir.write_text(Path(path), "\n".join(lines) + "\n")  # never over a file scalinglab did not write


def load_plan_and_vocab(plan_path: str | Path, data_dir: str | Path | None) -> tuple[ReconcilePlan, int]:
    plan = ReconcilePlan.load(plan_path)
    vocab = None
    if data_dir is not None and (Path(data_dir) / "meta.json").is_file():
        vocab = TokenDataset(data_dir).vocab_size
    if vocab is None:
        tok = str(plan.data.get("tokenizer", "bpe-4096"))
        if not tok.startswith("bpe-"):
            raise ConfigError(f"{plan_path}: prepare the data first to learn the vocabulary of {tok!r}")
        vocab = int(tok.split("-")[1])
    return plan, vocab
