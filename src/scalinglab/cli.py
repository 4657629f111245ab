"""The `scalinglab` command. Each subcommand lives in scalinglab/commands/<name>.py and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

from scalinglab.errors import ScalingLabError

COMMANDS = ["train", "runs", "data", "study", "fit", "plan", "batch", "report", "reproduce", "frontier"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalinglab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"scalinglab.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"scalinglab.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScalingLabError as exc:
        print(f"scalinglab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("scalinglab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
