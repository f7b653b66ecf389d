"""One name registry for everything a run picks by name: mask families (``--density``), models
(``--model``), losses (``--loss``) and datasets (``--dataset``).

Each kind keeps one :class:`Registry` of its entries; registering a name twice with the same
definition is a no-op (re-importing a module), with another definition an error. The lookups
give one-line errors that list the known names. A module-level list of a kind's names (such as
``MODEL_NAMES``) is a :class:`NameView`: always the names registered so far, never a copy taken
at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, overload

__all__ = ["Registry", "NameView"]

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


class NameView(Sequence[str]):
    """A read-only, always current view of a kind's registered names.

    ``names`` is the kind's lookup (e.g. :func:`mri_n2n.models.registry.model_names`); every use
    of the view asks it again, so a name registered after the import (a plug-in's model, a
    test's dataset) is in the view, also where the view was imported by name
    (``from mri_n2n.models import MODEL_NAMES``). Iterating, indexing, ``len``, ``in`` and ``==``
    (with a tuple or another view) behave as on the tuple of the current names; ``tuple(view)``
    takes a copy.

    Args:
        names: ``() -> tuple[str, ...]``, the registered names in registration order.
    """

    __slots__ = ("_names",)

    def __init__(self, names: Callable[[], tuple[str, ...]]) -> None:
        self._names = names

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, NameView)):
            return self._names() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # its contents change: not hashable, like a list

    def __repr__(self) -> str:
        return repr(self._names())
