"""Event-flow metrics: recorded per delivery in memory, aggregated per minute, flushed in batches.

Recording is a dictionary update under a lock, made after the handler's transaction has committed,
so it never adds a statement or a network call to a delivery. A background flusher (one per worker
process, and one per web process for what its relay threads publish) writes the minute's aggregates
to the database, where the event-flow dashboard reads them, and, where enabled, to CloudWatch with
PutMetricData (values and counts, many datums per call). A metrics outage loses metrics, never
events, and is logged once until it recovers (docs/observability.md explains each metric).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import Count, Min
from django.utils import timezone

from . import aws

logger = logging.getLogger(__name__)

NAMESPACE = "ECommerce/EventDriven"


class Metric(StrEnum):
    PROCESSING_TIME = "EventProcessingTime"  # ms from receive to commit; ServiceName, EventType
    PROCESSING_RESULT = "EventProcessingResult"  # deliveries; ServiceName, EventType, Result
    END_TO_END_LATENCY = "EndToEndLatency"  # ms from the producer's occurredAt to the handler's commit
    PUBLISH_LAG = "OutboxPublishLag"  # ms from the event's commit to PutEvents accepting it; EventType
    PUBLISH_RESULT = "OutboxPublishResult"  # entries; EventType, Result (published, retrying, failed)
    PUBLISH_BATCH_SIZE = "OutboxBatchSize"  # entries per PutEvents call
    OUTBOX_BACKLOG = "OutboxBacklog"  # pending outbox rows (a gauge, sampled at each flush)
    OUTBOX_BACKLOG_AGE = "OutboxBacklogAge"  # seconds the oldest pending row has waited (a gauge)
    # Items a periodic sweep skipped because handling them raised; Sweep (stored in `service`)
    SWEEP_ITEM_FAILED = "SweepItemFailed"


UNITS = {
    Metric.PROCESSING_TIME: "Milliseconds",
    Metric.END_TO_END_LATENCY: "Milliseconds",
    Metric.PUBLISH_LAG: "Milliseconds",
    Metric.PROCESSING_RESULT: "Count",
    Metric.PUBLISH_RESULT: "Count",
    Metric.PUBLISH_BATCH_SIZE: "Count",
    Metric.OUTBOX_BACKLOG: "Count",
    Metric.OUTBOX_BACKLOG_AGE: "Seconds",
    Metric.SWEEP_ITEM_FAILED: "Count",
}
# Distributions keep a histogram, so percentiles can be merged across processes and minutes.
DISTRIBUTIONS = {Metric.PROCESSING_TIME, Metric.END_TO_END_LATENCY, Metric.PUBLISH_LAG, Metric.PUBLISH_BATCH_SIZE}

# Upper bounds of the histogram's buckets: about 1.5x apart, so a percentile read from the buckets is
# within half a bucket of the true value. The last bucket holds everything above 10 minutes.
BUCKET_BOUNDS: tuple[float, ...] = (
    *(1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700),
    *(1_000, 1_500, 2_000, 3_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000),
    math.inf,
)
# CloudWatch limits: 1,000 datums per PutMetricData call, 150 distinct values per datum.
MAX_DATUMS_PER_CALL = 1000


def bucket_of(value: float) -> int:
    return bisect.bisect_left(BUCKET_BOUNDS, value)


def percentile(buckets: dict[int, int], fraction: float, *, maximum: float | None = None) -> float | None:
    """The value below which `fraction` of the observations fall, interpolated within its bucket."""
    total = sum(buckets.values())
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index in sorted(buckets):
        count = buckets[index]
        if seen + count >= rank:
            lower = BUCKET_BOUNDS[index - 1] if index else 0.0
            upper = BUCKET_BOUNDS[index] if index < len(BUCKET_BOUNDS) - 1 else (maximum or lower * 2)
            if maximum is not None:
                upper = min(upper, maximum)
            return lower + (upper - lower) * ((rank - seen) / count)
        seen += count
    return maximum


@dataclass(frozen=True)
class SeriesKey:
    minute: datetime
    metric: Metric
    service: str = ""
    event_type: str = ""
    result: str = ""


@dataclass
class Series:
    count: int = 0
    total: float = 0.0
    maximum: float = 0.0
    buckets: Counter = field(default_factory=Counter)

    def add(self, value: float, count: int = 1) -> None:
        self.count += count
        self.total += value * count
        self.maximum = max(self.maximum, value)
        self.buckets[bucket_of(value)] += count


@dataclass
class Heartbeat:
    last_polled_at: datetime
    polls: int = 0
    received: int = 0


class Recorder:
    """The process's in-memory aggregates, drained by the flusher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, Series] = {}
        self._heartbeats: dict[str, Heartbeat] = {}

    def observe(
        self, metric: Metric, value: float, *, service: str = "", event_type: str = "", result: str = ""
    ) -> None:
        key = SeriesKey(_minute(timezone.now()), metric, service, event_type, result)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series()
            if metric in DISTRIBUTIONS:
                series.add(value)
            else:
                series.count += int(value)

    def heartbeat(self, *, service: str, received: int) -> None:
        now = timezone.now()
        with self._lock:
            beat = self._heartbeats.setdefault(service, Heartbeat(now))
            beat.last_polled_at = now
            beat.polls += 1
            beat.received += received

    def reset(self) -> None:
        """Start empty, with a fresh lock: a forked child (Celery's prefork pool) must neither flush
        its parent's aggregates again nor inherit a lock another thread held at the fork."""
        self._lock = threading.Lock()
        self._series = {}
        self._heartbeats = {}

    def drain(self) -> tuple[dict[SeriesKey, Series], dict[str, Heartbeat]]:
        with self._lock:
            series, self._series = self._series, {}
            heartbeats, self._heartbeats = self._heartbeats, {}
        return series, heartbeats


recorder = Recorder()
os.register_at_fork(after_in_child=recorder.reset)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def record_delivery(
    *, service: str, detail_type: str, result: str, processing_ms: float, end_to_end_ms: float | None
) -> None:
    """One delivery's figures, after its transaction committed (or rolled back)."""
    recorder.observe(Metric.PROCESSING_RESULT, 1, service=service, event_type=detail_type, result=result)
    recorder.observe(Metric.PROCESSING_TIME, processing_ms, service=service, event_type=detail_type)
    if end_to_end_ms is not None:
        recorder.observe(Metric.END_TO_END_LATENCY, max(0.0, end_to_end_ms), service=service, event_type=detail_type)


def record_publish(*, detail_type: str, result: str, lag_ms: float | None) -> None:
    recorder.observe(Metric.PUBLISH_RESULT, 1, event_type=detail_type, result=result)
    if lag_ms is not None:
        recorder.observe(Metric.PUBLISH_LAG, max(0.0, lag_ms), event_type=detail_type)


def record_batch(*, size: int) -> None:
    recorder.observe(Metric.PUBLISH_BATCH_SIZE, size)


def record_sweep_failure(*, sweep: str) -> None:
    recorder.observe(Metric.SWEEP_ITEM_FAILED, 1, service=sweep)


# --- flushing -------------------------------------------------------------------------------------


class _OutageLog:
    """Log a sink's outage once, and its recovery once, however many flushes fail in between."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.failing = False

    def failed(self, exc: Exception, dropped: int) -> None:
        if not self.failing:
            logger.warning(
                "metrics: %s is unavailable (%s); dropping metrics until it recovers (%d series this time)",
                self.sink,
                aws.explain(exc),
                dropped,
            )
        self.failing = True

    def succeeded(self) -> None:
        if self.failing:
            logger.info("metrics: %s has recovered", self.sink)
        self.failing = False


_database_outage = _OutageLog("the metrics database")
_cloudwatch_outage = _OutageLog("CloudWatch")
_last_heartbeat_log: dict[str, float] = {}


def flush(*, gauges: bool = True) -> int:
    """Write everything recorded since the last flush, and with `gauges` sample the outbox's backlog
    for CloudWatch. Returns the number of series written."""
    series, heartbeats = recorder.drain()
    _log_heartbeats(heartbeats)
    if series or heartbeats:
        try:
            _write_to_database(series, heartbeats)
            _database_outage.succeeded()
        except DatabaseError as exc:
            _database_outage.failed(exc, len(series))
    if settings.METRICS_CLOUDWATCH:
        datums = _datums(series)
        try:
            datums += _backlog_datums() if gauges else []
        except DatabaseError as exc:
            # The delivery metrics still go out: CloudWatch is most needed while the database is down.
            _database_outage.failed(exc, 0)
        try:
            _put_metric_data(datums)
            _cloudwatch_outage.succeeded()
        except (BotoCoreError, ClientError) as exc:
            _cloudwatch_outage.failed(exc, len(series))
    return len(series)


def _log_heartbeats(heartbeats: dict[str, Heartbeat]) -> None:
    now = timezone.now().timestamp()
    for service, beat in sorted(heartbeats.items()):
        if now - _last_heartbeat_log.get(service, 0) >= settings.METRICS_HEARTBEAT_LOG_SECONDS:
            _last_heartbeat_log[service] = now
            logger.info(
                "heartbeat %s: last poll %s, %d poll(s) and %d message(s) since the last flush",
                service,
                beat.last_polled_at.isoformat(timespec="seconds"),
                beat.polls,
                beat.received,
            )


def _write_to_database(series: dict[SeriesKey, Series], heartbeats: dict[str, Heartbeat]) -> None:
    """Add a flush's counts to the minutes' rows: an upsert per table, not a statement per series and
    bucket. A flush held the database's write lock for the hundreds of statements of ten seconds'
    series, and on SQLite every delivery waited behind it (docs/performance.md)."""
    from .models import ConsumerHeartbeat, MetricBucket, MetricCount
    from .rows import insert_rows

    greatest = "MAX" if transaction.get_connection().vendor == "sqlite" else "GREATEST"
    added = "{table}.{column} + excluded.{column}"
    bucket_totals: Counter = Counter()
    counts = []
    # One order for every process, so concurrent flushes lock the same rows in the same order and
    # cannot deadlock each other on PostgreSQL.
    for key, values in sorted(series.items(), key=lambda item: _sort_key(item[0])):
        counts.append(
            {
                "minute": key.minute,
                "metric": key.metric,
                "service": key.service,
                "event_type": key.event_type,
                "result": key.result,
                "count": values.count,
                "total": values.total,
                "maximum": values.maximum,
            }
        )
        for bucket, count in values.buckets.items():
            bucket_totals[(key.minute, key.metric, key.service, bucket)] += count
    buckets = [
        {"minute": minute, "metric": metric, "service": service, "bucket": bucket, "count": count}
        for (minute, metric, service, bucket), count in sorted(bucket_totals.items())
    ]
    host = f"{socket.gethostname()}:{os.getpid()}"
    beats = [
        {"service": service, "worker": host, "last_polled_at": beat.last_polled_at}
        for service, beat in sorted(heartbeats.items())
    ]
    with transaction.atomic():
        insert_rows(
            MetricCount,
            counts,
            conflict=["minute", "metric", "service", "event_type", "result"],
            update={"count": added, "total": added, "maximum": greatest + "({table}.{column}, excluded.{column})"},
        )
        insert_rows(MetricBucket, buckets, conflict=["minute", "metric", "service", "bucket"], update={"count": added})
        insert_rows(
            ConsumerHeartbeat,
            beats,
            conflict=["service", "worker"],
            update={"last_polled_at": "excluded.{column}"},
        )


def _sort_key(key: SeriesKey) -> tuple:
    return (key.minute, str(key.metric), key.service, key.event_type, key.result)


def _dimensions(key: SeriesKey) -> list[dict[str, str]]:
    dimensions = []
    if key.service:
        name = "Sweep" if key.metric == Metric.SWEEP_ITEM_FAILED else "ServiceName"
        dimensions.append({"Name": name, "Value": key.service})
    if key.event_type:
        dimensions.append({"Name": "EventType", "Value": key.event_type})
    if key.result:
        dimensions.append({"Name": "Result", "Value": key.result})
    return dimensions


def _with_rollups(series: dict[SeriesKey, Series]) -> dict[SeriesKey, Series]:
    """Each series, plus its total over every event type (and skipped sweep items over every sweep):
    CloudWatch does not add up across dimensions, and the per-service widgets and the failure-rate
    and sweep alarms read the totals."""
    combined = dict(series)
    for key, values in series.items():
        if key.event_type:
            rollup_key = SeriesKey(key.minute, key.metric, key.service, "", key.result)
        elif key.metric == Metric.SWEEP_ITEM_FAILED and key.service:
            rollup_key = SeriesKey(key.minute, key.metric)
        else:
            continue
        rollup = combined.get(rollup_key)
        if rollup is None:
            rollup = combined[rollup_key] = Series()
        rollup.count += values.count
        rollup.total += values.total
        rollup.maximum = max(rollup.maximum, values.maximum)
        rollup.buckets.update(values.buckets)
    return combined


def _datums(series: dict[SeriesKey, Series]) -> list[dict[str, Any]]:
    datums = []
    for key, values in _with_rollups(series).items():
        datum: dict[str, Any] = {
            "MetricName": str(key.metric),
            "Dimensions": _dimensions(key),
            "Timestamp": key.minute,
            "Unit": UNITS[key.metric],
            "StorageResolution": 60,
        }
        if key.metric in DISTRIBUTIONS:
            # Each bucket's upper bound (the observed maximum for the open-ended last one) with its count.
            values_and_counts = sorted(
                (min(BUCKET_BOUNDS[bucket], values.maximum), count) for bucket, count in values.buckets.items()
            )
            datum["Values"] = [value for value, _ in values_and_counts]
            datum["Counts"] = [float(count) for _, count in values_and_counts]
        else:
            datum["Value"] = float(values.count)
        datums.append(datum)
    return datums


def _backlog_datums() -> list[dict[str, Any]]:
    from .models import OutboxEvent

    now = timezone.now()
    backlog = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).aggregate(
        rows=Count("id"), oldest=Min("created_at")
    )
    age = (now - backlog["oldest"]).total_seconds() if backlog["oldest"] else 0.0
    return [
        {"MetricName": str(Metric.OUTBOX_BACKLOG), "Timestamp": now, "Unit": "Count", "Value": float(backlog["rows"])},
        {"MetricName": str(Metric.OUTBOX_BACKLOG_AGE), "Timestamp": now, "Unit": "Seconds", "Value": age},
    ]


def _put_metric_data(datums: list[dict[str, Any]]) -> None:
    cloudwatch = aws.client("cloudwatch")
    for start in range(0, len(datums), MAX_DATUMS_PER_CALL):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=datums[start : start + MAX_DATUMS_PER_CALL])


class MetricsFlusher(threading.Thread):
    """Flushes this process's metrics every METRICS_FLUSH_SECONDS, and once more when stopped. A web
    process's flusher leaves the backlog gauges to the workers' (`gauges=False`): otherwise every web
    process would add a query over the outbox and a PutMetricData call to every interval, idle or not."""

    def __init__(self, stop: threading.Event, *, gauges: bool = True) -> None:
        super().__init__(name="metrics-flusher", daemon=True)
        self.stop_event = stop
        self.gauges = gauges
        if settings.METRICS_CLOUDWATCH:
            # Made with the flusher, during the process's start-up, rather than at the first flush under
            # load: loading CloudWatch's service model takes tens of milliseconds of CPU, and the
            # process then freezes the client with the rest of its start-up heap (shopbus_site.heap).
            aws.client("cloudwatch")

    def run(self) -> None:
        while not self.stop_event.wait(settings.METRICS_FLUSH_SECONDS):
            self._flush_once()
        self._flush_once()

    def _flush_once(self) -> None:
        try:
            flush(gauges=self.gauges)
        except Exception:
            # Metrics must never take a worker down; the next flush starts afresh.
            logger.exception("metrics flush failed")
        finally:
            close_old_connections()
