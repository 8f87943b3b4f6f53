"""Handler registry. Each app declares its subscriptions in `<app>/handlers.py`:

    @handles(catalogue.ORDER_PLACED)
    def reserve_stock(event: ReceivedEvent) -> str | None: ...

The consuming service is the handler's app. Provisioning derives each service's EventBridge rule from
these declarations, so routing cannot drift from the code that handles the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .catalogue import SOURCE_PREFIX, EventType

if TYPE_CHECKING:
    from .consumer import ReceivedEvent

Handler = Callable[["ReceivedEvent"], "str | None"]


@dataclass(frozen=True)
class Subscription:
    service: str
    handler: Handler
    event_type: EventType | None  # None: every event whose source starts with SOURCE_PREFIX

    @property
    def handler_name(self) -> str:
        return f"{self.service}.{self.handler.__name__}"


_exact: dict[str, dict[tuple[str, str], Subscription]] = {}
_every_event: dict[str, Subscription] = {}


def _service_of(handler: Handler) -> str:
    return handler.__module__.split(".")[0]


def handles(*event_types: EventType) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        service = _service_of(handler)
        routes = _exact.setdefault(service, {})
        for event_type in event_types:
            key = (event_type.source, event_type.detail_type)
            existing = routes.get(key)
            if existing and existing.handler is not handler:
                raise ValueError(f"{service} already handles {event_type} with {existing.handler_name}")
            routes[key] = Subscription(service=service, handler=handler, event_type=event_type)
        return handler

    return register


def handles_every_event(handler: Handler) -> Handler:
    service = _service_of(handler)
    _every_event[service] = Subscription(service=service, handler=handler, event_type=None)
    return handler


def services() -> list[str]:
    return sorted(set(_exact) | set(_every_event))


def subscription_for(service: str, source: str, detail_type: str) -> Subscription | None:
    exact = _exact.get(service, {}).get((source, detail_type))
    if exact:
        return exact
    catch_all = _every_event.get(service)
    if catch_all and source.startswith(SOURCE_PREFIX):
        return catch_all
    return None


def event_pattern(service: str) -> dict:
    """The EventBridge pattern that matches exactly the events `service` handles."""
    if service in _every_event:
        return {"source": [{"prefix": SOURCE_PREFIX}]}
    by_source: dict[str, list[str]] = {}
    for source, detail_type in _exact.get(service, {}):
        by_source.setdefault(source, []).append(detail_type)
    if not by_source:
        raise LookupError(f"{service} subscribes to no event")
    branches = [
        {"source": [source], "detail-type": sorted(detail_types)} for source, detail_types in sorted(by_source.items())
    ]
    return branches[0] if len(branches) == 1 else {"$or": branches}
