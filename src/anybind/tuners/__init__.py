"""Tuners: small trainable additions to one tower's encoder (see `base.Tuner` for the contract).

| name    | what it adds                                              | mergeable |
|---------|-----------------------------------------------------------|-----------|
| lora    | low-rank updates of Linear/Conv weights (peft)            | yes       |
| ia3     | learned per-channel scales of activations (peft)          | yes       |
| adapter | residual bottleneck MLPs/1×1 convs after blocks (Houlsby) | no        |
| prompt  | CoOp context vectors (hf_text) or VPT tokens (hf_vision,  | no        |
|         | hf_audio)                                                 |           |

`build_tuner(name, options)` validates the options against the tuner's `Options` model; an
unknown tuner name or option key is a ConfigError that names it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from anybind.errors import ConfigError
from anybind.tuners.base import TUNERS, Tuner, TunerOptions
from anybind.tuners.bottleneck import AdapterOptions, BottleneckAdapter
from anybind.tuners.peft_tuners import IA3Options, IA3Tuner, LoraOptions, LoraTuner
from anybind.tuners.prompts import PromptOptions, PromptTuner


def tuner_options(
    name: str, options: dict[str, Any] | TunerOptions | None = None, *, key: str = "tuner"
) -> TunerOptions:
    """Validate raw options for the tuner `name`; errors name the offending key."""
    cls = tuner_class(name, key=key)
    if isinstance(options, cls.Options):
        return options
    if options is not None and not isinstance(options, dict):
        raise ConfigError(
            f"tuner '{name}' options must be a mapping, not {type(options).__name__}", key=key
        )
    try:
        return cls.Options(**(options or {}))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            known = ", ".join(cls.Options.model_fields)
            message = f"unknown option '{field}' for tuner '{name}' (known: {known})"
        else:
            message = f"tuner '{name}' option '{field}': {error['msg']}"
        raise ConfigError(message, key=f"{key}.{field}" if field else key) from None


def tuner_class(name: str, *, key: str = "tuner") -> type[Tuner]:
    return TUNERS.get(name, key=key)


def build_tuner(
    name: str, options: dict[str, Any] | TunerOptions | None = None, *, key: str = "tuner"
) -> Tuner:
    """A detached tuner of kind `name` (lora, ia3, adapter, prompt) with validated options."""
    return tuner_class(name, key=key)(tuner_options(name, options, key=key))


__all__ = [
    "TUNERS",
    "AdapterOptions",
    "BottleneckAdapter",
    "IA3Options",
    "IA3Tuner",
    "LoraOptions",
    "LoraTuner",
    "PromptOptions",
    "PromptTuner",
    "Tuner",
    "TunerOptions",
    "build_tuner",
    "tuner_class",
    "tuner_options",
]
