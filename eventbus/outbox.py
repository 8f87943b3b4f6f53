"""The transactional outbox: recording events with the state change, and relaying them to EventBridge.

A service records events on an EventedModel and saves it inside `transaction.atomic()`; the post-save
hook turns them into OutboxEvent rows in that same transaction. The relay publishes due rows with
PutEvents and is woken on commit, by an in-process relay thread in a worker or by a Celery task
elsewhere, and also runs periodically (docs/architecture.md, "Publishing").
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, connections, transaction
from django.db.models import Case, F, Min, Q, QuerySet, Value, When
from django.utils import timezone

from . import aws, claims, metrics, sweeps, topology
from .event_types import EventType
from .events import build_detail, dumps_detail
from .models import EventedModel, OutboxEvent
from .rows import insert_rows
from .sweeps import Sweep

logger = logging.getLogger(__name__)

MAX_ENTRIES_PER_PUT = 10
MAX_BYTES_PER_PUT = 256 * 1024
# PutEvents per-entry error codes that a later attempt can succeed with; any other code is final.
RETRYABLE_ERROR_CODES = {"InternalFailure", "InternalException", "ThrottlingException", "ServiceUnavailable"}
# Rows born claimed that one relay pass takes at most, as a claim pass claims at most 500.
HANDED_PER_PASS = 500


class EventTooLarge(ValueError):
    pass


def entry_size(*, source: str, detail_type: str, detail_json: str) -> int:
    """Size of one PutEvents entry as EventBridge counts it (the 14 bytes are for Time)."""
    return 14 + len(source.encode()) + len(detail_type.encode()) + len(detail_json.encode())


def _outbox_row(*, event_type: EventType, data: dict[str, Any], correlation_id: str) -> dict[str, Any]:
    event_id = uuid.uuid4()
    occurred_at = timezone.now()
    detail = build_detail(
        event_type=event_type, event_id=event_id, occurred_at=occurred_at, correlation_id=correlation_id, data=data
    )
    size = entry_size(source=event_type.source, detail_type=event_type.detail_type, detail_json=dumps_detail(detail))
    if size > MAX_BYTES_PER_PUT:
        raise EventTooLarge(f"{event_type}: {size} bytes is over EventBridge's {MAX_BYTES_PER_PUT} byte limit")
    return {
        "id": event_id,
        "source": event_type.source,
        "detail_type": event_type.detail_type,
        "detail": detail,
        "correlation_id": correlation_id,
        "next_attempt_at": occurred_at,
        "created_at": occurred_at,
    }


def write_recorded_events(*, instance: EventedModel) -> None:
    """Post-save hook of evented models: the recorded events become outbox rows in the same transaction."""
    recorded = instance.pop_recorded_events()
    if not recorded:
        return
    using = instance._state.db
    rows = [
        _outbox_row(event_type=event.event_type, data=event.data, correlation_id=event.correlation_id)
        for event in recorded
    ]
    together = _written_together.get()
    if together is not None and together.holds_rows_saved_now(using):
        together.rows.extend(rows)
        return
    _insert_and_wake(rows, using=using)


def _insert_and_wake(rows: list[dict[str, Any]], *, using: str) -> None:
    relay = _this_process_relay()
    if relay is None:
        insert_rows(OutboxEvent, rows, using=using)
        transaction.on_commit(wake_relay, using=using, robust=True)
        return
    # In a process with relay threads (a worker, a web process), the rows are born claimed by it and
    # handed to its relay on commit, which publishes them without a claim transaction of its own: on
    # SQLite that claim waited for the write lock, 17 ms at the median and 170 ms at p99 of a relay
    # pass under `make bench`, on every hop of an order's way. A process that dies first leaves claims
    # that any relay takes over (`_dead_owners`) or that run out with the lease, as a dead relay's do.
    claimed_until = timezone.now() + claim_lease()
    insert_rows(
        OutboxEvent,
        [{**row, "claimed_by": relay.owner, "claimed_until": claimed_until} for row in rows],
        using=using,
    )
    ids = [row["id"] for row in rows]
    transaction.on_commit(lambda: relay.hand(ids, claimed_until), using=using, robust=True)


@dataclass
class _RowsWrittenTogether:
    using: str
    savepoints_before: int  # the connection's nested atomic blocks when it began
    rows: list[dict[str, Any]] = field(default_factory=list)

    def holds_rows_saved_now(self, using: str) -> bool:
        """A save inside a savepoint opened since it began writes its own rows: they must roll back
        with the savepoint, and rows kept here would outlive it."""
        savepoints = transaction.get_connection(using).savepoint_ids[self.savepoints_before :]
        return using == self.using and not any(savepoints)


_written_together: contextvars.ContextVar[_RowsWrittenTogether | None] = contextvars.ContextVar(
    "outbox_rows_written_together", default=None
)


@contextlib.contextmanager
def rows_written_together(*, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Inside, in the caller's transaction, the outbox rows of evented saves are kept and inserted
    with one statement on leaving, where each save inserted its own: a consumer's batch writes all its
    handlers' events at once. Each row is still built, and checked, at its save, so an event too large
    fails the save that recorded it. Leaving on an exception still writes them if the transaction can
    take a statement, so that a caller that catches the exception and commits commits each saved
    change with its events, as without this; if it cannot (a failed statement aborts a PostgreSQL
    transaction), the exception that left is the one raised, not the INSERT's."""
    together = _RowsWrittenTogether(using=using, savepoints_before=len(transaction.get_connection(using).savepoint_ids))
    token = _written_together.set(together)
    try:
        yield
    except BaseException:
        if together.rows and not transaction.get_connection(using).needs_rollback:
            with contextlib.suppress(DatabaseError):
                _insert_and_wake(together.rows, using=using)
        raise
    else:
        if together.rows:
            _insert_and_wake(together.rows, using=using)
    finally:
        _written_together.reset(token)


# --- waking the relay ---------------------------------------------------------------------------
# Two ways to wake it, registered from outside so that this module imports no task module: a worker
# registers its own relay thread (an in-process signal), and eventbus.tasks registers the Celery task
# that beat and every process without sweeping relay threads use. A broker message per commit would put
# as many extra SQS round trips on the bus as the events themselves, so a commit in a process with relay
# threads (a worker, a web process) hands its rows to them instead (`_insert_and_wake`).

Waker = Callable[[], None]
# The relay threads' registrations name the process that made them: a process forked from a worker
# (a Celery prefork child) inherits them, with copies of wake-ups that no thread of its own waits on.
_in_process_waker: tuple[int, Waker] | None = None
_task_waker: Waker | None = None
_in_process_relay: InProcessRelay | None = None


@dataclass(frozen=True)
class InProcessRelay:
    """Relay threads running in this process, as the rows written here see them: the owner their
    claims name, and where to hand the rows born claimed by it (`_insert_and_wake`)."""

    owner: str
    hand: Callable[[list[uuid.UUID], datetime], None]  # the rows' ids and the lease they were born with
    pid: int = field(default_factory=os.getpid)


def set_in_process_relay_waker(waker: Waker | None) -> None:
    global _in_process_waker
    _in_process_waker = None if waker is None else (os.getpid(), waker)


def set_in_process_relay(relay: InProcessRelay | None) -> None:
    global _in_process_relay
    _in_process_relay = relay


def set_task_relay_waker(waker: Waker | None) -> None:
    global _task_waker
    _task_waker = waker


def _this_process_relay() -> InProcessRelay | None:
    relay = _in_process_relay
    return relay if relay is not None and relay.pid == os.getpid() else None


def _this_process_waker() -> Waker | None:
    registered = _in_process_waker
    return registered[1] if registered is not None and registered[0] == os.getpid() else None


def wake_relay() -> None:
    """Relay now. Best effort: beat runs the relay periodically anyway."""
    waker = _this_process_waker() or _task_waker
    if waker is not None:
        waker()


def relay_when_kicked() -> None:
    """What a relay kick (beat's periodic one, or a commit's in a process without relay threads) does
    where it lands: in a worker, which runs sweeping relay threads, it wakes one, rather than run a pass
    of its own that races theirs for the same rows and pays its own claim and lookups; elsewhere it
    relays here."""
    waker = _this_process_waker()
    if waker is not None:
        waker()
    else:
        relay_pending()


@dataclass
class RelayReport:
    published: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def claim_lease() -> timedelta:
    return timedelta(seconds=settings.OUTBOX_CLAIM_LEASE_SECONDS)


def relay_pending(*, limit: int = 500, owner: claims.Owner | None = None) -> RelayReport:
    """Publish due PENDING outbox rows with PutEvents, in batches of at most 10 entries and 256 KB.
    A row that cannot be read or published is recorded and skipped (eventbus.sweeps)."""
    owner = owner or claims.current()
    ids = _claim_due_rows(limit=limit, owner=owner)
    if not ids:
        return RelayReport()
    return relay_claimed(ids=ids, owner=owner)


def relay_handed(*, handed: list[tuple[uuid.UUID, datetime]], owner: claims.Owner) -> RelayReport:
    """Publish rows born claimed by this process (`_insert_and_wake`), given as (id, the lease it was
    born with). Only a row whose lease has at least half its length to run is published here: the
    pass's keeper renews it before it can run out, so no other relay can take it over meanwhile. A
    row that waited longer (every relay thread busy with a slow PutEvents) is left to run out and to
    be claimed, by a pass over due rows, like any other."""
    fresh_after = timezone.now() + claim_lease() / 2
    ids = [row_id for row_id, claimed_until in handed if claimed_until >= fresh_after]
    if not ids:
        return RelayReport()
    return relay_claimed(ids=ids, owner=owner)


def relay_claimed(*, ids: list[uuid.UUID], owner: claims.Owner) -> RelayReport:
    """Publish the rows of `ids` that are still pending and claimed by `owner`, as `relay_pending`
    does once it has claimed them: those another relay has taken over or published meanwhile are
    left alone."""
    report = RelayReport()
    sweep = Sweep("relay-outbox")
    keeper = _ClaimKeeper(ids=ids, owner=owner)
    try:
        keeper.start()
        # Read every row, then keep those still claimed: reading through `_still_claimed` would make a
        # row published meanwhile look unreadable to the sweep's row-by-row fallback.
        rows = [row for row in sweep.load(OutboxEvent.objects.all(), ids) if _is_still_claimed(row, owner=owner)]
        if not rows:
            keeper.finish()
            return report
        for batch in _batches(rows, sweep):
            try:
                _publish_batch(batch, report, sweep)
            except sweeps.OUTAGES:
                raise
            except Exception as exc:  # noqa: BLE001 - the batch's rows are recorded and skipped, not the pass
                for row, _ in batch:
                    sweep.failed(row.id, exc)
    except BaseException:
        keeper.finish()
        _release(ids=ids, owner=owner)
        raise
    keeper.finish()
    logger.info("outbox relay: published=%d retrying=%d failed=%d", report.published, report.retrying, report.failed)
    return report


def _dead_owners(*, now: datetime, me: claims.Owner) -> list[str]:
    """Live claims held by relays on this host whose processes are gone."""
    held = (
        OutboxEvent.objects.filter(
            status=OutboxEvent.Status.PENDING, claimed_until__gte=now, claimed_by__startswith=f"{me.host}/"
        )
        .exclude(claimed_by=str(me))
        .order_by()  # the model's ordering would put created_at in the DISTINCT: an owner per row
        .values_list("claimed_by", flat=True)
        .distinct()
    )
    dead = []
    for text in held:
        owner = claims.Owner.parse(text)
        if owner is not None and claims.is_certainly_dead(owner, me=me):
            dead.append(text)
    if dead:
        logger.warning("outbox relay: taking over the claims of dead relay(s) %s", ", ".join(dead))
    return dead


def _claim_due_rows(*, limit: int, owner: claims.Owner) -> list[uuid.UUID]:
    # Claim in a short transaction and publish outside it: no row lock or SQLite write lock is held
    # across a network call. skip_locked keeps concurrent relays off each other's rows on PostgreSQL;
    # on SQLite the IMMEDIATE transaction serialises the claim instead. Only ids are read, so a row
    # the model cannot load is skipped later rather than failing every claim.
    now = timezone.now()
    claimable = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    dead = _dead_owners(now=now, me=owner)
    if dead:
        claimable |= Q(claimed_by__in=dead)
    with transaction.atomic():
        ids = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(status=OutboxEvent.Status.PENDING, next_attempt_at__lte=now)
            .filter(claimable)
            .order_by("created_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        # OutboxEvent is not evented: a plain UPDATE is the claim.
        OutboxEvent.objects.filter(pk__in=ids).update(claimed_until=now + claim_lease(), claimed_by=str(owner))
    return ids


class _ClaimKeeper(threading.Thread):
    """Renews this relay's claim on the rows it has not finished while it publishes, so the lease can
    be short without a slow PutEvents (botocore retries, a slow network) letting another relay take
    rows this one is still publishing."""

    def __init__(self, *, ids: list[uuid.UUID], owner: claims.Owner) -> None:
        super().__init__(name="outbox-claim-keeper", daemon=True)
        self.ids = ids
        self.owner = owner
        self.done = threading.Event()

    def run(self) -> None:
        lease = claim_lease()
        try:
            while not self.done.wait(max(lease.total_seconds() / 3, 0.1)):
                try:
                    renewed = _still_claimed(ids=self.ids, owner=self.owner).update(
                        claimed_until=timezone.now() + lease
                    )
                except DatabaseError as exc:
                    logger.warning("outbox relay: could not renew its claim: %s", exc)
                    continue
                if not renewed:
                    return
        finally:
            connections.close_all()  # this thread's own connections

    def finish(self) -> None:
        self.done.set()
        if self.ident is not None:  # started
            self.join()


def _release(*, ids: list[uuid.UUID], owner: claims.Owner) -> None:
    """Hand back the rows of a pass that failed (the database or the process gave out), so the next
    pass need not wait out the lease. Rows a completed pass skipped as bad stay claimed instead: the
    lease then paces their retries, rather than every commit's wake-up."""
    with contextlib.suppress(DatabaseError):  # then the lease runs out instead
        _still_claimed(ids=ids, owner=owner).update(claimed_until=None)


def _still_claimed(*, ids: list[uuid.UUID], owner: claims.Owner) -> QuerySet[OutboxEvent]:
    """Those of `ids` still pending and still claimed by `owner`: a row another relay took over, or
    one published meanwhile, is left alone."""
    return OutboxEvent.objects.filter(
        pk__in=ids, status=OutboxEvent.Status.PENDING, claimed_by=str(owner), claimed_until__isnull=False
    )


def _is_still_claimed(row: OutboxEvent, *, owner: claims.Owner) -> bool:
    """`_still_claimed` for a row in hand."""
    return row.status == OutboxEvent.Status.PENDING and row.claimed_by == str(owner) and row.claimed_until is not None


def trace_header(*, correlation_id: str, started_at: datetime, event_id: uuid.UUID) -> str:
    """An X-Ray trace header shared by every event of one correlation (one order): the trace id is the
    time of the correlation's first event and a hash of its id; the parent is this event."""
    digest = hashlib.sha256(correlation_id.encode()).hexdigest()[:24]
    return f"Root=1-{int(started_at.timestamp()):08x}-{digest};Parent={event_id.hex[:16]};Sampled=1"


def _first_event_times(rows: list[OutboxEvent]) -> dict[str, datetime]:
    correlation_ids = {row.correlation_id for row in rows}
    try:
        return dict(
            OutboxEvent.objects.filter(correlation_id__in=correlation_ids)
            .values("correlation_id")
            .annotate(first=Min("created_at"))
            .values_list("correlation_id", "first")
        )
    except (ValueError, TypeError):
        # Another row of one of these orders has a timestamp that cannot be read; each trace then
        # starts at its own event rather than the relay stopping.
        logger.warning("outbox relay: could not read when these orders' first events were recorded")
        return {}


def _entry(row: OutboxEvent, *, bus: str, started: dict[str, datetime]) -> tuple[int, dict[str, Any]]:
    detail_json = dumps_detail(row.detail)
    size = entry_size(source=row.source, detail_type=row.detail_type, detail_json=detail_json)
    return size, {
        "Source": row.source,
        "DetailType": row.detail_type,
        "Detail": detail_json,
        "EventBusName": bus,
        "Time": row.created_at,
        "TraceHeader": trace_header(
            correlation_id=row.correlation_id,
            started_at=started.get(row.correlation_id, row.created_at),
            event_id=row.id,
        ),
    }


def _batches(rows: list[OutboxEvent], sweep: Sweep) -> Iterator[list[tuple[OutboxEvent, dict[str, Any]]]]:
    batch: list[tuple[OutboxEvent, dict[str, Any]]] = []
    batch_bytes = 0
    bus = topology.bus_name()
    started = _first_event_times(rows) if rows else {}
    for row in rows:
        built = None
        with sweep.item(row.id, clears=False):
            built = _entry(row, bus=bus, started=started)
        if built is None:
            continue
        size, entry = built
        if batch and (len(batch) == MAX_ENTRIES_PER_PUT or batch_bytes + size > MAX_BYTES_PER_PUT):
            yield batch
            batch, batch_bytes = [], 0
        batch.append((row, entry))
        batch_bytes += size
    if batch:
        yield batch


def _publish_batch(batch: list[tuple[OutboxEvent, dict[str, Any]]], report: RelayReport, sweep: Sweep) -> None:
    rows = [row for row, _ in batch]
    now = timezone.now()
    metrics.record_batch(size=len(rows))
    try:
        response = aws.client("events").put_events(Entries=[entry for _, entry in batch])
        results = response["Entries"]
        now = timezone.now()
    except (BotoCoreError, ClientError) as exc:
        error = f"PutEvents failed: {exc}"
        report.errors.append(error)
        logger.warning("outbox relay: %s (%d events will be retried)", error, len(rows))
        results = [{"ErrorCode": "CallFailed", "ErrorMessage": str(exc)} for _ in rows]
    marked = []
    for row, result in zip(rows, results, strict=True):
        with sweep.item(row.id, clears=False):
            _mark(row, result, now=now, report=report)
            marked.append(row)
    fields = ["attempts", "claimed_until", "status", "event_bridge_id", "published_at", "last_error", "next_attempt_at"]
    try:
        _save_marks(marked, fields, published_at=now)
    except sweeps.OUTAGES:
        raise
    except Exception:  # noqa: BLE001 - each row is saved alone below, which records the bad one
        # One row will not save: save them one by one, so the others are not published again.
        for row in marked:
            with sweep.item(row.id), transaction.atomic():
                row.save(update_fields=fields)
    else:
        for row in marked:
            with sweep.item(row.id):
                pass  # finished: forget any earlier failure


def _save_marks(rows: list[OutboxEvent], fields: list[str], *, published_at: datetime) -> None:
    """Save what `_mark` set. The published rows of a batch differ only in their EventBridge ids, so
    they take one UPDATE with one CASE, where bulk_update would build a CASE for each of seven
    columns: most of the relay's CPU in a pass under `make bench`."""
    published = [row for row in rows if row.status == OutboxEvent.Status.PUBLISHED]
    others = [row for row in rows if row.status != OutboxEvent.Status.PUBLISHED]
    with transaction.atomic():
        if published:
            # OutboxEvent is not evented, and this relay holds the rows' claims: a plain UPDATE.
            OutboxEvent.objects.filter(pk__in=[row.pk for row in published]).update(
                status=OutboxEvent.Status.PUBLISHED,
                attempts=F("attempts") + 1,
                claimed_until=None,
                published_at=published_at,
                last_error="",
                event_bridge_id=Case(
                    *(When(pk=row.pk, then=Value(row.event_bridge_id)) for row in published),
                    output_field=OutboxEvent._meta.get_field("event_bridge_id"),
                ),
            )
        if others:
            OutboxEvent.objects.bulk_update(others, fields)


def _mark(row: OutboxEvent, result: dict[str, Any], *, now: datetime, report: RelayReport) -> None:
    row.attempts += 1
    row.claimed_until = None
    if result.get("EventId"):
        row.status = OutboxEvent.Status.PUBLISHED
        row.event_bridge_id = result["EventId"]
        row.published_at = now
        row.last_error = ""
        report.published += 1
        lag_ms = (now - row.created_at).total_seconds() * 1000
        metrics.record_publish(detail_type=row.detail_type, result="published", lag_ms=lag_ms)
        return
    code = result.get("ErrorCode", "Unknown")
    row.last_error = f"{code}: {result.get('ErrorMessage', '')}".strip()
    if code in RETRYABLE_ERROR_CODES or code == "CallFailed":
        row.next_attempt_at = now + _backoff(row.attempts)
        report.retrying += 1
        metrics.record_publish(detail_type=row.detail_type, result="retrying", lag_ms=None)
    else:
        row.status = OutboxEvent.Status.FAILED
        report.failed += 1
        metrics.record_publish(detail_type=row.detail_type, result="failed", lag_ms=None)
        logger.error("outbox relay: event %s %s rejected for good: %s", row.id, row.detail_type, row.last_error)


def _backoff(attempts: int) -> timedelta:
    ceiling = min(settings.OUTBOX_MAX_BACKOFF_SECONDS, 2 ** min(attempts, 20))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # jitter spreads a thundering herd


def requeue_failed_events(*, event_ids: list[str]) -> list[OutboxEvent]:
    """Send FAILED rows round again (after whatever made EventBridge reject them is fixed); returns
    those that were FAILED."""
    with transaction.atomic():
        rows = list(OutboxEvent.objects.select_for_update().filter(pk__in=event_ids, status=OutboxEvent.Status.FAILED))
        for row in rows:
            row.status = OutboxEvent.Status.PENDING
            row.next_attempt_at = timezone.now()
        OutboxEvent.objects.bulk_update(rows, ["status", "next_attempt_at"])
    if rows:
        transaction.on_commit(wake_relay, robust=True)
    return rows


# Two: one pass can claim and publish what was committed while the other waits on PutEvents. More
# would mostly queue for the database's write lock (SQLite's one, or the outbox's index pages).
RELAY_THREADS = 2


class RelayWakeups:
    """The wake-ups of a process's relay threads: a pass over every due row (`set`), or rows born
    claimed by this process (`hand`). Each wakes one idle thread, so a commit made while a pass
    publishes starts another at once rather than after it; what arrives while every thread is busy
    waits for the next thread free, rows handed meanwhile together (at most HANDED_PER_PASS to a
    pass). Concurrent passes never take each other's rows: each publishes the rows it claimed, or was
    handed. Once closed (the threads are stopping), waits return at once and hands are refused."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._wanted = False
        self._handed: list[tuple[uuid.UUID, datetime]] = []
        self._closed = False

    def set(self) -> None:
        with self._condition:
            self._wanted = True
            self._condition.notify()

    def hand(self, ids: list[uuid.UUID], claimed_until: datetime) -> bool:
        """False if closed: the caller gives the rows back."""
        with self._condition:
            if self._closed:
                return False
            self._handed.extend((row_id, claimed_until) for row_id in ids)
            self._condition.notify()
            return True

    def wait(self, timeout: float) -> tuple[list[tuple[uuid.UUID, datetime]], bool]:
        """The rows handed since the last wait, and whether a pass over every due row was asked for;
        after `timeout` with neither, ([], False)."""
        with self._condition:
            if not (self._wanted or self._handed or self._closed):
                self._condition.wait(timeout)
            handed = self._handed[:HANDED_PER_PASS]
            del self._handed[:HANDED_PER_PASS]
            wanted, self._wanted = self._wanted, False
            return handed, wanted

    def close(self) -> list[tuple[uuid.UUID, datetime]]:
        """Wake every thread for good, refuse hands from now on, and return the rows still handed."""
        with self._condition:
            self._closed = True
            handed, self._handed = self._handed, []
            self._condition.notify_all()
            return handed


class RelayThread(threading.Thread):
    """Publishes the rows a handler in this process commits as soon as it commits them. A sweeping
    thread (a worker's) also publishes the others when woken (a kick from beat or another process), and
    makes a pass over every due row at least every OUTBOX_RELAY_INTERVAL_SECONDS, however busy. Stop
    it by setting `stop` and closing its wake-ups: rows handed to it and not published are given back,
    at once, to every relay."""

    def __init__(
        self, stop: threading.Event, wakeups: RelayWakeups, *, name: str = "outbox-relay", sweeps: bool = True
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.stop_event = stop
        self.wakeups = wakeups
        self.sweeps = sweeps

    def run(self) -> None:
        owner = claims.current()

        def hand(ids: list[uuid.UUID], claimed_until: datetime) -> None:
            # A commit that lands after the threads stopped: its rows go back, and the kick that a
            # process without relay threads sends announces them.
            if not self.wakeups.hand(ids, claimed_until):
                _release(ids=ids, owner=owner)
                wake_relay()

        if self.sweeps:
            set_in_process_relay_waker(self.wakeups.set)
        set_in_process_relay(InProcessRelay(owner=str(owner), hand=hand))
        interval = settings.OUTBOX_RELAY_INTERVAL_SECONDS
        last_pass = time.monotonic()
        handed: list[tuple[uuid.UUID, datetime]] = []
        try:
            while not self.stop_event.is_set():
                next_pass_in = max(0.0, last_pass + interval - time.monotonic()) if self.sweeps else interval
                handed, wanted = self.wakeups.wait(timeout=next_pass_in)
                if self.stop_event.is_set():
                    break
                try:
                    if handed:
                        relay_handed(handed=handed, owner=owner)
                    if self.sweeps and (wanted or time.monotonic() - last_pass >= interval):
                        last_pass = time.monotonic()
                        relay_pending(owner=owner)
                except Exception:
                    # The thread must survive a bad pass; the rows stay PENDING for the next one.
                    logger.exception("outbox relay pass failed; retrying")
                    self.stop_event.wait(1)
                finally:
                    handed = []  # published, left to run out (stale), or given back by a failed pass
                    close_old_connections()
        finally:
            set_in_process_relay(None)
            set_in_process_relay_waker(None)
            handed += self.wakeups.close()
            if handed:
                _release(ids=[row_id for row_id, _ in handed], owner=owner)
            close_old_connections()


class RelayThreads:
    """A process's relay threads. A worker's also sweep (RelayThread); a web process's publish only
    what the process itself commits, and leave the rest, and every retry, to the workers' sweeps and
    beat's kick: web processes that swept too would each add a claim pass to every interval."""

    def __init__(self, *, sweeps: bool, count: int = RELAY_THREADS) -> None:
        self.stop_event = threading.Event()
        self.wakeups = RelayWakeups()
        self.threads = [
            RelayThread(self.stop_event, self.wakeups, name=f"outbox-relay-{number}", sweeps=sweeps)
            for number in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 15) -> None:
        self.stop_event.set()
        # Rows handed while every thread was busy, which no thread took: given back at once, and
        # announced as a process without relay threads announces its commits.
        queued = self.wakeups.close()
        if queued:
            _release(ids=[row_id for row_id, _ in queued], owner=claims.current())
            wake_relay()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
