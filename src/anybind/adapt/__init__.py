"""Adaptation: zero-shot → few-shot → source-free → test-time, on top of a trained space.

Methods are registered by name in `METHODS`; `build_method(name, options)` checks the options
against the method's schema. `anybind.adapt.run` adapts a run folder and evaluates the result;
`anybind.adapt.store` saves and loads adapter folders.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from anybind.adapt.base import Adaptation, AdaptContext, AdaptMethod
from anybind.adapt.cross_modal_probe import CrossModalProbe
from anybind.adapt.linear_probe import LinearProbe
from anybind.adapt.self_train import SelfTrain
from anybind.adapt.tent import Tent
from anybind.adapt.tower_tuning import IA3, BottleneckAdapter, LoRA, Prompt
from anybind.errors import ConfigError

METHODS: dict[str, type[AdaptMethod]] = {
    m.name: m
    for m in (LinearProbe, CrossModalProbe, LoRA, IA3, BottleneckAdapter, Prompt, SelfTrain, Tent)
}


def build_method(name: str, options: dict[str, Any] | None = None) -> AdaptMethod:
    if name not in METHODS:
        raise ConfigError(
            f"unknown adaptation method '{name}' (known: {', '.join(METHODS)})", key="--method"
        )
    cls = METHODS[name]
    try:
        return cls(cls.Options.model_validate(options or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{err['msg']}", key=f"{name}.{key}") from None


__all__ = ["METHODS", "AdaptContext", "AdaptMethod", "Adaptation", "build_method"]
