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
    assert "cannot reach http://127.0.0.1:9" in body["reasons"]["eventBus"]
    assert "database" not in body["reasons"]


def test_readyz_says_when_the_bus_does_not_exist(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "ResourceNotFoundException" in response.json()["reasons"]["eventBus"]


def test_json_logs_are_one_object_per_line_with_the_event_fields_on_top():
    record = logging.LogRecord("eventbus.consuming", logging.INFO, __file__, 1, "event %s", ("{}",), None)
    record.fields = {"event_id": "e-1", "outcome": "processed", "trace_id": "1-abc"}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["logger"] == "eventbus.consuming" and entry["message"] == "event {}"
    assert (entry["event_id"], entry["outcome"], entry["trace_id"]) == ("e-1", "processed", "1-abc")
