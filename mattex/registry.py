"""One named registry for mattex's rewrites, lint rules and plugins: unknown or duplicate
names fail loudly, with the names that are known."""

from __future__ import annotations

from typing import Generic, TypeVar

from mattex.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of one `kind` by name ("graph pass", "lint rule", ...)."""

    kind = "item"

    def __init__(self) -> None:
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self._items)}")
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return list(self._items)

    def remove(self, name: str) -> T:
        """Take `name` out again (tests that register a temporary item)."""
        self[name]  # unknown names fail like everywhere else
        return self._items.pop(name)
