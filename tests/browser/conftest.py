"""The admin in a real browser: headless Chromium (Debian's `chromium` package, driven by Playwright)
against the live local stack, started once for this package the way `make run` starts it.

These tests reach the stack only through HTTP, the browser and the stack's local AWS endpoint: they use
no test database. Without chromium they skip and say how to get it, except under CI (CI=true), where
.ci/run installs it and a skip would hide a failure. Playwright's own browser download
(`playwright install`) is never used.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.local_stack import ROOT, LocalStack

SCREENSHOTS = ROOT / ".local" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STAFF_PASSWORD = "a-browser-test-Passw0rd"
# The starter groups (shopbus_site/migrations/0001_staff_groups.py) and a user in each.
STAFF = {"support": "Support", "warehouse": "Warehouse"}


@pytest.fixture(scope="package")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = (
            "the admin's browser tests need Debian's chromium: `apt-get install chromium` "
            "(Playwright drives it; never `playwright install`)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="package")
def stack(chromium) -> Iterator[LocalStack]:
    """One live local stack for the package, on free ports with its own SQLite database. Scoped to the
    package rather than the session so that its worker, beat and moto stop as soon as these tests are
    done instead of competing with the rest of the suite."""
    local_stack = LocalStack(
        log_path=ROOT / ".local" / "browser-tests" / "stack.log",
        settings={
            "PAYMENT_SIMULATED_LATENCY_MS": "20",
            # A poison message is retried at once rather than after 2, 4, 8 … s, so it reaches its DLQ
            # (after SQS_MAX_RECEIVE_COUNT receives) within seconds.
            "EVENT_RETRY_BASE_SECONDS": "0",
            # The dashboard's counts come from the metrics flusher; a second, not ten, before they show.
            "METRICS_FLUSH_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
        },
    )
    try:
        local_stack.start()
        yield local_stack
    finally:
        local_stack.stop()


@pytest.fixture(scope="package")
def browser(chromium) -> Iterator:
    # Scoped to the package: Playwright's sync API runs an event loop in this thread while it is
    # open, and Django refuses database calls from a thread with a running loop (the rest of the suite).
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Staff:
    """A signed-in browser tab for one person, with screenshots named after the test."""

    def __init__(self, page, stack: LocalStack, shots_prefix: str) -> None:
        self.page = page
        self.stack = stack
        self.shots_prefix = shots_prefix
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))

    def goto(self, path: str):
        response = self.page.goto(f"{self.stack.base_url}{path}")
        return response

    def screenshot(self, step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.shots_prefix}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def reload_until(self, done: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
        """Reload the page, as staff would, until `done()` holds."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                self.screenshot("timed-out")
                raise AssertionError(f"{what or 'the page'} did not change within {timeout:.0f}s ({self.page.url})")
            time.sleep(0.5)
            self.page.reload()

    def message(self) -> str:
        """The admin's messages (the green and red notes at the top)."""
        return self.page.locator("ul.messagelist").inner_text()


@pytest.fixture
def sign_in(request, browser, stack, staff_users) -> Iterator[Callable[[str], Staff]]:
    """sign_in("admin" | "support" | "warehouse"): a fresh browser context, signed in through the
    admin's login form."""
    contexts = []
    test_name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)
    people: list[Staff] = []

    def login(who: str) -> Staff:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.base_url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        staff = Staff(context.new_page(), stack, f"{test_name}-{who}")
        username, password = (
            (stack.banner.admin_username, stack.banner.admin_password) if who == "admin" else (who, STAFF_PASSWORD)
        )
        _log_in(staff, username, password)
        people.append(staff)
        return staff

    yield login
    for context in contexts:
        context.close()
    errors = [error for staff in people for error in staff.errors]
    assert errors == [], f"JavaScript errors on the admin's pages: {errors}"


def _log_in(staff: Staff, username: str, password: str) -> None:
    page = staff.page
    staff.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    assert page.locator("#user-tools").inner_text().upper().startswith("WELCOME")


@pytest.fixture(scope="package")
def staff_users(browser, stack) -> dict[str, str]:
    """A Support and a Warehouse user, added by the superuser through the admin's own user pages
    (Users → Add, then staff status and the group on the user's page)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    admin = Staff(context.new_page(), stack, "staff_users-admin")
    try:
        _log_in(admin, stack.banner.admin_username, stack.banner.admin_password)
        page = admin.page
        for username, group in STAFF.items():
            admin.goto("/admin/auth/user/add/")
            page.fill("#id_username", username)
            # Django 5.1+ asks whether the password may be used to log in; the default is yes.
            page.fill("#id_password1", STAFF_PASSWORD)
            page.fill("#id_password2", STAFF_PASSWORD)
            page.click("input[name=_continue]")
            page.wait_for_url(re.compile(r"/admin/auth/user/\d+/change/"))
            page.check("#id_is_staff")
            # The groups widget: pick the group on the left, move it right.
            page.select_option("#id_groups_from", label=group)
            page.click("#id_groups_add")
            assert page.locator("#id_groups_to option").all_inner_texts() == [group]
            admin.screenshot(f"{username}-before-save")
            page.click("input[name=_save]")
            page.wait_for_url(re.compile(r"/admin/auth/user/$"))
            assert "was changed successfully" in admin.message()
        assert admin.errors == []
    finally:
        context.close()
    return dict(STAFF)
