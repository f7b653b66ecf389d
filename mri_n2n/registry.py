"""One name registry for everything a run picks by name: mask families (``--density``), models
(``--model``), losses (``--loss``) and datasets (``--dataset``).

Each kind keeps one :class:`Registry` of its entries; registering a name twice with the same
definition is a no-op (re-importing a module), with another definition an error. The lookups
give one-line errors that list the known names.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what the names are, for messages (e.g. ``"model"``, ``"density"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._owners: dict[str, object] = {}

    def add(self, name: str, entry: T, owner: object) -> None:
        """Register ``entry`` under ``name``; ``owner`` is the definition it comes from (a class
        or function): the same owner may register again, another may not.

        Raises:
            ValueError: ``name`` is registered already by another owner.
        """
        old = self._owners.get(name)
        if old is not None and old is not owner:
            by = getattr(old, "__name__", repr(old))
            raise ValueError(f"{self.kind} {name!r} is already registered by {by}")
        self._entries[name] = entry
        self._owners[name] = owner

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, in registration order."""
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        """The entry of ``name``.

        Raises:
            ValueError: unknown ``name`` (the message lists the known names).
        """
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries)
            raise ValueError(f"unknown {self.kind} {name!r} (choose from {known})") from None
