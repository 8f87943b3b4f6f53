from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def send_saga_replies() -> None:
    """The sweep: replies a worker committed but died before sending."""
    services.send_pending_replies()
