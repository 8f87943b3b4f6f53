"""The published contract: /api/openapi.json and /api/docs, and schemathesis against every operation
of the document, on SQLite and (in the PostgreSQL pass) on PostgreSQL."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection
from django.test import Client
from hypothesis import HealthCheck, settings

from orders import services

pytestmark = pytest.mark.django_db

# Negative cases are still generated and sent (every mode runs), and must meet these checks. Not
# negative_data_rejection: it reports false failures here, for a query parameter generated with no
# value (which the HTTP client drops, so the request is valid) and for a case that removed the
# Authorization header (which this test sends back). What it would catch, a schema-violating request
# accepted, the explicit tests in test_api_hostile_input.py and test_api_clients.py pin down.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.unsupported_method,
]


def test_the_document_describes_every_operation():
    document = Client().get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
    assert operations == {
        ("POST", "/api/orders"),
        ("GET", "/api/orders"),
        ("GET", "/api/orders/{order_id}"),
        ("POST", "/api/orders/{order_id}/cancel"),
        ("GET", "/api/orders/{order_id}/events"),
        ("GET", "/api/products"),
    }
    place = document["paths"]["/api/orders"]["post"]
    assert {"201", "400", "401", "413", "415", "422"} <= set(place["responses"])
    assert any(parameter["name"] == "Idempotency-Key" for parameter in place["parameters"])


def test_the_interactive_docs_need_no_internet():
    page = Client().get("/api/docs").content.decode()
    assert "swagger-ui-bundle.js" in page
    assert "cdn." not in page and "https://" not in page.split("<body", 1)[-1].split("swagger", 1)[0]


# Loaded from the running application, not from a file: what is tested is what is served.
contract = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture(autouse=True)
def requests_keep_the_tests_connection():
    # As Django's test client does: a request's end must not close the connection that holds the
    # test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def keeps_the_contract(case) -> None:
    _, key = services.create_api_client(name=f"schemathesis {services.secrets.token_hex(4)}", is_staff=True)
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)


@contract.parametrize()
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_the_contract(case, catalogue):
    if connection.vendor != "sqlite":
        pytest.skip("the PostgreSQL pass runs test_every_operation_keeps_the_contract_on_postgresql")
    keeps_the_contract(case)


@pytest.mark.postgres
@contract.parametrize()
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_the_contract_on_postgresql(case, catalogue):
    assert connection.vendor == "postgresql"
    keeps_the_contract(case)
