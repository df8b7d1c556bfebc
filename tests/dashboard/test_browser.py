"""The dashboard in a real browser (Debian's chromium, headless, through chromedriver)
while a real `pgqueue work` process runs: every page opens (no script or CSP error in the
console, the overview updates itself), a failed job is retried from its page and
succeeds, a queue paused from the overview stops being served. A screenshot of each page
is kept under $PGQUEUE_TEST_ARTIFACTS (default: a temporary directory, printed)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.dashboard.conftest import TOKEN, Dashboard
from tests.helpers import wait_until
from tests.worker.procs import Workers, create_effects, state_of, wait_state

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000")  # fmt: skip

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"no {CHROMIUM} or {CHROMEDRIVER}: apt-get install -y chromium chromium-driver "
    "(.ci/run installs them)",
)

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    path = Path(os.environ.get("PGQUEUE_TEST_ARTIFACTS") or tempfile.mkdtemp(prefix="pgqueue-"))
    path = path / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots in {path}")
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pgqueue-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def workers(pg_dsn: str, schema: str, conn: Conn) -> Iterator[Workers]:
    create_effects(conn, schema)
    w = Workers(pg_dsn, schema)
    yield w
    w.close()


class Page:
    """The browser on one dashboard, logged in with the token."""

    def __init__(self, driver: Any, dashboard: Dashboard, artifacts: Path) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.d, self.artifacts, self.by = driver, dashboard, artifacts, By
        driver.get(dashboard.url + "/login")
        self.find("#login-password").send_keys(TOKEN)
        self.find("#login-submit").click()
        wait_until(lambda: "/login" not in driver.current_url, what="logged in")

    def open(self, path: str) -> None:
        self.driver.get(self.d.url + path)
        wait_until(lambda: self.driver.execute_script("return document.readyState") == "complete")

    def find(self, css: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(self.by.CSS_SELECTOR, css))

    def click(self, css: str) -> None:
        """Click what submits a form or follows a link, and wait for the next page."""
        from selenium.common.exceptions import StaleElementReferenceException

        old = self.find("html")
        self.find(css).click()

        def gone() -> bool:
            try:
                old.tag_name  # noqa: B018 - raises once the old page is gone
                return False
            except StaleElementReferenceException:
                return True

        wait_until(gone, what=f"the page after clicking {css}")
        wait_until(lambda: self.driver.execute_script("return document.readyState") == "complete")

    def text(self) -> str:
        return str(self.find("body").text)

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.artifacts / f"{name}.png"))

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture
def page(browser: Any, serve: Callable[..., Dashboard], artifacts: Path) -> Page:
    return Page(browser, serve(), artifacts)


def test_every_page_opens_while_a_worker_runs(
    page: Page, workers: Workers, conn: Conn, schema: str, tmp_path: Path
) -> None:
    app = page.d.app
    w = workers.start("--queue", "default", "--queue", "mail", "--concurrency", "4")
    workers.wait_registered(conn, w)
    done = [app.enqueue("record", [i]) for i in range(5)]
    failed = app.enqueue("fails_until", [str(tmp_path / "never")], max_attempts=1)
    running = app.enqueue("slow", [60.0], queue="mail")
    for job_id in done:
        wait_state(conn, schema, job_id, "succeeded")
    wait_state(conn, schema, failed, "failed")
    wait_state(conn, schema, running, "running")

    page.open("/")
    # the live update: the page polled the JSON endpoint and drew both charts
    wait_until(lambda: int(page.find("body").get_attribute("data-polls") or 0) >= 2,
               what="the overview polled twice")  # fmt: skip
    assert len(page.all("#chart-throughput canvas")) == 1
    assert len(page.all("#chart-wait canvas")) == 1
    assert page.find('tr[data-queue="mail"] td[data-field="running"]').text == "1"
    later = app.enqueue("slow", [60.0], queue="mail")  # shows up without a reload
    wait_until(lambda: page.find('tr[data-queue="mail"] td[data-field="running"]').text == "2",
               what="the running count updated live")  # fmt: skip
    page.shot("overview")
    for name, path, expect in [
        ("jobs", "/jobs", "fails_until"),
        ("jobs-failed", "/jobs?state=failed", "fails_until"),
        ("job-failed", f"/jobs/{failed}", "does not exist yet <b>bold?</b>"),
        ("job-running", f"/jobs/{running}", "running"),
        ("dead", "/dead", "fails_until"),
        ("workers", "/workers", f"job {running}"),
        ("periodic", "/periodic", "No periodic schedules"),
        ("queue-mail", "/queues/mail", "Save limits"),
    ]:
        page.open(path)
        assert expect in page.text(), (path, page.text())
        page.shot(name)
    assert page.console_errors() == []
    app.admin.cancel([running, later])


def test_retry_a_failed_job_from_its_page(
    page: Page, workers: Workers, conn: Conn, schema: str, tmp_path: Path
) -> None:
    """A job that really failed (traceback from the worker) is retried from its page,
    through the confirmation, and then succeeds."""
    app = page.d.app
    w = workers.start("--concurrency", "2")
    workers.wait_registered(conn, w)
    marker = tmp_path / "allow"
    job_id = app.enqueue("fails_until", [str(marker)], max_attempts=1)
    wait_state(conn, schema, job_id, "failed")
    page.open(f"/jobs/{job_id}")
    assert "RuntimeError" in page.text() and "Traceback" in page.text()
    page.shot("job-before-retry")
    marker.touch()
    page.click("#job-retry")
    assert "Retry 1 job?" in page.text()
    page.shot("retry-confirm")
    page.click("#confirm")
    assert "retried" in page.find("#outcome").text
    wait_state(conn, schema, job_id, "succeeded")
    page.open(f"/jobs/{job_id}")
    assert page.find("#job-state").text == "succeeded"
    assert '"ok": true' in page.find("#job-result").text
    page.shot("job-after-retry")


def test_pause_a_queue_from_the_overview(page: Page, workers: Workers, conn: Conn,
                                         schema: str) -> None:  # fmt: skip
    """Paused from the page, the queue's new job stays queued while the same worker
    serves another queue; resumed from the page, it runs."""
    app = page.d.app
    w = workers.start("--queue", "default", "--queue", "other", "--concurrency", "2")
    workers.wait_registered(conn, w)
    wait_state(conn, schema, app.enqueue("record", [0]), "succeeded")
    page.open("/")
    page.click("#pause-default")
    assert "paused queue default" in page.find("#done-message").text
    held = app.enqueue("record", [1])
    served = app.enqueue("record", [2], queue="other")
    wait_state(conn, schema, served, "succeeded")
    assert state_of(conn, schema, held) == "queued"
    page.open("/")
    wait_until(lambda: page.find('tr[data-queue="default"] td[data-field="paused"]').text
               == "paused", what="shown paused")  # fmt: skip
    page.shot("overview-paused")
    assert state_of(conn, schema, held) == "queued"
    page.click("#resume-default")
    assert "resumed queue default" in page.find("#done-message").text
    wait_state(conn, schema, held, "succeeded")
