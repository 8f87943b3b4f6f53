from django.conf import settings
from django.core.checks import Error, register


@register()
def gateway_attempts_fit_the_queue(**kwargs) -> list[Error]:
    """Payments gives up on a failing gateway after PAYMENT_MAX_GATEWAY_ATTEMPTS deliveries of the
    charge's message answered with a transient error; SQS moves the message to its DLQ after
    SQS_MAX_RECEIVE_COUNT receives. Giving up must come first, with a receive to spare for one that
    fails before reaching the gateway, or the order waits for the stuck-order timeout with no reason
    given (docs/architecture.md, "Payments and the gateway")."""
    attempts, receives = settings.PAYMENT_MAX_GATEWAY_ATTEMPTS, settings.SQS_MAX_RECEIVE_COUNT
    if 1 <= attempts < receives:
        return []
    return [
        Error(
            f"PAYMENT_MAX_GATEWAY_ATTEMPTS is {attempts}; it must be at least 1 and below SQS_MAX_RECEIVE_COUNT "
            f"({receives}), or a charge's message reaches the DLQ before payments gives up on the gateway.",
            id="payments.E001",
        )
    ]
