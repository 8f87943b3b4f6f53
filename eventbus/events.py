"""The event contract handlers import: building an event's `detail` and parsing a delivered envelope.

EventBridge wraps our `detail` in its envelope (`version, id, detail-type, source, account, time,
region, resources`, plus `replay-name` on a replay). The envelope `id` is new on every replay, so it
is never an idempotency key: `detail.metadata.eventId`, chosen by the producer, is
(docs/architecture.md, "The event envelope").
"""

from __future__ import annotations

import contextvars
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .event_types import EventType, lookup
from .validation import CURRENT_SCHEMA_VERSION, SchemaViolation, validate_detail

_causation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("causation_id", default=None)


class MalformedEvent(ValueError):
    """A delivered message that is not a valid shopbus event; the reason says why."""


@dataclass(frozen=True)
class ReceivedEvent:
    event_type: EventType
    event_id: uuid.UUID
    schema_version: int
    occurred_at: str
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]
    envelope_id: str
    replay_name: str
    envelope: dict[str, Any]

    @property
    def order_id(self) -> uuid.UUID:
        return uuid.UUID(self.data["orderId"])


@contextmanager
def caused_by(event_id: uuid.UUID | str) -> Iterator[None]:
    """Events built inside this block name `event_id` as their causationId."""
    token = _causation_id.set(str(event_id))
    try:
        yield
    finally:
        _causation_id.reset(token)


def build_detail(
    *, event_type: EventType, event_id: uuid.UUID, occurred_at: datetime, correlation_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """The `detail` of a new event, validated against its schema (raises SchemaViolation)."""
    detail = {
        "metadata": {
            "eventId": str(event_id),
            "schemaVersion": CURRENT_SCHEMA_VERSION,
            "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
            "correlationId": correlation_id,
            "causationId": _causation_id.get(),
        },
        "data": data,
    }
    validate_detail(event_type, detail)
    return detail


def dumps_detail(detail: dict[str, Any]) -> str:
    """The detail as PutEvents sends it: compact and key-sorted, so its size is stable."""
    return json.dumps(detail, separators=(",", ":"), sort_keys=True)


def parse_envelope(body: str) -> ReceivedEvent:
    """An EventBridge envelope as SQS delivers it. `detail` is a JSON object, never a string."""
    try:
        envelope = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise MalformedEvent("body is not an EventBridge envelope")
    missing = {"source", "detail-type", "detail"} - envelope.keys()
    if missing:
        raise MalformedEvent(f"envelope lacks {', '.join(sorted(missing))}")
    event_type = lookup(envelope["source"], envelope["detail-type"])
    if event_type is None:
        raise MalformedEvent(f"{envelope['source']}/{envelope['detail-type']} is not a shopbus event type")
    detail = envelope["detail"]
    try:
        validate_detail(event_type, detail)
    except SchemaViolation as exc:
        raise MalformedEvent(str(exc)) from exc
    metadata = detail["metadata"]
    return ReceivedEvent(
        event_type=event_type,
        event_id=uuid.UUID(metadata["eventId"]),
        schema_version=metadata["schemaVersion"],
        occurred_at=metadata["occurredAt"],
        correlation_id=metadata["correlationId"],
        causation_id=metadata.get("causationId"),
        data=detail["data"],
        envelope_id=str(envelope.get("id", "")),
        replay_name=str(envelope.get("replay-name", "")),
        envelope=envelope,
    )
