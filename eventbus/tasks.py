from celery import shared_task

from . import outbox, services


@shared_task(ignore_result=True)
def relay_outbox() -> None:
    outbox.relay_pending()


def wake_relay_by_task() -> None:
    relay_outbox.apply_async(retry=False)


@shared_task(ignore_result=True)
def prune_metrics() -> None:
    services.prune_metrics()
