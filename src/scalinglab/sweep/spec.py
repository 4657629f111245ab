"""Study specs: one TOML file that expands into the runs of a sweep.

A spec has a base run config and axes; every combination of axis values is one run::

    [study]
    name = "kaplan-n"
    data = "data/stdlib"            # a prepared dataset dir (relative to this file) ...
    # store = "kaplan-n.sqlite"     # default: <spec dir>/<name>.sqlite

    [data]                          # ... prepared with prepare_dataset() when the dir is missing
    corpus = "stdlib"
    tokenizer = "bpe-1024"
    max_bytes = 4_000_000

    [base]                          # RunConfig fields shared by every run
    n_ctx = 64
    tokens = 2e6

    [[axes]]                        # one group; groups combine as a product
    n_params = [1e4, 1e5, 1e6]      # target N; shapes from a depth rule (accounting.shape_for_n)
    depth = { aspect_ratio = 16 }   # or { n_layer = 2 }; optional d_ff_ratio, d_head
    [[axes]]
    seed = [0, 1]

Inside one group, `mode = "product"` (default) takes every combination and `mode = "zip"` pairs the lists
element by element (they must be equally long). `[axes]` as a single table is one group.

Axis keys: any RunConfig field (d_unique, tokens, batch_size, lr, lr_scale, seed, n_layer, d_model, n_head, ...),
plus the shape axes of Kaplan section 3.1:
  model        a list of explicit shapes (tables of n_layer, d_model, n_head, d_ff, d_attn)
  n_params     target N values, shaped by the group's `depth` rule (or an aspect_ratio / n_layer axis)
  aspect_ratio d_model / n_layer at fixed N (needs n_params)
  d_ff_ratio   d_ff / d_model (at fixed N with n_params, else d_ff = ratio * d_model)
and n_head varies the head count of whatever shape the other axes chose.

Each run carries its axis values as `extra` labels (part of its id), so analyses can group runs by them.

Budgets as branches: with `schedule = "wsd"` and `cooldowns = [...]` in [base] (token budgets, or fractions of
`tokens`), each run of the spec trains its stable phase once and every cooldown branches from it as a run of its
own (RunConfig.cooldowns): the budget axis of each size for the price of its longest run. The branches are
registered with the study (planned, with their parent and branch step, and the study's roles; the stable phase
itself gets no role, its end being undecayed), and a run is still to do while any of its branches is.

`[study] roles` says what the runs are for, and the store records it for every run (scalinglab.store.ROLES):
"sizes" (the size sweep), "subsets" (data subsets), "shape" (shapes at fixed N), "batch" (batch sizes), "lr",
"seeds" (replicates of size-sweep runs with other seeds: they measure the run-to-run noise, and stay out of the fits).
Without it the roles follow from the spec's own axes (d_unique -> subsets, batch_size -> batch, aspect_ratio /
d_ff_ratio / n_head -> shape, lr / lr_scale -> lr, otherwise sizes); the analysis never guesses them from budgets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path

from scalinglab.training.config import RunConfig, field_value, load_toml
from scalinglab.errors import ConfigError, DataError, ScalingLabError

STUDY_KEYS = {"name", "data", "store", "description", "roles"}
DATA_KEYS = {"corpus", "tokenizer", "max_bytes", "transfer", "seed", "test_fraction", "validation_fraction",
             "chunk_chars"}
TOP_KEYS = {"study", "data", "base", "axes"}
SHAPE_AXES = {"model", "n_params", "aspect_ratio", "d_ff_ratio"}
GROUP_SETTINGS = {"mode", "depth"}
DEPTH_KEYS = {"aspect_ratio", "n_layer", "d_ff_ratio", "d_head"}
MODEL_KEYS = {"n_layer", "d_model", "n_head", "d_ff", "d_attn", "tie_embeddings"}
_RUN_FIELDS = {f.name: f for f in fields(RunConfig)}
_NOT_AXES = {"data", "name", "extra"}  # set by the study itself


@dataclass
class Study:
    """An expanded study: its runs (RunConfig, in spec order) and where its data and store live."""

    name: str
    runs: list[RunConfig]
    store_path: Path
    data_dir: Path
    spec_path: Path | None = None
    data_recipe: dict | None = None  # the [data] table: how to prepare data_dir when it is missing
    axes: list[str] = field(default_factory=list)  # label names, in order
    description: str = ""
    # (kept, dropped) run names: axis values that resolve to the same model and budget (say two aspect ratios
    # that both round to one layer) are trained once, under the first name
    merged: list[tuple[str, str]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # what every run of this spec is for (store.ROLES)
    tracker: str | None = None  # live tracking of every run (tracking.TRACKERS): a run-time option, not the spec's
    tracker_dir: str | None = None  # where the tracker writes (default <store>.tracking/<tracker>)

    @property
    def checkpoint_root(self) -> Path:
        """Where runs of this study checkpoint: <store>.ckpt/<run_id>."""
        return Path(str(self.store_path) + ".ckpt")

    def run_ids(self, branches: bool = False) -> list[str]:
        """The spec's run ids; with `branches`, each followed by its cooldown branches' (RunConfig.cooldowns)."""
        return [rid for r in self.runs
                for rid in [r.run_id()] + ([b.run_id() for b, _ in r.branches()] if branches else [])]


# ------------------------------------------------------------------------------------------------ loading


def load_study(path: str | Path, store: str | Path | None = None, *, prepare: bool = True,
               progress: bool = False, force: bool = False) -> Study:
    """Read, validate and expand a study spec. With `prepare` (default) a missing dataset is prepared from the
    spec's [data] table and every run is checked against the data (vocab, D_unique <= training tokens);
    `store` overrides the spec's store path. Raises ConfigError/DataError with one line on a bad spec."""
    path = Path(path)
    raw = load_toml(path, "study spec")
    return study_from_dict(raw, path=path, store=store, prepare=prepare, progress=progress, force=force)


def study_from_dict(raw: dict, *, path: Path | None = None, base_dir: Path | None = None,
                    store: str | Path | None = None, prepare: bool = True, progress: bool = False,
                    force: bool = False) -> Study:
    where = str(path) if path else "study spec"
    base_dir = Path(base_dir or (path.parent if path else Path.cwd())).resolve()
    _no_unknown(raw, TOP_KEYS, where, "top-level section")

    head = _table(raw.get("study", {}), f"{where} [study]")
    _no_unknown(head, STUDY_KEYS, f"{where} [study]", "key")
    name = head.get("name") or (path.stem if path else "")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ConfigError(f"{where} [study]: name must be a non-empty string without slashes, got {name!r}")

    recipe = raw.get("data")
    if recipe is not None:
        recipe = _table(recipe, f"{where} [data]")
        _no_unknown(recipe, DATA_KEYS, f"{where} [data]", "key")
        if not isinstance(recipe.get("corpus"), str):
            raise ConfigError(f"{where} [data]: `corpus` (a corpus name like \"stdlib\" or a path) is required")
    data = head.get("data")
    if data is None and recipe is None:
        raise ConfigError(f"{where} [study]: give `data` (a prepared dataset dir) or a [data] table to prepare one")
    if data is not None and not isinstance(data, str):
        raise ConfigError(f"{where} [study]: data must be a path string, got {data!r}")
    data_dir = (base_dir / data) if data else base_dir / f"{name}.data"
    store_path = Path(store) if store else base_dir / head.get("store", f"{name}.sqlite")

    base = dict(_table(raw.get("base", {}), f"{where} [base]"))
    bad = sorted(set(base) & _NOT_AXES - {"extra"})
    if bad:
        raise ConfigError(f"{where} [base]: {', '.join(bad)} is set by the study ([study] data / run names)")
    base["data"] = str(data_dir.resolve())
    RunConfig.from_dict(base, where=f"{where} [base]")  # the base alone must be a valid run

    groups = raw.get("axes", [])
    if isinstance(groups, dict):
        groups = [groups]
    if not isinstance(groups, list):
        raise ConfigError(f"{where}: axes must be a table [axes] or an array of tables [[axes]]")
    expanded = [_expand_group(_table(g, f"{where} [[axes]] #{i + 1}"), f"{where} [[axes]] #{i + 1}")
                for i, g in enumerate(groups)]
    label_names: list[str] = []
    for g in groups:
        for k in g:
            if k not in GROUP_SETTINGS and k not in label_names:
                label_names.append(k)
    seen: set[str] = set()
    for g in groups:
        keys = {k for k in g if k not in GROUP_SETTINGS}
        if keys & seen:
            raise ConfigError(f"{where}: axis {sorted(keys & seen)[0]!r} appears in more than one [[axes]] group; "
                              "put it in one")
        seen |= keys

    study = Study(name=name, runs=[], store_path=store_path.resolve(), data_dir=data_dir.resolve(), spec_path=path,
                  data_recipe=recipe, axes=label_names, description=str(head.get("description", "")),
                  roles=_roles(head.get("roles"), label_names, where))
    vocab_size, train_tokens = _data_facts(study, prepare=prepare, progress=progress, force=force)

    runs, ids, models = [], {}, {}
    for combo in itertools.product(*expanded) if expanded else [()]:
        values: dict = {}
        for part in combo:
            values.update(part)
        cfg = _make_run(base, values, study, vocab_size, where)
        rid = cfg.run_id()
        if rid in ids:
            raise ConfigError(f"{where}: runs {ids[rid]!r} and {cfg.name!r} are the same run; remove the duplicate")
        ids[rid] = cfg.name
        model_key = cfg.model_id()
        if model_key in models:
            study.merged.append((models[model_key], cfg.name))
            continue
        models[model_key] = cfg.name
        if train_tokens is not None and cfg.d_unique is not None and cfg.d_unique > train_tokens:
            raise ConfigError(
                f"{where}: run {cfg.name!r}: d_unique={cfg.d_unique:,} tokens is larger than the training split of "
                f"{study.data_dir} ({train_tokens:,} tokens); lower d_unique or prepare more data (max_bytes)"
            )
        runs.append(cfg)
    study.runs = runs
    return study


def _data_facts(study: Study, *, prepare: bool, progress: bool, force: bool = False) -> tuple[int | None, int | None]:
    """Vocabulary size and training tokens of the study's data, preparing it first when a recipe says how."""
    from scalinglab.data.shards import TokenDataset

    if not (study.data_dir / "meta.json").is_file():
        if not prepare:
            return None, None
        if study.data_recipe is None:
            raise DataError(f"{study.data_dir}: not a prepared dataset; run `scalinglab data prepare` or add a "
                            "[data] table (corpus, tokenizer, max_bytes) to the spec")
        prepare_study_data(study, progress=progress, force=force)
    ds = TokenDataset(study.data_dir)
    return ds.vocab_size, ds.n_tokens("train")


def prepare_study_data(study: Study, progress: bool = False, force: bool = False) -> Path:
    """Prepare the study's data dir from its [data] table. A data dir holding files scalinglab did not write is
    refused (scalinglab.outdir), or with `force` kept beside the shards."""
    from scalinglab.data import prepare_dataset

    r = dict(study.data_recipe or {})
    kwargs = {k: r[k] for k in DATA_KEYS - {"corpus"} if k in r}
    try:
        return prepare_dataset(r["corpus"], study.data_dir, progress=progress, force=force, **kwargs)
    except TypeError as exc:  # a wrongly typed [data] value
        raise ConfigError(f"{study.spec_path or 'study spec'} [data]: {exc}") from None


# ------------------------------------------------------------------------------------------------ axes


def _expand_group(group: dict, where: str) -> list[dict]:
    """A group's combinations, each a dict {axis: value} (plus '_depth', the group's depth rule)."""
    mode = group.get("mode", "product")
    if mode not in ("product", "zip"):
        raise ConfigError(f"{where}: mode must be \"product\" or \"zip\", got {mode!r}")
    depth = _table(group.get("depth", {}), f"{where} depth")
    _no_unknown(depth, DEPTH_KEYS, f"{where} depth", "depth-rule key")
    axes = {k: v for k, v in group.items() if k not in GROUP_SETTINGS}
    if not axes:
        raise ConfigError(f"{where}: no axes in this group (give lists such as seed = [0, 1])")
    for k, values in axes.items():
        if k not in SHAPE_AXES and (k not in _RUN_FIELDS or k in _NOT_AXES):
            known = sorted(SHAPE_AXES | (set(_RUN_FIELDS) - _NOT_AXES))
            raise ConfigError(f"{where}: unknown axis {k!r} (known: {', '.join(known)})")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: axis {k} must be a non-empty list, got {values!r}")
        for v in values:
            _check_axis_value(k, v, where)
    if "aspect_ratio" in axes and "n_params" not in axes:
        raise ConfigError(f"{where}: an aspect_ratio axis sets shapes at fixed N; give n_params in the same group")
    if "n_params" in axes and not ({"aspect_ratio", "n_layer"} & (set(axes) | set(depth))):
        raise ConfigError(f"{where}: n_params needs a depth rule: depth = {{ aspect_ratio = 16 }} or "
                          "depth = { n_layer = 2 } (or an aspect_ratio / n_layer axis)")
    names = list(axes)
    if mode == "zip":
        lengths = {k: len(v) for k, v in axes.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"{where}: mode = \"zip\" needs lists of one length, got {lengths}")
        combos = zip(*axes.values())
    else:
        combos = itertools.product(*axes.values())
    return [{**dict(zip(names, c)), "_depth": depth} for c in combos]


def _check_axis_value(key: str, v, where: str) -> None:
    def bad(expected: str):
        raise ConfigError(f"{where}: axis {key} value {v!r} is not {expected}")

    if key == "model":
        if not isinstance(v, dict):
            bad("a shape table like { n_layer = 2, d_model = 64, n_head = 4 }")
        _no_unknown(v, MODEL_KEYS, f"{where} model {v}", "shape key")
        return
    if key in ("n_params", "aspect_ratio", "d_ff_ratio"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            bad("a positive number")
        return
    field_value(key, v, where, what="axis ")


def _make_run(base: dict, values: dict, study: Study, vocab_size: int | None, where: str) -> RunConfig:
    from scalinglab.accounting import shape_for_n

    depth = values.pop("_depth", {})
    labels = {k: v for k, v in values.items()}
    cfg = dict(base)
    cfg.update({k: v for k, v in values.items() if k in _RUN_FIELDS})
    name = f"{study.name}/" + ",".join(f"{k}={_label(v)}" for k, v in labels.items()) if labels else study.name
    run_where = f"{where}: run {name!r}"
    try:
        if "model" in values:
            m = values["model"]
            cfg.update(m)
            labels["model"] = _label(m)
        ratio = values.get("d_ff_ratio", depth.get("d_ff_ratio"))
        if "n_params" in values:
            rule = {}
            if "aspect_ratio" in values or ("n_layer" not in values and "aspect_ratio" in depth):
                rule["aspect_ratio"] = float(values.get("aspect_ratio", depth.get("aspect_ratio")))
            else:
                rule["n_layer"] = int(values.get("n_layer", depth.get("n_layer")))
            defaults = RunConfig()
            shape = shape_for_n(
                float(values["n_params"]), n_ctx=int(cfg.get("n_ctx", defaults.n_ctx)), vocab_size=vocab_size or 256,
                d_ff_ratio=float(ratio) if ratio else None, d_head=int(depth.get("d_head", 64)),
                tie_embeddings=bool(cfg.get("tie_embeddings", True)), family=str(cfg.get("family", "gpt2")), **rule,
            )  # fmt: skip
            cfg.update(n_layer=shape.n_layer, d_model=shape.d_model, n_head=shape.n_head, d_ff=shape.d_ff,
                       d_attn=None)
        elif ratio is not None:
            cfg["d_ff"] = int(round(float(ratio) * int(cfg.get("d_model", RunConfig().d_model))))
        if "n_head" in values:
            cfg["n_head"] = values["n_head"]
        cfg["extra"] = {**base.get("extra", {}), **labels}
        cfg["name"] = name
        return RunConfig.from_dict(cfg, where=run_where)
    except ScalingLabError as exc:
        msg = str(exc)
        raise type(exc)(msg if msg.startswith(run_where) else f"{run_where}: {msg}") from None


def _label(v) -> str:
    if isinstance(v, dict):
        return "-".join(f"{k}{v[k]}" for k in ("n_layer", "d_model", "n_head", "d_ff") if k in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ------------------------------------------------------------------------------------------------ helpers


def _roles(given, axes: list[str], where: str) -> list[str]:
    """The spec's declared roles, or the ones its axes imply."""
    from scalinglab.store import ROLES

    if given is None:
        implied = [role for role, keys in (("subsets", {"d_unique"}), ("batch", {"batch_size"}),
                                           ("shape", {"aspect_ratio", "d_ff_ratio", "n_head"}),
                                           ("lr", {"lr", "lr_scale"})) if keys & set(axes)]
        return implied or ["sizes"]
    given = [given] if isinstance(given, str) else given
    if not isinstance(given, list) or not given or not all(isinstance(r, str) for r in given):
        raise ConfigError(f"{where} [study]: roles must be a role name or a list of them, got {given!r}")
    bad = [r for r in given if r not in ROLES]
    if bad:
        raise ConfigError(f"{where} [study]: unknown role {bad[0]!r} (known: {', '.join(ROLES)})")
    return list(dict.fromkeys(given))


def _table(v, where: str) -> dict:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a table, got {type(v).__name__} {v!r}")
    return v


def _no_unknown(d: dict, known: set, where: str, what: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown {what} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(sorted(known))})")

