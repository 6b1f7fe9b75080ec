"""The admin in a real browser: Debian's chromium, driven by Selenium through chromium-driver."""

import csv
import http.client
import io
import os
import re
import shutil
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from auditlog.events.validation import event_validate
from auditlog.ingest.services import event_create
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, ApiKey
from tests.live.conftest import LOG_DIR

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = LOG_DIR / "screenshots"
PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(tmp_path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def trail(db):
    """Demo events, plus one known event two days ago."""
    get_user_model().objects.create_superuser("auditor", "auditor@example.com", PASSWORD)
    call_command("auditlog_demo", "--count", "3000", "--seed", "11", stdout=io.StringIO())
    source, _ = api_key_create(name="billing", scopes={"write"})
    event = event_validate(
        {
            "action": "invoice.delete",
            "actor": {"id": "ada-42", "type": "user", "name": "Ada Lovelace"},
            "target": {"type": "invoice", "id": "7", "name": "INV-7"},
            "occurred_at": (timezone.now() - timedelta(days=2)).isoformat(),
            "context": {"ip": "203.0.113.9"},
            "metadata": {"reason": "duplicate", "lines": [1, 2], "changes": {"status": ["open", "deleted"]}},
        }
    )
    return event_create(source=source, event=event).event


def column(driver, name):
    return [
        cell.text
        for cell in driver.find_elements(
            "css selector", f"#result_list td.field-{name}, #result_list th.field-{name}"
        )
    ]


def navigate(driver, act):
    """Do something that loads a new page and wait until that page has replaced the old one.

    Reading elements straight after a click or an Enter races the navigation: they can belong
    to the page being left and go stale under the reader.
    """
    from selenium.webdriver.support.wait import WebDriverWait

    old = driver.find_element("tag name", "html")
    act()
    wait = WebDriverWait(driver, 15)
    wait.until(lambda _: _gone(old))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def _gone(element) -> bool:
    """Whether the element has left the document: stale, in WebDriver's words, or, as Chromium
    156 sometimes answers for the old page's node mid-navigation, "does not belong to the
    document" (an unknown error, which selenium's staleness_of lets through)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def test_auditor_filters_searches_opens_and_exports_without_edit_controls(gunicorn, browser, trail):
    driver = browser
    driver.get(f"{gunicorn.url}/admin/login/?next=/admin/auditlog/actionlog/")
    driver.find_element("id", "id_username").send_keys("auditor")
    driver.find_element("id", "id_password").send_keys(PASSWORD)
    navigate(driver, driver.find_element("css selector", "input[type=submit]").click)
    assert driver.find_element("id", "result_list")
    driver.save_screenshot(str(SCREENSHOTS / "1-list.png"))
    assert not driver.find_elements("css selector", "#content a.addlink")  # no "Add audit event"
    assert not driver.find_elements("name", "action")  # no bulk actions (no bulk delete)
    # UTC to the millisecond, the zone in the column's title; no "View site" (there is none)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", t) for t in column(driver, "occurred"))
    assert "UTC" in driver.find_element("css selector", "#result_list th.column-occurred").text
    assert not driver.find_elements("link text", "VIEW SITE") and not driver.find_elements(
        "link text", "View site"
    )

    navigate(
        driver,
        driver.find_element("css selector", "#changelist-filter a[href*='action=invoice.delete']").click,
    )
    assert set(column(driver, "action")) == {"invoice.delete"}

    today = timezone.now().date()
    driver.find_element("id", "occurred-since").send_keys((today - timedelta(days=3)).isoformat())
    driver.find_element("id", "occurred-until").send_keys(today.isoformat())
    navigate(driver, driver.find_element("css selector", "#occurred-range input[type=submit]").click)
    assert "action=invoice.delete" in driver.current_url and "since=" in driver.current_url
    assert set(column(driver, "action")) == {"invoice.delete"}
    driver.save_screenshot(str(SCREENSHOTS / "2-filtered-by-action-and-date.png"))

    search = driver.find_element("id", "searchbar")
    search.clear()
    navigate(driver, lambda: search.send_keys("ada-42\n"))
    assert column(driver, "actor") == ["ada-42 (user) Ada Lovelace"]
    driver.save_screenshot(str(SCREENSHOTS / "3-searched-actor.png"))

    navigate(driver, driver.find_element("css selector", "#result_list th.field-occurred a").click)
    body = driver.find_element("tag name", "body").text
    assert str(trail.uuid) in body
    assert '"reason": "duplicate"' in driver.find_element("css selector", ".field-pretty_metadata pre").text
    assert driver.find_element("link text", "Other events by this actor")
    assert not driver.find_elements("name", "_save")
    assert not driver.find_elements("css selector", "a.deletelink")
    assert not driver.find_elements("css selector", "a.historylink")  # an event is never changed
    changes = driver.find_element("css selector", "table.auditlog-changes tbody tr").text
    assert changes == "status open deleted"
    assert re.search(r"Received \(UTC\):?\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", body, re.I)
    driver.set_window_size(1400, 1900)  # the whole detail page, metadata included
    driver.save_screenshot(str(SCREENSHOTS / "4-event-detail.png"))
    driver.set_window_size(1400, 1000)

    navigate(driver, driver.back)
    export_url = driver.find_element("id", "export-csv").get_attribute("href")
    session = driver.get_cookie("sessionid")["value"]
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=30)
    conn.request("GET", export_url.removeprefix(gunicorn.url), headers={"Cookie": f"sessionid={session}"})
    response = conn.getresponse()
    rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    conn.close()
    assert response.status == 200
    assert [row["id"] for row in rows] == [str(trail.uuid)]

    recorded = set(ActionLog.objects.filter(actor_id="auditor").values_list("action", flat=True))
    assert recorded == {"auditlog.admin.login", "auditlog.event.view", "auditlog.events.export"}

    driver.get(f"{gunicorn.url}/admin/")  # a line per source: billing stored one event, days ago
    summary = driver.find_element("id", "sources-summary").text
    assert "billing" in summary and "demo" in summary.lower()
    driver.save_screenshot(str(SCREENSHOTS / "5-index-sources.png"))

    # A key made and revoked in the admin: each an internal event naming the auditor, within a second.
    driver.get(f"{gunicorn.url}/admin/auditlog/apikey/add/")
    driver.find_element("id", "id_name").send_keys("crm")
    navigate(driver, driver.find_element("css selector", "input[type=submit]").click)
    created = _event_within("auditlog.apikey.create", seconds=1.0)
    assert created.actor_id == "auditor" and created.target_id == ApiKey.objects.get(name="crm").prefix
    driver.save_screenshot(str(SCREENSHOTS / "6-key-created.png"))


def _event_within(action: str, seconds: float) -> ActionLog:
    deadline = time.monotonic() + seconds
    while True:
        event = ActionLog.objects.filter(action=action).order_by("-id").first()
        if event is not None or time.monotonic() > deadline:
            assert event is not None, f"no {action} event within {seconds} s"
            return event
        time.sleep(0.05)
