"""anybind: bind any set of modalities into one embedding space; adapt, measure and use it."""

from anybind.api import Run, load_run, train
from anybind.errors import AnybindError, ConfigError, DataError, TrainingError

__version__ = "0.1.0"
__all__ = ["AnybindError", "ConfigError", "DataError", "Run", "TrainingError", "load_run",
           "train"]
