"""The one error type for bad run configuration, in a module of its own so that every module
(config, registries, regularizers, tasks) can raise it without importing the config."""


class ConfigError(ValueError):
    """A bad key or value in a run config; the message names the key and what was expected."""
