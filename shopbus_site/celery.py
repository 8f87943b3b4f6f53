"""The Celery app. Its broker carries internal tasks only; event queues are consumed by a bootstep."""

import gc
import os
from pathlib import Path

from celery import Celery
from celery.signals import beat_init, worker_process_init, worker_ready
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


@worker_ready.connect
def _tell_the_supervisor(**kwargs) -> None:
    # `make run` announces the stack once its worker is consuming, instead of letting the login and
    # key scroll away under the worker's start-up log (shopbus_site/management/commands/devstack.py).
    ready_file = os.environ.get("SHOPBUS_WORKER_READY_FILE")
    if ready_file:
        Path(ready_file).write_text(f"{os.getpid()}\n")


# shopbus_site.heap's freeze, for a worker once its event consumers run (their clients made), a
# prefork child once forked, and beat. Spelled out: importing shopbus_site.heap from here would make
# the package, whose __init__ loads this module, import itself back.
@worker_ready.connect
@worker_process_init.connect
@beat_init.connect
def _freeze_startup_heap(**kwargs) -> None:
    gc.collect()
    gc.freeze()
