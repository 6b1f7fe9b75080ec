"""The admin in a real browser: Debian's chromium, driven by Selenium through chromium-driver."""

import csv
import http.client
import io
import json
import os
import re
import shutil
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
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
    with within_a_second("auditlog.apikey.create") as created:
        navigate(driver, driver.find_element("css selector", "input[type=submit]").click)
    crm = ApiKey.objects.get(name="crm")
    assert created.event.actor_id == "auditor" and created.event.target_id == crm.prefix
    driver.save_screenshot(str(SCREENSHOTS / "6-key-created.png"))

    driver.get(f"{gunicorn.url}/admin/auditlog/apikey/")
    driver.find_element("css selector", f"input[name=_selected_action][value='{crm.pk}']").click()
    driver.find_element("css selector", "select[name=action] option[value=revoke]").click()
    with within_a_second("auditlog.apikey.revoke") as revoked:
        navigate(driver, driver.find_element("css selector", "button[name=index]").click)
    assert (revoked.event.actor_id, revoked.event.target_id) == ("auditor", crm.prefix)

    # A user's permissions changed in the admin's two-box selector: an internal event, and the
    # auditor finds it in the list.
    bob = get_user_model().objects.create_user("bob", password=PASSWORD, is_staff=True)
    permission = Permission.objects.get(codename="view_actionlog")
    driver.get(f"{gunicorn.url}/admin/auth/user/{bob.pk}/change/")
    driver.find_element("css selector", f"#id_user_permissions_from option[value='{permission.pk}']").click()
    driver.find_element("id", "id_user_permissions_add").click()
    with within_a_second("auditlog.user.permissions.change") as changed:
        navigate(driver, driver.find_element("name", "_save").click)
    assert (changed.event.actor_id, changed.event.target_id) == ("auditor", "bob")
    assert changed.event.metadata == {"added": [str(permission)]}
    navigate(driver, lambda: driver.get(f"{gunicorn.url}/admin/auditlog/actionlog/?q=target:user:bob"))
    assert "auditlog.user.permissions.change" in column(driver, "action")
    driver.save_screenshot(str(SCREENSHOTS / "7-permission-change-recorded.png"))


class within_a_second:
    """Around an admin action: the internal event `action` is stored within a second of the
    action starting (the request included)."""

    def __init__(self, action: str, seconds: float = 1.0):
        self.action, self.seconds = action, seconds

    def __enter__(self):
        self.after = ActionLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return
        deadline = self.started + self.seconds
        while True:
            self.event = ActionLog.objects.filter(action=self.action, id__gt=self.after).first()
            if self.event is not None or time.monotonic() > deadline:
                assert self.event is not None, f"no {self.action} event within {self.seconds} s"
                return
            time.sleep(0.02)


def test_the_activity_chart_counts_what_the_api_counts(gunicorn, browser, trail):
    """Each bar of the chart of the last week, as Chromium shows it, holds the events and the
    failures the API lists for that bar's period; a bar opens its period's list; the chart says
    its counts to a screen reader."""
    driver = browser
    driver.get(f"{gunicorn.url}/admin/login/")
    driver.find_element("id", "id_username").send_keys("auditor")
    driver.find_element("id", "id_password").send_keys(PASSWORD)
    navigate(driver, driver.find_element("css selector", "input[type=submit]").click)
    week_ago = (timezone.now() - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    navigate(driver, lambda: driver.get(f"{gunicorn.url}/admin/auditlog/actionlog/?since={week_ago}"))
    chart = driver.find_element("id", "activity-chart")
    chart.screenshot(str(SCREENSHOTS / "8-activity-chart.png"))
    bars = [
        (
            bar.get_dom_attribute("href"),
            int(bar.get_dom_attribute("data-events")),
            int(bar.get_dom_attribute("data-failures")),
        )
        for bar in chart.find_elements("css selector", "a.activity-bar")
    ]
    assert len(bars) == 43  # a week and a bit in four-hour bars
    assert sum(events for _, events, _ in bars) > 0 and sum(failures for _, _, failures in bars) > 0
    assert "failures" in chart.find_element("tag name", "svg").get_attribute("aria-label")

    token = api_key_create(name="siem", scopes={"read_all"})[1]
    for href, events, failures in bars:
        moments = {name: values[0] + ":00Z" for name, values in parse_qs(urlsplit(href).query).items()}
        assert (events, failures) == (
            api_count(gunicorn, token, **moments),
            api_count(gunicorn, token, **moments, outcome="failure"),
        ), href
    first, events, _ = max(bars, key=lambda bar: bar[1])
    navigate(driver, chart.find_element("css selector", f"a.activity-bar[href='{first}']").click)
    assert len(column(driver, "action")) == events


def api_count(gunicorn, token: str, **filters) -> int:
    """Events the API lists for `filters`, every page followed."""
    count, cursor = 0, None
    while True:
        query = {**filters, "limit": 500, **({"cursor": cursor} if cursor else {})}
        conn = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=30)
        conn.request(
            "GET", f"/api/v1/events?{urlencode(query)}", headers={"Authorization": f"Bearer {token}"}
        )
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        assert response.status == 200, body
        count += len(body["results"])
        cursor = body["next_cursor"]
        if not cursor:
            return count
