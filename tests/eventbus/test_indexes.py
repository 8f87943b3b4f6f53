"""ProcessedEvent, the largest table (a row per delivery), is searched through an index by every
look-up the code and the admin make. Its two indexes cost each delivery a second index entry; one
index led by the event would save it, and leave the admin's handler filter reading the whole table
(docs/performance.md, "The admin at volume")."""

from __future__ import annotations

import uuid

import pytest

from eventbus.models import ProcessedEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "lookup",
    [
        pytest.param({"event_id__in": [uuid.uuid4(), uuid.uuid4()]}, id="an event's handlers (timelines, replay)"),
        pytest.param({"handler__in": ["inventory.reserve_stock"], "event_id__in": [uuid.uuid4()]}, id="the dedupe"),
        pytest.param({"handler": "notifications.refund_issued"}, id="the admin's handler filter"),
    ],
)
def test_every_look_up_searches_an_index(lookup):
    query_plan = ProcessedEvent.objects.filter(**lookup).explain()
    assert "SEARCH eventbus_processedevent USING" in query_plan, query_plan
    assert "SCAN" not in query_plan, query_plan
