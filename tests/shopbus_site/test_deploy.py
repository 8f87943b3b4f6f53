"""The production environment the README documents ("Running in production") passes Django's deploy
checks, and behind a TLS-terminating load balancer redirects to HTTPS while the health probes still
answer over plain HTTP.

Each check runs in a subprocess with exactly that environment and nothing else: the test settings,
and whatever the test run's own environment holds, must not make production look safer than it is.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def documented_environment() -> dict[str, str]:
    """The README's `shopbus.env` block, each `<placeholder>` filled as a secret store would fill it."""
    readme = (BASE_DIR / "README.md").read_text()
    match = re.search(r"```sh\n# shopbus\.env\n(.*?)```", readme, flags=re.DOTALL)
    assert match, "README.md has no shopbus.env block under Running in production"
    environment = {}
    for line in match.group(1).splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            environment[name] = re.sub(r"<[^>]+>", lambda _: secrets.token_urlsafe(50), value)
    return environment


def run_in_production(*command: str, overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], **documented_environment(), **(overrides or {})}
    return subprocess.run(
        command, cwd=BASE_DIR, env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_documented_environment_is_the_production_one():
    environment = documented_environment()
    assert environment["DEBUG"] == "false"
    assert environment["DATABASE_URL"].startswith("postgres://")
    assert environment["AWS_ENDPOINT_URL"] == ""  # real AWS, not the local endpoint


def test_the_documented_production_environment_passes_the_deploy_checks():
    result = run_in_production(sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


PROBE_SCRIPT = """
import json
import os

os.environ["DJANGO_SETTINGS_MODULE"] = "shopbus_site.settings"
import django
from django.test import Client

django.setup()
client = Client()
answers = {
    "probe": client.get("/healthz", HTTP_HOST="10.0.1.23").status_code,
    "plain": client.get("/admin/login/", HTTP_HOST="shop.example.com"),
    "tls": client.get("/no-such-page", HTTP_HOST="shop.example.com", HTTP_X_FORWARDED_PROTO="https"),
    "other_host": client.get("/no-such-page", HTTP_HOST="evil.example.net", HTTP_X_FORWARDED_PROTO="https"),
}
print(json.dumps({
    "probe": answers["probe"],
    "plain": [answers["plain"].status_code, answers["plain"].get("Location")],
    "tls": [answers["tls"].status_code, answers["tls"].get("Strict-Transport-Security")],
    "other_host": answers["other_host"].status_code,
}))
"""


@pytest.fixture(scope="module")
def production_answers() -> dict:
    result = run_in_production(sys.executable, "-c", PROBE_SCRIPT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_load_balancer_s_health_probe_by_ip_over_plain_http_gets_a_200(production_answers):
    assert production_answers["probe"] == 200


def test_plain_http_is_redirected_to_https(production_answers):
    assert production_answers["plain"] == [301, "https://shop.example.com/admin/login/"]


def test_https_through_the_load_balancer_is_served_with_hsts(production_answers):
    assert production_answers["tls"] == [404, "max-age=31536000; includeSubDomains; preload"]


def test_a_host_not_allowed_is_refused(production_answers):
    assert production_answers["other_host"] == 400


DATABASE_OPTIONS_SCRIPT = """
import json
import os

os.environ["DJANGO_SETTINGS_MODULE"] = "shopbus_site.settings"
from django.conf import settings

print(json.dumps(settings.DATABASES["default"].get("OPTIONS", {})))
"""


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # Django's default: a migration that changes a column's type cannot break a web request.
        ({}, {}),
        # The workers' setting (README, "Running in production").
        ({"DATABASE_PREPARED_STATEMENTS": "true"}, {"server_side_binding": True, "prepare_threshold": 5}),
    ],
)
def test_postgresql_prepares_statements_only_where_told_to(overrides, expected):
    result = run_in_production(sys.executable, "-c", DATABASE_OPTIONS_SCRIPT, overrides=overrides)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
