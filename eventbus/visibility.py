"""Keeping a receive's messages hidden from other consumers for as long as its poller handles them."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from . import aws

logger = logging.getLogger(__name__)


@dataclass
class _Receive:
    queue_url: str
    receipt_handles: list[str]
    extend_at: float  # time.monotonic()


class VisibilityKeeper(threading.Thread):
    """Extends a receive's visibility timeout while its poller is still handling it: once half the
    queue's timeout has passed, and every half timeout after, each of its messages is hidden for a whole
    timeout more (one ChangeMessageVisibilityBatch).

    Without it, a receive that outlasts the timeout (a set of charges on a slow gateway, a database
    that waits on a lock) would be delivered again, to another worker, while this one still works on
    it; and this one's delete would name receipt handles SQS has since replaced, which need not delete
    the messages. A receive that ends quickly costs nothing: the thread only waits. A handler that
    never returns keeps its messages hidden until SQS's own limit, twelve hours from the receive; its
    queue's age alarm says so long before."""

    def __init__(self, *, queue_name: str, visibility_timeout: int) -> None:
        super().__init__(name=f"visibility-{queue_name}", daemon=True)
        self.queue_name = queue_name
        self.visibility_timeout = visibility_timeout
        self.changed = threading.Condition()
        self.receive: _Receive | None = None
        self.extending = False
        self.stopped = False

    def watch(self, *, queue_url: str, receipt_handles: list[str]) -> None:
        if self.visibility_timeout < 1:
            return  # the queue hides nothing: there is nothing to keep
        with self.changed:
            self.receive = _Receive(queue_url, receipt_handles, time.monotonic() + self.visibility_timeout / 2)
            self.changed.notify_all()

    def unwatch(self) -> None:
        """Extend no more. Returns once no extension is in flight, so that none lands after the poller
        has deleted the messages, or has shortened a failed one's visibility to pace its retry."""
        with self.changed:
            self.receive = None
            self.changed.notify_all()
            while self.extending:
                self.changed.wait()

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify_all()
        if self.ident is not None:  # started
            self.join()

    def run(self) -> None:
        while (receive := self._next_due()) is not None:
            started = time.monotonic()
            extended = False
            try:
                extended = self._extend(receive)
            finally:
                with self.changed:
                    self.extending = False
                    # The next one half a timeout after this one began; a failed one is tried again soon,
                    # while the last that succeeded still hides the messages.
                    receive.extend_at = (
                        started + self.visibility_timeout / 2
                        if extended
                        else time.monotonic() + self.visibility_timeout / 10
                    )
                    self.changed.notify_all()

    def _next_due(self) -> _Receive | None:
        """Waits until the watched receive is due an extension (and marks it in flight); None once stopped."""
        with self.changed:
            while not self.stopped:
                receive = self.receive
                if receive is None:
                    self.changed.wait()
                    continue
                wait = receive.extend_at - time.monotonic()
                if wait > 0:
                    self.changed.wait(wait)
                    continue
                self.extending = True
                return receive
            return None

    def _extend(self, receive: _Receive) -> bool:
        entries = [
            {"Id": str(number), "ReceiptHandle": handle, "VisibilityTimeout": self.visibility_timeout}
            for number, handle in enumerate(receive.receipt_handles)
        ]
        try:
            # One short attempt: the poller waits on it before it settles the receive (unwatch).
            result = aws.client("sqs", fast=True).change_message_visibility_batch(
                QueueUrl=receive.queue_url, Entries=entries
            )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("queue %s: could not keep a slow receive's messages hidden: %s", self.queue_name, exc)
            return False
        except Exception:  # the keeper must outlive any one call, or no later receive is kept
            logger.exception("queue %s: could not keep a slow receive's messages hidden", self.queue_name)
            return False
        logger.info(
            "queue %s: a receive of %d message(s) is still being handled; hidden for %d s more",
            self.queue_name,
            len(entries),
            self.visibility_timeout,
        )
        for failure in result.get("Failed", []):
            logger.warning("queue %s: could not keep a message hidden: %s", self.queue_name, failure)
        return True
