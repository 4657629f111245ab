"""scalinglab: measure, fit and use the neural scaling laws of language models.

It reproduces Kaplan et al. 2020, "Scaling Laws for Neural Language Models", on your data and model family, and
knows the Chinchilla methods (Hoffmann et al. 2022). The Python API, each name imported on first use
(`import scalinglab` imports neither torch nor the training code):

    prepare_data(corpus, out_dir, tokenizer=..., max_bytes=...)   a corpus name ("default", "stdlib") or your
                                          own text -> a prepared dataset directory of token shards
    RunConfig(data=..., n_layer=..., d_model=..., tokens=...)      everything that defines one training run
    train(config, store=RunStore(path))   train one run, its learning curve written to the store -> RunResult
    load_study(path)                      a study spec (TOML) -> Study: its runs, data and store
    run_study(study, workers=...)         run what the store does not have yet -> StudySummary
    RunStore(path)                        the SQLite run store: .runs(), .evals(), .curves(), .export()
    fit_law(data, form="chinchilla", n=..., d=..., loss=...)      fit a law to a CSV, DataFrame or store ->
                                          FittedLaw: params, 95% ci, converged, predict(), summary(), to_dict()
    backtest(data, ...)                   fit on the smaller runs, predict the held-out larger ones, score it
    analyze(store)                        a study's analysis: laws, frontier, critical batch, findings
    plan(compute, law="chinchilla2022")   compute-optimal N, D, batch, steps and expected loss for a budget,
                                          from a published law, a FittedLaw or a fitted-law JSON file -> Plan

    >>> import scalinglab as sl
    >>> law = sl.fit_law("runs.csv", form="chinchilla", n="N", d="D", loss="loss")
    >>> print(law.summary())
    >>> print(sl.plan("1e21", law=law).summary())

Worked scripts: docs/examples/ in the source repository. The command line (`scalinglab --help`) does the same.
"""

import importlib as _importlib

__version__ = "0.1.0"

# API name -> (module, attribute). Resolved on first use, so a missing piece fails only when it is used.
_API = {
    "prepare_data": ("scalinglab.data.prepare", "prepare_dataset"),
    "RunConfig": ("scalinglab.training.config", "RunConfig"),
    "train": ("scalinglab.training.trainer", "train_run"),
    "load_study": ("scalinglab.sweep.spec", "load_study"),
    "run_study": ("scalinglab.sweep.runner", "run_study"),
    "RunStore": ("scalinglab.store", "RunStore"),
    "fit_law": ("scalinglab.laws.fit", "fit_law"),
    "backtest": ("scalinglab.laws.backtest", "backtest"),
    "analyze": ("scalinglab.analysis", "analyze"),
    "plan": ("scalinglab.planner", "plan_compute"),
}

__all__ = list(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'scalinglab' has no attribute {name!r}")
    module_name, attr = _API[name]
    try:
        module = _importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # a dependency of that module is missing: say so as it is
            raise
        raise AttributeError(f"scalinglab.{name} is not available in this version ({module_name} is missing)") \
            from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"scalinglab.{name} is not available in this version ({module_name} has no "
                             f"{attr})") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(__all__) | {"__version__"} | {k for k in globals() if k.startswith("__")})
