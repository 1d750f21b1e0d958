"""Typed configuration: schema per concern, YAML loading with dotted overrides."""

from anybind.config.load import apply_overrides, config_from_dict, load_config, save_config
from anybind.config.schema import Config

__all__ = ["Config", "apply_overrides", "config_from_dict", "load_config", "save_config"]
