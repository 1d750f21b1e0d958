"""anybind: bind any set of modalities into one embedding space; adapt, measure and use it."""

from typing import Any

from anybind.errors import AnybindError, ConfigError, DataError, TrainingError

__version__ = "0.1.0"
__all__ = [
    "AnybindError",
    "ConfigError",
    "DataError",
    "Run",
    "TrainingError",
    "adapt_run",
    "embed",
    "extend",
    "index",
    "init_run",
    "load_adapted",
    "load_run",
    "search",
    "train",
]


def __getattr__(name: str) -> Any:
    # The API pulls in transformers; import it on first use so that `import anybind.objectives`
    # (e.g. in torchrun workers) stays light.
    if name in (
        "Run",
        "load_run",
        "train",
        "adapt_run",
        "load_adapted",
        "embed",
        "extend",
        "index",
        "init_run",
        "search",
    ):
        from anybind import api

        return getattr(api, name)
    raise AttributeError(f"module 'anybind' has no attribute {name!r}")


# `anybind.search` names both the API function and the subpackage `anybind.search` (the search
# engine). Importing a submodule sets its parent's attribute only the first time it is loaded:
# load the (light) subpackage here, then bind the function, so that `anybind.search(...)` is
# the function however the subpackage is imported later.
import anybind.search as _search_package  # noqa: E402, F401


def search(*args: Any, **kwargs: Any) -> Any:
    """`anybind search` as a function (see `anybind.api.search`)."""
    from anybind import api

    return api.search(*args, **kwargs)
