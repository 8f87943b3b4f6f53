from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def relay_outbox() -> None:
    services.relay_pending()
