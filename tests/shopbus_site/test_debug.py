"""The DEBUG 500 page and the error emails show no secret from settings or from the request's META."""

from __future__ import annotations

import secrets
import sys

import pytest
from django.test import RequestFactory
from django.views.debug import technical_500_response

# Made at run time: the page quotes this module's source around the raise, and must not be caught
# showing a secret there instead of where the filter is meant to hide it.
BROKER_SECRET, DATABASE_SECRET, AWS_SECRET, EMAIL_SECRET, CACHE_SECRET = (secrets.token_hex(12) for _ in range(5))
API_KEY = secrets.token_hex(12)


def rendered_500(request) -> str:
    try:
        raise RuntimeError("something broke")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


@pytest.fixture
def secrets_in_settings(settings, monkeypatch):
    settings.DEBUG = True
    settings.CELERY_BROKER_URL = f"sqs://AKIAEXAMPLE:{BROKER_SECRET}@sqs.eu-west-1.amazonaws.com:443"
    settings.LOCAL_AWS_CREDENTIALS = {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": AWS_SECRET}
    settings.EMAIL_HOST_PASSWORD = EMAIL_SECRET
    # A connection string under a name that says nothing about secrets.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://shopbus:{CACHE_SECRET}@cache.internal:6379/0",
        }
    }
    # What env.db("DATABASE_URL") leaves in DATABASES for PostgreSQL.
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", DATABASE_SECRET)


def test_the_debug_page_shows_no_secret_from_settings(secrets_in_settings):
    page = rendered_500(RequestFactory().get("/admin/"))

    for secret in (BROKER_SECRET, DATABASE_SECRET, AWS_SECRET, EMAIL_SECRET, CACHE_SECRET):
        assert secret not in page
    # Still a useful page: where the cache lives, and the settings that hold no secret.
    assert "cache.internal:6379" in page
    assert "SHOP_CURRENCY" in page and "&#x27;USD&#x27;" in page


def test_the_debug_page_shows_no_secret_from_the_environment_in_meta(settings):
    # runserver copies the process environment into every request's META.
    settings.DEBUG = True
    request = RequestFactory().get(
        "/api/orders",
        HTTP_AUTHORIZATION=f"Bearer sb_{API_KEY}",
        DATABASE_URL=f"postgres://shopbus:{DATABASE_SECRET}@db.internal:5432/shopbus",
        CELERY_BROKER_URL=f"sqs://AKIAEXAMPLE:{BROKER_SECRET}@localhost:4566",
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        SOME_SERVICE_ENDPOINT=f"https://deploy:{CACHE_SECRET}@hooks.example.com/notify",
    )

    page = rendered_500(request)

    for secret in (DATABASE_SECRET, BROKER_SECRET, AWS_SECRET, CACHE_SECRET, API_KEY):
        assert secret not in page
    assert "hooks.example.com/notify" in page
