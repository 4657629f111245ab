"""scalinglab: measure, fit and use neural scaling laws of language models.

Where things live:
- accounting.py   N (non-embedding parameters), FLOP counts, PF-days: pure functions
- model.py        the decoder-only Transformer and its shape
- config.py       RunConfig: everything that defines one training run
- train.py        trains one run (optimizer, schedule, evaluation, checkpoints, noise scale)
- store.py        the SQLite run store
- data/           corpora, tokenizers, token shards, samplers
- sweep/          study specs -> runs, executors (local processes, Ray)
- laws/           law forms, fitting with bootstrap intervals, frontiers, batch-size laws
- plan.py         compute-optimal allocation and predictions
- report/         figures and the HTML report
- studies/        preset study files and the checks of each finding
- cli.py          the `scalinglab` command (subcommands in commands/)
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy so that `import scalinglab` (and fitting) never imports torch.
    if name == "fit_law":
        from scalinglab.laws import fit_law

        return fit_law
    if name == "backtest":
        from scalinglab.laws import backtest

        return backtest
    raise AttributeError(name)
