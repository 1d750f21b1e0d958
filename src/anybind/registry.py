"""A name → plug-in registry: a new modality, encoder, objective, adaptation method, tuner or
named data set is one file with `@REGISTRY.register(name)` beside its class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from anybind.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins of one kind by name. With `names_attribute`, registering a class also sets that
    class attribute to its registered name (so the name is written once, in the decorator)."""

    def __init__(self, kind: str, *, names_attribute: str | None = None):
        self.kind = kind
        self.names_attribute = names_attribute
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            if self.names_attribute is not None:
                setattr(item, self.names_attribute, name)
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str, *, key: str | None = None) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} '{name}' (known: {known})", key=key) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
