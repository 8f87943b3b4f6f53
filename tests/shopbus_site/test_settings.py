"""Settings that cannot be used stop start-up with a message that names them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LOCAL_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-c", "import shopbus_site.settings"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_database_url_set_but_empty_is_refused_not_replaced_by_the_local_database(tmp_path):
    result = load_settings(tmp_path, DATABASE_URL="")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line and "DATABASE_URL is set but is not a database URL" in last_line


def test_a_number_that_is_not_one_is_refused_by_its_name(tmp_path):
    result = load_settings(tmp_path, LOCAL_AWS_PORT="four thousand")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.endswith("ImproperlyConfigured: LOCAL_AWS_PORT must be a whole number.")
    assert "four thousand" not in result.stderr
