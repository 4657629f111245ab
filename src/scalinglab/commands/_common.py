"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

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
