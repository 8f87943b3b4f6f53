"""The Celery app. Its broker carries internal tasks only; event queues are consumed by a bootstep."""

import os

from celery import Celery
from click import Option

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopbus_site.settings")

app = Celery("shopbus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.user_options["worker"].add(
    Option(
        ["--event-consumers"],
        default=None,
        help="Comma-separated services whose event queues this worker consumes "
        "(default: EVENT_CONSUMERS, or every service). Use 'none' to consume no event queue.",
    )
)


def _register_event_consumer_step() -> None:
    from eventbus.worker import EventConsumerStep

    app.steps["worker"].add(EventConsumerStep)


_register_event_consumer_step()
