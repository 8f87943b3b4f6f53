from __future__ import annotations

import json
import logging

import pytest

from shopbus_site.logging import JsonFormatter

pytestmark = pytest.mark.django_db


def test_healthz_answers_while_the_process_lives(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_when_the_database_and_the_bus_answer(client, provisioned):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_readyz_is_unavailable_with_a_reason_when_the_bus_endpoint_is_down(client, settings):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["reasons"]["eventBus"] == "the event bus endpoint does not answer"
    assert "database" not in body["reasons"]


def test_readyz_says_when_the_bus_does_not_exist(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"]["eventBus"] == "the event bus does not exist"


def test_probes_answer_over_plain_http_to_any_host_name(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    response = client.get("/healthz", HTTP_HOST="10.0.1.23")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert client.get("/readyz", HTTP_HOST="10.0.1.23").status_code in (200, 503)
    assert client.get("/admin/login/", HTTP_HOST="10.0.1.23").status_code == 400  # everything else is checked


def test_readyz_names_what_is_down_without_leaking_how(client, provisioned, monkeypatch):
    from django.db import OperationalError
    from django.db.backends.utils import CursorWrapper

    def refuse(*args, **kwargs):
        raise OperationalError('connection to server at "10.0.3.7" failed: password for user "shopbus_prod"')

    monkeypatch.setattr(CursorWrapper, "execute", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"] == {"database": "the database does not answer"}
    assert "10.0.3.7" not in response.content.decode()


def test_json_logs_are_one_object_per_line_with_the_event_fields_on_top():
    record = logging.LogRecord("eventbus.consuming", logging.INFO, __file__, 1, "event %s", ("{}",), None)
    record.fields = {"event_id": "e-1", "outcome": "processed", "trace_id": "1-abc"}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["logger"] == "eventbus.consuming" and entry["message"] == "event {}"
    assert (entry["event_id"], entry["outcome"], entry["trace_id"]) == ("e-1", "processed", "1-abc")
