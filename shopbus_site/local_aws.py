"""moto's server as the local AWS endpoint (`manage.py devstack` runs `python -m shopbus_site.local_aws`
with moto_server's arguments), with two things moto repeats on every request done once instead
(profiled with py-spy under `make bench`; docs/performance.md):

- for every event it delivers to a rule target, it parses the same eight JSONPath expressions of its
  default input template with jsonpath_ng, about 1 ms each: tens of milliseconds of CPU per event;
- to route every request, it lists its own package directory (`list_of_moto_modules`, ~150 isdir
  calls), under a lock that serialises requests: about 15% of the server's CPU.

Both are pure functions of values that never change while the server runs (a parsed expression is
only read by `find`; moto's modules are fixed at install), so memoising them changes nothing but the
time.

And for every message a receive returns, moto checks the message's retention by building every
attribute of its queue, three times over: each count of messages walks the whole queue, so a
receive costs the square of the queue's depth (a quarter of the server's CPU under `make bench`).
The check reads the queue's retention period directly instead, with moto's own comparison.

Then, by the same profile, about a fifth of what was left: SQS's models read the clock as the
seconds between two naive datetimes they build on every call (several calls per message a receive
or a queue's counts look at), where `time.time()` gives the same number; they turn the same
fourteen attribute names into Python names with a character-by-character loop each time a queue's
attributes are built; and each lookup of an account's backends lists every account under a lock and
compares the service's backends with every other service's before answering. And every request
lists the methods of its service's response class with `inspect.getmembers`, and turns its action's
name into a Python name with the same loop; both are memoised. A receipt handle's 185 random letters
are drawn in one call rather than 185 (from the same generator: moto's handles are opaque anyway).

It also answers GET /shopbus/launch-token with the token `devstack` gave it in SHOPBUS_LAUNCH_TOKEN,
so that the stack can tell the server it launched from any other moto answering on the same port, and
a POST to /shopbus/freeze-heap, which `devstack` sends once it has provisioned.
"""

from __future__ import annotations

import functools
import logging
import os
import string
import sys
import time

LAUNCH_TOKEN_PATH = "/shopbus/launch-token"
FREEZE_HEAP_PATH = "/shopbus/freeze-heap"


def speed_up_moto() -> None:
    import jsonpath_ng.ext

    # moto imports `parse` from jsonpath_ng.ext inside the function that uses it, so the module
    # attribute is what it finds.
    from moto import backends
    from moto.core import responses as core_responses
    from moto.core.base_backend import BackendDict
    from moto.sqs import models as sqs_models
    from moto.sqs.models import SQSBackend

    if not hasattr(jsonpath_ng.ext.parse, "cache_info"):
        jsonpath_ng.ext.parse = functools.lru_cache(maxsize=512)(jsonpath_ng.ext.parse)
    SQSBackend.is_message_valid_based_on_retention_period = _is_message_within_retention
    if not hasattr(sqs_models.camelcase_to_underscores, "cache_info"):
        sqs_models.camelcase_to_underscores = functools.cache(sqs_models.camelcase_to_underscores)
        sqs_models.unix_time = _clock_reading(sqs_models.unix_time)
        sqs_models.unix_time_millis = _clock_reading(sqs_models.unix_time_millis, per_second=1000.0)
        BackendDict.__getitem__ = _existing_backends_first(BackendDict.__getitem__)
        core_responses.camelcase_to_underscores = functools.cache(core_responses.camelcase_to_underscores)
        core_responses.method_names_from_class = _method_names_once(core_responses.method_names_from_class)
        sqs_models.generate_receipt_handle = _receipt_handle
    if not hasattr(backends.list_of_moto_modules, "cache_info"):
        # A tuple, not moto's generator, so that it can be iterated again.
        modules = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = functools.cache(lambda: modules)


def _is_message_within_retention(backend, queue_name: str, message) -> bool:
    from moto.core.utils import unix_time

    queue = backend.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


def _clock_reading(unix_time, *, per_second: float = 1.0):
    def now_or_then(dt=None):
        return time.time() * per_second if dt is None else unix_time(dt)

    return now_or_then


def _existing_backends_first(getitem):
    def backends_of(self, account_id):
        # moto's own lookup creates (and registers) an account's backends the first time; once they
        # exist, and until a reset removes them, the answer is what the dict already holds.
        if dict.__contains__(self, account_id):
            return dict.__getitem__(self, account_id)
        return getitem(self, account_id)

    return backends_of


def _method_names_once(method_names_from_class):
    @functools.cache
    def method_names(clazz) -> frozenset[str]:
        return frozenset(method_names_from_class(clazz))

    return method_names


def _receipt_handle() -> str:
    from moto.moto_api._internal import mock_random

    return "".join(mock_random.choices(string.ascii_lowercase, k=185))


def add_stack_routes(token: str | None) -> None:
    """Serve, in front of moto's own routing, `token` (when given) at LAUNCH_TOKEN_PATH, and a POST to
    FREEZE_HEAP_PATH, with which the stack has the server freeze its heap once provisioning has built
    moto's backends and loaded botocore's models (shopbus_site.heap)."""
    import moto.server
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    from shopbus_site.heap import freeze_startup_heap

    def answer(start_response, text: str) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]

    class StackApplication(DomainDispatcherApplication):
        def __call__(self, environ, start_response):
            path = environ.get("PATH_INFO")
            if token and path == LAUNCH_TOKEN_PATH:
                return answer(start_response, token)
            if path == FREEZE_HEAP_PATH and environ.get("REQUEST_METHOD") == "POST":
                freeze_startup_heap()
                return answer(start_response, "frozen")
            return super().__call__(environ, start_response)

    # moto's main builds its application from this module attribute.
    moto.server.DomainDispatcherApplication = StackApplication


def main() -> int:
    from moto.server import main as moto_server

    speed_up_moto()
    add_stack_routes(os.environ.get("SHOPBUS_LAUNCH_TOKEN"))
    # One access-log line per request costs moto CPU and tells a developer nothing; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return moto_server()


if __name__ == "__main__":
    sys.exit(main())
