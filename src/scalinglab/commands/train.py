"""`scalinglab train`: train one model from a TOML config and/or flags, recording it in a run store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from scalinglab.commands._common import add_store_arg, add_tracker_args, check_tracker_args, console, fmt_num, out
from scalinglab.errors import ConfigError, DivergedError, RunFailedError
from scalinglab.training.config import RunConfig, field_kinds, field_value, load_toml

_SKIP = {"extra", "eval_sets", "cooldowns"}


def register(sub) -> None:
    p = sub.add_parser("train", help="train one model and record it in a run store")
    p.add_argument("config", nargs="?", help="TOML run config (keys of RunConfig, optionally under [run])")
    add_store_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tracker_args(p)
    g = p.add_argument_group("run config (override the file; each flag is a RunConfig field, its help the field's "
                             "own comment in config.py)")
    docs = field_docs()
    for f in dataclasses.fields(RunConfig):
        if f.name in _SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        base = field_kinds()[f.name][0]
        default = f.default if f.default is not dataclasses.MISSING else None
        text = (docs.get(f.name) or f.name.replace("_", " ")).replace("%", "%%")
        text = f"{text} (default: {'none' if default is None else 'empty' if default == '' else default})"
        if base is bool:
            g.add_argument(flag, dest=f.name, default=None, action=argparse_bool(), help=text)
        else:
            kind = _number(f.name, base) if base in (int, float) else base
            g.add_argument(flag, dest=f.name, default=None, type=kind, help=text,
                           metavar=base.__name__.upper() if base in (int, float) else None)
    g.add_argument("--eval-sets", dest="eval_sets", default=None, help="comma-separated evaluation sets")
    g.add_argument("--cooldowns", dest="cooldowns", default=None, type=_budgets, metavar="LIST",
                   help="with --schedule wsd: comma-separated budgets (tokens, or fractions <= 1 of --tokens) whose "
                        "cooldowns branch from one stable phase, each stored as its own run")
    p.set_defaults(func=run)


def field_docs() -> dict[str, str]:
    """Each RunConfig field's trailing comment in config.py (its documentation), read from the class's source so
    the flags' help cannot drift from the fields."""
    import inspect
    import io
    import tokenize

    docs: dict[str, str] = {}
    try:
        source = inspect.getsource(RunConfig)
    except (OSError, TypeError):  # no source (a frozen build): plain flags
        return docs
    name = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and name is None:
            name = tok.string  # a field (or a method's def at column 4: no comment follows it on its line)
        elif tok.type == tokenize.COMMENT and name is not None and tok.start[1] > 4:
            docs[name] = tok.string.lstrip("#").strip()
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            name = None
    return docs


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction


def _number(name: str, kind):
    def parse(s: str):
        try:
            return field_value(name, float(s))  # 2e6 is an int where the field is one
        except ConfigError:
            raise ValueError(s) from None

    parse.__name__ = kind.__name__
    return parse


def _budgets(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",")]
    except ValueError:
        raise ValueError(s) from None


_budgets.__name__ = "list of budgets"


def build_config(args):
    base = {}
    if args.config:
        RunConfig.from_toml(args.config)  # the file alone must be a valid run config (errors name the file)
        raw = load_toml(args.config, "config file")
        base = dict(raw.get("run", raw))  # unresolved: precision "auto" is resolved once, with the flags' device
    for f in dataclasses.fields(RunConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            base[f.name] = v.split(",") if f.name == "eval_sets" else v
    return RunConfig.from_dict(base)


def run(args) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from scalinglab.store import RunStore
    from scalinglab.tracking import tracked_store
    from scalinglab.training.trainer import train_run

    config = build_config(args)
    if not config.data:
        raise ConfigError("no data: give --data DIR (a prepared dataset, see `scalinglab data prepare`)")
    check_tracker_args(args)
    store = tracked_store(RunStore(args.store), args.tracker, args.tracker_dir)
    ckpt = Path(str(args.store) + ".ckpt") / config.run_id()
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"), TimeRemainingColumn(),
        console=console, disable=args.no_progress,
    )  # fmt: skip
    with progress:
        task = progress.add_task(config.name or config.run_id(), total=config.steps, loss="-", tps="-")

        def on_progress(info):
            progress.update(task, completed=info["step"], total=info["steps"], loss=fmt_num(info["loss"]),
                            tps=f"{info['tokens_per_s']:,.0f}")

        result = train_run(config, store=store, checkpoint_dir=ckpt, on_progress=on_progress)
    s = result.summary
    if result.status == "diverged":
        raise DivergedError(f"run {result.run_id} {s['error']}; recorded as diverged in {args.store}")
    if result.status == "failed":
        raise RunFailedError(f"run {result.run_id} stopped: {s['error']}; recorded as failed in {args.store}")
    out.print(
        f"run {result.run_id}: N={s['N']:,} D={s['D']:,} C={s['C']:.3g} FLOP  "
        f"test loss {s['final_test_loss']:.4f} ± {s['final_metrics']['final_test_loss_se'] or float('nan'):.4f} "
        f"nats/token  {s['tokens_per_s']:,.0f} tok/s  "
        f"({s['wall_time_s']:.1f} s) -> {args.store}"
    )
    for b in result.branches:  # a stable phase's cooldowns, each its own run
        bs = b.summary
        if b.status != "done":
            raise RunFailedError(f"cooldown branch {b.run_id} {b.status}: {bs.get('error')}; recorded in {args.store}")
        out.print(f"  cooldown {b.run_id}: D={bs['D']:,} branched at step {bs['branch_step']:,}  test loss "
                  f"{bs['final_test_loss']:.4f} nats/token  ({bs['wall_time_s']:.1f} s)")
    return 0
