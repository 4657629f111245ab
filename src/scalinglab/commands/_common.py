"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

import argparse
import math

from rich.console import Console

console = Console(stderr=True)
out = Console()


def fmt_num(x, digits: int = 3) -> str:
    """1.23e+06-style for large/small numbers, plain otherwise; '-' for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if hasattr(x, "item"):
        x = x.item()
    if isinstance(x, int) and abs(x) < 10**10:
        return f"{x:,}"
    x = float(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits}g}"
    return f"{x:.{digits + 1}g}"


def print_table(table, console_=None) -> None:
    """A rich table, never cut: on a terminal the text columns wrap to its width; piped (rich assumes 80 columns
    there), each row is printed on one line at the table's natural width, so run ids and names stay whole."""
    c = console_ or out
    if c.is_terminal:
        c.print(table)
    else:
        from rich.measure import Measurement

        wide = Console(width=100_000, file=c.file, color_system=None, highlight=False)
        need = Measurement.get(wide, wide.options, table).maximum
        Console(width=need, file=c.file, color_system=None, highlight=False).print(table)


def add_store_arg(p, default: str = "runs/train.sqlite") -> None:
    p.add_argument("--store", default=default, help=f"run store file (default: {default})")


def whole_number(minimum: int):
    """An argparse `type` for a count: an integer of at least `minimum`. A bad value is argparse's one-line error
    (`argument --n-resamples: -5 is below 0; give a whole number >= 0`), exit 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}; give a whole number >= {minimum}")
        return value

    parse.__name__ = f"whole number >= {minimum}"  # what argparse names the type in its messages
    return parse


positive_int = whole_number(1)  # workers, iterations, targets, window sizes
nonnegative_int = whole_number(0)  # bootstrap resamples, points to drop


def add_alias(p, flag: str, dest: str, **kwargs) -> None:
    """An older name of an option, still accepted and left out of --help (the option's own name is listed)."""
    p.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_n_resamples(p, default: int | None, help: str) -> None:
    """--n-resamples K (fit_law's n_resamples); --bootstrap K is its older name."""
    p.add_argument("--n-resamples", dest="n_resamples", type=nonnegative_int, default=default, metavar="K", help=help)
    add_alias(p, "--bootstrap", "n_resamples", type=nonnegative_int, metavar="K")


def add_tracker_args(p) -> None:
    """--tracker / --tracker-dir: live tracking of every run trained (scalinglab.tracking)."""
    p.add_argument("--tracker", choices=("tensorboard", "mlflow", "wandb"), default=None,
                   help="also write each run's curve, config, N, FLOP and final metrics as it trains to TensorBoard, "
                        "MLflow (a local file store) or W&B (offline); the store stays the record. Needs the extra: "
                        "pip install 'scalinglab[tensorboard]' (or [mlflow], [wandb])")
    p.add_argument("--tracker-dir", default=None, metavar="DIR",
                   help="where the tracker writes (default: <store>.tracking/<tracker>)")


def check_tracker_args(args) -> None:
    """A missing tracker extra: one line and exit code 2, before anything trains."""
    from scalinglab.tracking import check_tracker

    check_tracker(getattr(args, "tracker", None))
