from celery import shared_task
from django.conf import settings

from . import services


@shared_task(bind=True, ignore_result=True, max_retries=None)
def send_notification(self, notification_id: int) -> None:
    try:
        services.deliver_notification(notification_id=notification_id)
    except Exception as exc:
        # Whatever the email backend raised is recorded on the notification, then retried.
        final = self.request.retries >= settings.NOTIFICATION_MAX_RETRIES
        worth_retrying = services.record_delivery_failure(
            notification_id=notification_id, error=f"{type(exc).__name__}: {exc}", final=final
        )
        if worth_retrying:
            raise self.retry(exc=exc, countdown=services.retry_countdown(retries=self.request.retries)) from exc


@shared_task(ignore_result=True)
def send_stuck_notifications() -> int:
    """Beat: sends that were committed but never queued (services.requeue_stuck_notifications)."""
    return services.requeue_stuck_notifications()
