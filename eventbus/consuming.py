"""Consuming service queues: the pollers, and dispatch of each message to its service's handler.

Each message is parsed, validated against its schema, and dispatched by (source, detail-type) to the
service's handler inside one transaction that also inserts ProcessedEvent(handler id, eventId); a
handler that commits its own steps (`own_transactions`) runs outside it, and its ProcessedEvent row
is inserted after it returns (a receive's rows in one INSERT). The message is deleted only after that
commits. A message that fails is left on the queue: it comes back (after a backoff, at most the
visibility timeout) and after maxReceiveCount SQS moves it to the queue's DLQ. The reason is logged
and kept in DeliveryFailure (docs/architecture.md, "Consuming").
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import aws, metrics, outbox, registry, topology
from .events import MalformedEvent, ReceivedEvent, caused_by, parse_envelope
from .models import DeliveryFailure, ProcessedEvent
from .outbox import RelayThreads
from .rows import db_value, insert_new_rows, insert_rows
from .visibility import VisibilityKeeper

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_RECEIVE = 10  # SQS's limit


class DeliveryResult(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    MALFORMED = "malformed"
    UNROUTABLE = "unroutable"


@dataclass
class Outcome:
    acknowledged: bool
    result: DeliveryResult
    event: ReceivedEvent | None = None
    handler: str = ""
    note: str = ""
    # The handler's own time; a batch's commit comes on top.
    duration_ms: float = 0.0

    @property
    def event_id(self) -> str:
        return str(self.event.event_id) if self.event else ""

    @property
    def detail_type(self) -> str:
        return self.event.event_type.detail_type if self.event else ""

    def end_to_end_ms(self) -> float | None:
        """Milliseconds from the producer's occurredAt until now (just after the handler committed)."""
        occurred_at = parse_datetime(self.event.occurred_at) if self.event else None
        return (timezone.now() - occurred_at).total_seconds() * 1000 if occurred_at else None


def trace_id_of(header: str) -> str:
    """The X-Ray trace id in an AWSTraceHeader ("Root=1-…;Parent=…;Sampled=1"), or ""."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "Root":
            return value
    return ""


def handle_message(*, service: str, body: str) -> Outcome:
    """Parse, dedupe and dispatch one message in its own transaction. Never raises: the outcome says
    whether to delete it."""
    return handle_batch(service=service, bodies=[body])[0]


def handle_batch(*, service: str, bodies: list[str]) -> list[Outcome]:
    """Handle one receive's messages for a service: one outcome per body, in order. Never raises.

    Each message gets a transaction of its own, unless every handler of the batch is `batchable`
    (registry): then the batch is first tried as one transaction, with no savepoints, so up to ten
    messages pay for one BEGIN and one COMMIT, where a transaction (or a savepoint) per message would
    cost two more round trips each (docs/performance.md). A set-based handler's batch is one set: one
    INSERT dedupes all of it, and the handler writes the new events at once. If any of them fails, or
    the commit does, that attempt is rolled back whole and each message is handled again alone, in the
    same poll: each still succeeds or fails on its own, and a poisoned one holds back no other.
    Handlers that commit their own steps (payments) run one by one outside any transaction, sharing
    only the receive's dedupe read and the INSERT of its ProcessedEvent rows.
    """
    outcomes: dict[int, Outcome] = {}
    routed: list[tuple[int, ReceivedEvent, registry.Subscription]] = []
    for index, body in enumerate(bodies):
        route = _route(service=service, body=body)
        if isinstance(route, Outcome):
            outcomes[index] = route
        else:
            routed.append((index, *route))
    if len(routed) > 1 and all(subscription.batchable for _, _, subscription in routed):
        started = time.monotonic()
        try:
            with transaction.atomic():
                together = _handle_together(routed)
        except Exception as exc:  # noqa: BLE001 - each message is retried alone below, which logs its failure
            logger.info("%s: a batch of %d failed (%s); handling its messages one by one", service, len(routed), exc)
        else:
            # Each message waited for the whole batch, commit included, before it was done.
            batch_ms = (time.monotonic() - started) * 1000
            for outcome in together.values():
                outcome.duration_ms = batch_ms
            outcomes.update(together)
            routed = []
    own = [entry for entry in routed if entry[2].own_transactions]
    if own:
        outcomes.update(_handle_in_own_transactions(own))
    for index, event, subscription in routed:
        if not subscription.own_transactions:
            outcomes[index] = _handle_alone(event=event, subscription=subscription)
    return [outcomes[index] for index in range(len(bodies))]


def _route(*, service: str, body: str) -> Outcome | tuple[ReceivedEvent, registry.Subscription]:
    try:
        event = parse_envelope(body)
    except MalformedEvent as exc:
        return Outcome(acknowledged=False, result=DeliveryResult.MALFORMED, note=str(exc))
    subscription = registry.subscription_for(service, event.event_type.source, event.event_type.detail_type)
    if subscription is None:
        # Left for the DLQ rather than dropped: a rule ahead of its handler is a deploy to finish.
        return Outcome(
            acknowledged=False, result=DeliveryResult.UNROUTABLE, event=event, note=f"{service} has no handler for it"
        )
    return event, subscription


def _handle_alone(*, event: ReceivedEvent, subscription: registry.Subscription) -> Outcome:
    started = time.monotonic()
    try:
        with transaction.atomic():
            outcome = _handle_together([(0, event, subscription)])[0]
    except Exception as exc:  # noqa: BLE001 - logged with its traceback by _failed; the message is retried
        outcome = _failed(event=event, subscription=subscription, exc=exc)
    outcome.duration_ms = (time.monotonic() - started) * 1000  # the commit included
    return outcome


def _failed(*, event: ReceivedEvent, subscription: registry.Subscription, exc: Exception) -> Outcome:
    # Whatever the handler raised, the message stays on the queue for a retry and then the DLQ.
    logger.warning("handler %s failed on event %s", subscription.handler_id, event.event_id, exc_info=exc)
    return Outcome(
        acknowledged=False,
        result=DeliveryResult.FAILED,
        event=event,
        handler=subscription.handler_id,
        note=f"{type(exc).__name__}: {exc}",
    )


def _handle_together(routed: list[tuple[int, ReceivedEvent, registry.Subscription]]) -> dict[int, Outcome]:
    """A receive's batchable messages, or a single message, in the caller's transaction: as one set if
    they share a set-based handler, else each to its handler. Raises whatever a handler raises."""
    subscription = routed[0][2]
    if subscription.set_based and all(other is subscription for _, _, other in routed):
        return _handle_set(events=[(index, event) for index, event, _ in routed], subscription=subscription)
    return _handle_each(routed)


def _handle_each(routed: list[tuple[int, ReceivedEvent, registry.Subscription]]) -> dict[int, Outcome]:
    """Dedupe a receive's messages with an INSERT per handler, run the new ones' handlers (in receive
    order, or in the order of the orders they lock: below), then write the events they recorded with
    one INSERT (outbox, `rows_written_together`) and keep their notes with one pipelined UPDATE; in
    the caller's transaction, raising whatever a handler raises.

    Every batch takes its locks in one global order, so two workers' batches do not deadlock (save
    on a row a lock-ahead could not foresee: registry): first the ProcessedEvent rows, by handler id
    and then event id (a copy of an event delivered to two workers waits on that unique-index entry,
    holding no order yet), then the rows the service locks ahead for all the new events at once
    (registry, `locks_ahead`: inventory's reservations by order id and then its stock by pk, the
    orders' by pk), or else the orders' rows as its handlers reach them, in order-id order (a
    batchable handler locks no other row: registry)."""
    by_handler: dict[str, list[ReceivedEvent]] = {}
    for _, event, subscription in routed:
        by_handler.setdefault(subscription.handler_id, []).append(event)
    new = {
        (handler_id, event_id)
        for handler_id, events in sorted(by_handler.items())
        for event_id in _mark_processed_set(handler_id=handler_id, events=events)
    }
    outcomes: dict[int, Outcome] = {}
    notes: list[tuple[str, ReceivedEvent, str]] = []
    fresh = [event for _, event, subscription in routed if (subscription.handler_id, event.event_id) in new]
    service = routed[0][2].service
    # A service that locks its rows ahead runs its handlers in receive order, as they would run one by
    # one (which order gets the last units of a product is then the queue's, not the order ids');
    # the others in order-id order, the order of the rows they lock. sorted() is stable: a second
    # copy of an event stays behind the first, which is the one handled.
    in_turn = routed if registry.locks_ahead_for(service) else sorted(routed, key=_order_id_of)
    with registry.locked_ahead(service, fresh), outbox.rows_written_together():
        for index, event, subscription in in_turn:
            handler_id = subscription.handler_id
            outcome = outcomes[index] = Outcome(
                acknowledged=True, result=DeliveryResult.DUPLICATE, event=event, handler=handler_id
            )
            if (handler_id, event.event_id) not in new:
                continue
            new.discard((handler_id, event.event_id))
            with caused_by(event.event_id):
                if subscription.set_based:
                    # A service's catch-all set beside its own exact handlers: each event is a set of
                    # one, as it would be alone.
                    subscription.handler([event])
                else:
                    outcome.note = subscription.handler(event) or ""
            _refuse_swallowed_errors(handler_id)
            outcome.result = DeliveryResult.PROCESSED
            if outcome.note:
                notes.append((handler_id, event, outcome.note))
    _note_processed(notes)
    return outcomes


def _order_id_of(entry: tuple[int, ReceivedEvent, registry.Subscription]) -> str:
    return entry[1].data.get("orderId", "")


def _handle_set(*, events: list[tuple[int, ReceivedEvent]], subscription: registry.Subscription) -> dict[int, Outcome]:
    """Dedupe (index, event) pairs with one INSERT and hand the new events to the set-based handler at
    once, in the caller's transaction; raises whatever the handler raises. A second copy of an event
    in the same set is a duplicate, as it would be one message later."""
    handler_id = subscription.handler_id
    new_ids = _mark_processed_set(handler_id=handler_id, events=[event for _, event in events])
    fresh: list[ReceivedEvent] = []
    outcomes: dict[int, Outcome] = {}
    for index, event in events:
        result = DeliveryResult.DUPLICATE
        if event.event_id in new_ids:
            new_ids.discard(event.event_id)
            fresh.append(event)
            result = DeliveryResult.PROCESSED
        outcomes[index] = Outcome(acknowledged=True, result=result, event=event, handler=handler_id)
    if fresh:
        subscription.handler(fresh)
        _refuse_swallowed_errors(handler_id)
    return outcomes


def _refuse_swallowed_errors(handler_id: str) -> None:
    if transaction.get_connection().needs_rollback:
        # The handler caught an error from a block that rolls back with the transaction (a service
        # without a savepoint): its work is lost, so the message must not be acknowledged.
        raise TransactionManagementError(f"{handler_id} swallowed an error; the delivery's work is rolled back")


def _handle_in_own_transactions(routed: list[tuple[int, ReceivedEvent, registry.Subscription]]) -> dict[int, Outcome]:
    """Run handlers that commit their own steps (registry, `own_transactions`) outside any transaction,
    in receive order: each message in turn, or a set-based handler's run of consecutive new events at
    once. Then insert the ProcessedEvent rows of those that succeeded, with their notes, in one
    autocommitted INSERT. One SELECT first finds the receive's events already handled, and a second
    copy of an event in the receive is a duplicate of the first. Never raises: a handler that raises
    fails its own message only (a set handler's whole set, unless it says per event).

    A row is written only after its handler's last step committed, so a delivery that dies between
    two steps, or before the INSERT, is not taken for a duplicate when it comes back: the handler runs
    again and its own state tells it what is left to do. A message is still deleted only after both
    committed. Two deliveries of one event at once may both run the handler, which is why such a
    handler must be safe to repeat by its own state, not only by this row: the one that inserts
    second finds the row and writes nothing."""
    try:
        handled = _already_processed(routed)
    except Exception as exc:  # noqa: BLE001 - the database is unreachable: every message is retried
        return {
            index: _failed(event=event, subscription=subscription, exc=exc) for index, event, subscription in routed
        }
    outcomes: dict[int, Outcome] = {}
    turns: list[list[tuple[int, ReceivedEvent, registry.Subscription]]] = []
    for index, event, subscription in routed:
        handler_id = subscription.handler_id
        if (handler_id, event.event_id) in handled:
            outcomes[index] = Outcome(
                acknowledged=True, result=DeliveryResult.DUPLICATE, event=event, handler=handler_id
            )
            continue
        handled.add((handler_id, event.event_id))
        # A set handler takes a run of its events that no other event interrupts, so the receive is
        # handled in its order, as one by one: a cancel is seen before a later reservation of its order.
        if subscription.set_based and turns and turns[-1][-1][2] is subscription:
            turns[-1].append((index, event, subscription))
        else:
            turns.append([(index, event, subscription)])
    processed: list[tuple[int, ReceivedEvent, registry.Subscription]] = []
    for turn in turns:
        started = time.monotonic()
        results = _run_own_turn(turn)
        # Each message of a set waited for the whole set, as in a batch.
        duration_ms = (time.monotonic() - started) * 1000
        for (index, event, subscription), result in zip(turn, results, strict=True):
            if isinstance(result, Exception):
                outcome = _failed(event=event, subscription=subscription, exc=result)
            else:
                outcome = Outcome(
                    acknowledged=True,
                    result=DeliveryResult.PROCESSED,
                    event=event,
                    handler=subscription.handler_id,
                    note=result,
                )
                processed.append((index, event, subscription))
            outcome.duration_ms = duration_ms
            outcomes[index] = outcome
    rows = [
        {**_processed_row(subscription.handler_id, event), "note": outcomes[index].note[:300]}
        for index, event, subscription in processed
    ]
    try:
        if rows:
            insert_rows(ProcessedEvent, rows, conflict=["handler", "event_id"])
    except Exception as exc:  # noqa: BLE001 - unrecorded, each is retried, and its handler finds its work done
        for index, event, subscription in processed:
            outcomes[index] = _failed(event=event, subscription=subscription, exc=exc)
    return outcomes


def _run_own_turn(turn: list[tuple[int, ReceivedEvent, registry.Subscription]]) -> list[str | Exception]:
    """One turn of own-transactions handling: each event's note, or the exception that fails it."""
    subscription = turn[0][2]
    events = [event for _, event, _ in turn]
    try:
        if subscription.set_based:
            results = subscription.handler(events)
            if len(results) != len(events):
                raise TypeError(f"{subscription.handler_id} answered {len(results)} of a set of {len(events)}")
            return [result if isinstance(result, Exception) else result or "" for result in results]
        (event,) = events
        with caused_by(event.event_id):
            return [subscription.handler(event) or ""]
    except Exception as exc:  # noqa: BLE001 - the turn's messages are retried, the others go on
        return [exc] * len(events)


def _already_processed(routed: list[tuple[int, ReceivedEvent, registry.Subscription]]) -> set[tuple[str, uuid.UUID]]:
    """The (handler id, event id) pairs of a receive that have a ProcessedEvent row: one SELECT."""
    keys = {(subscription.handler_id, event.event_id) for _, event, subscription in routed}
    rows = ProcessedEvent.objects.filter(
        handler__in={handler_id for handler_id, _ in keys}, event_id__in={event_id for _, event_id in keys}
    ).values_list("handler", "event_id")
    return set(rows) & keys


def _mark_processed_set(*, handler_id: str, events: list[ReceivedEvent]) -> set[uuid.UUID]:
    """Record that `handler_id` handled each of `events` with one INSERT … ON CONFLICT DO NOTHING
    RETURNING, and return the ids of those it had not: catching an IntegrityError instead would need a
    savepoint, two more round trips on every delivery. A concurrent delivery of the same event waits on
    the unique index and then finds the row, so only one of them runs the handler. Rows go in event-id
    order, so two workers recording overlapping sets wait for each other in the same order and never
    deadlock."""
    by_id = {event.event_id: event for event in reversed(events)}  # the first copy of each
    rows = [_processed_row(handler_id, event) for _, event in sorted(by_id.items())]
    stored = {db_value(ProcessedEvent, "event_id", event_id): event_id for event_id in by_id}
    written = insert_new_rows(ProcessedEvent, rows, conflict=["handler", "event_id"], returning="event_id")
    return {stored[value] for value in written}


def _processed_row(handler_id: str, event: ReceivedEvent) -> dict[str, Any]:
    return {
        "handler": handler_id,
        "event_id": event.event_id,
        "detail_type": event.event_type.detail_type,
        "envelope_id": event.envelope_id,
        "replay_name": event.replay_name,
    }


def _note_processed(notes: list[tuple[str, ReceivedEvent, str]]) -> None:
    """What each handler said it did, for the order timeline: (handler id, event, note). One
    executemany, which psycopg sends as one pipeline, a single round trip for a whole batch."""
    if not notes:
        return
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {quote(ProcessedEvent._meta.db_table)} SET {quote('note')} = %s "
            f"WHERE {quote('handler')} = %s AND {quote('event_id')} = %s",
            [
                (note[:300], handler_id, db_value(ProcessedEvent, "event_id", event.event_id))
                for handler_id, event, note in notes
            ],
        )


def record_failure(*, queue_name: str, message_id: str, receive_count: int, outcome: Outcome) -> None:
    now = timezone.now()
    latest = {
        "queue_name": queue_name,
        "event_id": outcome.event_id,
        "detail_type": outcome.detail_type,
        "reason": f"{outcome.result}: {outcome.note}"[:5000],
        "receive_count": receive_count,
        "last_failed_at": now,
    }
    # One row per failing event on a queue, whichever of its messages failed last (a redrive sends a
    # new one); a message too broken to name its event keeps a row of its own.
    latest["message_id"] = message_id
    key = {"queue_name": queue_name, "event_id": outcome.event_id} if outcome.event_id else {"message_id": message_id}
    DeliveryFailure.objects.update_or_create(**key, defaults=latest, create_defaults={**latest, "first_failed_at": now})


class QueuePoller(threading.Thread):
    """Long-polls one service queue until stopped."""

    def __init__(self, queue: topology.ServiceQueue, stop: threading.Event) -> None:
        super().__init__(name=f"events-{queue.service}", daemon=True)
        self.queue = queue
        self.stop_event = stop
        self.queue_url: str | None = None
        self.keeper = VisibilityKeeper(queue_name=queue.name, visibility_timeout=queue.visibility_timeout)

    def run(self) -> None:
        logger.info("consuming %s for %s", self.queue.name, self.queue.service)
        self.keeper.start()
        try:
            self._consume()
        finally:
            self.keeper.stop()
        logger.info("stopped consuming %s", self.queue.name)

    def _consume(self) -> None:
        while not self.stop_event.is_set():
            try:
                received = self.poll_once()
                if self.queue.gathers_batches and received < MAX_MESSAGES_PER_RECEIVE:
                    self.stop_event.wait(settings.EVENT_BATCHING_WINDOW_MS / 1000)
            except (BotoCoreError, ClientError) as exc:
                logger.warning("queue %s: %s; retrying in 2s", self.queue.name, exc)
                self.queue_url = None
                self.stop_event.wait(2)
            except Exception:
                # The thread must outlive any single bad batch.
                logger.exception("queue %s: unexpected error; retrying in 2s", self.queue.name)
                self.stop_event.wait(2)
            finally:
                close_old_connections()

    def poll_once(self) -> int:
        sqs = aws.client("sqs")
        if self.queue_url is None:
            self.queue_url = sqs.get_queue_url(QueueName=self.queue.name)["QueueUrl"]
        response = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=MAX_MESSAGES_PER_RECEIVE,
            WaitTimeSeconds=min(settings.EVENT_CONSUMER_WAIT_SECONDS, 10),
            MessageSystemAttributeNames=["ApproximateReceiveCount", "AWSTraceHeader"],
        )
        messages = response.get("Messages", [])
        metrics.recorder.heartbeat(service=self.queue.service, received=len(messages))
        if not messages:
            return 0
        self.keeper.watch(queue_url=self.queue_url, receipt_handles=[message["ReceiptHandle"] for message in messages])
        bodies = [message.get("Body", "") for message in messages]
        try:
            outcomes = handle_batch(service=self.queue.service, bodies=bodies)
        finally:
            self.keeper.unwatch()
        done = [
            message for message, outcome in zip(messages, outcomes, strict=True) if self.settle(sqs, message, outcome)
        ]
        if done:
            result = sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
            for failure in result.get("Failed", []):
                # The message comes back and is skipped as a duplicate: harmless, worth a line.
                logger.warning("queue %s: delete failed: %s", self.queue.name, failure)
        return len(messages)

    def settle(self, sqs, message: dict[str, Any], outcome: Outcome) -> bool:
        """Metrics and a log line for one handled message, and its failure recorded; True if it is to be
        deleted."""
        attributes = message.get("Attributes", {})
        receive_count = int(attributes.get("ApproximateReceiveCount", "1"))
        metrics.record_delivery(
            service=self.queue.service,
            detail_type=outcome.detail_type,
            result=outcome.result,
            processing_ms=outcome.duration_ms,
            end_to_end_ms=outcome.end_to_end_ms() if outcome.result == DeliveryResult.PROCESSED else None,
        )
        log = {
            "queue": self.queue.name,
            "message_id": message["MessageId"],
            "event_id": outcome.event_id,
            "detail_type": outcome.detail_type,
            "handler": outcome.handler,
            "outcome": outcome.result,
            "duration_ms": round(outcome.duration_ms, 1),
        }
        trace_id = trace_id_of(attributes.get("AWSTraceHeader", ""))
        if trace_id:
            log["trace_id"] = trace_id
        if outcome.acknowledged:
            if outcome.note:
                log["note"] = outcome.note
            logger.info("event %s", json.dumps(log), extra={"fields": log})
            return True
        log.update(reason=outcome.note, receive_count=receive_count)
        logger.warning("event %s", json.dumps(log), extra={"fields": log})
        record_failure(
            queue_name=self.queue.name, message_id=message["MessageId"], receive_count=receive_count, outcome=outcome
        )
        self.back_off(sqs, message, receive_count)
        return False

    def back_off(self, sqs, message: dict[str, Any], receive_count: int) -> None:
        delay = min(self.queue.visibility_timeout, settings.EVENT_RETRY_BASE_SECONDS * 2 ** (receive_count - 1))
        try:
            sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=int(delay)
            )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("queue %s: could not shorten visibility: %s", self.queue.name, exc)


class EventConsumer:
    """One poller thread per subscribed service queue, and the relay threads; stop() returns within the
    long-poll wait. It stops the pollers first, so that what their last receives commit is published
    before the relay threads stop."""

    def __init__(self, services: list[str] | None = None) -> None:
        known = registry.services()
        chosen = services or known
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise ValueError(f"unknown event consumer(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        self.services = chosen
        self.stop_event = threading.Event()
        self.pollers = [QueuePoller(topology.SERVICE_QUEUES[service], self.stop_event) for service in chosen]
        self.relays = RelayThreads(sweeps=True)

    def start(self) -> None:
        # Made here, once, rather than by whichever thread calls first: they are then part of the
        # heap the worker freezes when it is ready (shopbus_site/celery.py).
        aws.client("sqs")
        aws.client("sqs", fast=True)  # the pollers' visibility keepers'
        aws.client("events")
        self.relays.start()
        for poller in self.pollers:
            poller.start()

    def stop(self, timeout: float = 15) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for poller in self.pollers:
            poller.join(max(0.0, deadline - time.monotonic()))
        self.relays.stop(max(0.0, deadline - time.monotonic()))
