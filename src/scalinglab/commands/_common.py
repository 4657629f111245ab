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


def add_store_arg(p, default: str = "runs/train.sqlite") -> None:
    p.add_argument("--store", default=default, help=f"run store file (default: {default})")


def whole_number(minimum: int):
    """An argparse `type` for a count: an integer of at least `minimum`. A bad value is argparse's one-line error
    (`argument --bootstrap: -5 is below 0; give a whole number >= 0`), exit 2."""

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
