"""The `scalinglab` command. Each subcommand lives in scalinglab/commands/<name>.py and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

from scalinglab import __version__
from scalinglab.errors import ConfigError, ScalingLabError

COMMANDS = ["train", "runs", "data", "study", "fit", "backtest", "curves", "plan", "batch", "report", "reproduce",
            "frontier"]

DESCRIPTION = """\
Measure, fit and use the scaling laws of language models (Kaplan et al. 2020; the Chinchilla methods of
Hoffmann et al. 2022): prepare text data, train families of small Transformers over model size, data, compute
and batch size, record every learning curve in a run store, fit the laws with 95% bootstrap intervals, plan
compute-optimal runs and write a report with the paper's figures."""

EPILOG = """\
start here:
  scalinglab reproduce                      the smoke preset end to end: data, runs, fits, report (resumable)
  scalinglab fit runs.csv --n N --d D --loss loss   fit a law to your own runs (no torch needed)
  scalinglab plan --compute 1e21            the compute-optimal model size, tokens and loss for a budget

`scalinglab COMMAND --help` gives a command's options. A bad input prints one line and exits with code 2;
nothing already stored is lost. In Python: `import scalinglab; help(scalinglab)`."""


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line, exit 2 (the usage block stays in --help). The
    subcommands' parsers are of the same class (argparse makes them with the parent's)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scalinglab", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"scalinglab {__version__}")
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
    _describe(sub)
    return parser


def _describe(sub) -> None:
    """Every command and action gets a description line in its own --help: its help line where it has none."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        if not p.description and helps.get(name):
            text = helps[name]
            p.description = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _describe(action)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_counts(args)
        return int(args.func(args) or 0)
    except ScalingLabError as exc:
        print(f"scalinglab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("scalinglab: interrupted", file=sys.stderr)
        return 130


def _check_counts(args) -> None:
    """Counts every command reads the same way, checked once here: bootstrap resamples (--n-resamples, or its
    older name --bootstrap) are at least 1 (a fit without intervals is not what they ask for)."""
    k = getattr(args, "n_resamples", None)
    if k is not None and k < 1:
        raise ConfigError(f"--n-resamples {k}: the number of bootstrap resamples must be at least 1 (the intervals "
                          "come from them)")


if __name__ == "__main__":
    sys.exit(main())
