"""The event-flow dashboard (staff only, in the admin) and the health endpoints (for load balancers
and orchestrators)."""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import admin
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from eventbus import aws, topology
from eventbus.metrics import Metric

from . import charts, selectors

logger = logging.getLogger(__name__)


def event_flow(request: HttpRequest) -> TemplateResponse:
    window = request.GET.get("window", "15m")
    if window not in selectors.WINDOWS:
        window = "15m"
    now = timezone.now()
    steps, published = selectors.flow_per_step(
        window=window, metric=Metric.PUBLISH_RESULT, group_by="event_type", result="published", now=now
    )
    _, by_service = selectors.flow_per_step(window=window, metric=Metric.PROCESSING_RESULT, group_by="service", now=now)
    _, by_type = selectors.flow_per_step(window=window, metric=Metric.PROCESSING_RESULT, group_by="event_type", now=now)
    _, by_result = selectors.flow_per_step(window=window, metric=Metric.PROCESSING_RESULT, group_by="result", now=now)
    hop_latency = selectors.latency_percentiles(window=window, metric=Metric.END_TO_END_LATENCY, now=now)
    processing = selectors.latency_percentiles(window=window, metric=Metric.PROCESSING_TIME, now=now)
    publish_lag = selectors.latency_percentiles(window=window, metric=Metric.PUBLISH_LAG, now=now)
    queues = selectors.queue_health()
    backlog = selectors.outbox_backlog(now)
    alarms = selectors.alarm_states(selectors.readings(queues=queues, backlog=backlog, now=now))
    results = {line.label: line.total for line in by_result}
    handled = sum(results.values())
    failed = sum(results.get(result, 0) for result in ("failed", "malformed", "unroutable"))
    context = {
        **admin.site.each_context(request),
        "title": "Event flow",
        "window": window,
        "windows": list(selectors.WINDOWS),
        "now": now,
        "published_chart": charts.stacked_columns(steps, published, title="Events published per step, by detail-type"),
        "service_chart": charts.stacked_columns(steps, by_service, title="Deliveries handled per step, by service"),
        "type_chart": charts.stacked_columns(steps, by_type, title="Deliveries handled per step, by detail-type"),
        "result_chart": charts.stacked_columns(steps, by_result, title="Deliveries per step, by result"),
        "hop_chart": charts.percentile_bars(hop_latency, title="Latency per hop: occurredAt to the handler's commit"),
        "processing_chart": charts.percentile_bars(processing, title="Processing time per service"),
        "publish_chart": charts.percentile_bars(publish_lag, title="Publish lag: commit to accepted by PutEvents"),
        "step_minutes": int(selectors.STEPS[window].total_seconds() // 60),
        "handled": handled,
        "failed": failed,
        "failure_rate": failed / handled if handled else None,
        "failures": selectors.recent_failures(),
        "queues": queues,
        "target_dlq_name": topology.target_dlq_name(),
        "task_queue": topology.task_queue(),
        "backlog": backlog,
        "alarms": alarms,
        "alarms_firing": sum(status.state == "ALARM" for status in alarms),
        "heartbeats": selectors.heartbeats(),
    }
    return TemplateResponse(request, "observability/event_flow.html", context)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. Checks nothing else, so a database outage never restarts it."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for traffic: the database and the event bus endpoint both answer."""
    # The reasons are for whoever reads the probe, anonymous: what is down, not hosts or credentials.
    # The details go to the log.
    problems = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.warning("readyz: the database does not answer", exc_info=True)
        problems["database"] = "the database does not answer"
    try:
        aws.client("events", fast=True).describe_event_bus(Name=topology.bus_name())
    except (BotoCoreError, ClientError) as exc:
        logger.warning("readyz: the event bus does not answer: %s", aws.explain(exc))
        problems["eventBus"] = (
            "the event bus does not exist"
            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"
            else "the event bus endpoint does not answer"
        )
    if problems:
        return JsonResponse({"status": "unavailable", "reasons": problems}, status=503)
    return JsonResponse({"status": "ready"})
