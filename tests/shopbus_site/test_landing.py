"""The front door: / says what shopbus is and links to each face; /api/ points at the contract."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_landing_page_links_the_admin_the_api_docs_and_the_dashboard():
    response = Client().get("/")
    assert response.status_code == 200
    content = response.content.decode()
    for link in ('href="/admin/"', 'href="/api/docs"', 'href="/admin/event-flow/"'):
        assert link in content


def test_the_admins_view_site_link_leads_to_the_landing_page(admin_client):
    assert '<a href="/">View site</a>' in admin_client.get("/admin/").content.decode()


def test_the_api_root_points_at_the_contract():
    body = Client().get("/api/").json()
    assert body["docs"].endswith("/api/docs")
    assert Client().get(body["openapi"].removeprefix("http://testserver")).status_code == 200
