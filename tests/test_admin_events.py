import csv
import html
import io
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from auditlog.admin import chart
from auditlog.ingest.services import INTERNAL_SOURCE_NAME
from auditlog.models import ActionLog
from tests.conftest import BATCH_URL, EVENTS_URL, make_event

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/auditlog/actionlog/"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def events(api):
    """Seven events over seven days; the actor and target ids overlap on purpose."""
    batch = [
        make_event(
            action=action,
            actor={"id": actor, "type": actor_type},
            target={"type": target_type, "id": target_id},
            occurred_at=(T0 + timedelta(days=day)).isoformat(),
            outcome=outcome,
            metadata={"note": note},
        )
        for day, (action, actor, actor_type, target_type, target_id, outcome, note) in enumerate(
            [
                ("invoice.delete", "42", "user", "invoice", "7", "success", "a"),
                ("invoice.create", "42", "user", "invoice", "8", "success", "b"),
                ("user.login", "43", "user", "session", "s1", "failure", "c"),
                ("user.login", "svc-1", "service", "session", "s2", "success", "d"),
                ("document.view", "44", "user", "document", "42", "success", '=HYPERLINK("x")'),
                ("invoice.delete", "45", "user", "invoice", "7", "failure", "+1"),
                ("report.export", "42", "user", "report", "r1", "success", "@cmd"),
            ]
        )
    ]
    assert api.post(BATCH_URL, {"events": batch}).status_code == 200
    return {
        event.metadata["note"]: event
        for event in ActionLog.objects.exclude(source__name=INTERNAL_SOURCE_NAME)
    }


def listed(response):
    return [
        event.metadata["note"] for event in response.context["cl"].result_list if "note" in event.metadata
    ]


def test_changelist_lists_newest_first(admin_client, events):
    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    assert listed(response) == ["@cmd", "+1", '=HYPERLINK("x")', "d", "c", "b", "a"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "invoice.delete"}, ["+1", "a"]),
        ({"outcome__exact": "failure"}, ["+1", "c"]),
        ({"actor_type": "service"}, ["d"]),
        ({"target_type": "invoice"}, ["+1", "b", "a"]),
        ({"since": "2026-03-03", "until": "2026-03-04"}, ["d", "c"]),
        ({"since": "2026-03-06T00:00"}, ["@cmd", "+1"]),
        ({"action": "user.login", "outcome__exact": "success"}, ["d"]),
    ],
)
def test_filters(admin_client, events, params, expected):
    assert listed(admin_client.get(LIST_URL, params)) == expected


def test_filter_on_a_column_with_no_listed_values_still_applies(client, api, admin_user):
    """Django drops filters that show no choices: a target type filter must not become "all"."""
    untargeted = [{"action": "user.login", "actor": {"id": str(n)}} for n in range(3)]
    assert api.post(BATCH_URL, {"events": untargeted}).status_code == 200  # no target types at all
    client.force_login(admin_user)  # its own login event has no target either

    response = client.get(LIST_URL, {"target_type": "invoice"})

    assert list(response.context["cl"].result_list) == []
    assert response.context["cl"].paginator.count_label == "0"


def test_filter_choices_are_the_indexed_values(admin_client, events):
    response = admin_client.get(LIST_URL)

    specs = {spec.title: spec for spec in response.context["cl"].filter_specs}
    assert [value for value, _ in specs["action"].lookup_choices] == [
        "auditlog.admin.login",  # the admin client's own login is recorded too
        "document.view",
        "invoice.create",
        "invoice.delete",
        "report.export",
        "user.login",
    ]
    assert [value for value, _ in specs["actor type"].lookup_choices] == ["service", "staff", "user"]


def test_invalid_date_is_refused_not_a_500(admin_client, events):
    response = admin_client.get(LIST_URL, {"since": "last tuesday"})

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("42", ["@cmd", "b", "a"]),  # actor 42, not document 42
        ("target:42", ['=HYPERLINK("x")']),
        ("target:invoice:7", ["+1", "a"]),
        ("target:session:7", []),
        ("nobody", []),
    ],
)
def test_search_is_exact(admin_client, events, term, expected):
    assert listed(admin_client.get(LIST_URL, {"q": term})) == expected


def test_search_by_event_id(admin_client, events):
    assert listed(admin_client.get(LIST_URL, {"q": str(events["c"].uuid)})) == ["c"]


def test_count_is_bounded_and_never_a_full_count(admin_client, events):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(LIST_URL)

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the paginator counts"
    assert all("LIMIT" in sql.upper() for sql in counts), counts
    assert response.context["cl"].paginator.count_label == "8"  # 7 events + the admin login


def test_no_add_change_or_delete_for_a_superuser(admin_client, events):
    event = events["a"]
    changelist = admin_client.get(LIST_URL)
    detail = admin_client.get(f"{LIST_URL}{event.pk}/change/")

    assert changelist.context["cl"].model_admin.get_actions(changelist.wsgi_request) == {}
    assert changelist.context["action_form"] is None
    assert not changelist.context["has_add_permission"]
    assert admin_client.get(f"{LIST_URL}add/").status_code == 403
    assert admin_client.get(f"{LIST_URL}{event.pk}/delete/").status_code == 403
    assert detail.status_code == 200
    assert not detail.context["has_change_permission"]
    assert not detail.context["has_delete_permission"]
    assert 'name="_save"' not in detail.content.decode()
    posted = admin_client.post(f"{LIST_URL}{event.pk}/change/", {"action": "tampered"})
    assert posted.status_code == 403
    event.refresh_from_db()
    assert event.action == "invoice.delete"


def test_detail_shows_pretty_metadata_and_related_links(admin_client, events):
    event = events["a"]

    body = admin_client.get(f"{LIST_URL}{event.pk}/change/").content.decode()

    assert "<pre>{\n  &quot;note&quot;: &quot;a&quot;\n}</pre>" in body
    assert f'href="{LIST_URL}?q=42">Other events by this actor' in body
    assert f'href="{LIST_URL}?q=target%3Ainvoice%3A7">Other events on this target' in body


def test_viewing_an_event_is_itself_recorded(admin_client, admin_user, events):
    event = events["a"]

    admin_client.get(f"{LIST_URL}{event.pk}/change/")

    view = ActionLog.objects.get(action="auditlog.event.view")
    assert (view.actor_id, view.actor_type, view.target_type, view.target_id) == (
        admin_user.username,
        "staff",
        "audit_event",
        str(event.uuid),
    )
    assert view.source.name == INTERNAL_SOURCE_NAME
    assert view.source.revoked_at is not None  # no token can ever act as the internal source


def streamed(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_export_csv_is_the_filtered_list_with_formulas_neutralised(admin_client, events):
    response = admin_client.get(f"{LIST_URL}export/csv/", {"target_type": "document"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-events-')
    rows = list(csv.DictReader(io.StringIO(streamed(response))))
    assert [row["id"] for row in rows] == [str(events['=HYPERLINK("x")'].uuid)]
    assert rows[0]["metadata"] == '{"note":"=HYPERLINK(\\"x\\")"}'  # starts with {, so harmless


def test_csv_cells_that_start_a_formula_get_a_quote(admin_client, api):
    api.post(
        "/api/v1/events",
        make_event(actor={"id": "=1+1", "name": "@SUM(A1)"}, target={"id": "-2", "name": "+cmd"}),
    )

    row = next(
        csv.DictReader(io.StringIO(streamed(admin_client.get(f"{LIST_URL}export/csv/", {"q": "=1+1"}))))
    )

    assert (row["actor_id"], row["actor_name"], row["target_id"], row["target_name"]) == (
        "'=1+1",
        "'@SUM(A1)",
        "'-2",
        "'+cmd",
    )


def test_export_jsonl_has_one_api_shaped_event_per_line(admin_client, events):
    response = admin_client.get(f"{LIST_URL}export/jsonl/", {"action": "invoice.delete"})

    lines = [json.loads(line) for line in streamed(response).splitlines()]
    assert [line["id"] for line in lines] == [str(events["+1"].uuid), str(events["a"].uuid)]
    assert lines[1]["metadata"] == {"note": "a"}
    assert lines[1]["target"] == {"id": "7", "type": "invoice", "name": ""}


def test_export_is_recorded_with_its_filters(admin_client, admin_user, events):
    streamed(admin_client.get(f"{LIST_URL}export/csv/", {"action": "invoice.delete"}))

    export = ActionLog.objects.get(action="auditlog.events.export")
    assert export.actor_id == admin_user.username
    assert export.metadata == {"format": "csv", "filters": {"action": "invoice.delete"}}


def test_export_needs_the_view_permission(client, events):
    staff = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(staff)

    assert client.get(f"{LIST_URL}export/csv/").status_code == 403


def test_unknown_export_format_is_refused(admin_client, events):
    assert admin_client.get(f"{LIST_URL}export/xlsx/").status_code == 403


class Page(HTMLParser):
    """The links and the GET forms (their named fields, as submitted) of an admin page."""

    def __init__(self, html: str):
        super().__init__()
        self.links, self.forms, self._form = [], [], None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "form" and attrs.get("method") == "get":
            self._form = (attrs.get("id"), [])
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and attrs.get("name"):
            self._form[1].append((attrs["name"], attrs.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def offered_urls(response) -> list[str]:
    """Every changelist and export URL a page offers: filter choices, presets, sort headers,
    search and range forms (submitted as they are), export buttons, related links."""
    page = Page(response.content.decode())
    path = response.wsgi_request.path
    urls = [urljoin(path, href) for href in page.links if href.startswith(("?", LIST_URL))]
    urls += [f"{path}?{urlencode(fields)}" for _, fields in page.forms]
    return [url for url in urls if url.startswith(LIST_URL) and "/change/" not in url]


UNLISTED_LOOKUPS = [
    {"actor_name__regex": ".*"},
    {"actor_name__icontains": "a"},
    {"user_agent": "billing/1.0"},
    {"metadata__note": "a"},
    {"action__regex": "^invoice"},  # a listed filter's field, with another lookup
    {"outcome__in": "success,failure"},
    {"occurred_at__year": "2026"},
    {"source__name": "producer"},
    {"actor": "42"},  # no such field: refused the same way
]


@pytest.mark.parametrize("params", UNLISTED_LOOKUPS, ids=lambda params: next(iter(params)))
@pytest.mark.parametrize("url", [LIST_URL, f"{LIST_URL}export/csv/", f"{LIST_URL}export/jsonl/"])
def test_a_lookup_the_admin_does_not_list_is_refused_before_any_query(admin_client, events, url, params):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url, {"action": "invoice.delete", **params})

    assert response.status_code == 400
    assert [q["sql"] for q in queries.captured_queries if "auditlog_actionlog" in q["sql"]] == []
    assert not ActionLog.objects.filter(action="auditlog.events.export").exists()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?action=invoice.delete&outcome__exact=failure",
        "?since=2026-03-02&until=2026-03-05&actor_type=user&target_type=session&o=-1",
        "?q=target:invoice:7&action=invoice.delete&since=2026-03-01T00:00",
        "?q=42&outcome__exact=success&e=1",
    ],
)
def test_every_filter_link_and_form_the_changelist_offers_works(admin_client, events, query):
    start = admin_client.get(f"{LIST_URL}{query}")
    assert start.status_code == 200
    urls = offered_urls(start)
    names = {name for url in urls for name in parse_qs(urlsplit(url).query, keep_blank_values=True)}
    assert {"since", "action", "outcome__exact", "actor_type", "target_type", "q", "o"} <= names
    assert any("/export/csv/" in url for url in urls) and any("/export/jsonl/" in url for url in urls)

    answers = {url: admin_client.get(url).status_code for url in urls}

    assert answers == dict.fromkeys(urls, 200)


def test_the_related_links_of_the_detail_page_work(admin_client, events):
    detail = admin_client.get(f"{LIST_URL}{events['a'].pk}/change/")
    related = {
        label: urljoin(LIST_URL, href)
        for href, label in re.findall(r'<a href="([^"]+)">(Other events [^<]+)</a>', detail.content.decode())
    }
    lists = {label: admin_client.get(html.unescape(url)) for label, url in related.items()}

    assert {label: listed(response) for label, response in lists.items()} == {
        "Other events by this actor": ["@cmd", "b", "a"],
        "Other events on this target": ["+1", "a"],
    }


def test_the_links_back_from_a_detail_page_keep_working_filters(admin_client, events):
    preserved = urlencode({"_changelist_filters": "action=invoice.delete&outcome__exact=failure&q=45"})
    detail = admin_client.get(f"{LIST_URL}{events['+1'].pk}/change/?{preserved}")
    urls = [url for url in offered_urls(detail) if "action=invoice.delete" in url]
    assert urls, "the breadcrumbs and the close button lead back to the filtered list"

    answers = {url: listed(admin_client.get(url)) for url in urls}

    assert answers == dict.fromkeys(urls, ["+1"])


# --- the auditor's reading: precise times, what does not belong, before/after -----------------


def test_times_are_utc_to_the_millisecond_and_say_so(admin_client, api):
    at = "2026-03-01T09:41:07.123456+02:00"
    assert (
        api.post("/api/v1/events", make_event(occurred_at=at, metadata={"note": "precise"})).status_code
        == 201
    )
    event = ActionLog.objects.get(metadata__note="precise")

    listing = admin_client.get(LIST_URL).content.decode()
    detail = admin_client.get(f"{LIST_URL}{event.pk}/change/").content.decode()

    assert "2026-03-01 07:41:07.123" in listing and "occurred (UTC)" in listing
    assert "2026-03-01 07:41:07.123" in detail and "Occurred (UTC)" in detail
    received = event.received_at.astimezone(UTC)
    assert f"{received:%Y-%m-%d %H:%M:%S}.{received.microsecond // 1000:03d}" in detail
    assert "Received (UTC)" in detail


def test_events_have_no_history_and_the_admin_no_view_site_link(admin_client, events):
    event = events["a"]
    detail = admin_client.get(f"{LIST_URL}{event.pk}/change/").content.decode()

    assert "/history/" not in detail and ">History<" not in detail
    assert admin_client.get(f"{LIST_URL}{event.pk}/history/").status_code == 404
    assert "View site" not in admin_client.get("/admin/").content.decode()


def test_changes_show_as_field_before_after_escaped(admin_client, api):
    changes = {"email": ["old@x.example", "new@x.example"], "role": ["<b>user</b>", None], "tries": [1, 2]}
    api.post("/api/v1/events", make_event(metadata={"changes": changes, "note": "changed"}))
    api.post("/api/v1/events", make_event(metadata={"changes": {"email": "not a pair"}, "note": "other"}))
    changed = ActionLog.objects.get(metadata__note="changed")
    other = ActionLog.objects.get(metadata__note="other")

    page = admin_client.get(f"{LIST_URL}{changed.pk}/change/").content.decode()
    table = re.search(r'<table class="auditlog-changes">.*?</table>', page, re.S)[0]
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</th><td>(.*?)</td><td>(.*?)</td></tr>", table)

    assert rows == [
        ("email", "old@x.example", "new@x.example"),
        ("role", "&lt;b&gt;user&lt;/b&gt;", "null"),
        ("tries", "1", "2"),
    ]
    assert "<b>user</b>" not in page
    assert (
        'class="auditlog-changes"' not in admin_client.get(f"{LIST_URL}{other.pk}/change/").content.decode()
    )


def test_the_index_says_per_source_events_and_failures_today_and_the_newest(admin_client, api, writer_key):
    now = datetime.now(UTC)
    for outcome in ("success", "failure", "failure"):
        api.post("/api/v1/events", make_event(occurred_at=now.isoformat(), outcome=outcome))
    api.post("/api/v1/events", make_event(occurred_at=(now - timedelta(days=2)).isoformat()))

    page = admin_client.get("/admin/").content.decode()
    summary = re.search(r'<div class="module" id="sources-summary">.*?</table>', page, re.S)[0]
    row = re.search(
        rf"<th scope=\"row\">producer <span class=\"quiet\">\({writer_key[0].prefix}\)</span></th>(.*?)</tr>",
        summary,
        re.S,
    )[1]
    cells = re.findall(r"<td>(.*?)</td>", row)

    assert cells[:2] == ["3", "2"]
    assert cells[2].startswith(now.strftime("%Y-%m-%d"))


def test_the_activity_chart_counts_what_the_api_counts_and_each_bar_opens_its_list(admin_client, api, events):
    """The bars' counts for a filtered range add up to what the API lists for the same filters;
    failures are counted apart; a bar's link lists its own events."""
    query = {"action": "invoice.delete", "since": "2026-03-01T00:00", "until": "2026-03-08T00:00"}
    response = admin_client.get(LIST_URL, query)
    page = response.content.decode()
    bars = re.findall(
        r'<a href="([^"]+)" class="activity-bar" data-events="(\d+)" data-failures="(\d+)">', page
    )
    listing = api.get(
        EVENTS_URL, action="invoice.delete", since="2026-03-01T00:00:00Z", until="2026-03-08T00:00:00Z"
    )
    assert listing.status_code == 200, listing.content
    api_ids = [event["id"] for event in listing.json()["results"]]

    assert len(bars) == 42  # seven days in four-hour bars
    assert sum(int(events) for _, events, _ in bars) == len(api_ids) == 2
    assert sum(int(failures) for _, _, failures in bars) == 1  # "+1" failed
    assert 'role="img"' in page and 'aria-label="Events per 4 hours' in page
    href, count, _ = next(bar for bar in bars if bar[1] != "0")
    assert "action=invoice.delete" in html.unescape(href)
    assert len(listed(admin_client.get(LIST_URL + html.unescape(href)))) == int(count)


def test_a_bar_past_the_cap_is_an_estimate_that_says_so(admin_client, api, monkeypatch):
    """A bucket holding more than the chart counts is estimated from the share of it its first
    rows cover, and labelled as such; fewer are counted exactly."""
    monkeypatch.setattr(chart, "CAP", 40)
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)  # a four-hour bucket of a week's chart
    batch = [  # 200 events spread evenly over the bucket, one failure in five; 3 the next bucket
        make_event(
            occurred_at=(start + timedelta(seconds=72 * n)).isoformat(),
            outcome="failure" if n % 5 == 0 else "success",
        )
        for n in range(200)
    ] + [make_event(occurred_at=(start + timedelta(hours=4, minutes=n)).isoformat()) for n in range(3)]
    response = api.post(BATCH_URL, {"events": batch})
    assert response.status_code == 200, response.content[:300]
    assert {item["status"] for item in response.json()["results"]} == {201}, response.content[:300]

    page = admin_client.get(LIST_URL, {"since": "2026-03-01T00:00", "until": "2026-03-08T00:00"})
    bars = {bar.start: bar for bar in page.context["chart"].bars}

    full, next_one = bars[start], bars[start + timedelta(hours=4)]
    assert full.estimated and 180 <= full.events <= 220 and 36 <= full.failures <= 44
    assert "about" in full.label and "estimated from the first 41" in full.label
    assert 'data-estimated="true"' in page.content.decode()
    assert (next_one.events, next_one.failures, next_one.estimated) == (3, 0, False)
    assert "1 of them estimated" in page.context["chart"].summary
