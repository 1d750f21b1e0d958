"""The base of every config model (run configs, modality and encoder options), so that one
mechanism rejects what no option can mean: unknown keys, NaN and ±inf, and `true`/`false`
where a number belongs (pydantic would read `steps: true` as 1). `Size` is a count or a length
that must be at least 1 (widths, heads, dimensions, image sizes)."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Size = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Positive = Annotated[float, Field(gt=0)]


def _is_number(annotation: Any) -> bool:
    """int or float, bare, in Annotated, or in a union with None."""
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_number(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return bool not in args and any(_is_number(a) for a in args if a is not type(None))
    return False


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field is not None and _is_number(field.annotation):
                    raise ValueError(f"{name}: expected a number, got {str(value).lower()}")
        return data
