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
        ServiceQueue("analytics", "analytics-queue", 120, 14 * DAY),
        ServiceQueue("audit", "audit-queue", 120, 14 * DAY),
        # Consumed only with ORDER_SAGA=stepfunctions: Order Placed starts the order's execution.
        ServiceQueue("sagas", "order-saga-queue", 60, 4 * DAY),
    )
}
DLQ_RETENTION_SECONDS = 14 * DAY
# Delivery retries EventBridge makes to a target before it gives up and uses the target DLQ.
TARGET_MAX_RETRY_ATTEMPTS = 185
TARGET_MAX_EVENT_AGE_SECONDS = DAY


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


def queue_for(name_or_service: str) -> ServiceQueue:
    """Accept a service ('inventory'), a queue ('inventory-updates-queue') or its DLQ name."""
    for queue in SERVICE_QUEUES.values():
        if name_or_service in {queue.service, queue.base_name, queue.name, queue.dlq_name, f"{queue.base_name}-dlq"}:
            return queue
    known = ", ".join(sorted(queue.service for queue in SERVICE_QUEUES.values()))
    raise LookupError(f"unknown queue or service {name_or_service!r}; known services: {known}")


def dashboard_name() -> str:
    return prefixed("shopbus-events")


def state_machine_name() -> str:
    return prefixed("order-saga")


def state_machine_role_name() -> str:
    return prefixed("order-saga-role")
