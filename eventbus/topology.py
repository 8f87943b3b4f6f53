"""Names and attributes of every AWS resource shopbus uses (docs/architecture.md, "Topology and provisioning").

Everything here is derived: queue attributes from the table below, rules from the handler registry,
names from the configured prefix. Provisioning, teardown, the consumer and the DLQ tools all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from . import registry

DAY = 24 * 60 * 60


@dataclass(frozen=True)
class ServiceQueue:
    service: str
    base_name: str
    visibility_timeout: int
    retention_seconds: int
    wait_seconds: int = 20
    # Off the order's path: after a receive that was not full, the poller lets events gather for
    # EVENT_BATCHING_WINDOW_MS before it receives again (as Lambda's MaximumBatchingWindowInSeconds
    # does), so they come ten to a receive and are handled as one set, not one or two at a time.
    gathers_batches: bool = False

    @property
    def name(self) -> str:
        return prefixed(self.base_name)

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"

    @property
    def rule_name(self) -> str:
        return prefixed(f"{self.service}-subscriptions")


SERVICE_QUEUES: dict[str, ServiceQueue] = {
    queue.service: queue
    for queue in (
        ServiceQueue("orders", "order-processing-queue", 300, 14 * DAY),
        ServiceQueue("inventory", "inventory-updates-queue", 60, 4 * DAY),
        ServiceQueue("payments", "payment-processing-queue", 60, 4 * DAY),
        ServiceQueue("notifications", "notification-queue", 30, 4 * DAY),
        ServiceQueue("analytics", "analytics-queue", 120, 14 * DAY, gathers_batches=True),
        ServiceQueue("audit", "audit-queue", 120, 14 * DAY, gathers_batches=True),
        # Consumed only with ORDER_SAGA=stepfunctions: Order Placed starts the order's execution.
        ServiceQueue("sagas", "order-saga-queue", 60, 4 * DAY),
    )
}
DLQ_RETENTION_SECONDS = 14 * DAY
# Delivery retries EventBridge makes to a target before it gives up and uses the target DLQ.
TARGET_MAX_RETRY_ATTEMPTS = 185
TARGET_MAX_EVENT_AGE_SECONDS = DAY


@dataclass(frozen=True)
class TaskQueue:
    """Celery's own broker queue (internal tasks). A task message that kills its worker is never
    acknowledged and would come back after every visibility timeout for ever: like every event queue, it
    moves to a DLQ after SQS_MAX_RECEIVE_COUNT receives."""

    name: str
    visibility_timeout: int
    service: str = "tasks"

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"


def task_queue() -> TaskQueue | None:
    """Celery's default queue as its SQS transport names it, or None when the broker is not SQS."""
    if not settings.CELERY_BROKER_URL.startswith("sqs://"):
        return None
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    return TaskQueue(
        name=f"{options.get('queue_name_prefix', '')}{settings.CELERY_TASK_DEFAULT_QUEUE}",
        # Celery's transport creates the queue with this timeout if it finds none; provisioning agrees.
        visibility_timeout=int(options.get("visibility_timeout", 30)),
    )


def prefixed(name: str) -> str:
    return f"{settings.AWS_RESOURCE_PREFIX}{name}"


def bus_name() -> str:
    return prefixed(settings.EVENT_BUS_NAME)


def archive_name() -> str:
    return f"{bus_name()}-archive"


def target_dlq_name() -> str:
    return f"{bus_name()}-target-dlq"


def consuming_queues() -> list[ServiceQueue]:
    """Queues of the services that declare at least one subscription."""
    return [SERVICE_QUEUES[service] for service in registry.services()]


def queue_for(name_or_service: str) -> ServiceQueue | TaskQueue:
    """Accept a service ('inventory'), a queue ('inventory-updates-queue') or its DLQ name; 'tasks' (or
    its queue's names) for Celery's queue."""
    for queue in SERVICE_QUEUES.values():
        if name_or_service in {queue.service, queue.base_name, queue.name, queue.dlq_name, f"{queue.base_name}-dlq"}:
            return queue
    tasks = task_queue()
    if tasks is not None and name_or_service in {tasks.service, tasks.name, tasks.dlq_name}:
        return tasks
    known = ", ".join(sorted(queue.service for queue in SERVICE_QUEUES.values()) + ([tasks.service] if tasks else []))
    raise LookupError(f"unknown queue or service {name_or_service!r}; known services: {known}")


def dashboard_name() -> str:
    # CloudWatch dashboards are global to the account: the region keeps two regions' apart.
    return f"{legacy_dashboard_name()}-{settings.AWS_REGION}"


def legacy_dashboard_name() -> str:
    """The dashboard's name before it named its region."""
    return prefixed("shopbus-events")


def state_machine_name() -> str:
    return prefixed("order-saga")


def state_machine_role_name() -> str:
    return prefixed("order-saga-role")
