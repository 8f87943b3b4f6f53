from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def purge_expired_idempotency_keys() -> None:
    services.purge_expired_idempotency_keys()


@shared_task(ignore_result=True)
def cancel_stuck_orders() -> None:
    services.cancel_stuck_orders()
