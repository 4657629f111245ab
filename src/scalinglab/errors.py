"""User-facing errors.

Anything a user can cause (a bad config, a bad CSV, a corrupt store, a diverging run) raises a subclass of
`ScalingLabError`. The CLI turns it into one line on stderr and exit code 2; it never shows a traceback.
Messages say what went wrong, where, and how to fix it.
"""


class ScalingLabError(Exception):
    """Base class for errors the user can act on."""

    exit_code = 2


class ConfigError(ScalingLabError):
    """A run config or study spec is invalid."""


class DataError(ScalingLabError):
    """Input data (corpus, token shards, CSV) is missing, empty or malformed."""


class StoreError(ScalingLabError):
    """The run store is missing, corrupt, foreign, or from an incompatible schema."""


class FitError(ScalingLabError):
    """A law cannot be fitted to the given data (too few points, bad values)."""


class DivergedError(ScalingLabError):
    """A training run produced NaN/inf or a loss far above its start."""


class DependencyError(ScalingLabError):
    """An installed dependency is too old (or missing) for what was asked."""


class RunFailedError(ScalingLabError):
    """A training run was stopped by a fault (disk full while checkpointing, its data changed under it)."""
