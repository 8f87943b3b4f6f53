"""With DEBUG off the web process serves the admin's static files itself (whitenoise), from what
`collectstatic` gathered: hashed names cached for ever, compressed for clients that accept it."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from shopbus_site import settings as production_settings


@pytest.fixture
def collected(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    # The product's storage, which the test settings swap for one that needs no collectstatic.
    settings.STORAGES = production_settings.STORAGES
    call_command("collectstatic", interactive=False, verbosity=0)
    settings.DEBUG = False
    return settings.STATIC_ROOT


@pytest.mark.django_db
def test_the_admin_s_css_is_served_hashed_compressed_and_cacheable_with_debug_off(collected):
    client = Client()  # a fresh handler, so whitenoise indexes the collected files
    login_page = client.get("/admin/login/").content.decode()
    [css_url] = re.findall(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login_page)

    response = client.get(css_url, HTTP_ACCEPT_ENCODING="gzip")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]
    assert (collected / css_url.removeprefix("/static/")).exists()
