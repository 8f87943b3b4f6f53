"""Reads behind the event-flow dashboard and the alarms' local evaluation.

Everything comes from shopbus's own database (the metrics flushed per minute, the outbox, the
delivery failures) and the queues' attributes, so the page works the same on the local stack and on
AWS. Each read is one aggregate query (or one queue call per queue), whatever the volume: the page's
cost grows with the number of services and minutes in the window, never with the number of events.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db.models import Count, Exists, Max, Min, OuterRef, Sum
from django.utils import timezone

from eventbus import aws, registry, selectors, topology
from eventbus.metrics import Metric, percentile
from eventbus.models import (
    ConsumerHeartbeat,
    DeliveryFailure,
    MetricBucket,
    MetricCount,
    OutboxEvent,
    ProcessedEvent,
    SweepFailure,
)

from .alarms import AlarmDefinition, AlarmState, Readings, definitions

WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
# The day's chart draws half-hour columns; shorter windows draw minutes.
STEPS = {"15m": timedelta(minutes=1), "1h": timedelta(minutes=1), "1d": timedelta(minutes=30)}
PERCENTILES = (0.5, 0.95, 0.99)
# How far back the local queue-age reading looks for an unhandled delivery (the longest retention).
# How far back the local queue-age reading looks: far enough that a backlog past the alarm's threshold
# shows, near enough that an event lost long ago (expired, sent to the delivery DLQ, published before
# the service subscribed) stops counting. The reading is capped there; the alarm's state is not.
MIN_QUEUE_AGE_LOOKBACK = timedelta(minutes=15)
DEAD_LETTER_LOOKUP_LIMIT = 1000


@dataclass(frozen=True)
class Percentiles:
    label: str
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class AlarmStatus:
    definition: AlarmDefinition
    value: float | None
    state: AlarmState


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int
    failed: int
    oldest_age_seconds: float


@dataclass
class FlowSeries:
    """Counts per time step for one label, for a chart."""

    label: str
    points: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.points)


def _window_start(window: str, now: datetime) -> datetime:
    return (now - WINDOWS[window]).replace(second=0, microsecond=0)


def time_steps(window: str, now: datetime | None = None) -> list[datetime]:
    now = now or timezone.now()
    start, step = _window_start(window, now), STEPS[window]
    steps, moment = [], start
    while moment <= now:
        steps.append(moment)
        moment += step
    return steps


def _step_index(minute: datetime, steps: list[datetime]) -> int:
    step = steps[1] - steps[0] if len(steps) > 1 else timedelta(minutes=1)
    return min(len(steps) - 1, max(0, int((minute - steps[0]) / step)))


def flow_per_step(
    *, window: str, metric: Metric, group_by: str, result: str | None = None, now: datetime | None = None
) -> tuple[list[datetime], list[FlowSeries]]:
    """Counts of `metric` per time step, one series per value of `group_by` (service, event_type or
    result), optionally of one result only, from one GROUP BY over the stored minutes."""
    steps = time_steps(window, now)
    rows = MetricCount.objects.filter(metric=metric, minute__gte=steps[0])
    if result is not None:
        rows = rows.filter(result=result)
    rows = rows.values("minute", group_by).annotate(n=Sum("count")).order_by()
    series: dict[str, FlowSeries] = {}
    for row in rows:
        label = row[group_by] or "(none)"
        line = series.setdefault(label, FlowSeries(label, [0] * len(steps)))
        line.points[_step_index(row["minute"], steps)] += row["n"]
    return steps, sorted(series.values(), key=lambda line: -line.total)


def latency_percentiles(*, window: str, metric: Metric, now: datetime | None = None) -> list[Percentiles]:
    """p50/p95/p99 of a distribution per service, and over all of them, merged from the stored
    histograms in one GROUP BY."""
    start = _window_start(window, now or timezone.now())
    rows = (
        MetricBucket.objects.filter(metric=metric, minute__gte=start)
        .values("service", "bucket")
        .annotate(n=Sum("count"))
        .order_by()
    )
    # The largest value seen bounds the open-ended top bucket and the interpolation inside any bucket.
    maxima = dict(
        MetricCount.objects.filter(metric=metric, minute__gte=start)
        .values("service")
        .annotate(largest=Max("maximum"))
        .order_by()
        .values_list("service", "largest")
    )
    by_service: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        by_service[row["service"] or "all"][row["bucket"]] += row["n"]
        if row["service"]:
            by_service["all services"][row["bucket"]] += row["n"]
    largest = {label or "all": value for label, value in maxima.items()}
    largest["all services"] = max((value for label, value in maxima.items() if label), default=None)
    return [
        Percentiles(
            label, sum(buckets.values()), *(percentile(buckets, q, maximum=largest.get(label)) for q in PERCENTILES)
        )
        for label, buckets in sorted(by_service.items(), key=lambda item: (item[0] == "all services", item[0]))
    ]


def results_by_service(*, since: datetime) -> dict[str, dict[str, int]]:
    rows = (
        MetricCount.objects.filter(metric=Metric.PROCESSING_RESULT, minute__gte=since)
        .values("service", "result")
        .annotate(n=Sum("count"))
        .order_by()
    )
    results: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        results[row["service"]][row["result"]] = row["n"]
    return dict(results)


def recent_failures(*, limit: int = 10) -> list[DeliveryFailure]:
    return list(DeliveryFailure.objects.order_by("-last_failed_at")[:limit])


def outbox_backlog(now: datetime | None = None) -> OutboxBacklog:
    now = now or timezone.now()
    counts = dict(
        OutboxEvent.objects.exclude(status=OutboxEvent.Status.PUBLISHED).values_list("status").annotate(Count("id"))
    )
    oldest = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).aggregate(oldest=Min("created_at"))["oldest"]
    return OutboxBacklog(
        pending=counts.get(OutboxEvent.Status.PENDING, 0),
        failed=counts.get(OutboxEvent.Status.FAILED, 0),
        oldest_age_seconds=(now - oldest).total_seconds() if oldest else 0.0,
    )


def queue_age_lookback(service: str) -> timedelta:
    retention = timedelta(seconds=topology.SERVICE_QUEUES[service].retention_seconds)
    return min(retention, max(MIN_QUEUE_AGE_LOOKBACK, timedelta(seconds=3 * settings.ALARM_QUEUE_AGE_SECONDS)))


def oldest_unhandled_age(*, service: str, now: datetime | None = None) -> float:
    """Seconds since the oldest event published for `service` that its handlers have not processed and
    that has not been dead-lettered: the local reading of SQS's ApproximateAgeOfOldestMessage (a
    message in flight counts in both)."""
    now = now or timezone.now()
    subscriptions = [s for s in registry.subscriptions() if s.service == service]
    events = OutboxEvent.objects.filter(
        status=OutboxEvent.Status.PUBLISHED, created_at__gte=now - queue_age_lookback(service)
    )
    if all(s.event_type is not None for s in subscriptions):
        events = events.filter(detail_type__in=[s.event_type.detail_type for s in subscriptions])
    handled = ProcessedEvent.objects.filter(handler__in={s.handler_id for s in subscriptions}, event_id=OuterRef("pk"))
    # A message that failed maxReceiveCount times has left the queue for its DLQ (its own alarm).
    dead_lettered = DeliveryFailure.objects.filter(
        queue_name=topology.SERVICE_QUEUES[service].name, receive_count__gte=settings.SQS_MAX_RECEIVE_COUNT
    ).values_list("event_id", flat=True)[:DEAD_LETTER_LOOKUP_LIMIT]
    oldest = (
        events.exclude(Exists(handled))
        .exclude(pk__in=[event_id for event_id in dead_lettered if event_id])
        .order_by("published_at")
        .values_list("published_at", flat=True)
        .first()
    )
    return (now - oldest).total_seconds() if oldest else 0.0


@dataclass(frozen=True)
class QueueHealth:
    depths: list[selectors.QueueDepth]
    target_dlq_depth: int | None
    error: str
    task_dlq_depth: int | None = None


def queue_health() -> QueueHealth:
    try:
        depths = selectors.bus_depths()
        return QueueHealth(depths.queues, depths.target_dlq_depth, "", depths.task_dlq_depth)
    except (BotoCoreError, ClientError) as exc:
        return QueueHealth([], None, aws.explain(exc))


def readings(*, queues: QueueHealth, backlog: OutboxBacklog, now: datetime | None = None) -> Readings:
    now = now or timezone.now()
    dlq_depths = {depth.dlq_name: depth.dlq_depth for depth in queues.depths}
    if queues.target_dlq_depth is not None:
        dlq_depths[topology.target_dlq_name()] = queues.target_dlq_depth
    tasks = topology.task_queue()
    if tasks is not None and queues.task_dlq_depth is not None:
        dlq_depths[tasks.dlq_name] = queues.task_dlq_depth
    # A queue with nothing in it has no old message: the database is asked only about queues that
    # hold messages (or all of them when the queues cannot be read).
    busy = {depth.service for depth in queues.depths if depth.visible + depth.in_flight}
    if queues.error:
        busy = set(registry.services())
    ages = {
        service: oldest_unhandled_age(service=service, now=now) if service in busy else 0.0
        for service in registry.services()
    }
    since = (now - timedelta(seconds=settings.ALARM_PERIOD_SECONDS)).replace(second=0, microsecond=0)
    return Readings(
        dlq_depths=dlq_depths,
        oldest_ages=ages,
        outbox_backlog_age=backlog.oldest_age_seconds,
        results=results_by_service(since=since),
        skipped_items=SweepFailure.objects.count(),
    )


def alarm_states(current: Readings) -> list[AlarmStatus]:
    """Every alarm's state, firing ones first."""
    statuses = []
    for definition in definitions():
        value = definition.local(current)
        statuses.append(AlarmStatus(definition, value, definition.state_for(value)))
    return sorted(statuses, key=lambda status: status.state != AlarmState.ALARM)


@dataclass(frozen=True)
class Heartbeat:
    service: str
    last_polled_at: datetime | None
    workers: int


def heartbeats() -> list[Heartbeat]:
    """When each service's consumer last polled (the freshest poller), and how many pollers reported."""
    rows = {
        row["service"]: row
        for row in ConsumerHeartbeat.objects.values("service").annotate(last=Max("last_polled_at"), workers=Count("id"))
    }
    return [
        Heartbeat(service, rows.get(service, {}).get("last"), rows.get(service, {}).get("workers", 0))
        for service in registry.services()
    ]
