"""Guarded state transitions. Each aggregate declares its table once, next to its status choices."""

from __future__ import annotations

from collections.abc import Mapping


class IllegalTransition(Exception):
    def __init__(self, what: str, current: str, target: str) -> None:
        super().__init__(f"{what} cannot go from {current} to {target}")
        self.current = current
        self.target = target


def is_legal(*, table: Mapping[str, frozenset[str]], current: str, target: str) -> bool:
    return target in table.get(current, frozenset())


def guard_transition(*, table: Mapping[str, frozenset[str]], what: str, current: str, target: str) -> None:
    if not is_legal(table=table, current=current, target=target):
        raise IllegalTransition(what, current, target)


class GuardedStatus:
    """Model mixin: `status` changes only through transition_to(), along the class's TRANSITIONS."""

    TRANSITIONS: Mapping[str, frozenset[str]] = {}

    def can_transition_to(self, target: str) -> bool:
        return is_legal(table=self.TRANSITIONS, current=self.status, target=target)

    def transition_to(self, target: str) -> str:
        """Move to `target` or raise IllegalTransition. Returns the previous status."""
        guard_transition(table=self.TRANSITIONS, what=str(self), current=self.status, target=target)
        previous, self.status = self.status, target
        return previous
