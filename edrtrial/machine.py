"""State machines: one table of transitions per entity, and the one way a state is written.

Every entity with a life cycle (ticket, device action, offboarding task, tenant polling,
outbox message) names its steps in a `Machine`: which states a step may start from and
where it leads. A step is written as a conditional UPDATE from the state the caller saw,
so of two processes racing for the same row exactly one moves it; the other learns that
the row changed meanwhile (SELECT … FOR UPDATE alone does nothing on SQLite, and an ORM
attribute write would silently overwrite the winner).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import inspect, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from edrtrial.errors import EdrTrialError, TransitionError
from edrtrial.words import Words

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class Step(Generic[S]):
    """One row of a transition table: the states it may start from and the state it leads to."""

    sources: tuple[S, ...]
    target: S


class Machine(Generic[S]):
    """An entity's transition table over one state column of one model."""

    def __init__(
        self,
        entity: str,
        model: type[Any],
        column: str,
        steps: Mapping[str, Step[S]],
        error: type[EdrTrialError] = TransitionError,
    ) -> None:
        self.entity = entity
        self.error = error
        self.model = model
        self.column = column
        self.steps = dict(steps)

    def step(self, name: str) -> Step[S]:
        """The named step (a typo is a programming error, not a user's)."""
        return self.steps[name]

    def can(self, name: str, current: str) -> bool:
        """Whether the step may start from `current`."""
        return current in self.steps[name].sources

    def check(self, name: str, current: str, label: str) -> Step[S]:
        """The step, or the machine's error saying which states it needs."""
        step = self.steps[name]
        if current not in step.sources:
            needed = " or ".join(s.value for s in step.sources)
            raise self.error(
                Words(
                    "%(what)s is %(state)s; %(step)s needs it to be %(needed)s",
                    what=label,
                    state=current,
                    step=name,
                    needed=needed,
                )
            )
        return step

    def move(
        self,
        session: Session,
        row: Any,
        name: str,
        *,
        unchanged: Sequence[str] = (),
        **values: Any,
    ) -> bool:
        """Take the step from the row's current state, or return False if it changed meanwhile.

        The session is flushed first (the UPDATE must not overtake the caller's pending
        changes), and the row is refreshed afterwards either way, so the caller sees the state
        that won. `unchanged` names columns that must also still hold what the caller read: a
        step that keeps the state (escalating a `new` ticket) is told apart that way.
        """
        seen = {column: getattr(row, column) for column in unchanged}
        current = getattr(row, self.column)
        moved = self.move_id(session, self._id(row), current, name, unchanged=seen, **values)
        session.refresh(row)
        return moved

    def move_id(
        self,
        session: Session,
        row_id: Any,
        current: str,
        name: str,
        *,
        unchanged: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> bool:
        """Take the step for the row with this id from `current`, the state the caller read.

        For callers that hold an id, not a loaded row (a claim before a slow EDR call, a
        status read long after the list was made). False if the row is no longer in
        `current`: another writer moved it, and its state stands. A loaded copy of the row
        in the session is expired, so it is read afresh.
        """
        step = self.check(name, current, f"{self.entity} #{row_id}")
        if self.column in values:
            raise ValueError(f"{self.entity}: the step {name!r} sets {self.column}, not values")
        session.flush()
        result = session.execute(
            update(self.model)
            .where(self._pk() == row_id, getattr(self.model, self.column) == current)
            .where(*(getattr(self.model, c) == v for c, v in (unchanged or {}).items()))
            .values({self.column: step.target, **values})
            .execution_options(synchronize_session=False)
        )
        loaded = session.identity_map.get(identity_key(self.model, row_id))
        if loaded is not None:
            session.expire(loaded)
        count = getattr(result, "rowcount", -1)
        if count not in (0, 1):  # a driver that does not count would make every step "lost"
            raise RuntimeError(f"{self.entity} #{row_id}: the store reported {count} rows moved")
        return bool(count == 1)

    def _pk(self) -> Any:
        return self.model.__mapper__.primary_key[0]

    def _id(self, row: Any) -> Any:
        return inspect(row).identity[0]
