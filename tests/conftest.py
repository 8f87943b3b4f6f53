from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager

import pytest
import requests
from django.db import connection
from moto import mock_aws

from eventbus import aws as aws_clients
from eventbus import metrics, outbox, topology
from eventbus.models import OutboxEvent
from eventbus.provisioning import Provisioner
from inventory import services as inventory_services
from orders import services as order_services
from tests.factories import PlaceOrderRequestFactory


@pytest.fixture(autouse=True)
def aws(request):
    """moto's in-process mock of every AWS API, fresh for each test, so no test can reach real AWS.
    Tests marked e2e talk to moto's real server instead."""
    aws_clients.client.cache_clear()
    if request.node.get_closest_marker("e2e"):
        yield
    else:
        with mock_aws():
            yield
    aws_clients.client.cache_clear()


@pytest.fixture(autouse=True)
def fresh_metrics():
    """Each test starts with nothing recorded, so what it reads from the metrics is its own doing."""
    metrics.recorder.drain()


@pytest.fixture(params=["any", pytest.param("postgresql", marks=pytest.mark.postgres)])
def on_each_database(request):
    """The test runs in the SQLite pass and again, marked postgres, in `make test`'s PostgreSQL pass:
    for code whose SQL only PostgreSQL checks (row locks, column limits)."""
    if request.param == "postgresql" and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: `make test` runs it against a throwaway server")


@pytest.fixture
def database_vendor(request):
    """A test parametrised by tests.helpers.on_both_databases runs in the pass of its vendor only."""
    if connection.vendor != request.param:
        pytest.skip(f"for the {request.param} pass")
    return request.param


@pytest.fixture
def provisioned(aws):
    Provisioner().apply()


@pytest.fixture
def catalogue(db):
    """The demo catalogue: prod-1 Laptop 999.99 x50, prod-2 Mouse 29.99 x100, prod-3 Keyboard x5, …"""
    inventory_services.load_demo_catalogue()


@pytest.fixture
def pending_events(provisioned, catalogue, monkeypatch):
    """Orders whose Order Placed events wait in the outbox, as if the relay had not run yet."""
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)

    def place(count: int) -> list[OutboxEvent]:
        for _ in range(count):
            order_services.place_order(request=PlaceOrderRequestFactory())
        return list(OutboxEvent.objects.filter(status="PENDING").order_by("created_at"))

    return place


@pytest.fixture
def api_key(db):
    _, plaintext = order_services.create_api_client(name="tests")
    return plaintext


@pytest.fixture
def service_queue():
    return lambda service: topology.SERVICE_QUEUES[service].name


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _running_stack(settings, *, coordinator: str = "choreography", consumers: list[str] | None = None):
    """moto's real server on a free port, provisioned, and a real Celery worker whose bootstep consumes
    the service queues (all, or `consumers`). Celery's own broker is in-memory; event delivery is all
    real SQS over HTTP, and Step Functions executes state machines (its callbacks reach the server
    through MOTO_PORT)."""
    from celery.contrib.testing.worker import start_worker
    from moto.server import ThreadedMotoServer

    from shopbus_site.celery import app
    from shopbus_site.local_aws import speed_up_moto

    speed_up_moto()  # as `make run` starts moto
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    previous_moto_port = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = str(port)
    requests.post(
        f"http://127.0.0.1:{port}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=5
    )
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{port}"
    settings.ORDER_SAGA = coordinator
    settings.EVENT_CONSUMERS = consumers or []
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    aws_clients.client.cache_clear()
    Provisioner().apply()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            yield
    finally:
        app.conf.task_always_eager = True
        server.stop()
        if previous_moto_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = previous_moto_port
        aws_clients.client.cache_clear()


@pytest.fixture
def live_stack(transactional_db, settings):
    with _running_stack(settings):
        yield


@pytest.fixture
def stepfunctions_stack(transactional_db, settings):
    """The live stack with ORDER_SAGA=stepfunctions."""
    with _running_stack(settings, coordinator="stepfunctions"):
        yield


@pytest.fixture
def start_stack(transactional_db, settings):
    """Start a live stack with chosen options inside the test: start_stack(coordinator=..., consumers=[...])."""
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(_running_stack(settings, **options))


@pytest.fixture
def quiet_relay(settings, provisioned):
    """Events the handlers publish stay in the outbox, so each test reads only the queue it fed."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from shopbus_site.celery import app

    app.conf.task_always_eager = False
    app.conf.broker_url = "memory://"
    yield
    app.conf.task_always_eager = True


@pytest.fixture
def never_one_by_one(caplog):
    """On PostgreSQL, where row locks are real: the test's batches and payments' sets must never fall
    back to handling their messages one by one, which is what a deadlock victim does."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: `make test` runs it against a throwaway server")
    for logger in ("eventbus.consuming", "payments.services"):
        caplog.set_level(logging.INFO, logger=logger)
    yield
    # caplog.text is the teardown's own log by now: read the test's.
    assert not [record for record in caplog.get_records("call") if "one by one" in record.getMessage()]
