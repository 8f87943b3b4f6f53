import logging
import threading

from celery import current_app, shared_task

from . import outbox, services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def relay_outbox() -> None:
    outbox.relay_when_kicked()


class BackgroundRelayWaker:
    """Wakes the relay with a task, from a thread of its own: the commit that asked (an order's
    POST, say) never waits on the broker, a burst of commits costs one task, and a broker that is down
    (the local endpoint restarting) costs one warning rather than a stalled request and a traceback
    each. Best effort either way: beat runs the relay periodically."""

    def __init__(self) -> None:
        self.wanted = threading.Event()
        self.start_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.failing = False

    def __call__(self) -> None:
        if current_app.conf.task_always_eager:
            relay_outbox.apply_async(retry=False)  # in-process, as the tests run tasks
            return
        self.wanted.set()
        with self.start_lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="relay-waker", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            self.wanted.wait()
            self.wanted.clear()
            try:
                relay_outbox.apply_async(retry=False)
            except Exception as exc:  # noqa: BLE001 - best effort: beat's periodic relay publishes regardless
                if not self.failing:
                    logger.warning("cannot wake the relay through the broker (%s); beat's periodic relay will", exc)
                self.failing = True
            else:
                if self.failing:
                    logger.info("relay wake-ups reach the broker again")
                self.failing = False


wake_relay_by_task = BackgroundRelayWaker()


@shared_task(ignore_result=True)
def prune_metrics() -> None:
    services.prune_metrics()
