"""Handler registry. Each service declares its subscriptions in `<app>/handlers.py`:

    @handles(event_types.ORDER_PLACED, name="inventory.reserve_stock")
    def reserve_stock(event: ReceivedEvent) -> str | None: ...

The consuming service is the handler's app. Provisioning derives each service's EventBridge rule from
these declarations, so routing cannot drift from the code that handles the events.

A handler that drives only one saga coordinator says which (`coordinator="choreography"` or
`"stepfunctions"`); with ORDER_SAGA set to the other, it is not subscribed, so neither its rule nor
its routing exist (docs/sagas.md).

A handler that may share its transaction with the other messages of a receive says so
(`batchable=True`). It has no effect outside the database (a batch rolled back for another message's
failure would repeat it), and it locks no row but its own event's order's (detail.data.orderId) and
those its service's `locks_ahead` function took: the consumer dedupes a batch first, then enters that
function's context with the batch's new events, and runs the handlers inside it, in receive order if
the service locks ahead and in order-id order if not, so two workers' batches take their locks in one
order and cannot deadlock on PostgreSQL (a row the lock-ahead could not foresee is the exception:
PostgreSQL then picks a victim, which is handled again message by message). The
notifications' inserts qualify, the orders' reactions to the saga's events, inventory's (whose stock
rows many orders share, so it locks every stock row a receive needs first, in pk order) and the
set-based handlers below; payments do not, and the saga's commands are left unbatched
(docs/architecture.md, "Consuming").

A catch-all handler may take a receive's events as one set (`set_based=True`, audit and analytics):
it is called with the list of the receive's new events, and writes them with a statement per table
rather than per event, each statement's rows in key order so that two workers' sets take their row
locks in the same order and cannot deadlock. It records no events (a set has no one cause), and it
is batchable. Alone, a message is a set of one (docs/performance.md).

A handler that calls something outside the database that must not wait inside a transaction (a
payment gateway) says so (`own_transactions=True`): the consumer runs it outside any transaction, it
commits its own steps, and its ProcessedEvent row is inserted only after it returns, so a delivery
that died between two of its steps comes back to finish them (docs/architecture.md, "Consuming").
It is never batchable. It may take a run of a receive's consecutive new events for it at once
(`set_based=True`, every payments handler), and then returns, for each event in order, its
note or the exception that fails that event's message alone: it commits its steps for the whole
set, and settles alone any message that would fail the others.

A handler's `name` is its identity: the consumer stores it with the event id in ProcessedEvent to
detect duplicates. It is declared, never derived from the function, so renaming or moving a function
cannot turn every event it already handled into a new one. Names are `<service>.<handler>` and unique;
`tests/eventbus/test_registry.py` pins every one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .event_types import SOURCE_PREFIX, EventType
from .events import ReceivedEvent

Handler = Callable[[ReceivedEvent], "str | None"]
SetHandler = Callable[[list[ReceivedEvent]], None]
# An own-transactions set handler: for each event, in order, its note or the exception that fails it.
OwnSetHandler = Callable[[list[ReceivedEvent]], "list[str | Exception]"]
LocksAhead = Callable[[list[ReceivedEvent]], AbstractContextManager[None]]


@dataclass(frozen=True)
class Subscription:
    service: str
    handler_id: str
    handler: Handler | SetHandler | OwnSetHandler  # a SetHandler (OwnSetHandler) when set_based
    event_type: EventType | None  # None: every event whose source starts with SOURCE_PREFIX
    coordinator: str | None = None  # None: under either saga coordinator
    batchable: bool = False  # may share a transaction with other messages of the same receive
    own_transactions: bool = False  # runs outside the consumer's transaction and commits its own steps
    set_based: bool = False  # takes a list of events, a receive's new ones, and writes them at once

    @property
    def active(self) -> bool:
        return self.coordinator is None or self.coordinator == settings.ORDER_SAGA


_exact: dict[str, dict[tuple[str, str], Subscription]] = {}
_every_event: dict[str, Subscription] = {}
_locks_ahead: dict[str, LocksAhead] = {}


def _service_of(handler: Handler, handler_id: str) -> str:
    service = handler.__module__.split(".")[0]
    if not handler_id.startswith(f"{service}.") or handler_id == f"{service}.":
        raise ImproperlyConfigured(
            f"handler id {handler_id!r} of {handler.__module__}.{handler.__qualname__} must be '{service}.<name>'"
        )
    return service


def handles(
    *event_types: EventType,
    name: str,
    coordinator: str | None = None,
    batchable: bool = False,
    own_transactions: bool = False,
    set_based: bool = False,
) -> Callable[[Handler | OwnSetHandler], Handler | OwnSetHandler]:
    """Subscribe the decorated function to `event_types` under the stable id `name`; with `set_based`
    (own-transactions handlers only), it takes a list of events."""

    def register(handler: Handler | OwnSetHandler) -> Handler | OwnSetHandler:
        service = _service_of(handler, name)
        if batchable and own_transactions:
            raise ImproperlyConfigured(f"handler {name!r} commits its own transactions, so it cannot share a batch's")
        if set_based and not own_transactions:
            # A set in the consumer's transaction is a catch-all's (handles_every_event), which records
            # no events; a set with its own says, per event, how it went.
            raise ImproperlyConfigured(f"handler {name!r} takes sets, which only own-transactions handlers may")
        routes = _exact.setdefault(service, {})
        for event_type in event_types:
            key = (event_type.source, event_type.detail_type)
            existing = routes.get(key)
            if existing and existing.handler is not handler:
                raise ImproperlyConfigured(f"{service} already handles {event_type} with {existing.handler_id}")
            routes[key] = Subscription(
                service=service,
                handler_id=name,
                handler=handler,
                event_type=event_type,
                coordinator=coordinator,
                batchable=batchable,
                own_transactions=own_transactions,
                set_based=set_based,
            )
        return handler

    return register


def handles_every_event(
    *, name: str, set_based: bool = False
) -> Callable[[Handler | SetHandler], Handler | SetHandler]:
    """Subscribe the decorated function to every `ecommerce.*` event under the stable id `name`; with
    `set_based`, it takes a list of events."""

    def register(handler: Handler | SetHandler) -> Handler | SetHandler:
        service = _service_of(handler, name)
        _every_event[service] = Subscription(
            service=service,
            handler_id=name,
            handler=handler,
            event_type=None,
            batchable=set_based,
            set_based=set_based,
        )
        return handler

    return register


def locks_ahead(function: LocksAhead) -> LocksAhead:
    """Declare the decorated function as its service's lock-ahead: given a receive's new events, it
    returns the context in which their handlers run, having locked every shared row they will lock,
    at once and in one global order. Handlers whose rows many orders share can then be batchable,
    and a receive's handlers read their rows with one query instead of one each."""
    service = function.__module__.split(".")[0]
    if service in _locks_ahead and _locks_ahead[service] is not function:
        raise ImproperlyConfigured(f"{service} already locks ahead with {_locks_ahead[service].__qualname__}")
    _locks_ahead[service] = function
    return function


def locks_ahead_for(service: str) -> bool:
    return service in _locks_ahead


def locked_ahead(service: str, events: list[ReceivedEvent]) -> AbstractContextManager[None]:
    """The context for `service`'s handlers of `events` (registry, `locks_ahead`); nothing to enter if
    the service declares none or there is no event to handle."""
    function = _locks_ahead.get(service)
    return function(events) if function and events else nullcontext()


def subscriptions(*, active_only: bool = False) -> list[Subscription]:
    """Every declared subscription, or only those in force under the configured saga coordinator."""
    every = [*_every_event.values()]
    for routes in _exact.values():
        every.extend(routes.values())
    return [subscription for subscription in every if subscription.active or not active_only]


def check_unique_handler_ids() -> None:
    """Two functions under one id would share duplicate detection: each would skip the other's events.
    Called at start-up, once every handlers module is imported."""
    owners: dict[str, Handler] = {}
    for subscription in subscriptions():
        owner = owners.setdefault(subscription.handler_id, subscription.handler)
        if owner is not subscription.handler:
            raise ImproperlyConfigured(
                f"handler id {subscription.handler_id!r} is declared by both "
                f"{owner.__module__}.{owner.__qualname__} and "
                f"{subscription.handler.__module__}.{subscription.handler.__qualname__}"
            )


def services() -> list[str]:
    """The services that consume events under the configured coordinator."""
    return sorted({subscription.service for subscription in subscriptions(active_only=True)})


def subscription_for(service: str, source: str, detail_type: str) -> Subscription | None:
    exact = _exact.get(service, {}).get((source, detail_type))
    if exact and exact.active:
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
    for (source, detail_type), subscription in _exact.get(service, {}).items():
        if subscription.active:
            by_source.setdefault(source, []).append(detail_type)
    if not by_source:
        raise LookupError(f"{service} subscribes to no event")
    branches = [
        {"source": [source], "detail-type": sorted(detail_types)} for source, detail_types in sorted(by_source.items())
    ]
    return branches[0] if len(branches) == 1 else {"$or": branches}
