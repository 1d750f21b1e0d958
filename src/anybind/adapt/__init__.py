"""Adaptation: zero-shot → few-shot → source-free → test-time, on top of a trained space.

Methods are registered by name in `METHODS` (`@METHODS.register(name)` beside each class);
`build_method(name, options)` checks the options against the method's schema.
`anybind.adapt.run` adapts a run folder and evaluates the result; `anybind.adapt.store` saves
and loads adapter folders.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# importing a method's file registers it
from anybind.adapt import (  # noqa: F401
    cross_modal_probe,
    linear_probe,
    self_train,
    tent,
    tower_tuning,
)
from anybind.adapt.base import METHODS, Adaptation, AdaptContext, AdaptMethod
from anybind.errors import ConfigError


def build_method(name: str, options: dict[str, Any] | None = None) -> AdaptMethod:
    cls = METHODS.get(name, key="--method")
    try:
        return cls(cls.Options.model_validate(options or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{err['msg']}", key=f"{name}.{key}") from None


__all__ = ["METHODS", "AdaptContext", "AdaptMethod", "Adaptation", "build_method"]
