"""Where a pretrained model lives: a path as given, or a folder inside an installed package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from anybind.errors import ConfigError


def resolve_model_path(path: str, required: str = "config.json") -> str:
    """`path` as given, or for `package:MODULE[/SUBDIR]` the folder inside the installed package,
    which must hold the file `required`."""
    if not path.startswith("package:"):
        return path
    module, _, sub = path.removeprefix("package:").partition("/")
    # located without importing it: a package's __init__ may load heavy runtimes
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.origin:
        raise ConfigError(
            f"'{path}' needs the Python package '{module}' (pip install "
            f"{module.replace('_', '-')})",
            key="encoder.path",
        )
    folder = Path(spec.origin).parent / (sub or "model")
    if not (folder / required).is_file():
        raise ConfigError(f"'{path}': no model ({required}) in {folder}", key="encoder.path")
    return str(folder)
